import type { BanLedger } from './ban-ledger.js';

/**
 * Room under the per-host cap while one commit is built. It is opened after the commit's unbans
 * were counted, so the places they free serve the bans of the same batch; each ban new to the
 * host then takes a place or is refused, and the refusals are logged once, by {@link finish}.
 */
export class CapBudget {
  private room: number;
  private refused = 0;

  /**
   * @param ledger what the host holds, and the cap
   * @param now epoch ms of the commit
   * @param freed how many held bans the commit's unbans remove
   */
  constructor(
    private readonly ledger: BanLedger,
    private readonly now: number,
    freed: number,
  ) {
    this.room = ledger.room(now) + freed;
  }

  /** @returns true when a ban new to the host fits under the cap (and counts it), false when it is refused */
  take(): boolean {
    if (this.room <= 0) {
      this.refused++;
      return false;
    }
    this.room--;
    return true;
  }

  /** Warn about refused bans (rate-limited by the ledger). */
  finish(): void {
    this.ledger.warnCap(this.refused, this.now);
  }
}
