import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { encodeReport, splitIntoReports } from '../common/protocol/messages.js';
import { now } from '../common/clock.js';
import type { FailureSpool, PendingFailure } from './spool.js';

/**
 * Failures held in memory at most while Redis is away and the spool cannot take them: past it
 * the oldest are dropped and counted (`stats.dropped`), so an outage cannot grow the agent unbounded.
 */
export const DEFAULT_MAX_BUFFERED = 100_000;

/** What a {@link Reporter} needs; the optional ones default to the shipped configuration's values. */
export interface ReporterOptions {
  /** The agent's command connection. */
  readonly redis: Redis;
  /** This host's failure stream, the only one its identity may write. */
  readonly stream: string;
  readonly log: Logger;
  /** Failures per pipeline at most (`[agent] report_batch`); default 500. */
  readonly batch?: number;
  /** Failures held in memory at most while Redis is away; default {@link DEFAULT_MAX_BUFFERED}. */
  readonly maxBuffered?: number;
  /** Approximate cap of the failures stream in reports (XADD MAXLEN ~); default 1,000,000. */
  readonly streamMaxlen?: number;
  /** Where failures wait while Redis is unreachable; without one, memory only. */
  readonly spool?: FailureSpool;
}

/**
 * Sends failures to the failures stream. Failures seen in the same turn of the event loop go out
 * together: reports of up to 100 failures each (one stream entry per report), all in one pipeline
 * (one round trip for a whole burst).
 *
 * While Redis is unreachable, failures go to the on-disk spool when there is one (bounded; an
 * agent restarted during an outage still delivers them), else they wait in a bounded memory
 * buffer whose oldest entries are dropped, and counted, when it overflows. Once anything is
 * spooled, new failures queue behind it so the stream receives them in the order they were seen.
 * A failure's `sent` time is stamped when it finally goes out, so its age (`sent - time`) carries
 * the time it waited and the coordinator places it where it really happened.
 *
 * Delivery is at least once: a pipeline whose replies were lost with the connection is sent
 * again, and the coordinator counts each stream entry, so such a rare repeat counts twice.
 */
export class Reporter {
  private buffer: PendingFailure[] = [];
  /** Random per agent process, so event ids never repeat across restarts. */
  private readonly incarnation = randomBytes(6).toString('hex');
  private sequence = 0;
  /**
   * The batch of the pipeline in flight, out of `buffer` so that spilling to disk never copies it:
   * on a dead link ioredis keeps such a pipeline and sends it again once reconnected.
   */
  private inFlight: PendingFailure[] = [];
  private scheduled = false;
  private flushing: Promise<void> | undefined;
  private spooling = false;
  readonly stats = { reported: 0, dropped: 0 };

  private readonly redis: Redis;
  private readonly stream: string;
  private readonly log: Logger;
  private readonly batch: number;
  private readonly maxBuffered: number;
  private readonly streamMaxlen: number;
  private readonly spool: FailureSpool | undefined;

  /** @param o connection, stream and bounds; see {@link ReporterOptions} */
  constructor(o: ReporterOptions) {
    const redis = o.redis;
    this.redis = redis;
    this.stream = o.stream;
    this.log = o.log;
    this.batch = o.batch ?? 500;
    this.maxBuffered = o.maxBuffered ?? DEFAULT_MAX_BUFFERED;
    this.streamMaxlen = o.streamMaxlen ?? 1_000_000;
    this.spool = o.spool;
    redis.on('ready', () => this.schedule());
    // Going through the spool as soon as the link drops, not only after a send fails, is what
    // makes a restart (or a kill) during the outage lose nothing.
    redis.on('close', () => this.schedule());
    this.schedule();
  }

  /** Queue one failure; it is sent within the current event-loop turn when Redis is up. */
  report(event: Omit<PendingFailure, 'eid'>): void {
    this.buffer.push({ ...event, eid: `${this.incarnation}-${(this.sequence++).toString(36)}` });
    if (this.buffer.length > this.maxBuffered) {
      const drop = this.buffer.length - this.maxBuffered;
      this.buffer.splice(0, drop);
      this.stats.dropped += drop;
      this.log.warn({ dropped: drop, buffered: this.buffer.length }, 'failure buffer full; oldest failures dropped');
    }
    this.schedule();
  }

  /** Failures waiting to be sent, in memory and on disk. */
  get pending(): number {
    return this.buffer.length + this.inFlight.length + (this.spool?.size ?? 0);
  }

  /** Send everything buffered (used on shutdown and in tests). */
  async flush(): Promise<void> {
    while (this.pending > 0 && this.redis.status === 'ready') {
      if (this.flushing) await this.flushing;
      else await this.sendSome();
    }
  }

  /**
   * Write what is still in memory to the spool (shutdown while Redis is away). A batch still in
   * flight is included: it may have reached Redis, and a repeat is better than a loss.
   */
  persist(): void {
    const unsent = [...this.inFlight, ...this.buffer];
    if (!this.spool || unsent.length === 0) return;
    this.spool.append(unsent);
    this.log.info({ spooled: unsent.length }, 'unsent failures written to the spool');
    this.buffer = [];
    this.inFlight = [];
  }

  private schedule(): void {
    if (this.scheduled || this.pending === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const ready = this.redis.status === 'ready';
      if (this.spool && this.buffer.length > 0 && (!ready || this.spool.size > 0)) {
        if (!ready && !this.spooling) {
          this.spooling = true;
          this.log.warn({ status: this.redis.status }, 'Redis unreachable; spooling failures to disk');
        }
        this.spill();
      }
      if (this.flushing || !ready) return;
      this.flushing = this.sendSome().finally(() => {
        this.flushing = undefined;
        this.schedule();
      });
    });
  }

  private spill(): void {
    try {
      this.spool!.append(this.buffer);
      this.buffer = [];
    } catch (err) {
      // A full or read-only disk: keep them in the bounded memory buffer instead.
      this.log.error({ err: (err as Error).message, buffered: this.buffer.length }, 'cannot write the failure spool; holding failures in memory');
    }
  }

  private async sendSome(): Promise<void> {
    const fromSpool = this.spool !== undefined && this.spool.size > 0;
    const events = fromSpool ? this.spool!.peek(this.batch) : this.buffer.splice(0, this.batch);
    if (events.length === 0) return;
    if (!fromSpool) this.inFlight = events;
    const pipeline = this.redis.pipeline();
    const sent = now();
    const reports = splitIntoReports(events);
    for (const r of reports) pipeline.xadd(this.stream, 'MAXLEN', '~', this.streamMaxlen, '*', ...encodeReport(r[0]!.host, sent, r));
    let results: Array<[Error | null, unknown]> | null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      results = reports.map(() => [err as Error, null]);
    }
    const failed = results?.findIndex(([err]) => err) ?? -1;
    if (failed < 0) {
      if (fromSpool) {
        this.spool!.consume();
        if (this.spool!.size === 0 && this.spooling) {
          this.spooling = false;
          this.log.info({ delivered: this.spool!.stats.delivered }, 'spooled failures delivered');
        }
      } else {
        this.inFlight = [];
      }
      this.stats.reported += events.length;
      return;
    }
    // Keep whatever did not go through, in front of newer failures; it goes out when the
    // connection is back ('ready' reschedules), through the spool if it is down meanwhile.
    if (!fromSpool && this.inFlight === events) {
      const kept = reports.filter((_, i) => results?.[i]?.[0]).flat();
      this.buffer.unshift(...kept);
      this.inFlight = [];
      this.stats.reported += events.length - kept.length;
    }
    this.log.warn({ err: String(results?.[failed]?.[0]?.message ?? results?.[failed]?.[0]), pending: this.pending }, 'reporting failures failed; kept for retry');
    await new Promise((r) => setTimeout(r, 200));
  }
}
