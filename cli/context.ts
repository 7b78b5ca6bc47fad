import type { Redis } from 'ioredis';
import { userInfo } from 'node:os';
import { configDir, loadFleetbanConfig, redactUrl, roleRedis, type FleetbanConfig } from '../common/config/fleetban-config.js';
import { clusterKeys, type ClusterKeys } from '../common/protocol/keys.js';
import { connectRedis } from '../common/redis.js';
import { componentLogger } from '../common/log.js';

/** Options every command accepts. */
export interface GlobalOptions {
  config?: string;
  logLevel?: string;
  json?: boolean;
}

/** An error whose message is the whole story: printed as one line, exit status 1. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

/** What a one-shot command needs: the configuration and a Redis connection that fails fast. */
export interface CliContext {
  readonly config: FleetbanConfig;
  readonly keys: ClusterKeys;
  readonly redis: Redis;
  /** Who did it, recorded as the origin of manual bans and unbans. */
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * Load the configuration and connect to Redis; an unreachable Redis is a one-line error, not a hang.
 * @param opts global options (config directory)
 */
export async function openContext(opts: GlobalOptions): Promise<CliContext> {
  const config = loadFleetbanConfig(configDir(opts.config));
  const log = componentLogger('cli');
  log.level = 'silent';
  const redis = connectRedis(roleRedis(config, 'cli'), 'cli', log, {
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => (attempt > 3 ? null : 200),
    enableOfflineQueue: true,
    lazyConnect: true,
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    const hint = config.redis.private ? ' (no [redis] url is configured and `fleetban up` is not running)' : '';
    throw new CliError(`cannot reach Redis at ${redactUrl(config.redis.url)}${hint}: ${(err as Error).message}`);
  }
  let user = 'unknown';
  try {
    user = process.env.SUDO_USER || userInfo().username;
  } catch {
    // no passwd entry (containers): keep "unknown"
  }
  return {
    config,
    keys: clusterKeys(config.cluster),
    redis,
    origin: `cli:${user}`.slice(0, 64),
    close: async () => {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** Run a command body with a context, always closing the connection. */
export async function withContext<T>(opts: GlobalOptions, body: (ctx: CliContext) => Promise<T>): Promise<T> {
  const ctx = await openContext(opts);
  try {
    return await body(ctx);
  } finally {
    await ctx.close();
  }
}

/** Print rows as an aligned text table. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  console.log(line(headers));
  for (const r of rows) console.log(line(r));
}

/** ISO time without milliseconds, or a word for the special values. */
export function formatTime(ms: number): string {
  if (ms === -1) return 'never';
  if (!ms) return '-';
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
