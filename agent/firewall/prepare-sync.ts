import type { Logger } from '../../common/log.js';
import type { FirewallBan } from './backend.js';
import type { BanLedger } from './ban-ledger.js';
import { banKey, type CheckedBan } from './jail-rules.js';
import { outlasts } from './pending-changes.js';

/** What {@link prepareSync} needs besides the bans. */
export interface SyncOptions {
  /** Validates one ban for the backend (address, expiry, known jail); a throw rejects that ban only. */
  readonly check: (ban: FirewallBan) => CheckedBan;
  /** Epoch ms the sync is built at; bans ending by then are dropped. */
  readonly now: number;
  /** Where rejected bans are reported. */
  readonly log: Logger;
  /** The per-host cap and its warning; without a ledger nothing is capped (dry-run). */
  readonly ledger?: BanLedger;
  /**
   * `summary` (default): one warning with the count and five examples, so a snapshot full of bad
   * records cannot flood the log; `each`: one warning per rejected ban.
   */
  readonly rejectedLog?: 'summary' | 'each';
}

/**
 * The bans a sync should leave on the host: every ban checked, expired ones dropped, of several
 * bans of one (jail, address) the longest, and at most the cap (the first ones given are kept).
 * An invalid ban is logged and skipped rather than thrown, so one bad record cannot keep a whole
 * snapshot out of the kernel.
 * @param bans the snapshot handed to sync()
 * @param options see {@link SyncOptions}
 * @returns `[banKey, ban]` pairs in the order the bans were given
 */
export function prepareSync(bans: readonly FirewallBan[], options: SyncOptions): Array<[string, CheckedBan]> {
  const { check, now, log, ledger } = options;
  const each = options.rejectedLog === 'each';
  const wanted = new Map<string, CheckedBan>();
  const rejected: string[] = [];
  for (const b of bans) {
    let c: CheckedBan;
    try {
      c = check(b);
    } catch (err) {
      if (each) log.warn({ jail: b.jail, addr: b.addr, err: (err as Error).message }, 'sync skipped an invalid ban');
      else rejected.push(`${b.jail} ${b.addr}: ${(err as Error).message}`);
      continue;
    }
    if (c.until !== -1 && c.until <= now) continue;
    const key = banKey(c.jail, c.target.text);
    const prev = wanted.get(key);
    if (!prev || outlasts(c.until, prev.until)) wanted.set(key, c);
  }
  if (rejected.length) log.warn({ rejected: rejected.length, examples: rejected.slice(0, 5) }, 'sync skipped invalid bans');
  const list = [...wanted.entries()];
  if (!ledger || list.length <= ledger.maxBans) return list;
  ledger.warnCap(list.length - ledger.maxBans, now);
  return list.slice(0, ledger.maxBans);
}
