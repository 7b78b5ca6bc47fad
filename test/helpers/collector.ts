import { waitUntil } from './wait.js';
import { linesOf, type LineBatch, type LogSource } from '../../agent/sources/source.js';

/** Records every batch a source delivers, for assertions on order, duplicates and batching. */
export class Collector {
  readonly lines: string[] = [];
  readonly origins: string[] = [];
  /** every batch as delivered (lines or a chunk) */
  readonly raw: LineBatch[] = [];
  batches = 0;

  /** The callback to pass to `LogSource.start`. */
  readonly onLines = (batch: LineBatch, origin: string): void => {
    this.batches++;
    this.raw.push(batch);
    for (const l of linesOf(batch)) {
      this.lines.push(l);
      this.origins.push(origin);
    }
  };

  /** Start `source` with this collector. */
  start(source: LogSource): Promise<void> {
    return source.start(this.onLines);
  }

  /** Lines delivered with the given origin, in order. */
  from(origin: string): string[] {
    return this.lines.filter((_, i) => this.origins[i] === origin);
  }
}

/**
 * Poll `cond` until it holds or the deadline passes.
 * @param what described in the failure message
 */
export function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  return waitUntil(cond, timeoutMs, what, 10);
}

/** Let a few poll/watch cycles pass, to prove that nothing more arrives. */
export function settle(ms = 300): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `n` numbered lines with a prefix, e.g. `A-0` ... */
export function numbered(prefix: string, n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${from + i} sshd[42]: Failed password for root from 192.0.2.${(from + i) % 250} port 22`);
}
