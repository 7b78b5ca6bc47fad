import { join, isAbsolute } from 'node:path';
import { ConfigError } from '../../common/errors.js';
import { componentLogger } from '../../common/log.js';
import type { LogSource } from './source.js';
import { FileTailSource, type StartAt } from './file-tail.js';
import { JournalSource } from './journald.js';
import { parseJournalMatch } from './journal-match.js';
import { parseBackend } from '../../common/config/backend-spec.js';
import { lineEncoding } from './encoding.js';
import { stateFileName } from './state-file.js';
import { logpathExists } from '../preflight.js';

export type { LogSource } from './source.js';
export { FileTailSource } from './file-tail.js';
export { JournalSource } from './journald.js';
export { formatJournalEntry } from './journal-format.js';

/** How sources start and where they keep their place. */
export interface SourceOptions {
  /** Where positions (per file) and journal cursors are saved; undefined = do not persist. */
  stateDir?: string;
  /**
   * `end` (default, like fail2ban: only new lines), `beginning`, or `resume` (from the saved position
   * per file or the saved journal cursor; a file or journal without one starts at the end).
   */
  startAt?: StartAt;
  /** Journal files to read instead of the system journal (`journalctl --file`); overrides the backend's `journalfiles`. */
  journalFiles?: string[];
  /** Journal directory to read instead of the system journal (`journalctl --directory`); overrides `journalpath`. */
  journalDirectory?: string;
  /** journalctl binary (default `journalctl` from PATH). */
  journalctl?: string;
  /** How often every followed path is stat'ed, in ms (default 1000); inotify events can be missed. */
  pollIntervalMs?: number;
  /** How often the logpath globs are expanded again for new files, in ms (default 5000). */
  rescanIntervalMs?: number;
}

/** The part of a jail's configuration that decides where its lines come from. */
export interface JailSourceConfig {
  readonly name: string;
  /** fail2ban `backend`: auto | polling | pyinotify | inotify | gamin (files) or systemd[...] (journal). */
  readonly backend: string;
  readonly logpath: readonly string[];
  readonly logencoding: string;
  /** One entry per `journalmatch` line; lines are alternatives, `+` inside a line too. */
  readonly journalmatch: readonly string[];
}

/**
 * Build the sources of one jail: one file follower for all of its `logpath` globs, or one journal
 * reader for `backend = systemd`.
 * @param jail the jail's source settings (a `JailConfig` fits)
 * @param options start position and state directory
 * @returns sources to `start()`; nothing is opened before that
 * @throws ConfigError for an unknown backend or encoding, a malformed journalmatch, or relative log paths
 */
export function createLogSources(jail: JailSourceConfig, options: SourceOptions = {}): LogSource[] {
  const log = componentLogger('agent.sources').child({ jail: jail.name });
  const backend = parseBackend(jail.backend, jail.name);
  const startAt = options.startAt ?? 'end';
  if (backend.kind === 'bans') return []; // fed by the cluster's bans, not by a log
  if (backend.kind === 'systemd') {
    if (jail.logpath.length > 0) log.warn({ logpath: jail.logpath }, 'logpath is ignored with backend = systemd');
    const files =
      options.journalFiles ??
      (backend.options.get('journalfiles')?.split(/[\s,]+/).filter(Boolean));
    const directory = options.journalDirectory ?? backend.options.get('journalpath');
    return [
      new JournalSource({
        name: `${jail.name}:journal`,
        matches: parseJournalMatch(jail.journalmatch, jail.name),
        startAt,
        stateFile: options.stateDir ? join(options.stateDir, stateFileName(jail.name, 'journal')) : undefined,
        files,
        directory,
        journalctl: options.journalctl,
        log: log.child({ source: 'journal' }),
      }),
    ];
  }
  if (jail.journalmatch.length > 0) log.debug('journalmatch is ignored for file backends');
  for (const p of jail.logpath) {
    if (!isAbsolute(p)) throw new ConfigError(`jail ${jail.name}: logpath '${p}' is not absolute`, undefined, undefined, 'logpath');
  }
  return [
    new FileTailSource({
      name: `${jail.name}:files`,
      patterns: [...jail.logpath],
      encoding: lineEncoding(jail.logencoding, jail.name),
      startAt,
      // `polling` is chosen where inotify does not work (NFS, some containers): respect it.
      watch: backend.name !== 'polling',
      stateFile: options.stateDir ? join(options.stateDir, stateFileName(jail.name, 'files')) : undefined,
      pollIntervalMs: options.pollIntervalMs,
      rescanIntervalMs: options.rescanIntervalMs,
      log: log.child({ source: 'files' }),
    }),
  ];
}

/**
 * The jails that read files (backend auto, polling, pyinotify, gamin) and for which no `logpath`
 * matches an existing file now. `fail2ban-client -t` refuses such a jail ("Have not found any log
 * file for … jail"), so `check-config` does too; the agent only warns, and follows the file once
 * it appears.
 * @param jails the enabled jails
 * @returns one entry per such jail, with its patterns
 */
export async function jailsWithoutLogFiles(jails: readonly JailSourceConfig[]): Promise<Array<{ jail: string; logpath: readonly string[] }>> {
  const out: Array<{ jail: string; logpath: readonly string[] }> = [];
  for (const jail of jails) {
    if (parseBackend(jail.backend, jail.name).kind !== 'files') continue;
    if (!(await logpathExists({ logpath: [...jail.logpath] }))) out.push({ jail: jail.name, logpath: jail.logpath });
  }
  return out;
}
