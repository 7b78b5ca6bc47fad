import { ConfigError } from '../errors.js';

/**
 * A jail's `backend` split into kind and options, e.g. `systemd[journalpath=/var/log/journal/remote]`.
 * The one place that decides which backends exist: the jail loader and the log sources both ask here.
 */
export interface BackendSpec {
  /** Where the jail's events come from: log files, the journal, or the cluster's own bans. */
  kind: 'files' | 'systemd' | 'bans';
  /** The name as written, lower-cased (`auto`, `polling`, `pyinotify`, `systemd`, `bans`, ...). */
  name: string;
  options: Map<string, string>;
}

/**
 * fail2ban's file backends (its `jail.py`: auto, pyinotify, polling; gamin until 0.10). They only
 * differ in how changes are noticed, which is ours to choose; `polling` turns inotify off.
 */
export const FILE_BACKENDS: readonly string[] = ['auto', 'polling', 'pyinotify', 'gamin'];

/** Every backend name a jail may use. */
export const BACKEND_NAMES: readonly string[] = [...FILE_BACKENDS, 'systemd', 'bans'];

/**
 * Parse fail2ban's `backend` option.
 * @param value e.g. `auto`, `polling`, `systemd[journalfiles="/a.journal /b.journal"]`
 * @param jail jail name for errors
 * @param where file and line of the option, for errors
 * @returns kind and options (lower-case keys, unquoted values)
 * @throws ConfigError for unknown backends or malformed option lists
 */
export function parseBackend(value: string, jail: string, where?: { file?: string; line?: number }): BackendSpec {
  const fail = (message: string): never => {
    throw new ConfigError(`jail [${jail}]: ${message}`, where?.file, where?.line, 'backend');
  };
  const m = /^\s*([A-Za-z]+)\s*(?:\[(.*)\])?\s*$/s.exec(value);
  const name = m?.[1]?.toLowerCase();
  if (!m || !name) return fail(`cannot parse backend '${value.trim()}'`);
  const options = new Map<string, string>();
  const body = m[2] ?? '';
  // Options are `k=v` separated by commas; a quoted value may contain commas and spaces.
  const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("[^"]*"|'[^']*'|[^,]*?)\s*(?:,|$)/gy;
  let pos = 0;
  while (pos < body.trim().length) {
    re.lastIndex = pos;
    const o = re.exec(body);
    if (!o || o[0].length === 0) return fail(`cannot parse backend options '${body}'`);
    const raw = o[2] ?? '';
    options.set((o[1] as string).toLowerCase(), /^(["']).*\1$/s.test(raw) ? raw.slice(1, -1) : raw);
    pos = re.lastIndex;
  }
  if (name === 'systemd') return { kind: 'systemd', name, options };
  if (name === 'bans') return { kind: 'bans', name, options };
  if (FILE_BACKENDS.includes(name)) return { kind: 'files', name, options };
  // fail2ban refuses `inotify` too ("Unknown backend"); its module is pyinotify.
  const hint = name === 'inotify' ? " (fail2ban's name for it is pyinotify)" : '';
  return fail(`unknown backend '${name}'${hint}: one of ${BACKEND_NAMES.join(', ')}`);
}
