import type { Logger } from 'pino';

/** Found lines logged per second at most; a flood is summed up instead of written out line by line. */
const PER_SECOND = 50;

/**
 * fail2ban's `[jail] Found ADDR` at info, one per failure, up to {@link PER_SECOND} a second; past
 * that the failures of the second are counted and summed up in one line, so a flood of millions
 * of lines does not become millions of journal entries (the metrics count every one). The second
 * is kept by a timer that runs only while failures come, so a failure costs a comparison and an
 * increment, not a clock reading.
 */
export class FoundLog {
  private logged = 0;
  private suppressed = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  found(jail: string, addr: string, origin: string): void {
    if (this.logged < PER_SECOND) {
      if (this.logged++ === 0 && !this.timer) this.timer = setInterval(() => this.tick(), 1000).unref();
      this.log.info({ event: 'found', jail, addr, origin }, `[${jail}] Found ${addr}`);
    } else this.suppressed++;
  }

  private tick(): void {
    if (this.suppressed > 0) this.log.info({ event: 'found suppressed', count: this.suppressed }, `${this.suppressed} more failures found in the last second (not logged one by one)`);
    if (this.logged === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    this.logged = 0;
    this.suppressed = 0;
  }
}
