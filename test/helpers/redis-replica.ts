import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, SHIPPED_REDIS_CONF, type TestRedis } from './redis-server.js';

/** A real redis-server replicating a test primary, on its own loopback port. */
export interface TestReplica {
  readonly url: string;
  /** The URL with the default user's credentials (the primary's administrator password). */
  readonly adminUrl: string;
  readonly port: number;
  readonly pid: number;
  /** Kill it with `signal` (SIGKILL: the replica dies the way a crashed host's does). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Start a replica of `primary`, and wait until its initial sync is done (`master_link_status:up`).
 * ACL users are not replicated: the replica loads a copy of the primary's ACL file, so start it
 * after the test's identities are provisioned (writeConfig) for them to log in here too.
 */
export async function startReplica(primary: TestRedis, extraArgs: string[] = []): Promise<TestReplica> {
  const password = decodeURIComponent(new URL(primary.adminUrl).password);
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-replica-'));
  const port = await freePort();
  const aclfile = join(dir, 'users.acl');
  copyFileSync(join(primary.dir, 'users.acl'), aclfile);
  const conf = join(dir, 'redis.conf');
  writeFileSync(conf, `include ${SHIPPED_REDIS_CONF}\n`);
  const proc: ChildProcess = spawn('redis-server', [conf, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--aclfile', aclfile, '--logfile', join(dir, 'redis.log'), '--replicaof', '127.0.0.1', String(primary.port),
    '--masteruser', 'default', '--masterauth', password, ...extraArgs], { stdio: 'ignore' });
  const adminUrl = `redis://default:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const c = new Redis(adminUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined); // refused while it starts: retried below
    const up = await c.connect().then(() => c.info('replication')).then((i) => /master_link_status:up/.test(i), () => false);
    c.disconnect();
    if (up) break;
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`replica on port ${port} did not sync with the primary on ${primary.port} within 15 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  };
  return {
    url: `redis://127.0.0.1:${port}`, adminUrl, port, pid: proc.pid!, kill,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
