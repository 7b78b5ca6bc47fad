import type { CountedFailure } from '../common/scripts/index.js';

/**
 * What the aggregator tells about each call of the counting script, for the notifications'
 * matched-line record and the metrics. Called once per call (up to 2,000 failures), never per failure.
 */
export interface CountObserver {
  /** Before the call is sent (on the same connection, so what is written here precedes its decisions). */
  before(failures: readonly CountedFailure[]): void;
  /** After it returned: the bans it made and how long it took, in seconds. */
  after(failures: readonly CountedFailure[], bans: ReadonlyArray<{ jail: string }>, seconds: number): void;
}
