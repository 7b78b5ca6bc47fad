import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisSettings } from './config/fleetban-config.js';
import { redactUrl } from './config/fleetban-config.js';

/**
 * Open a Redis connection that never gives up: daemons must outlive Redis restarts, so commands
 * wait in ioredis' offline queue while it reconnects with capped exponential backoff.
 * @param settings connection settings (URL must be set)
 * @param purpose connection name shown in CLIENT LIST and logs
 * @param log where reconnects are reported
 * @param extra ioredis options that override the defaults (e.g. retryStrategy for one-shot CLI use)
 * @returns a connecting client
 */
export function connectRedis(settings: RedisSettings, purpose: string, log: Logger, extra: RedisOptions = {}): Redis {
  const base: RedisOptions = {
    connectionName: `fleetban-${purpose}`,
    maxRetriesPerRequest: null,
    enableAutoPipelining: false,
    retryStrategy: (attempt) => {
      const delay = Math.min(100 * 2 ** Math.min(attempt, 6), 5000);
      log.warn({ attempt, delayMs: delay, url: redactUrl(settings.url) }, 'Redis unreachable, retrying');
      return delay;
    },
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
    ...extra,
  };
  const url = settings.url;
  const client = url.startsWith('unix://') ? new Redis({ ...base, path: new URL(url).pathname }) : new Redis(url, base);
  let wasReady = false;
  client.on('ready', () => {
    if (wasReady) log.info({ purpose }, 'Redis connection restored');
    wasReady = true;
  });
  client.on('error', (err: Error) => {
    log.debug({ purpose, err: err.message }, 'Redis connection error');
  });
  return client;
}
