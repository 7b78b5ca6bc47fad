import type { Logger } from 'pino';
import type { ClusterScripts } from '../common/scripts/index.js';
import { now } from '../common/clock.js';

/**
 * Removes bans whose time is up, on a timer. Every coordinator runs one; the script is atomic, so
 * two coordinators expiring at once never publish an unban twice.
 */
export class Expirer {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly scripts: ClusterScripts,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly clock: () => number = now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Expire everything due now, in pages, so a mass expiry never blocks Redis for long. */
  async sweep(): Promise<number> {
    if (this.busy) return 0;
    this.busy = true;
    let total = 0;
    try {
      for (;;) {
        const expired = await this.scripts.expire(this.clock(), 1000);
        total += expired.length;
        if (expired.length < 1000) break;
      }
      if (total > 0) this.log.info({ count: total }, 'bans expired');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'expiring bans failed; will retry');
    } finally {
      this.busy = false;
    }
    return total;
  }
}
