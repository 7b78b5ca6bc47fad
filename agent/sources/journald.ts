/**
 * Follows the systemd journal through `journalctl --follow --output=json` (fail2ban's systemd
 * backend uses the python bindings; journalctl gives the same entries without a native module).
 *
 * Positions are journal cursors. `end` asks journalctl for the cursor of the newest entry first and
 * then follows `--after-cursor` it, so nothing written between start() and journalctl opening the
 * journal is missed, and a restart after journalctl died continues after the last delivered entry.
 *
 * `--merge` is always passed: without it journalctl 252 adds an implicit `--boot` in follow mode,
 * which hides entries of other boots (a resumed cursor from before a reboot then yields nothing)
 * and makes following an empty journal fail.
 */
import { resolve } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { LogSource } from './source.js';
import type { StartAt } from './file-tail.js';
import { JsonStateFile } from './state-file.js';
import { formatJournalEntry, type JournalEntry } from './journal-format.js';
import { componentLogger, type Logger } from '../../common/log.js';

/** Options of {@link JournalSource}. */
export interface JournalSourceOptions {
  /** Source name for logs. */
  name: string;
  /** journalctl match arguments (see parseJournalMatch); empty = every entry. */
  matches: string[];
  /** `end` (default), `beginning` of the journal, or `resume` after the saved cursor. */
  startAt?: StartAt;
  /** JSON file holding the cursor; undefined = not persisted. */
  stateFile?: string;
  /** Journal files (globs allowed, journalctl expands them) instead of the system journal. */
  files?: string[];
  /** A journal directory instead of the system journal. */
  directory?: string;
  /** journalctl binary (default `journalctl`). */
  journalctl?: string;
  /** First restart delay after journalctl exits (default 500 ms); doubles up to restartMaxMs. */
  restartMinMs?: number;
  restartMaxMs?: number;
  /** Minimum time between two saves of the cursor (default 1000). */
  saveIntervalMs?: number;
  log?: Logger;
}

interface CursorDoc {
  version: 1;
  cursor?: string;
}

/** Where the next journalctl starts. */
type Position = { kind: 'after'; cursor: string } | { kind: 'head' } | { kind: 'end' };

const STDERR_KEEP = 4096;
const MAX_LINE = 1 << 20;

/** A {@link LogSource} over the systemd journal; the origin of every line is `journal`. */
export class JournalSource implements LogSource {
  readonly name: string;
  private readonly log: Logger;
  private readonly state: JsonStateFile<CursorDoc> | undefined;
  private readonly bin: string;
  private readonly sourceArgs: string[];
  private cursor: string | undefined;
  private position: Position = { kind: 'end' };
  private child: ResultPromise | undefined;
  private childDone: Promise<unknown> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private backoff: number;
  private onLines: ((lines: string[], origin: string) => void) | undefined;
  private stopped = false;
  private badLines = 0;
  private failing = false;

  /** @param opts see {@link JournalSourceOptions} */
  constructor(private readonly opts: JournalSourceOptions) {
    this.name = opts.name;
    this.log = opts.log ?? componentLogger('agent.sources.journal').child({ source: opts.name });
    this.bin = opts.journalctl ?? 'journalctl';
    // journalctl cannot follow a relative --file (its inotify watch fails), so paths are made absolute.
    this.sourceArgs = [
      ...(opts.files ?? []).map((f) => `--file=${resolve(f)}`),
      ...(opts.directory ? [`--directory=${resolve(opts.directory)}`] : []),
    ];
    this.backoff = opts.restartMinMs ?? 500;
    this.state = opts.stateFile
      ? new JsonStateFile<CursorDoc>(
          opts.stateFile,
          () => ({ version: 1, ...(this.cursor ? { cursor: this.cursor } : {}) }),
          this.log,
          opts.saveIntervalMs ?? 1000,
        )
      : undefined;
  }

  /**
   * Decide the start position and spawn journalctl.
   * @param onLines receives formatted lines (see formatJournalEntry), one call per output chunk
   * @returns once journalctl has been spawned; entries newer than this call are delivered
   */
  async start(onLines: (lines: string[], origin: string) => void): Promise<void> {
    if (this.onLines) throw new Error(`source ${this.name} already started`);
    this.onLines = onLines;
    const startAt = this.opts.startAt ?? 'end';
    if (startAt === 'resume' && this.state) {
      const doc = (await this.state.load()) as Partial<CursorDoc> | undefined;
      if (doc && typeof doc.cursor === 'string' && doc.cursor.length > 0) {
        this.cursor = doc.cursor;
        this.position = { kind: 'after', cursor: doc.cursor };
      }
    }
    if (startAt === 'beginning') this.position = { kind: 'head' };
    if (this.position.kind === 'end') this.position = await this.tailPosition();
    await this.spawn();
    this.log.info({ matches: this.opts.matches }, `[${this.name.replace(/:journal$/, '')}] following the journal`);
  }

  /** Stop journalctl, deliver what it had printed, save the cursor. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGTERM');
    await this.childDone;
    await this.state?.close();
  }

  /** Pid of the running journalctl, if any (for diagnostics and tests). */
  pid(): number | undefined {
    return this.child?.pid;
  }

  /** The cursor of the last delivered entry (for diagnostics and tests). */
  lastCursor(): string | undefined {
    return this.cursor;
  }

  /** The newest entry's cursor, so following starts just after it; an empty journal starts at its head. */
  private async tailPosition(): Promise<Position> {
    const r = await execa(this.bin, [...this.sourceArgs, '--merge', '--lines=1', '--output=json', '--no-pager', '--quiet'], {
      reject: false,
      stdin: 'ignore',
      timeout: 30_000,
      maxBuffer: 4 * MAX_LINE,
    });
    const last = String(r.stdout ?? '').trim().split('\n').pop();
    if (last) {
      try {
        const c = (JSON.parse(last) as JournalEntry).__CURSOR;
        if (typeof c === 'string') return { kind: 'after', cursor: c };
      } catch {
        // fall through: no usable cursor
      }
    }
    if (r.exitCode !== 0) {
      this.log.debug({ stderr: String(r.stderr ?? '').slice(-STDERR_KEEP) }, 'journal not readable yet; following from its head');
    }
    return { kind: 'head' };
  }

  private args(): string[] {
    const pos = this.position;
    return [
      ...this.sourceArgs,
      '--merge',
      '--follow',
      '--output=json',
      '--all',
      '--no-pager',
      '--quiet',
      ...(pos.kind === 'after' ? [`--after-cursor=${pos.cursor}`] : ['--no-tail']),
      '--',
      ...this.opts.matches,
    ];
  }

  private async spawn(): Promise<void> {
    if (this.stopped) return;
    const args = this.args();
    this.log.debug({ cmd: this.bin, args }, 'starting journalctl');
    const child = execa(this.bin, args, {
      reject: false,
      buffer: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      cleanup: true,
      env: { SYSTEMD_COLORS: '0' },
    });
    this.child = child;
    const startedAt = Date.now();
    let stderr = '';
    let delivered = 0;
    let carry = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_KEEP);
    });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      const text = carry + chunk;
      const lastNl = text.lastIndexOf('\n');
      if (lastNl < 0) {
        carry = text.length > MAX_LINE ? '' : text;
        return;
      }
      carry = text.slice(lastNl + 1);
      const out: string[] = [];
      for (const json of text.slice(0, lastNl).split('\n')) {
        if (json.length === 0) continue;
        let entry: JournalEntry;
        try {
          entry = JSON.parse(json) as JournalEntry;
        } catch {
          if (this.badLines++ < 5) this.log.warn({ line: json.slice(0, 200) }, 'journalctl printed a line that is not JSON');
          continue;
        }
        const line = formatJournalEntry(entry);
        if (line !== undefined) out.push(line);
        if (typeof entry.__CURSOR === 'string') this.cursor = entry.__CURSOR;
      }
      delivered += out.length;
      if (out.length > 0) {
        try {
          this.onLines?.(out, 'journal');
        } catch (err) {
          this.log.error({ err }, 'line consumer threw');
        }
      }
      if (this.cursor) {
        this.position = { kind: 'after', cursor: this.cursor };
        this.state?.markDirty();
      }
    });
    await new Promise<void>((resolveSpawn) => {
      child.once('spawn', () => resolveSpawn());
      child.once('error', () => resolveSpawn());
    });
    this.childDone = child.then((r) => {
      // A spawn failure (journalctl not installed) has no stderr; execa's message says what happened.
      const why = r.failed && !stderr ? (r as { shortMessage?: string }).shortMessage ?? '' : stderr;
      this.exited(r.exitCode, r.signal, why, startedAt, delivered, args);
    });
  }

  private exited(code: number | undefined, signal: string | undefined, stderr: string, startedAt: number, delivered: number, args: string[]): void {
    this.child = undefined;
    if (this.stopped) return;
    const ranMs = Date.now() - startedAt;
    const min = this.opts.restartMinMs ?? 500;
    if (delivered > 0 || ranMs > 10_000) this.backoff = min;
    // A cursor from another journal (vacuumed, machine reinstalled) makes journalctl refuse to start;
    // starting from the end loses less than never starting.
    if (/seek to cursor/i.test(stderr) && args.some((a) => a.startsWith('--after-cursor='))) {
      this.log.warn({ cursor: this.cursor }, 'saved journal cursor is not usable; following from the end');
      this.cursor = undefined;
      this.position = { kind: 'end' };
    }
    // Once per failure streak at warn: a journal that is missing for hours must not flood the log.
    const level = this.failing ? 'debug' : 'warn';
    this.failing = delivered === 0;
    this.log[level]({ code, signal, stderr: stderr.trim(), restartInMs: this.backoff }, 'journalctl exited; restarting');
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.restartMaxMs ?? 30_000);
    this.restartTimer = setTimeout(() => {
      void (async () => {
        if (this.position.kind === 'end') this.position = await this.tailPosition();
        await this.spawn();
      })().catch((err: unknown) => this.log.error({ err }, 'cannot restart journalctl'));
    }, delay);
  }
}
