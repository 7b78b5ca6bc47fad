import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterKeys } from '../../common/protocol/keys.js';
import type { CountedFailure } from '../../common/scripts/index.js';
import { commandName, defineScripts } from '../../common/scripts/loader.js';
import { MAX_MATCHED_LINES } from '../../common/config/notify-actions.js';

/** One failure as the notifications show it. */
export interface MatchEntry {
  readonly time: number;
  readonly host: string;
  readonly line: string;
}

/** How much one jail keeps. */
export interface MatchBounds {
  /** Entries per address. */
  readonly perAddr: number;
  /** Addresses per jail. */
  readonly addrs: number;
  /** Expiry after the last update, ms. */
  readonly ttlMs: number;
}

/** Lines kept per jail at most (each cut to {@link LINE_CHARS}): ~25 MB of Redis per notifying jail at worst, ~7 MB with lines of typical length. */
const LINES_PER_JAIL = 50_000;
const LINE_CHARS = 512;

/**
 * The bounds for a jail that notifies: enough entries per address for the failures that ban it
 * (maxretry) and for the lines its actions show, and as many addresses as the jail's line budget allows.
 */
export function matchBounds(maxretry: number, linesWanted: number, findtimeMs: number): MatchBounds {
  const perAddr = Math.max(1, Math.min(MAX_MATCHED_LINES, Math.max(maxretry, linesWanted)));
  // findtime plus a margin: a coordinator that takes over a crashed one's notifications reads them later.
  return { perAddr, addrs: Math.max(100, Math.floor(LINES_PER_JAIL / perAddr)), ttlMs: findtimeMs + 600_000 };
}

/**
 * Writes the matched-line record of the jails that notify (recordMatches script), from the
 * failures a coordinator is about to count. It is sent on the counting connection just before the
 * counting script, so the record of a ban is in Redis before its decision is.
 */
export class MatchRecorder {
  private jails = new Map<string, MatchBounds>();
  /** Addresses dropped to stay within the bounds since start. */
  dropped = 0;

  constructor(private readonly redis: Redis, private readonly keys: ClusterKeys, private readonly log: Logger, private readonly clock: () => number) {
    defineScripts(redis);
  }

  /** Replace the jails that keep a record (start, reload). */
  setJails(jails: ReadonlyMap<string, MatchBounds>): void {
    this.jails = new Map(jails);
  }

  /** True when some jail keeps a record (otherwise record() is never worth calling). */
  get active(): boolean {
    return this.jails.size > 0;
  }

  /**
   * Record the matched lines of a batch. Never awaited by the counting path: a failure here
   * costs a mail its lines, never a ban.
   */
  record(failures: readonly CountedFailure[]): void {
    if (this.jails.size === 0) return;
    const byJail = new Map<string, Map<string, string[]>>();
    for (const f of failures) {
      if (!this.jails.has(f.jail)) continue;
      let addrs = byJail.get(f.jail);
      if (!addrs) byJail.set(f.jail, (addrs = new Map()));
      const line = f.line ?? '';
      const entry = JSON.stringify([Math.round(f.time), f.host, line.length > LINE_CHARS ? line.slice(0, LINE_CHARS) : line]);
      const list = addrs.get(f.addr);
      if (list) list.push(entry);
      else addrs.set(f.addr, [entry]);
    }
    if (byJail.size === 0) return;
    const args: Array<string | number> = [`${this.keys.matchesPrefix}${[...byJail.keys()][0]!}`, this.keys.matchesPrefix, this.clock(), byJail.size];
    for (const [jail, addrs] of byJail) {
      const b = this.jails.get(jail)!;
      args.push(jail, b.ttlMs, b.perAddr, b.addrs, addrs.size);
      for (const [addr, entries] of addrs) {
        const kept = entries.length > b.perAddr ? entries.slice(-b.perAddr) : entries;
        args.push(addr, kept.length, ...kept);
      }
    }
    const call = (this.redis as unknown as Record<string, (...a: Array<string | number>) => Promise<number>>)[commandName('recordMatches')]!;
    call.apply(this.redis, args).then(
      (n) => { this.dropped += Number(n); },
      (err: Error) => this.log.warn({ err: err.message }, 'recording matched lines for notifications failed; those mails go without them'),
    );
  }

  /**
   * The record of one address, oldest first.
   * @param redis any connection
   */
  static async read(redis: Redis, keys: ClusterKeys, jail: string, addr: string): Promise<MatchEntry[]> {
    const raw = await redis.lrange(keys.matches(jail, addr), 0, -1);
    const out: MatchEntry[] = [];
    for (const r of raw) {
      // Written by a coordinator, but Redis is shared: validate what comes back.
      try {
        const v = JSON.parse(r) as unknown;
        if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string' && typeof v[2] === 'string') {
          out.push({ time: v[0], host: v[1].slice(0, 253), line: v[2].slice(0, LINE_CHARS) });
        }
      } catch {
        // a damaged entry is left out of the mail
      }
    }
    return out;
  }
}
