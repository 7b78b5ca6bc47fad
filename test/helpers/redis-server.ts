import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { aclPasswordHash, clusterAclUsers, userPassword, ACL_USERS, agentUser, type AclUser } from '../../common/acl.js';
import { clusterKeys } from '../../common/protocol/keys.js';

/** The Redis settings shipped for production, which every test server runs with too. */
export const SHIPPED_REDIS_CONF = resolve('deploy/redis/fleetban-redis.conf');

/** Per-role logins of a cluster on a test server, as `fleetban acl` makes them. */
export interface TestIdentity {
  readonly username: string;
  readonly passwordFile: string;
  readonly password: string;
}

/** Test servers this process started, by port: what provisionIdentities() needs to log in as admin. */
const started = new Map<number, { password: string; dir: string }>();

/**
 * Create (ACL SETUSER, synchronously through redis-cli) the cluster's users on a server this
 * process started, exactly as `fleetban acl --apply` does, and register the hosts.
 * @returns the identities by role: agent (one per host), coordinator, admin, reader
 */
export function provisionIdentities(port: number, cluster: string, hosts: readonly string[]): {
  agents: Map<string, TestIdentity>; coordinator: TestIdentity; admin: TestIdentity; reader: TestIdentity;
} {
  const server = started.get(port);
  if (!server) throw new Error(`no test Redis on port ${port}`);
  const secrets = join(server.dir, 'secrets', cluster);
  const users = clusterAclUsers(cluster, hosts);
  const ids = new Map<string, TestIdentity>();
  const commands: string[] = [];
  for (const u of users) {
    const { password, file } = userPassword(secrets, u.name);
    ids.set(u.name, { username: u.name, passwordFile: file, password });
    commands.push(setUserCommand(u, password));
  }
  if (hosts.length > 0) commands.push(['SADD', clusterKeys(cluster).registry, ...hosts].join(' '));
  // Into the server's ACL file, as `fleetban acl --apply` does: the users outlive a restart.
  commands.push('ACL SAVE');
  const out = execFileSync('redis-cli', ['-p', String(port), '--user', 'default', '--pass', server.password, '--no-auth-warning'], { input: commands.join('\n') + '\n', encoding: 'utf8' });
  if (/ERR|NOPERM|WRONGPASS/.test(out)) throw new Error(`provisioning ACL users failed: ${out}`);
  return {
    agents: new Map(hosts.map((h) => [h, ids.get(agentUser(h))!])),
    coordinator: ids.get(ACL_USERS.coordinator)!,
    admin: ids.get(ACL_USERS.admin)!,
    reader: ids.get(ACL_USERS.reader)!,
  };
}

function setUserCommand(u: AclUser, password: string): string {
  return ['ACL', 'SETUSER', u.name, 'reset', 'on', `#${aclPasswordHash(password)}`, ...u.rules].join(' ');
}

/**
 * When `conf` (a fleetban.conf) points at a server this process started, give each role of that
 * host its own identity (agent, coordinator, and admin for the CLI), as production does: every
 * test then runs with per-role ACL users instead of one shared login.
 * @returns the configuration with `redis_username` / `redis_password_file` added per role
 */
export function withIdentities(conf: string, hostName: () => string): string {
  const url = /^\s*url\s*=\s*redis:\/\/127\.0\.0\.1:(\d+)\S*\s*$/m.exec(conf);
  if (!url || !started.has(Number(url[1]))) return conf;
  if (/redis_username/.test(conf)) return conf;
  const section = (name: string) => new RegExp(`^\\[${name}\\]\\s*$`, 'm');
  const value = (sec: string, key: string): string | undefined => {
    const lines = conf.split('\n');
    let inside = false;
    for (const line of lines) {
      if (/^\[/.test(line)) inside = section(sec).test(line);
      else if (inside) {
        const m = new RegExp(`^\\s*${key}\\s*=\\s*(\\S+)`).exec(line);
        if (m) return m[1];
      }
    }
    return undefined;
  };
  const cluster = value('cluster', 'name') ?? 'default';
  const host = value('agent', 'host') ?? hostName();
  const ids = provisionIdentities(Number(url[1]), cluster, [host]);
  return addIdentityLines(conf, { agent: ids.agents.get(host)!, coordinator: ids.coordinator, cli: ids.admin });
}

/** @returns fleetban.conf text with `redis_username` / `redis_password_file` in each role's section */
export function addIdentityLines(conf: string, roles: Partial<Record<'agent' | 'coordinator' | 'cli', TestIdentity>>): string {
  let out = conf;
  for (const [sec, id] of Object.entries(roles)) {
    const lines = [`redis_username = ${id.username}`, `redis_password_file = ${id.passwordFile}`];
    const re = new RegExp(`^\\[${sec}\\]\\s*$`, 'm');
    if (re.test(out)) out = out.replace(re, (header) => `${header}\n${lines.join('\n')}`);
    else out = `${out.endsWith('\n') ? out : `${out}\n`}[${sec}]\n${lines.join('\n')}\n`;
  }
  return out;
}

/**
 * For a redis-server a test starts itself (inside a network namespace): the shipped settings and
 * an ACL file holding the default user (with `adminPassword`) and the cluster's users, exactly as
 * `fleetban acl` prints them. Coordinators register the hosts from the ACL users.
 * @returns the redis-server arguments, and each host's identities (agent, coordinator, admin)
 */
export function aclServer(dir: string, adminPassword: string, cluster: string, hosts: readonly string[]): {
  args: string[]; conf: string; aclfile: string; roles(host: string): { agent: TestIdentity; coordinator: TestIdentity; cli: TestIdentity };
} {
  const secrets = join(dir, 'secrets', cluster);
  const ids = new Map<string, TestIdentity>();
  const lines = [`user default on #${aclPasswordHash(adminPassword)} ~* &* +@all`];
  for (const u of clusterAclUsers(cluster, hosts)) {
    const { password, file } = userPassword(secrets, u.name);
    ids.set(u.name, { username: u.name, passwordFile: file, password });
    lines.push(['user', u.name, 'on', `#${aclPasswordHash(password)}`, ...u.rules].join(' '));
  }
  const aclfile = join(dir, `${cluster}.acl`);
  writeFileSync(aclfile, `${lines.join('\n')}\n`, { mode: 0o600 });
  const conf = join(dir, `${cluster}-redis.conf`);
  writeFileSync(conf, `include ${SHIPPED_REDIS_CONF}\n`);
  return {
    args: [conf, '--aclfile', aclfile, '--appendonly', 'no'],
    conf,
    aclfile,
    roles: (host) => ({ agent: ids.get(agentUser(host))!, coordinator: ids.get(ACL_USERS.coordinator)!, cli: ids.get(ACL_USERS.admin)! }),
  };
}

/** A real redis-server started for a test file, on a free loopback port (never 6379). */
export interface TestRedis {
  readonly url: string;
  /** The URL with the default (administrator) user's credentials. */
  readonly adminUrl: string;
  readonly port: number;
  readonly dir: string;
  /** A fresh client; closed by stop(). */
  client(): Redis;
  /** Stop the server (SIGTERM) without deleting its data dir, e.g. to restart it. */
  kill(): Promise<void>;
  /** Start it again on the same port and dir (AOF/RDB in dir survive). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** @returns a port the kernel just reported free on 127.0.0.1 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Start redis-server, or use REDIS_URL when set (CI with an external server).
 * @param extraArgs more redis-server arguments, e.g. ['--appendonly', 'yes']
 */
export async function startRedis(extraArgs: string[] = []): Promise<TestRedis> {
  const clients: Redis[] = [];
  // Set below, once the server is made; client() reads it when called, after that.
  // eslint-disable-next-line prefer-const
  let adminPassword: string | undefined;
  const client = (url: string): Redis => {
    const c = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 3, ...(adminPassword ? { password: adminPassword } : {}) });
    clients.push(c);
    return c;
  };
  if (process.env.REDIS_URL) {
    const url = process.env.REDIS_URL;
    return {
      url,
      adminUrl: url,
      port: Number(new URL(url).port || 6379),
      dir: '',
      client: () => client(url),
      kill: async () => { throw new Error('cannot kill an external REDIS_URL server'); },
      restart: async () => { throw new Error('cannot restart an external REDIS_URL server'); },
      stop: async () => { await Promise.all(clients.map((c) => c.quit().catch(() => undefined))); },
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-redis-'));
  const port = await freePort();
  // The shipped settings and an ACL file: the default user (this harness' own client, which
  // stands in for the operator) needs a password, every daemon gets its role's user.
  adminPassword = randomBytes(18).toString('base64url');
  const aclfile = join(dir, 'users.acl');
  writeFileSync(aclfile, `user default on #${aclPasswordHash(adminPassword)} ~* &* +@all\n`, { mode: 0o600 });
  const conf = join(dir, 'redis.conf');
  writeFileSync(conf, `include ${SHIPPED_REDIS_CONF}\n`);
  started.set(port, { password: adminPassword, dir });
  let proc: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    proc = spawn('redis-server', [conf, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
      '--aclfile', aclfile, '--logfile', join(dir, 'redis.log'), ...extraArgs], {
      stdio: 'ignore',
    });
    await waitForPing(port, adminPassword);
  };
  await launch();
  const url = `redis://127.0.0.1:${port}`;
  const kill = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  };
  return {
    url,
    adminUrl: `redis://default:${adminPassword}@127.0.0.1:${port}`,
    port,
    dir,
    client: () => client(url),
    kill,
    restart: launch,
    stop: async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      await kill();
      started.delete(port);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPing(port: number, password?: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(password ? { password } : {}) });
    c.on('error', () => undefined); // refused while the server starts: expected, retried below
    try {
      await c.connect();
      if ((await c.ping()) === 'PONG') {
        c.disconnect();
        return;
      }
    } catch {
      c.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A random cluster name so tests sharing a server never see each other's keys. */
export function randomCluster(): string {
  return `t${randomBytes(5).toString('hex')}`;
}
