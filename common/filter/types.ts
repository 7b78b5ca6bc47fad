/**
 * What the rest of fleetban needs from a filter. The engine behind it (fail2ban's filter.d
 * language) lives in this folder; callers only see these types.
 */

/** A failure recognised in the log. */
export interface FailureMatch {
  /** Canonical IP address of the peer (never a hostname unless usedns allowed resolving it). */
  readonly addr: string;
  /** Time of the log line in epoch ms, or undefined when the line carried no date. */
  readonly time: number | undefined;
  readonly user?: string;
  /** The log line (or lines, for multi-line failures) that matched. */
  readonly text: string;
}

/** Stateful matcher for one log stream (multi-line filters keep a buffer per stream). */
export interface LineMatcher {
  /** @returns failures completed by this line (usually zero or one) */
  feed(line: string): readonly FailureMatch[];
}

/** A loaded, compiled filter. */
export interface Filter {
  readonly name: string;
  /** A fresh matcher; use one per followed file or journal. */
  createMatcher(): LineMatcher;
}
