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
  readonly warnings: string[];
}

/** Settings with no fleetban counterpart, and what fleetban does instead. */
const INSTEAD: Readonly<Record<string, string>> = {
  loglevel: 'use --log-level or FLEETBAN_LOG_LEVEL (trace, debug, info, warn, error)',
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
  loglevel: 'INFO',
  logtarget: '/var/log/fail2ban.log', syslogsocket: 'auto', socket: '/var/run/fail2ban/fail2ban.sock',
  pidfile: '/var/run/fail2ban/fail2ban.pid', allowipv6: 'auto', dbmaxmatches: '10', stacksize: '0',
};

/**
 * Read fail2ban.conf and its overrides from a configuration directory (nothing when absent).
 * @param dir configuration directory
 * @throws ConfigError naming file, line and key for a malformed file or a bad dbpurgeage
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
  for (const [key, instead] of Object.entries(INSTEAD)) {
    const v = get(key);
    if (v !== undefined && v !== STOCK[key]) warnings.push(`fail2ban.conf: ${key} = ${v} is not used: ${instead}`);
  }
  return {
    ...(dbpurgeage !== undefined ? { dbpurgeage } : {}),
    ...(dbfile !== undefined && dbfile !== ':memory:' && dbfile.toLowerCase() !== 'none' ? { dbfile } : {}),
    warnings,
  };
}
