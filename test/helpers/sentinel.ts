import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { aclServer, freePort, type TestIdentity } from './redis-server.js';

/** A real Sentinel set-up on loopback: one primary, one replica, three sentinels, all on free ports. */
export interface SentinelSetup {
  /** `sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/<name>` */
  readonly url: string;
  readonly name: string;
  /** Data node ports: [initial primary, initial replica]. */
  readonly dataPorts: readonly [number, number];
  readonly sentinelPorts: readonly number[];
  /** @returns the port of the primary the sentinels currently announce */
  primaryPort(): Promise<number>;
  /** A direct client of one data node (closed by stop()). */
  node(port: number): Redis;
  /** SIGKILL the data node on `port` (a crash: no clean shutdown). */
  killNode(port: number): Promise<void>;
  /** Ask a sentinel for a failover and wait until every sentinel announces a new primary. */
  failover(timeoutMs?: number): Promise<number>;
  /** Wait until every sentinel announces a primary other than `old`. */
  waitForNewPrimary(old: number, timeoutMs?: number): Promise<number>;
  /** Wait until the current primary has an online replica in sync (a failover needs one, and WAIT too). */
  waitForReplica(timeoutMs?: number): Promise<void>;
  /** A host's per-role logins (agent, coordinator, admin CLI) on both data nodes, as `fleetban acl` makes them. */
  roles(host: string): { agent: TestIdentity; coordinator: TestIdentity; cli: TestIdentity };
  stop(): Promise<void>;
}

/**
 * Start the set-up and wait until all three sentinels know the replica (a failover needs one).
 * Timings are short (down-after 1 s, failover-timeout 3 s) so a test fails over in seconds.
 * Both data nodes run the shipped Redis settings with the cluster's ACL users (ACL users are not
 * replicated: each node has them from its own ACL file, as `fleetban acl --apply` run on each
 * node gives them); the default user has a password, which the replica (`masteruser`) and the
 * sentinels (`auth-user`) log in with.
 * @param cluster the cluster whose users the nodes get
 * @param hosts the agent hosts that get an identity
 * @param name the monitored primary's name
 */
export async function startSentinels(cluster: string, hosts: readonly string[], name = 'mymaster'): Promise<SentinelSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-sentinel-'));
  const adminPassword = randomBytes(18).toString('base64url');
  const acl = aclServer(dir, adminPassword, cluster, hosts);
  const procs = new Map<number, ChildProcess>();
  const clients: Redis[] = [];
  const primary = await freePort();
  const replica = await freePort();
  const sentinelPorts = [await freePort(), await freePort(), await freePort()];

  const spawnServer = (port: number, args: string[]): void => {
    const p = spawn('redis-server', args, { stdio: 'ignore' });
    procs.set(port, p);
  };
  const stop = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    await Promise.all([...procs.values()].map((p) => (p.exitCode === null && p.signalCode === null
      ? new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGKILL'); })
      : Promise.resolve())));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (const [port, extra] of [[primary, []], [replica, ['--replicaof', '127.0.0.1', String(primary)]]] as const) {
      const aclfile = join(dir, `acl-${port}.acl`);
      copyFileSync(acl.aclfile, aclfile);
      spawnServer(port, [acl.conf, '--aclfile', aclfile, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--dbfilename', `dump-${port}.rdb`,
        // Without the default 5 s diskless-sync delay a replica (re)syncs at once: tests fail over in seconds.
        '--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--logfile', join(dir, `redis-${port}.log`),
        // Either node may be the replica after a failover.
        '--masteruser', 'default', '--masterauth', adminPassword, ...extra]);
    }
    for (const port of sentinelPorts) {
      const conf = join(dir, `sentinel-${port}.conf`);
      // Sentinel rewrites its config file as it learns the topology, so each needs its own.
      writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `logfile ${join(dir, `sentinel-${port}.log`)}`,
        `sentinel monitor ${name} 127.0.0.1 ${primary} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 3000`,
        `sentinel parallel-syncs ${name} 1`,
        `sentinel auth-user ${name} default`,
        `sentinel auth-pass ${name} ${adminPassword}`,
      ].join('\n') + '\n');
      spawnServer(port, [conf, '--sentinel']);
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      const known = await Promise.all(sentinelPorts.map(async (port) => {
        const c = quickClient(port);
        try {
          const replicas = (await c.call('SENTINEL', 'REPLICAS', name)) as string[][];
          return replicas.some((r) => flagsOf(r).port === String(replica) && !/down|disconnected/.test(flagsOf(r).flags ?? ''));
        } catch {
          return false;
        } finally {
          c.disconnect();
        }
      }));
      if (known.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error(`sentinels did not discover the replica within 20 s (logs in ${dir})`);
      await sleep(200);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const primaryPort = async (port = sentinelPorts[0]!): Promise<number> => {
    const c = quickClient(port);
    try {
      const [, p] = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as [string, string];
      return Number(p);
    } finally {
      c.disconnect();
    }
  };
  const waitForNewPrimary = async (old: number, timeoutMs = 30_000): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = await Promise.all(sentinelPorts.map((p) => primaryPort(p).catch(() => old)));
      if (seen.every((p) => p !== old && p === seen[0])) return seen[0]!;
      if (Date.now() > deadline) throw new Error(`sentinels still announce ${seen.join(',')} after ${timeoutMs} ms (old primary ${old})`);
      await sleep(100);
    }
  };

  const waitForReplica = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = quickClient(await primaryPort(), adminPassword);
      try {
        const info = await c.info('replication');
        if (/^slave\d+:.*state=online/m.test(info)) return;
      } catch {
        // the primary may be between roles; ask again
      } finally {
        c.disconnect();
      }
      if (Date.now() > deadline) throw new Error(`no online replica after ${timeoutMs} ms (logs in ${dir})`);
      await sleep(100);
    }
  };
  // Sentinels knowing the replica is not enough: it must have finished its first sync, or a
  // failover would promote an empty server.
  try {
    await waitForReplica();
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    waitForReplica,
    url: `sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${name}`,
    name,
    dataPorts: [primary, replica],
    sentinelPorts,
    primaryPort: () => primaryPort(),
    node(port) {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 3, username: 'default', password: adminPassword });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async killNode(port) {
      const p = procs.get(port);
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGKILL'); });
    },
    async failover(timeoutMs = 30_000) {
      const old = await primaryPort();
      // A failover is refused while sentinels still settle after the last one; retry briefly.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const c = quickClient(sentinelPorts[0]!);
        try {
          await c.call('SENTINEL', 'FAILOVER', name);
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await sleep(300);
        } finally {
          c.disconnect();
        }
      }
      return waitForNewPrimary(old, timeoutMs);
    },
    waitForNewPrimary,
    roles: acl.roles,
    stop,
  };
}

function quickClient(port: number, password?: string): Redis {
  const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: false, ...(password ? { username: 'default', password } : {}) });
  c.on('error', () => undefined);
  return c;
}

function flagsOf(flat: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]!] = flat[i + 1]!;
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
