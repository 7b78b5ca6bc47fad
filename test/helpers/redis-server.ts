import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/** A real redis-server started for a test file, on a free loopback port (never 6379). */
export interface TestRedis {
  readonly url: string;
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
  const client = (url: string): Redis => {
    const c = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 3 });
    clients.push(c);
    return c;
  };
  if (process.env.REDIS_URL) {
    const url = process.env.REDIS_URL;
    return {
      url,
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
  let proc: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--logfile', join(dir, 'redis.log'), ...extraArgs], {
      stdio: 'ignore',
    });
    await waitForPing(port);
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
    port,
    dir,
    client: () => client(url),
    kill,
    restart: launch,
    stop: async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPing(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
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
