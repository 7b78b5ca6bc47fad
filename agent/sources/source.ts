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
  start(onLines: (lines: string[], origin: string) => void): Promise<void>;
  /** Stop following and release files and processes; positions are saved where the source keeps them. */
  stop(): Promise<void>;
}
