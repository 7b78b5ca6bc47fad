import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisSettings } from './config/fleetban-config.js';
import { redactUrl } from './config/fleetban-config.js';
import { parseSentinelUrl } from './sentinel-url.js';

/**
 * How long a connection may wait for any byte after sending a command before it is declared dead
 * and re-opened. It must exceed the longest blocking read fleetban issues (XREAD BLOCK 5000 in the
 * agent's decision follower) plus a slow script; on a cut link nothing else notices: the kernel
 * retransmits for ~15 minutes before failing a socket, and TCP keepalive's default probes take 11.
 */
export const SOCKET_TIMEOUT_MS = 15_000;

/** TCP keepalive idle time: lets Redis and middleboxes see an idle client is alive, and the kernel probe it. */
const KEEPALIVE_MS = 10_000;

/** The last connection error of each client: why it is unreachable (TLS refusals included). */
const lastErrors = new WeakMap<Redis, Error>();

/**
 * Why a client could not connect: its last connection error (`self-signed certificate in
 * certificate chain`, `Hostname/IP does not match certificate's altnames`, ECONNREFUSED),
 * which ioredis reports only as an event; a failed command says just `Connection is closed.`
 */
export function connectionError(client: Redis): string | undefined {
  // OpenSSL's messages end in a newline; the CLI's error is one line.
  return lastErrors.get(client)?.message.trim();
}

/**
 * Open a Redis connection that never gives up: daemons must outlive Redis restarts, failovers
 * and cut links, so commands wait in ioredis' offline queue while it reconnects with capped
 * exponential backoff.
 *
 * A `sentinel://` URL asks the sentinels for the current primary (ioredis' sentinel support,
 * `role: 'master'`) and follows a failover: a `+switch-master` announced by the sentinels, a
 * connection the demoted primary closes, or a READONLY reply all make the client re-resolve the
 * primary and reconnect; a blocking read that was waiting on the old primary is sent again on the
 * new one.
 * @param settings connection settings (URL must be set)
 * @param purpose connection name shown in CLIENT LIST and logs
 * @param log where reconnects are reported
 * @param extra ioredis options that override the defaults (e.g. retryStrategy for one-shot CLI use)
 * @returns a connecting client
 */
export function connectRedis(settings: RedisSettings, purpose: string, log: Logger, extra: RedisOptions = {}): Redis {
  const url = settings.url;
  let down = false;
  const base: RedisOptions = {
    connectionName: `fleetban-${purpose}`,
    maxRetriesPerRequest: null,
    enableAutoPipelining: false,
    keepAlive: KEEPALIVE_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
    retryStrategy: (attempt) => {
      const delay = Math.min(100 * 2 ** Math.min(attempt, 6), 5000);
      // Warn once per outage, then at most every ~30 s: a long outage must not flood the log.
      if (!down || attempt % 6 === 0) log.warn({ purpose, attempt, delayMs: delay, url: redactUrl(url), err: connectionError(client) }, 'Redis unreachable, retrying');
      down = true;
      return delay;
    },
    // A primary demoted by a failover answers writes with READONLY: reconnect (re-resolving the
    // primary through the sentinels) and resend the command there.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
  };
  let client!: Redis;
  if (url.startsWith('sentinel://')) {
    const s = parseSentinelUrl(url);
    client = new Redis({
      ...base,
      sentinels: s.sentinels.map((a) => ({ host: a.host, port: a.port })),
      name: s.name,
      role: 'master',
      db: s.db,
      ...(s.username ? { username: s.username } : {}),
      ...(s.password ? { password: s.password } : {}),
      ...(settings.sentinelUsername ? { sentinelUsername: settings.sentinelUsername } : {}),
      ...(settings.sentinelPassword ? { sentinelPassword: settings.sentinelPassword } : {}),
      ...(settings.tls ? { sentinelTLS: { ...settings.tls }, enableTLSForSentinelMode: true } : {}),
      // Subscribe to the sentinels' +switch-master so a failover is followed at once instead of
      // when the old primary finally drops the connection.
      failoverDetector: true,
      sentinelRetryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5000),
      ...extra,
    });
  } else if (url.startsWith('unix://')) {
    client = new Redis({ ...base, path: new URL(url).pathname, ...extra });
  } else {
    client = new Redis(url, { ...base, ...extra });
  }
  let wasReady = false;
  client.on('ready', () => {
    if (wasReady) log.info({ purpose, url: redactUrl(url), ...primaryOf(client) }, 'Redis connection restored');
    wasReady = true;
    down = false;
  });
  client.on('error', (err: Error) => {
    // A server that requires a client certificate just drops the handshake of a client without one.
    const hint = settings.tls && !settings.tls.cert && /ECONNRESET|socket hang up/.test(err.message)
      ? ' (the server may require a client certificate: [redis] tls_cert_file and tls_key_file)' : '';
    lastErrors.set(client, hint ? new Error(`${err.message}${hint}`) : err);
    log.debug({ purpose, err: err.message }, 'Redis connection error');
  });
  return client;
}

/** The address actually connected to, which after a failover names the new primary. */
function primaryOf(client: Redis): { server?: string } {
  const s = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  return s?.remoteAddress ? { server: `${s.remoteAddress}:${s.remotePort}` } : {};
}
