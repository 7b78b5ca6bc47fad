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
  /** @returns failures completed by this line (usually zero or one); do not modify the array */
  feed(line: string): readonly FailureMatch[];
  /**
   * Feed several lines in order, as feed() would one by one, with one call.
   * @returns the failures they completed, in order
   */
  feedBatch(lines: readonly string[]): FailureMatch[];
  /**
   * Feed the lines of a chunk as feedBatch(text.split('\n')) would, without a string per line
   * (lines that match nothing are never cut out of the chunk).
   * @param text complete lines separated by '\n', no newline after the last
   * @param long how the caller cuts lines longer than its own limit (what feedBatch() would have
   *   been given for them)
   * @returns the failures they completed, in order
   */
  feedChunk(text: string, long?: LongLines): FailureMatch[];
}

/** How a source cuts over-long lines, for LineMatcher.feedChunk(). */
export interface LongLines {
  /** lines longer than this many UTF-16 units go through cut() */
  readonly longerThan: number;
  /**
   * @param line a whole line of the chunk
   * @returns the line as the source delivers it
   */
  cut(line: string): string;
}

/** A loaded, compiled filter. */
export interface Filter {
  readonly name: string;
  /** A fresh matcher; use one per followed file or journal. */
  createMatcher(): LineMatcher;
}
