import { ConfigError } from '../../common/errors.js';

/** A jail's `backend` split into kind and options, e.g. `systemd[journalpath=/var/log/journal/remote]`. */
export interface BackendSpec {
  kind: 'files' | 'systemd';
  /** fail2ban's own name as written (`auto`, `polling`, `pyinotify`, `systemd`, ...). */
  name: string;
  options: Map<string, string>;
}

/** Every file backend fail2ban has had; they only differ in how changes are noticed, which is ours to choose. */
const FILE_BACKENDS = new Set(['auto', 'polling', 'pyinotify', 'inotify', 'gamin']);

/**
 * Parse fail2ban's `backend` option.
 * @param value e.g. `auto`, `polling`, `systemd[journalfiles="/a.journal /b.journal"]`
 * @param jail jail name for errors
 * @returns kind and options (lower-case keys, unquoted values)
 * @throws ConfigError for unknown backends or malformed option lists
 */
export function parseBackend(value: string, jail: string): BackendSpec {
  const m = /^\s*([A-Za-z]+)\s*(?:\[(.*)\])?\s*$/s.exec(value);
  const name = m?.[1]?.toLowerCase();
  if (!m || !name) throw new ConfigError(`jail ${jail}: cannot parse backend '${value}'`, undefined, undefined, 'backend');
  const options = new Map<string, string>();
  const body = m[2] ?? '';
  // Options are `k=v` separated by commas; a quoted value may contain commas and spaces.
  const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("[^"]*"|'[^']*'|[^,]*?)\s*(?:,|$)/gy;
  let pos = 0;
  while (pos < body.trim().length) {
    re.lastIndex = pos;
    const o = re.exec(body);
    if (!o || o[0].length === 0) {
      throw new ConfigError(`jail ${jail}: cannot parse backend options '${body}'`, undefined, undefined, 'backend');
    }
    const raw = o[2] ?? '';
    options.set((o[1] as string).toLowerCase(), /^(["']).*\1$/s.test(raw) ? raw.slice(1, -1) : raw);
    pos = re.lastIndex;
  }
  if (name === 'systemd') return { kind: 'systemd', name, options };
  if (FILE_BACKENDS.has(name)) return { kind: 'files', name, options };
  throw new ConfigError(
    `jail ${jail}: unknown backend '${name}' (auto, polling, pyinotify, inotify, gamin or systemd)`,
    undefined,
    undefined,
    'backend',
  );
}
