/**
 * Host checks: what the fail2ban guides warn about and a configuration file cannot show, checked on
 * the host itself. `fleetban check-config` prints them and the agent logs them at start; both call
 * {@link hostChecks}. The Shorewall backend runs {@link shorewallBlacklistWarnings} itself at init,
 * because it reads the configuration Shorewall actually runs with (inside the backend's namespace,
 * when it has a command prefix).
 *
 * - A ban must cut an attacker's open connections: Shorewall checks its dynamic blacklist only for
 *   the connection states in `BLACKLIST=` (Shorewall 5; `BLACKLISTNEWONLY=` before), and its
 *   shipped default leaves established connections alone.
 * - sshd must log enough: below `LogLevel VERBOSE` sshd does not log every failed authentication
 *   the sshd filter needs.
 * - journald hosts have no auth.log: an sshd jail following a file that does not exist on a host
 *   whose sshd logs to the journal never sees a failure.
 *
 * Every check only warns: a host that differs from the guide may still be configured on purpose.
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { execa } from 'execa';
import type { JailConfig } from '../common/config/jails.js';
import { expandGlob, hasGlob, segmentRegExp } from './sources/glob.js';

/** One finding: which check, and a message that names the file and line to change. */
export interface HostWarning {
  readonly check: 'shorewall-blacklist' | 'sshd-loglevel' | 'sshd-logpath';
  readonly message: string;
}

/** Where the checks look; every field has the host's real default (tests point them elsewhere). */
export interface HostCheckOptions {
  /** The agent's `banaction`; `shorewall` adds the blacklist check (check-config only). */
  readonly banaction?: string;
  /** Include the firewall check; the agent leaves it to the backend's init. Default true. */
  readonly firewall?: boolean;
  /** sshd's configuration for `sshd -T -f`; default `/etc/ssh/sshd_config`. */
  readonly sshdConfig?: string;
  /** sshd binary; default the first of /usr/sbin/sshd, /usr/local/sbin/sshd, /sbin/sshd that exists. */
  readonly sshd?: string;
  /** Directories of the systemd journal; default `/var/log/journal`, `/run/log/journal`. */
  readonly journalDirs?: readonly string[];
  /** Shorewall's configuration files by family; default `/etc/shorewall/shorewall.conf`, `/etc/shorewall6/shorewall6.conf`. */
  readonly shorewallConf?: { readonly 4: string; readonly 6: string };
}

/** Shorewall's own configuration files, as `shorewall` and `shorewall6` read them. */
export const SHOREWALL_CONF = { 4: '/etc/shorewall/shorewall.conf', 6: '/etc/shorewall6/shorewall6.conf' } as const;
const SSHD_CONFIG = '/etc/ssh/sshd_config';
const SSHD_BINARIES = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'];
const JOURNAL_DIRS = ['/var/log/journal', '/run/log/journal'];
/** What `fleetban up` and the warning suggest for an sshd jail on the journal (Debian's unit name). */
export const SSHD_JOURNALMATCH = '_SYSTEMD_UNIT=ssh.service + _COMM=sshd';

/**
 * Run every check that applies to these jails and this host.
 * @param jails the enabled jails
 * @param options where to look; see {@link HostCheckOptions}
 * @returns the warnings, in check order; empty when all is well or nothing could be checked
 */
export async function hostChecks(jails: readonly JailConfig[], options: HostCheckOptions = {}): Promise<HostWarning[]> {
  const out: HostWarning[] = [];
  if (options.banaction === 'shorewall' && options.firewall !== false) {
    const files = options.shorewallConf ?? SHOREWALL_CONF;
    const read = (f: string): Promise<string | undefined> => Promise.resolve(readIfExists(f));
    // shorewall6 is optional: its file is checked only where it is installed.
    const families: Array<4 | 6> = existsSync(dirname(files[6])) ? [4, 6] : [4];
    for (const message of await shorewallBlacklistWarnings(read, families, files)) out.push({ check: 'shorewall-blacklist', message });
  }
  const ssh = jails.filter(isSshdJail);
  if (ssh.length === 0) return out;
  const level = await sshdLogLevelWarning(options);
  if (level) out.push({ check: 'sshd-loglevel', message: level });
  for (const message of await sshdLogSourceWarnings(ssh, options.journalDirs ?? JOURNAL_DIRS)) out.push({ check: 'sshd-logpath', message });
  return out;
}

/** A jail whose filter is fail2ban's `sshd` (with or without options such as `[mode=aggressive]`). */
export function isSshdJail(jail: JailConfig): boolean {
  return !jail.countsBans && jail.filter.replace(/\[.*$/s, '').trim() === 'sshd';
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Shorewall: BLACKLIST= / BLACKLISTNEWONLY= / FASTACCEPT=

/** The last assignment of a shorewall.conf option, as Shorewall's reader keeps it. */
interface ConfAssignment {
  readonly value: string;
  readonly line: number;
}

/**
 * The options of a shorewall.conf that decide the states its blacklist is checked for. Shorewall
 * reads the file as `KEY=value` lines, the last one winning, values optionally quoted.
 */
function readShorewallOptions(text: string): Map<string, ConfAssignment> {
  const out = new Map<string, ConfAssignment>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*(BLACKLIST|BLACKLISTNEWONLY|FASTACCEPT)\s*=\s*(.*)$/.exec(lines[i]!);
    if (!m) continue;
    let value = m[2]!.trim();
    const quoted = /^(["'])(.*?)\1/.exec(value);
    value = quoted ? quoted[2]! : value.replace(/\s+#.*$/, '');
    out.set(m[1]!, { value: value.trim(), line: i + 1 });
  }
  return out;
}

const yes = (v: string | undefined): boolean => v !== undefined && /^yes$/i.test(v);

/**
 * Whether a Shorewall configuration drops established connections of blacklisted addresses, and
 * if not, what to change. Mirrors Shorewall 5.2's choice of BLACKLIST_STATES: a non-empty
 * `BLACKLIST` is the list of states (`ALL` for all); otherwise `BLACKLISTNEWONLY=Yes` (Shorewall 4)
 * or `FASTACCEPT=Yes` limits it to new connections; otherwise established ones are included.
 * @param file the file, for the message
 * @param text its content
 * @returns the warning, or undefined when an open connection is cut by a ban
 */
export function shorewallBlacklistWarning(file: string, text: string): string | undefined {
  const o = readShorewallOptions(text);
  const cause = ': an attacker\'s open connections survive its ban (only new ones are dropped)';
  const bl = o.get('BLACKLIST');
  if (bl && bl.value !== '') {
    const states = bl.value.split(',').map((s) => s.trim().toUpperCase());
    if (bl.value.toUpperCase() === 'ALL' || states.includes('ESTABLISHED')) return undefined;
    const fast = yes(o.get('FASTACCEPT')?.value) ? ` and FASTACCEPT=No at line ${o.get('FASTACCEPT')!.line}` : '';
    return `${file}:${bl.line}: BLACKLIST="${bl.value}" checks the blacklist only for those states${cause}. Change the line to BLACKLIST="ALL"${fast}, then run shorewall reload`;
  }
  const newOnly = o.get('BLACKLISTNEWONLY');
  if (newOnly && newOnly.value !== '') {
    if (!yes(newOnly.value)) return undefined;
    return `${file}:${newOnly.line}: BLACKLISTNEWONLY=${newOnly.value}${cause}. Change the line to BLACKLISTNEWONLY=No (Shorewall 5: BLACKLIST="ALL"), then run shorewall reload`;
  }
  const fast = o.get('FASTACCEPT');
  if (fast && yes(fast.value)) {
    return `${file}:${fast.line}: FASTACCEPT=Yes accepts established connections before the blacklist${cause}. Change the line to FASTACCEPT=No and set BLACKLIST="ALL", then run shorewall reload`;
  }
  return undefined;
}

/**
 * The blacklist check for each Shorewall family in use.
 * @param read returns a file's content, undefined when it cannot be read
 * @param families 4 for shorewall, 6 for shorewall6
 * @param files the configuration file of each family
 * @returns one warning per family whose bans spare open connections or whose file is unreadable
 */
export async function shorewallBlacklistWarnings(
  read: (file: string) => Promise<string | undefined>,
  families: ReadonlyArray<4 | 6>,
  files: { readonly 4: string; readonly 6: string } = SHOREWALL_CONF,
): Promise<string[]> {
  const out: string[] = [];
  for (const family of families) {
    const file = files[family];
    const text = await read(file);
    if (text === undefined) {
      out.push(`cannot read ${file}: cannot tell whether its BLACKLIST= setting lets bans cut open connections`);
      continue;
    }
    const w = shorewallBlacklistWarning(file, text);
    if (w) out.push(w);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// sshd: LogLevel

/** sshd's levels, least verbose first (DEBUG is DEBUG1). */
const SSHD_LEVELS = ['QUIET', 'FATAL', 'ERROR', 'INFO', 'VERBOSE', 'DEBUG', 'DEBUG1', 'DEBUG2', 'DEBUG3'];

/**
 * Warn when sshd's effective LogLevel (from `sshd -T`) is below VERBOSE. Silent when sshd is not
 * installed or `sshd -T` fails (not root, no host keys): nothing could be checked.
 * @returns the warning, naming the line that sets the level or the file to add it to
 */
export async function sshdLogLevelWarning(options: Pick<HostCheckOptions, 'sshd' | 'sshdConfig'> = {}): Promise<string | undefined> {
  const bin = options.sshd ?? SSHD_BINARIES.find((p) => existsSync(p));
  if (!bin) return undefined;
  const config = options.sshdConfig ?? SSHD_CONFIG;
  const r = await execa(bin, ['-T', '-f', config], { reject: false, timeout: 10_000 });
  if (r.exitCode !== 0) return undefined;
  const level = /^loglevel\s+(\S+)/im.exec(r.stdout)?.[1]?.toUpperCase();
  if (!level || SSHD_LEVELS.indexOf(level) < 0 || SSHD_LEVELS.indexOf(level) >= SSHD_LEVELS.indexOf('VERBOSE')) return undefined;
  const where = findSshdOption(config, 'loglevel');
  const fix = where
    ? `change ${where.file}:${where.line} "${where.text}" to "LogLevel VERBOSE"`
    : `add the line "LogLevel VERBOSE" to ${config} before any Match block (sshd keeps the first value it reads)`;
  return `sshd logs at LogLevel ${level} (sshd -T -f ${config}): below VERBOSE it does not log every failed login the sshd jails need; ${fix}, then reload sshd`;
}

/**
 * The first line that sets `key` in an sshd configuration, following `Include` in place the way
 * sshd does (first value wins) and stopping at the first `Match` of each file.
 * @returns file, line and the line's text; undefined when no line sets it
 */
export function findSshdOption(file: string, key: string, depth = 0): { file: string; line: number; text: string } | undefined {
  if (depth > 8) return undefined;
  const text = readIfExists(file);
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const m = /^(\w+)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const k = m[1]!.toLowerCase();
    if (k === 'match') return undefined;
    if (k === key) return { file, line: i + 1, text: line };
    if (k !== 'include') continue;
    for (const pattern of m[2]!.split(/\s+/).filter(Boolean)) {
      for (const inc of expandSshdInclude(pattern)) {
        const found = findSshdOption(inc, key, depth + 1);
        if (found) return found;
      }
    }
  }
  return undefined;
}

/** sshd's Include: relative to /etc/ssh, globs in the last segment, sorted. */
function expandSshdInclude(pattern: string): string[] {
  const abs = isAbsolute(pattern) ? pattern : join('/etc/ssh', pattern);
  if (!hasGlob(basename(abs))) return [abs];
  const re = segmentRegExp(basename(abs));
  try {
    return readdirSync(dirname(abs)).filter((n) => re.test(n)).sort().map((n) => join(dirname(abs), n));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// journald: sshd jails on a log file that does not exist

/**
 * Whether this host keeps a systemd journal this process can read: a journal directory holding a
 * readable `*.journal` file (directly or in its machine-id subdirectory).
 * @param dirs journal directories; default `/var/log/journal`, `/run/log/journal`
 */
export function journalReadable(dirs: readonly string[] = JOURNAL_DIRS): boolean {
  const readable = (dir: string, depth: number): boolean => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return false;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (n.endsWith('.journal')) {
        try {
          accessSync(p, constants.R_OK);
          return true;
        } catch {
          continue;
        }
      }
      if (depth === 0 && isDir(p) && readable(p, 1)) return true;
    }
    return false;
  };
  return dirs.some((d) => readable(d, 0));
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Whether any of a jail's logpath patterns names a file that exists now. */
export async function logpathExists(jail: Pick<JailConfig, 'logpath'>): Promise<boolean> {
  for (const pattern of jail.logpath) {
    for (const p of await expandGlob(pattern)) if (existsSync(p)) return true;
  }
  return false;
}

/** A jail that reads files (not the journal, not the cluster's bans). */
const readsFiles = (jail: JailConfig): boolean => !jail.countsBans && !/^systemd\b/.test(jail.backend);

/**
 * For each sshd jail on files none of which exists while the journal is readable: use the journal.
 * @param jails sshd jails
 * @param journalDirs where the journal is looked for
 */
export async function sshdLogSourceWarnings(jails: readonly JailConfig[], journalDirs: readonly string[] = JOURNAL_DIRS): Promise<string[]> {
  const out: string[] = [];
  let journal: boolean | undefined;
  for (const j of jails) {
    if (!readsFiles(j) || (await logpathExists(j))) continue;
    journal ??= journalReadable(journalDirs);
    if (!journal) continue;
    out.push(
      `${j.file}:${j.line}: jail [${j.name}]: logpath ${j.logpath.join(' ')} does not exist, and this host logs to the systemd journal: ` +
        `set "backend = systemd" in the jail (with journalmatch = ${SSHD_JOURNALMATCH})`,
    );
  }
  return out;
}

/**
 * `fleetban up`'s default sshd jail reads the source that exists on this host: its log file when
 * that exists, else the systemd journal when it is readable, else the file (followed once it appears).
 * @param jail the default `[sshd]` jail
 * @param journalDirs where the journal is looked for
 * @returns the jail to run and a sentence saying which source it reads
 */
export async function chooseSshdSource(jail: JailConfig, journalDirs: readonly string[] = JOURNAL_DIRS): Promise<{ jail: JailConfig; source: string }> {
  if (!readsFiles(jail)) return { jail, source: `jail [${jail.name}] reads the systemd journal` };
  if (await logpathExists(jail)) return { jail, source: `jail [${jail.name}] reads ${jail.logpath.join(' ')}` };
  if (journalReadable(journalDirs)) {
    return {
      jail: { ...jail, backend: 'systemd', logpath: [], journalmatch: [SSHD_JOURNALMATCH] },
      source: `jail [${jail.name}] reads the systemd journal (${SSHD_JOURNALMATCH}): ${jail.logpath.join(' ')} does not exist`,
    };
  }
  return { jail, source: `jail [${jail.name}] waits for ${jail.logpath.join(' ')}: neither it nor a readable systemd journal exists yet` };
}
