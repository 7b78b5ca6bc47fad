/**
 * Runs tasks one at a time, in the order they were queued: each starts after every task queued
 * before it has settled, whether that one succeeded or failed (a failed firewall commit must not
 * stop the next one from running). The agent's enforcer and every kernel backend keep one.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** @returns the task's own result (or rejection) */
  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
