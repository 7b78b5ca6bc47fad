import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { CliError } from './context.js';

/**
 * The private redis-server of `fleetban up` when no [redis] url is configured: its own data
 * directory with AOF (appendfsync everysec, so a crash loses at most a second of counts), reachable
 * only through a unix socket that only this user may open.
 */
export interface PrivateRedis {
  readonly socket: string;
  stop(): Promise<void>;
}

/**
 * Start it, or reuse one that already answers on the socket (a second `fleetban up`, or a restart).
 * @param dir data directory; the socket is `dir/redis.sock`
 */
export async function startPrivateRedis(dir: string, log: Logger): Promise<PrivateRedis> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(dir, 'redis.sock');
  if (existsSync(socket) && (await answers(socket))) {
    log.info({ socket }, 'using the private Redis that is already running');
    return { socket, stop: async () => undefined };
  }
  let child: ChildProcess;
  try {
    child = spawn('redis-server', [
      '--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--logfile', join(dir, 'redis.log'),
    // Its own process group: Ctrl-C on a terminal signals the whole foreground group, and Redis
    // must outlive the agent and coordinator that still flush to it while `up` stops them in order.
    ], { stdio: 'ignore', detached: true });
  } catch (err) {
    throw new CliError(`cannot start redis-server: ${(err as Error).message}`);
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('error', (err) => log.error({ err: err.message }, 'redis-server failed to start (is it installed?)'));
  const deadline = Date.now() + 10_000;
  while (!(await answers(socket))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new CliError(`private redis-server did not start; see ${join(dir, 'redis.log')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  log.info({ socket, dir }, 'private Redis started');
  return {
    socket,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function answers(socket: string): Promise<boolean> {
  const c = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}
