/**
 * The multi-line state of one matcher: fail2ban's `mlfidCache`, one entry per `<F-MLFID>`
 * (an sshd connection), bounded in count and in log time, holding the groups, users and lines a
 * connection's next failure reports.
 */
import { detach, type Plan, type Slots } from './match-plan.js';

/**
 * Connections (`<F-MLFID>` values) remembered at once, and for how long after a connection's
 * first line, in log time: fail2ban's `mlfidCache` (`Utils.Cache(maxCount=100, maxTime=5*60)`).
 * Log time, not the clock, so that a backlog or a replayed log forgets what a live one would: an
 * sshd pid is reused by a later, unrelated connection.
 */
export const MLFID_CACHE_SIZE = 100;
/** See MLFID_CACHE_SIZE (milliseconds of log time). */
export const MLFID_CACHE_TIME = 5 * 60_000;
/**
 * Distinct users kept per connection: all that matters is whether more than one was tried (a
 * helper line then counts), and an unbounded list made one busy pid quadratic.
 */
const MLF_MAX_USERS = 2;
/** Lines of one connection kept for the text of its next failure. */
const MLF_MAX_LINES = 20;

export interface MlfEntry {
  groups: Slots;
  /** users tried on this connection (usually one; at most MLF_MAX_USERS are kept) */
  users: string[];
  pending: boolean;
  lines: string[];
  /** log time (epoch ms) from which the entry is forgotten; Infinity when its first line had no time */
  readonly expires: number;
}

/** What a matcher's multi-line state holds (see DetailedMatcher.multiLineState()). */
export interface MultiLineState {
  /** connections remembered */
  readonly connections: number;
  /** the most users any one connection keeps */
  readonly maxUsers: number;
  /** the most lines any one connection keeps for its next failure's text */
  readonly maxLines: number;
}

/** The connections one matcher remembers (the rules of a merge are on merge()). */
export class MultiLineCache {
  private readonly entries = new Map<string, MlfEntry>();
  private evictCursor: MapIterator<[string, MlfEntry]> | undefined;

  constructor(private readonly plan: Plan) {}

  /** @returns what the cache holds now (for tests and diagnostics; walks every entry) */
  state(): MultiLineState {
    let maxUsers = 0;
    let maxLines = 0;
    for (const e of this.entries.values()) {
      maxUsers = Math.max(maxUsers, e.users.length);
      maxLines = Math.max(maxLines, e.lines.length);
    }
    return { connections: this.entries.size, maxUsers, maxLines };
  }

  /**
   * Make room for a connection as fail2ban's cache does: drop the oldest, and go on while what was
   * dropped had expired anyway (entries are in order of their first line, so of expiry).
   * A Map iterates in insertion order, but a fresh iterator would walk over every slot deleted
   * since the table was last rebuilt (up to its capacity, each time); one iterator kept across
   * calls walks over each slot once.
   * @param time log time of the current line, if known
   */
  private evictOldest(time: number | undefined): void {
    for (;;) {
      let r = this.evictCursor?.next();
      if (!r || r.done) {
        this.evictCursor = this.entries.entries();
        r = this.evictCursor.next();
      }
      if (r.done) return;
      this.entries.delete(r.value[0]);
      if (time === undefined || r.value[1].expires > time) return;
    }
  }

  /**
   * Merge a line into its multi-line failure (same `<F-MLFID>`, e.g. a connection), following
   * fail2ban: `<F-NOFAIL>` lines wait for a real failure, `<F-MLFFORGET>` ends the connection,
   * `<F-MLFGAINED>` (a successful login) clears what was pending. Unlike fail2ban, an address on
   * the line replaces the connection's (fail2ban keeps an IPv4 address over a later line's IPv6
   * one): the connection state only supplies an address to lines that carry none.
   * @param time log time of the line, if known (entries expire in log time)
   */
  merge(mlfid: string, fail: Slots, text: string, time: number | undefined): MlfEntry {
    const S = this.plan.schema;
    const gained = fail[S.mlfgained] !== undefined;
    if (gained && fail[S.nofail] === undefined) fail[S.nofail] = fail[S.mlfgained];
    const forget = fail[S.mlfforget] !== undefined;
    fail[S.mlfforget] = undefined;
    const user = fail[S.user];
    let entry = this.entries.get(mlfid);
    if (entry !== undefined && time !== undefined && entry.expires <= time) {
      // A pid seen more than the cache's time ago: most likely another connection now.
      this.entries.delete(mlfid);
      entry = undefined;
    }
    if (entry) {
      const users = entry.users;
      // An empty user is no user (fail2ban's `if user:`): "Invalid user  from ..." names none.
      if (user && users.length < MLF_MAX_USERS && !users.includes(user)) users.push(this.plan.headSlot[S.user] ? detach(user) : user);
      const g = entry.groups;
      g[S.nofail] = undefined;
      g[S.mlfgained] = undefined;
      if (gained) entry.pending = false;
      if (fail[S.ip4] !== undefined || fail[S.ip6] !== undefined || fail[S.dns] !== undefined) {
        // The line's own address wins, whatever its family: the one remembered may be an earlier
        // connection's that had the same pid.
        g[S.ip4] = undefined;
        g[S.ip6] = undefined;
        g[S.dns] = undefined;
        g[S.cidr] = undefined;
      }
      const fromHead = this.plan.headSlot;
      const idSlot = S.mlfid;
      for (let i = 0; i < fail.length; i++) {
        const v = fail[i];
        // The entry was found by its connection id, so that value is there already (comparing
        // it, a slice of the caller's line, is a slow string comparison in V8).
        if (v === undefined || i === idSlot) continue;
        // Head values are slices of the caller's line or chunk.
        if (fromHead[i]) {
          if (g[i] !== v) g[i] = detach(v);
        } else g[i] = v;
      }
      // A connection can go on for long; what its next failure reports is kept short.
      if (entry.lines.length >= MLF_MAX_LINES) entry.lines.shift();
      entry.lines.push(text);
      if (forget) this.entries.delete(mlfid);
    } else {
      // What the cache keeps must not pin the source's chunk: the text and the failregex groups
      // come from the matcher's own copy of the line, the head groups are copied here.
      const fromHead = this.plan.headSlot;
      const kept = fail;
      for (let i = 0; i < kept.length; i++) if (fromHead[i] && kept[i] !== undefined) kept[i] = detach(kept[i]!);
      entry = { groups: kept, users: user ? [kept[S.user]!] : [], pending: false, lines: [text], expires: time === undefined ? Infinity : time + MLFID_CACHE_TIME };
      if (!forget) {
        if (this.entries.size >= MLFID_CACHE_SIZE) this.evictOldest(time);
        this.entries.set(kept[S.mlfid]!, entry);
      }
    }
    if (entry.pending || entry.users.length > 1) {
      // Failures were pending, or several users were tried: the helper line counts after all.
      entry.groups[S.nofail] = undefined;
      entry.groups[S.mlfgained] = undefined;
      entry.pending = false;
    }
    return entry;
  }
}
