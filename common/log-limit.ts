import type { Logger } from 'pino';

/**
 * Warnings about what others wrote (malformed or refused entries) at a bounded rate: anyone who
 * can write to Redis can make thousands of such entries a second, and a log line each would turn
 * that into a disk and CPU flood on every host. Per kind, the first `burst` warnings of a minute
 * are logged as they come; the rest are counted and summed up in one line when the minute ends.
 */
export class RateLimitedWarner {
  private readonly windows = new Map<string, { start: number; logged: number; dropped: number }>();

  constructor(
    private readonly log: Logger,
    private readonly burst = 10,
    private readonly windowMs = 60_000,
  ) {}

  /** Log `msg` with `fields` unless `kind` has had its share of this minute. */
  warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    const t = Date.now();
    let w = this.windows.get(kind);
    if (!w || t - w.start >= this.windowMs) {
      if (w && w.dropped > 0) this.log.warn({ kind, suppressed: w.dropped, windowMs: this.windowMs }, `${kind}: more warnings suppressed`);
      if (this.windows.size > 1000) this.windows.clear();
      w = { start: t, logged: 0, dropped: 0 };
      this.windows.set(kind, w);
    }
    if (w.logged < this.burst) {
      w.logged++;
      this.log.warn(fields, msg);
    } else {
      w.dropped++;
    }
  }
}
