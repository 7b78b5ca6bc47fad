import type { LevelWithSilent } from 'pino';
import { ConfSet, readConfName } from './conf-reader.js';
import { parseTimeSpec } from './time-spec.js';
import { ConfigError } from '../errors.js';

/**
 * The settings of fail2ban.conf / fail2ban.d / fail2ban.local that a fleetban configuration
 * directory may still hold after a migration (`--config /etc/fail2ban`). Those with a fleetban
 * equivalent are read; the others are named in a warning saying what fleetban does instead.
 */
export interface Fail2banSettings {
  /** `dbpurgeage` in seconds: `[coordinator] dbpurgeage` unless fleetban.conf sets that. */
  readonly dbpurgeage?: number;
  /** `dbfile`: the database `fleetban import-fail2ban` reads by default. */
  readonly dbfile?: string;
  /**
   * `loglevel` as the daemons' log level, unless `--log-level` or `FLEETBAN_LOG_LEVEL` says
   * otherwise (see {@link fail2banLogLevel}); `text` is the value as written.
   */
  readonly loglevel?: { readonly level: LevelWithSilent; readonly text: string };
  readonly warnings: string[];
}

/** Settings with no fleetban counterpart, and what fleetban does instead. */
const INSTEAD: Readonly<Record<string, string>> = {
  logtarget: 'fleetban logs to stdout/stderr (journald under systemd)',
  syslogsocket: 'fleetban logs to stdout/stderr (journald under systemd)',
  socket: 'there is no server socket; the fleetban CLI talks to Redis',
  pidfile: 'fleetban writes no pid file; systemd tracks the daemons',
  allowipv6: 'fleetban always handles IPv6',
  dbmaxmatches: 'each failure carries its own line; bans keep no match list',
  stacksize: 'no threads to size',
};

/** Debian's shipped values: a setting left at them needs no warning. */
const STOCK: Readonly<Record<string, string>> = {
  logtarget: '/var/log/fail2ban.log', syslogsocket: 'auto', socket: '/var/run/fail2ban/fail2ban.sock',
  pidfile: '/var/run/fail2ban/fail2ban.pid', allowipv6: 'auto', dbmaxmatches: '10', stacksize: '0',
};

/** fail2ban's level names (Python's logging names plus its own) and the pino level each becomes. */
const LEVELS: Readonly<Record<string, LevelWithSilent>> = {
  CRITICAL: 'fatal', FATAL: 'fatal', ERROR: 'error', WARNING: 'warn', WARN: 'warn',
  // fail2ban logs Ban and Unban at NOTICE, between INFO and WARNING; fleetban logs them at info.
  NOTICE: 'info', MSG: 'info', INFO: 'info', DEBUG: 'debug', TRACEDEBUG: 'trace', HEAVYDEBUG: 'trace', NOTSET: 'trace',
};

/**
 * Map fail2ban's `loglevel` to a pino level. fail2ban takes a logging level name or a number
 * (Python's scale: 50 CRITICAL, 40 ERROR, 30 WARNING, 25 NOTICE, 20 INFO, 10 DEBUG, 7 TRACEDEBUG,
 * 5 HEAVYDEBUG); a number falls in the band of the name at or below it.
 * @param text the value as written, e.g. `INFO`, `notice`, `10`
 * @returns the pino level
 * @throws Error naming the accepted values
 */
export function fail2banLogLevel(text: string): LevelWithSilent {
  const t = text.trim();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return n >= 50 ? 'fatal' : n >= 40 ? 'error' : n >= 30 ? 'warn' : n >= 20 ? 'info' : n >= 10 ? 'debug' : 'trace';
  }
  const level = LEVELS[t.toUpperCase()];
  if (!level) throw new Error(`'${t}' is not a log level: one of ${Object.keys(LEVELS).join(', ')} or a number (50 CRITICAL … 10 DEBUG)`);
  return level;
}

/**
 * Read fail2ban.conf and its overrides from a configuration directory (nothing when absent).
 * @param dir configuration directory
 * @throws ConfigError naming file, line and key for a malformed file or a bad dbpurgeage or loglevel
 */
export function readFail2banSettings(dir: string): Fail2banSettings {
  const set = new ConfSet(readConfName(dir, 'fail2ban'));
  const warnings: string[] = [];
  const get = (key: string): string | undefined => {
    for (const section of ['Definition', 'Thread']) {
      const v = set.hasSection(section) ? set.get(section, key) : undefined;
      if (v !== undefined && v.trim() !== '') return v.trim();
    }
    const v = set.hasSection('DEFAULT') ? set.get('DEFAULT', key) : undefined;
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const where = (key: string) => set.raw('Definition', key) ?? set.raw('Thread', key);
  let dbpurgeage: number | undefined;
  const age = get('dbpurgeage');
  if (age !== undefined) {
    try {
      dbpurgeage = parseTimeSpec(age);
    } catch (err) {
      const w = where('dbpurgeage');
      throw new ConfigError((err as Error).message, w?.file, w?.line, 'dbpurgeage');
    }
    if (dbpurgeage <= 0) dbpurgeage = undefined;
  }
  const dbfile = get('dbfile');
  let loglevel: Fail2banSettings['loglevel'];
  const levelText = get('loglevel');
  if (levelText !== undefined) {
    try {
      loglevel = { level: fail2banLogLevel(levelText), text: levelText };
    } catch (err) {
      const w = where('loglevel');
      throw new ConfigError((err as Error).message, w?.file, w?.line, 'loglevel');
    }
  }
  for (const [key, instead] of Object.entries(INSTEAD)) {
    const v = get(key);
    if (v !== undefined && v !== STOCK[key]) warnings.push(`fail2ban.conf: ${key} = ${v} is not used: ${instead}`);
  }
  return {
    ...(dbpurgeage !== undefined ? { dbpurgeage } : {}),
    ...(loglevel !== undefined ? { loglevel } : {}),
    ...(dbfile !== undefined && dbfile !== ':memory:' && dbfile.toLowerCase() !== 'none' ? { dbfile } : {}),
    warnings,
  };
}
