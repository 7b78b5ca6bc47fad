import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterKeys } from '../common/protocol/keys.js';
import { encodeFailure, type FailureEvent } from '../common/protocol/messages.js';

/**
 * Sends failures to the failures stream. Failures seen in the same turn of the event loop go out
 * in one pipeline (one round trip for a whole burst). While Redis is unreachable they wait in a
 * bounded buffer; the oldest are dropped, and counted, when it overflows.
 */
export class Reporter {
  private buffer: Array<Omit<FailureEvent, 'sent'>> = [];
  private scheduled = false;
  private flushing: Promise<void> | undefined;
  readonly stats = { reported: 0, dropped: 0 };

  /**
   * @param batch failures per pipeline at most
   * @param maxBuffered failures held at most while Redis is away
   * @param streamMaxlen approximate cap of the failures stream (XADD MAXLEN ~)
   */
  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly log: Logger,
    private readonly batch = 500,
    private readonly maxBuffered = 100_000,
    private readonly streamMaxlen = 1_000_000,
  ) {
    redis.on('ready', () => this.schedule());
  }

  /** Queue one failure; it is sent within the current event-loop turn when Redis is up. */
  report(event: Omit<FailureEvent, 'sent'>): void {
    this.buffer.push(event);
    if (this.buffer.length > this.maxBuffered) {
      const drop = this.buffer.length - this.maxBuffered;
      this.buffer.splice(0, drop);
      this.stats.dropped += drop;
      this.log.warn({ dropped: drop, buffered: this.buffer.length }, 'failure buffer full; oldest failures dropped');
    }
    this.schedule();
  }

  /** Failures waiting to be sent. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Send everything buffered (used on shutdown and in tests). */
  async flush(): Promise<void> {
    while (this.buffer.length > 0 && this.redis.status === 'ready') {
      await this.sendSome();
    }
  }

  private schedule(): void {
    if (this.scheduled || this.buffer.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.flushing || this.redis.status !== 'ready') return;
      this.flushing = this.sendSome().finally(() => {
        this.flushing = undefined;
        this.schedule();
      });
    });
  }

  private async sendSome(): Promise<void> {
    const events = this.buffer.slice(0, this.batch);
    const pipeline = this.redis.pipeline();
    const sent = Date.now();
    for (const e of events) pipeline.xadd(this.keys.failures, 'MAXLEN', '~', this.streamMaxlen, '*', ...encodeFailure({ ...e, sent }));
    try {
      const results = await pipeline.exec();
      const failed = results?.filter(([err]) => err).length ?? 0;
      if (failed > 0) throw new Error(`${failed} of ${events.length} XADDs failed: ${String(results?.find(([e]) => e)?.[0])}`);
      this.buffer.splice(0, events.length);
      this.stats.reported += events.length;
    } catch (err) {
      // Keep them; they go out when the connection is back ('ready' reschedules).
      this.log.warn({ err: (err as Error).message, buffered: this.buffer.length }, 'reporting failures failed; kept for retry');
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
