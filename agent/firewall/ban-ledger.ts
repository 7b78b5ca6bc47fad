import { splitBanKey } from './jail-rules.js';
import type { Logger } from '../../common/log.js';

/** Default per-host cap on banned elements (all jails, both families). */
export const DEFAULT_MAX_BANS = 131_072;

/**
 * What a backend believes the kernel holds, (jail, address) key to expiry. It enforces the per-host
 * cap (`maxBans`) without asking the kernel on every commit, and lets backends without kernel
 * timeouts (iptables) know what to expire.
 */
export class BanLedger {
  private readonly entries = new Map<string, number>();
  private warnedAt = 0;

  /**
   * @param maxBans most elements this host will hold across all jails
   * @param log where the cap warning goes
   * @param kernelExpires true when the kernel removes expired elements itself (set timeouts);
   *   false when the backend's own sweeper must still delete their rules (iptables)
   */
  constructor(
    readonly maxBans: number,
    private readonly log: Logger,
    private readonly kernelExpires = true,
  ) {
    if (!Number.isInteger(maxBans) || maxBans < 1) throw new RangeError(`maxBans must be a positive integer, got ${maxBans}`);
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string, now: number): boolean {
    const until = this.entries.get(key);
    return until !== undefined && (until === -1 || until > now);
  }

  get(key: string): number | undefined {
    return this.entries.get(key);
  }

  set(key: string, until: number): void {
    this.entries.set(key, until);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  /**
   * Make the ledger hold exactly these entries: what a sync left in the kernel, or what the kernel
   * held when the backend started (so that bans of a previous run count toward the cap).
   */
  replaceAll(entries: Iterable<readonly [key: string, until: number]>): void {
    this.entries.clear();
    for (const [k, u] of entries) this.entries.set(k, u);
  }

  /** Forget every entry of the jails `drop` selects (jails no longer configured, or rebuilt). */
  forgetJails(drop: (jail: string) => boolean): void {
    for (const k of [...this.entries.keys()]) if (drop(splitBanKey(k).jail)) this.entries.delete(k);
  }

  /**
   * Room left under the cap. Expired entries are dropped first, but only when the cap is near:
   * scanning 100,000 entries on every commit would cost more than the commit. Where the kernel
   * does not expire them, an expired entry still stands for a rule the sweeper has to delete, so
   * forgetting it here would leave that rule behind (and a later ban would write it twice).
   */
  room(now: number): number {
    if (this.kernelExpires && this.entries.size >= this.maxBans) this.dropExpired(now);
    return this.maxBans - this.entries.size;
  }

  /** Remove entries whose expiry has passed. @returns the removed keys */
  dropExpired(now: number): string[] {
    const gone: string[] = [];
    for (const [k, until] of this.entries) {
      if (until !== -1 && until <= now) {
        this.entries.delete(k);
        gone.push(k);
      }
    }
    return gone;
  }

  /** Log that bans were refused at the cap; at most once a minute so a flood does not flood the log. */
  warnCap(refused: number, now: number): void {
    if (refused === 0 || now - this.warnedAt < 60_000) return;
    this.warnedAt = now;
    this.log.warn({ maxBans: this.maxBans, refused }, 'firewall ban cap reached: new bans refused until others expire');
  }
}
