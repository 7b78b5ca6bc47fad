/**
 * The one interface every log source implements (files, systemd journal). Lines are delivered in
 * batches so a burst costs one callback and one filter loop, not one event per line.
 */
export interface LogSource {
  /** Human name for logs: a path or `journal`. */
  readonly name: string;
  /**
   * Start delivering lines. Resolves once following has begun.
   * @param onLines called with complete lines (no trailing newline), in order
   */
  start(onLines: (lines: LineBatch, origin: string) => void): Promise<void>;
  /** Stop following and release files and processes; positions are saved where the source keeps them. */
  stop(): Promise<void>;
}

/**
 * Complete lines as the one string a source decoded them into. A consumer that can walk the
 * lines in place (LineMatcher.feedChunk) skips a string per line; `linesOf()` gives the lines.
 */
export interface LineChunk {
  /** the lines, separated by '\n', with no newline after the last one */
  readonly text: string;
  /** lines longer than this (UTF-16 units) are delivered as cut() returns them */
  readonly longerThan: number;
  /**
   * @param line a line of `text` longer than `longerThan`
   * @returns the line as the source delivers it (cut to the source's byte limit)
   */
  cut(line: string): string;
}

/** What a source hands over per call: the lines, or a chunk holding them. */
export type LineBatch = string[] | LineChunk;

/**
 * @param batch what a source delivered
 * @returns its lines, one string each
 */
export function linesOf(batch: LineBatch): string[] {
  if (Array.isArray(batch)) return batch;
  const lines = batch.text.split('\n');
  for (let i = 0; i < lines.length; i++) if (lines[i]!.length > batch.longerThan) lines[i] = batch.cut(lines[i]!);
  return lines;
}
