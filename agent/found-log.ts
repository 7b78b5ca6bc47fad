import type { Logger } from 'pino';

/** Found lines logged per second at most; a flood is summed up instead of written out line by line. */
const PER_SECOND = 50;

/**
 * fail2ban's `[jail] Found ADDR` at info, one per failure, up to {@link PER_SECOND} a second; past
 * that the failures of the second are counted and summed up in one line, so a flood of millions
 * of lines does not become millions of journal entries (the metrics count every one).
 */
export class FoundLog {
  private second = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(private readonly log: Logger) {}

  found(jail: string, addr: string, origin: string): void {
    const s = Math.floor(Date.now() / 1000);
    if (s !== this.second) {
      this.summary();
      this.second = s;
      this.logged = 0;
    }
    if (this.logged < PER_SECOND) {
      this.logged++;
      this.log.info({ event: 'found', jail, addr, origin }, `[${jail}] Found ${addr}`);
      return;
    }
    // The summary is written when the second is over, or with the next failure if that comes first.
    if (this.suppressed++ === 0) setTimeout(() => this.summary(), 1000).unref();
  }

  private summary(): void {
    if (this.suppressed === 0) return;
    this.log.info({ event: 'found suppressed', count: this.suppressed }, `${this.suppressed} more failures found (not logged one by one)`);
    this.suppressed = 0;
  }
}
