import { homedir, hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import { CLUSTER_NAME_RE } from '../protocol/keys.js';
import { HOST_NAME_RE } from '../protocol/messages.js';
import { ConfSet, readWithIncludes } from './conf-reader.js';
import { parseTimeSpec } from './time-spec.js';
import { parseSentinelUrl } from '../sentinel-url.js';
import { FILE_LIMITS, FileRefusedError, readBoundedFile, readSecretFile } from './secret-file.js';
import { parseBanTarget } from '../address.js';
import { readFail2banSettings } from './fail2ban-settings.js';
import { parseListen } from '../metrics.js';

/** Redis connection settings. The password never appears in logs. */
export interface RedisSettings {
  /**
   * redis://, rediss://, unix:// or sentinel:// URL (see common/sentinel-url.ts). When the file
   * sets none, the private server that `fleetban up` runs: unix://<state_dir>/redis/redis.sock.
   */
  readonly url: string;
  /** True when the URL is the private server's (nothing configured). */
  readonly private: boolean;
  readonly username?: string;
  readonly password?: string;
  /** `[redis] password_file`: read by roleRedis, only for a role that has no password of its own. */
  readonly passwordFile?: SecretRef;
  readonly tls?: { ca?: string; cert?: string; key?: string; servername?: string; rejectUnauthorized: boolean };
  /** Credentials of the sentinels themselves (sentinel:// only), when they require any. */
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
  readonly sentinelPasswordFile?: SecretRef;
}

/**
 * A secret file named by the configuration, read when a role connects rather than when the
 * configuration loads: a unit holds only its own credential (LoadCredential), so an agent that
 * read the coordinator's password file on the same host would fail to start.
 */
export interface SecretRef {
  readonly file: string;
  /** The setting that names it, for the error when it cannot be read. */
  readonly source: SettingSource;
}

export interface AgentSettings {
  readonly host: string;
  /** Firewall backend name: auto, nftables, dry-run (more in later releases). */
  readonly banaction: string;
  readonly stateDir: string;
  /** Seconds between heartbeats. */
  readonly heartbeat: number;
  /** Failures per Redis round trip when reporting a burst. */
  readonly reportBatch: number;
  /** Seconds between comparisons of kernel state with the bans the agent should hold. */
  readonly reconcile: number;
  /** Most bans this host's firewall holds (all jails); small hosts crash on huge sets. */
  readonly maxBans: number;
  /** sshd's configuration, checked with `sshd -T -f` when an sshd jail is enabled (agent/preflight.ts). */
  readonly sshdConfig: string;
  /** Where Prometheus metrics are served (`[agent] metrics`); undefined: off. */
  readonly metrics?: { host: string; port: number };
  /** Public key files or patterns whose keys sign the decisions this agent applies. */
  readonly trustedKeys: string[];
  /** Apply unsigned decisions too (`allow_unsigned = true`); without it an agent with no trusted key refuses to start. */
  readonly allowUnsigned: boolean;
  /** Networks this host never bans, whoever signed the ban (management, bastion). */
  readonly neverBan: string[];
  /** Shortest prefix of a ban this host applies, IPv4 and IPv6. */
  readonly minPrefixV4: number;
  readonly minPrefixV6: number;
  /**
   * Redis replicas the decisions and snapshots are read from, in order of preference
   * (`[agent] decisions_from`); empty: from the primary, like everything else. Reports,
   * heartbeats and acknowledgements always go to the primary.
   */
  readonly decisionsFrom: string[];
  /** Seconds a replica's decisions may trail the primary's before the agent reads elsewhere. */
  readonly decisionsMaxLag: number;
}

/** Where a setting was read, for errors raised when it is used (a key file that does not load). */
export interface SettingSource {
  readonly file?: string;
  readonly line?: number;
  readonly key: string;
}

export interface CoordinatorSettings {
  /** Consumer name in the coordinators' group; unique per coordinator process. */
  readonly consumer: string;
  /** Entries read from the failures stream per round. */
  readonly batch: number;
  /** Approximate cap, in entries, of the failures stream (reports of 1-100 failures) and the decisions stream (XADD MAXLEN ~). */
  readonly streamMaxlen: number;
  /** Seconds between sweeps that remove expired bans. */
  readonly expireInterval: number;
  /** Seconds after which failures read but not acknowledged by a coordinator (it died) are claimed by another. */
  readonly claimIdle: number;
  /** Seconds a ban stays in an address' history (fail2ban's dbpurgeage); escalation looks this far back. */
  readonly dbpurgeage: number;
  /** Where Prometheus metrics are served (`[coordinator] metrics`); undefined: off. */
  readonly metrics?: { host: string; port: number };
  /** Reports (stream entries of 1-100 failures) one host's failure stream holds at most; past it its oldest are dropped. */
  readonly hostQuota: number;
  /** Megabytes one host's failure stream holds at most (reports may be large); past it its oldest are dropped. */
  readonly hostQuotaMb: number;
  /** Private key file that signs this coordinator's decisions; unsigned when absent. */
  readonly signingKey?: string;
}

/** Settings of the one-shot commands (fleetban ban, unban). */
export interface CliSettings {
  /** Private key file that signs bans, unbans and flushes made by hand. */
  readonly signingKey?: string;
}

/** Which daemon or command a Redis connection is for: each may log in as its own ACL user. */
export type RedisRole = 'agent' | 'coordinator' | 'cli';

/** A Redis login of one role (`[agent] redis_username` / `redis_password_file` and the like). */
export interface RedisIdentity {
  readonly username?: string;
  readonly password?: string;
  /** `redis_password_file` of the role's section; read by roleRedis for this role only. */
  readonly passwordFile?: SecretRef;
}

export interface FleetbanConfig {
  readonly dir: string;
  readonly cluster: string;
  readonly redis: RedisSettings;
  /** Per-role logins that replace `[redis] username` / `password_file` for that role. */
  readonly identities?: Partial<Record<RedisRole, RedisIdentity>>;
  readonly agent: AgentSettings;
  readonly coordinator: CoordinatorSettings;
  readonly cli: CliSettings;
  readonly files: string[];
  /** Where the key and network settings came from, for errors raised when they are used. */
  readonly sources: Readonly<Record<string, SettingSource>>;
}

/** Every option fleetban.conf accepts; anything else is a typo and refused with its location. */
const SCHEMA: Record<string, readonly string[]> = {
  cluster: ['name'],
  redis: ['url', 'username', 'password_file', 'tls_ca_file', 'tls_cert_file', 'tls_key_file', 'tls_servername', 'tls_verify',
    'sentinel_username', 'sentinel_password_file'],
  agent: ['host', 'banaction', 'state_dir', 'heartbeat', 'report_batch', 'reconcile', 'max_bans', 'sshd_config', 'redis_username', 'redis_password_file',
    'trusted_keys', 'allow_unsigned', 'never_ban', 'min_prefix_v4', 'min_prefix_v6', 'metrics', 'decisions_from', 'decisions_max_lag'],
  coordinator: ['consumer', 'batch', 'stream_maxlen', 'expire_interval', 'claim_idle', 'dbpurgeage', 'host_quota', 'host_quota_mb', 'redis_username', 'redis_password_file',
    'signing_key', 'metrics'],
  cli: ['redis_username', 'redis_password_file', 'signing_key'],
};

/**
 * The Redis settings one role connects with: `[redis]`, with that role's own login when its
 * section sets one (so that a host running an agent and a coordinator uses two identities).
 * Only this role's secrets are read, here: its own `redis_password_file`, or `[redis]
 * password_file` when it has none, and `sentinel_password_file` for a sentinel:// URL.
 * @throws ConfigError naming the file, line and key of a secret that cannot be read
 */
export function roleRedis(config: Pick<FleetbanConfig, 'redis' | 'identities'>, role: RedisRole): RedisSettings {
  const id = config.identities?.[role];
  const r = config.redis;
  // Each option overrides its own counterpart of [redis].
  const username = id?.username ?? r.username;
  const password = id?.password ?? (id?.passwordFile ? readSecretRef(id.passwordFile)
    : r.password ?? (r.passwordFile ? readSecretRef(r.passwordFile) : undefined));
  const sentinelPassword = r.sentinelPassword
    ?? (r.sentinelPasswordFile && r.url.startsWith('sentinel://') ? readSecretRef(r.sentinelPasswordFile) : undefined);
  const { passwordFile: _p, sentinelPasswordFile: _s, username: _u, password: _pw, sentinelPassword: _sp, ...rest } = r;
  return {
    ...rest,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
  };
}

/** @throws ConfigError naming the setting that names the file */
function readSecretRef(ref: SecretRef): string {
  try {
    return readSecretFile(ref.file);
  } catch (err) {
    throw new ConfigError(unreadable(err), ref.source.file, ref.source.line, ref.source.key);
  }
}

/** Where configuration lives unless --config or FLEETBAN_CONFIG says otherwise. */
export const DEFAULT_CONFIG_DIR = '/etc/fleetban';

/** The commented defaults shipped in the repository (deploy/etc/fleetban). */
export function shippedConfigDir(): string {
  return fileURLToPath(new URL('../../../deploy/etc/fleetban', import.meta.url));
}

/**
 * The one rule for where configuration lives, used by every command and daemon alike (so the CLI
 * reads the jails `fleetban up` runs): `--config`, else `$FLEETBAN_CONFIG`, else /etc/fleetban when
 * it exists, else the shipped defaults.
 * @param flag the `--config` option, when given
 * @returns the configuration directory
 */
export function configDir(flag?: string): string {
  return explicitConfigDir(flag) ?? (existsSync(DEFAULT_CONFIG_DIR) ? DEFAULT_CONFIG_DIR : shippedConfigDir());
}

/** @returns the directory named by `--config` or `$FLEETBAN_CONFIG`, undefined when neither is given */
export function explicitConfigDir(flag?: string): string | undefined {
  return flag || process.env.FLEETBAN_CONFIG || undefined;
}

/**
 * Load fleetban.conf (+ fleetban.local) from `dir`. A missing file means all defaults.
 * FLEETBAN_REDIS_URL overrides `[redis] url` (handy for containers and tests).
 * @throws ConfigError naming file, line and key
 */
export function loadFleetbanConfig(dir: string): FleetbanConfig {
  const set = new ConfSet(readWithIncludes(join(dir, 'fleetban.conf')));
  for (const section of set.sectionNames()) {
    const allowed = SCHEMA[section];
    const loc = set.sectionLocation(section);
    if (!allowed) throw new ConfigError(`unknown section [${section}] (expected ${Object.keys(SCHEMA).join(', ')})`, loc?.file, loc?.line);
    for (const key of set.ownKeys(section)) {
      if (!allowed.includes(key)) {
        const w = set.raw(section, key);
        throw new ConfigError(`unknown option in [${section}] (expected one of ${allowed.join(', ')})`, w?.file, w?.line, key);
      }
    }
  }
  const get = (section: string, key: string): string | undefined => {
    const v = set.hasSection(section) ? set.get(section, key) : undefined;
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const fail = (section: string, key: string, message: string): never => {
    const w = set.raw(section, key);
    throw new ConfigError(message, w?.file ?? join(dir, 'fleetban.conf'), w?.line, key);
  };
  const seconds = (section: string, key: string, fallback: string): number => {
    const text = get(section, key) ?? fallback;
    try {
      const s = parseTimeSpec(text);
      if (s <= 0) throw new Error(`must be positive`);
      return s;
    } catch (err) {
      return fail(section, key, (err as Error).message);
    }
  };
  const integer = (section: string, key: string, fallback: number, min: number): number => {
    const text = get(section, key);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) return fail(section, key, `'${text}' is not a whole number of at least ${min}`);
    return n;
  };

  const bool = (section: string, key: string, fallback: boolean): boolean => {
    const text = (get(section, key) ?? String(fallback)).toLowerCase();
    if (['true', 'yes', '1', 'on'].includes(text)) return true;
    if (['false', 'no', '0', 'off'].includes(text)) return false;
    return fail(section, key, `'${text}' is not true or false`);
  };
  const list = (section: string, key: string): string[] => (get(section, key) ?? '').split(/[\s,]+/).filter(Boolean);
  const sources: Record<string, SettingSource> = {};
  const source = (section: string, key: string): void => {
    const w = set.raw(section, key);
    sources[`${section}.${key}`] = { file: w?.file ?? join(dir, 'fleetban.conf'), line: w?.line, key };
  };
  for (const [s, k] of [['agent', 'banaction'], ['agent', 'trusted_keys'], ['agent', 'never_ban'], ['coordinator', 'signing_key'], ['cli', 'signing_key']] as const) source(s, k);
  const neverBan = list('agent', 'never_ban');
  for (const n of neverBan) {
    try {
      parseBanTarget(n);
    } catch (err) {
      fail('agent', 'never_ban', `'${n}': ${(err as Error).message}`);
    }
  }
  const decisionsFrom = list('agent', 'decisions_from');
  for (const u of decisionsFrom) {
    // Replicas are plain servers; a sentinel:// URL names a primary, which is already the fallback.
    if (!/^(rediss?|unix):\/\/./.test(u)) fail('agent', 'decisions_from', `'${u.replace(/\/\/[^@/]*@/, '//')}' is not a redis://, rediss:// or unix:// URL of a replica`);
  }
  const prefix = (key: string, fallback: number, max: number): number => {
    const n = integer('agent', key, fallback, 1);
    if (n > max) fail('agent', key, `${n} is more than ${max}`);
    return n;
  };
  const listen = (section: string): { metrics?: { host: string; port: number } } => {
    try {
      const m = parseListen(get(section, 'metrics'));
      return m ? { metrics: m } : {};
    } catch (err) {
      return fail(section, 'metrics', (err as Error).message);
    }
  };

  const cluster = get('cluster', 'name') ?? 'default';
  if (!CLUSTER_NAME_RE.test(cluster)) fail('cluster', 'name', `'${cluster}' may contain only letters, digits, '_', '.', '-'`);

  const host = get('agent', 'host') ?? hostname().split('.')[0]!;
  if (!HOST_NAME_RE.test(host)) fail('agent', 'host', `'${host}' is not a valid host name`);

  const stateDir = get('agent', 'state_dir') ?? defaultStateDir();
  const url = process.env.FLEETBAN_REDIS_URL || get('redis', 'url');
  if (url && !/^(rediss?|unix|sentinel):\/\//.test(url)) fail('redis', 'url', `'${redactUrl(url)}' must start with redis://, rediss://, unix:// or sentinel://`);
  if (url?.startsWith('sentinel://')) {
    try {
      parseSentinelUrl(url);
    } catch (err) {
      fail('redis', 'url', `'${redactUrl(url)}': ${(err as Error).message}`);
    }
  }
  // Named here, read by roleRedis for the role that connects (see SecretRef).
  const secret = (key: string, section = 'redis'): SecretRef | undefined => {
    const file = get(section, key);
    if (!file) return undefined;
    const w = set.raw(section, key);
    return { file, source: { file: w?.file ?? join(dir, 'fleetban.conf'), line: w?.line, key } };
  };
  const identities: Partial<Record<RedisRole, RedisIdentity>> = {};
  for (const role of ['agent', 'coordinator', 'cli'] as const) {
    const username = get(role, 'redis_username');
    const passwordFile = secret('redis_password_file', role);
    if (username !== undefined || passwordFile !== undefined) {
      identities[role] = { ...(username !== undefined ? { username } : {}), ...(passwordFile !== undefined ? { passwordFile } : {}) };
    }
  }
  const passwordFile = secret('password_file');
  const sentinelPasswordFile = secret('sentinel_password_file');
  const sentinelUsername = get('redis', 'sentinel_username');
  const readPem = (key: string): string | undefined => {
    const path = get('redis', key);
    if (!path) return undefined;
    try {
      return readBoundedFile(path, FILE_LIMITS.pem);
    } catch (err) {
      return fail('redis', key, unreadable(err));
    }
  };
  const tlsVerify = (get('redis', 'tls_verify') ?? 'true').toLowerCase();
  if (!['true', 'false', 'yes', 'no'].includes(tlsVerify)) fail('redis', 'tls_verify', `'${tlsVerify}' is not true or false`);
  const wantsTls = url?.startsWith('rediss://') || get('redis', 'tls_ca_file') || get('redis', 'tls_cert_file');
  const tls = wantsTls
    ? {
        ca: readPem('tls_ca_file'),
        cert: readPem('tls_cert_file'),
        key: readPem('tls_key_file'),
        servername: get('redis', 'tls_servername'),
        rejectUnauthorized: tlsVerify === 'true' || tlsVerify === 'yes',
      }
    : undefined;

  return {
    dir,
    cluster,
    redis: {
      url: url ?? `unix://${join(stateDir, 'redis', 'redis.sock')}`, private: !url, username: get('redis', 'username'), tls,
      ...(passwordFile ? { passwordFile } : {}),
      ...(sentinelUsername ? { sentinelUsername } : {}),
      ...(sentinelPasswordFile ? { sentinelPasswordFile } : {}),
    },
    identities,
    agent: {
      host,
      banaction: get('agent', 'banaction') ?? 'auto',
      stateDir,
      heartbeat: seconds('agent', 'heartbeat', '5s'),
      reportBatch: integer('agent', 'report_batch', 500, 1),
      reconcile: seconds('agent', 'reconcile', '30s'),
      maxBans: integer('agent', 'max_bans', 131_072, 1),
      sshdConfig: get('agent', 'sshd_config') ?? '/etc/ssh/sshd_config',
      trustedKeys: list('agent', 'trusted_keys'),
      allowUnsigned: bool('agent', 'allow_unsigned', false),
      neverBan,
      minPrefixV4: prefix('min_prefix_v4', 16, 32),
      minPrefixV6: prefix('min_prefix_v6', 48, 128),
      decisionsFrom,
      decisionsMaxLag: seconds('agent', 'decisions_max_lag', '2s'),
      ...listen('agent'),
    },
    coordinator: {
      consumer: get('coordinator', 'consumer') ?? `${host}-${process.pid}`,
      batch: integer('coordinator', 'batch', 200, 1),
      streamMaxlen: integer('coordinator', 'stream_maxlen', 100_000, 1000),
      expireInterval: seconds('coordinator', 'expire_interval', '1s'),
      claimIdle: seconds('coordinator', 'claim_idle', '30s'),
      // fleetban.conf wins; a migrated directory's fail2ban.conf/fail2ban.local comes next.
      dbpurgeage: get('coordinator', 'dbpurgeage') !== undefined ? seconds('coordinator', 'dbpurgeage', '1d') : readFail2banSettings(dir).dbpurgeage ?? 86_400,
      ...listen('coordinator'),
      hostQuota: integer('coordinator', 'host_quota', 10_000, 100),
      hostQuotaMb: integer('coordinator', 'host_quota_mb', 64, 1),
      ...(get('coordinator', 'signing_key') ? { signingKey: get('coordinator', 'signing_key') } : {}),
    },
    cli: { ...(get('cli', 'signing_key') ? { signingKey: get('cli', 'signing_key') } : {}) },
    files: set.files,
    sources,
  };
}

/** /var/lib/fleetban for root; a per-user state directory otherwise, so `npm start` works unprivileged too. */
function defaultStateDir(): string {
  // systemd's StateDirectory= (the packaged unit runs the agent as the unprivileged fleetban user).
  const systemd = process.env.STATE_DIRECTORY?.split(':')[0];
  if (systemd) return systemd;
  if (process.getuid?.() === 0) return '/var/lib/fleetban';
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'fleetban');
}

/**
 * @returns the URL with any password replaced, for logs and messages. The password runs to the
 * last `@`: an operator's unescaped `/` or `@` in it must not leave the rest of it in a log.
 */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^\n]*@/, '//$1:***@');
}

/** `cannot read FILE: why`, for a secret or PEM file that was refused or could not be opened. */
function unreadable(err: unknown): string {
  return err instanceof FileRefusedError ? `cannot read ${err.path}: ${err.reason.replace(/^cannot open: /, '')}` : `cannot read: ${(err as Error).message}`;
}
