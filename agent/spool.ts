import { appendFileSync, chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FailureEvent } from '../common/protocol/messages.js';
import { HOST_NAME_RE, JAIL_NAME_RE, EVENT_ID_RE, LIMITS } from '../common/protocol/messages.js';

/** A failure waiting for Redis: everything but `sent`, which is stamped when it is finally sent. */
export type PendingFailure = Omit<FailureEvent, 'sent'>;

/** Limits of a {@link FailureSpool}. */
export interface SpoolOptions {
  /** Bytes on disk at most; past it the oldest segment is dropped (and counted). Default 64 MiB. */
  readonly maxBytes?: number;
  /** Bytes per segment file before a new one is started. Default 1 MiB. */
  readonly segmentBytes?: number;
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  bytes: number;
  lines: number;
}

const SEGMENT_RE = /^failures-(\d{10})\.jsonl$/;

/**
 * Failure reports kept on disk while Redis cannot be reached, so that neither a long cut nor an
 * agent restart during it loses any. Files are JSON lines in numbered segments under `dir`; a
 * `position` file records how many lines of the oldest segment were delivered, so a restart
 * re-sends at most the batch that was in flight. Memory holds one segment at most while
 * delivering, never the whole spool.
 *
 * Appends are plain writes without fsync: they survive the agent being killed (the page cache
 * holds them) but not a power cut, which is the trade-off for not syncing on every batch.
 */
export class FailureSpool {
  private readonly segments: Segment[] = [];
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly positionPath: string;
  /** Lines of the oldest segment already delivered. */
  private delivered = 0;
  /** The oldest segment's lines, loaded when delivery starts. */
  private loaded: { seq: number; lines: string[] } | undefined;
  private pendingCount = 0;
  readonly stats = { spooled: 0, delivered: 0, dropped: 0, damaged: 0 };

  /**
   * Open (and create) the spool directory and take over what a previous run left in it.
   * @param dir directory of this spool, e.g. `<state_dir>/spool`
   */
  constructor(
    private readonly dir: string,
    private readonly log: Logger,
    options: SpoolOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.segmentBytes = Math.min(options.segmentBytes ?? 1024 * 1024, this.maxBytes);
    this.positionPath = join(dir, 'position');
    // Spooled lines are log text (`Failed password for invalid user <a typed password>`): only
    // the agent's user may read them, also in a spool an older release left world-readable.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    for (const name of readdirSync(dir).sort()) {
      const m = SEGMENT_RE.exec(name);
      if (!m) continue;
      const path = join(dir, name);
      chmodSync(path, 0o600);
      const text = readFileSync(path, 'utf8');
      const lines = countLines(text);
      this.segments.push({ seq: Number(m[1]), path, bytes: statSync(path).size, lines });
      this.pendingCount += lines;
    }
    this.delivered = this.readPosition();
    if (this.segments.length > 0) {
      this.delivered = Math.min(this.delivered, this.segments[0]!.lines);
      this.pendingCount -= this.delivered;
      if (this.pendingCount > 0) log.info({ pending: this.pendingCount, dir }, 'failure spool from a previous run will be delivered');
    } else {
      this.delivered = 0;
    }
  }

  /** Failures on disk not yet delivered. */
  get size(): number {
    return this.pendingCount;
  }

  /** Bytes the spool occupies on disk. */
  get bytes(): number {
    return this.segments.reduce((n, s) => n + s.bytes, 0);
  }

  /**
   * Append failures (oldest first). When the spool would exceed its limit, whole oldest segments
   * are dropped: under a long outage the newest failures are the ones still inside a findtime.
   */
  append(events: readonly PendingFailure[]): void {
    if (events.length === 0) return;
    let text = '';
    for (const e of events) text += JSON.stringify([e.jail, e.addr, Math.round(e.time), e.host, e.line, e.eid]) + '\n';
    let last = this.segments[this.segments.length - 1];
    if (!last || last.bytes >= this.segmentBytes || (this.loaded && this.loaded.seq === last.seq)) {
      // A segment being delivered is never appended to: its lines are already in memory.
      last = { seq: (last?.seq ?? 0) + 1, path: '', bytes: 0, lines: 0 };
      (last as { path: string }).path = join(this.dir, `failures-${String(last.seq).padStart(10, '0')}.jsonl`);
      this.segments.push(last);
    }
    appendFileSync(last.path, text, { mode: 0o600 });
    const bytes = Buffer.byteLength(text);
    last.bytes += bytes;
    last.lines += events.length;
    this.pendingCount += events.length;
    this.stats.spooled += events.length;
    while (this.bytes > this.maxBytes && this.segments.length > 1) this.dropOldest();
  }

  /**
   * @param max failures wanted at most
   * @returns the oldest undelivered failures (fewer near a segment's end), without removing them
   */
  peek(max: number): PendingFailure[] {
    const out: PendingFailure[] = [];
    while (out.length === 0 && this.segments.length > 0) {
      const first = this.segments[0]!;
      if (!this.loaded || this.loaded.seq !== first.seq) {
        const text = readFileSync(first.path, 'utf8');
        this.loaded = { seq: first.seq, lines: text.split('\n').slice(0, first.lines) };
      }
      const lines = this.loaded.lines;
      let i = this.delivered;
      // Damaged lines are skipped by consuming them with the batch they sit in.
      for (; i < lines.length && out.length < max; i++) {
        const e = decodeLine(lines[i]!);
        if (e) out.push(e);
        else this.stats.damaged++;
      }
      if (out.length === 0) {
        // The segment held only damaged lines: discard it and look at the next one.
        this.consumeLines(lines.length - this.delivered);
      } else {
        this.peekedLines = i - this.delivered;
      }
    }
    return out;
  }

  private peekedLines = 0;

  /** Mark the failures returned by the last peek() as delivered. */
  consume(): void {
    const n = this.peekedLines;
    this.peekedLines = 0;
    this.consumeLines(n);
    this.stats.delivered += n;
  }

  private consumeLines(n: number): void {
    const first = this.segments[0];
    if (!first || n <= 0) return;
    this.delivered += n;
    this.pendingCount -= n;
    if (this.delivered >= first.lines) {
      this.segments.shift();
      this.loaded = undefined;
      this.delivered = 0;
      unlinkSync(first.path);
    }
    this.writePosition();
  }

  private dropOldest(): void {
    const first = this.segments.shift()!;
    const lost = first.lines - this.delivered;
    this.pendingCount -= lost;
    this.stats.dropped += lost;
    this.delivered = 0;
    this.loaded = undefined;
    this.peekedLines = 0;
    unlinkSync(first.path);
    this.writePosition();
    this.log.warn({ dropped: lost, maxBytes: this.maxBytes }, 'failure spool full; oldest failures dropped');
  }

  private readPosition(): number {
    try {
      const [seq, lines] = readFileSync(this.positionPath, 'utf8').trim().split(' ').map(Number);
      return seq === this.segments[0]?.seq && Number.isSafeInteger(lines) && lines! > 0 ? lines! : 0;
    } catch {
      return 0;
    }
  }

  private writePosition(): void {
    // Write-then-rename: a crash leaves the old position or the new one, never half a file.
    const tmp = `${this.positionPath}.tmp`;
    writeFileSync(tmp, `${this.segments[0]?.seq ?? 0} ${this.delivered}\n`, { mode: 0o600 });
    renameSync(tmp, this.positionPath);
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** The spool is ours, but a disk can hand back anything: validate like a stream entry. */
function decodeLine(line: string): PendingFailure | undefined {
  try {
    const a = JSON.parse(line) as unknown;
    if (!Array.isArray(a) || a.length !== 6) return undefined;
    const [jail, addr, time, host, text, eid] = a as [unknown, unknown, unknown, unknown, unknown, unknown];
    if (typeof eid !== 'string' || !EVENT_ID_RE.test(eid)) return undefined;
    if (typeof jail !== 'string' || !JAIL_NAME_RE.test(jail)) return undefined;
    if (typeof addr !== 'string' || addr.length > 64) return undefined;
    if (typeof time !== 'number' || !Number.isSafeInteger(time)) return undefined;
    if (typeof host !== 'string' || !HOST_NAME_RE.test(host)) return undefined;
    if (typeof text !== 'string') return undefined;
    return { jail, addr, eid, time, host, line: text.slice(0, LIMITS.lineChars) };
  } catch {
    return undefined;
  }
}
