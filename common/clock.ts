/**
 * Wall clock in epoch milliseconds. Tests pin it with FLEETBAN_TEST_NOW (ISO-8601 or epoch ms),
 * so log lines without a year and findtime windows give the same answer on every run.
 */
export function now(): number {
  return pinned ?? Date.now();
}

const pinnedEnv = process.env.FLEETBAN_TEST_NOW;
let pinned: number | undefined = pinnedEnv ? parsePinned(pinnedEnv) : undefined;

function parsePinned(value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new Error(`FLEETBAN_TEST_NOW is not a time: ${value}`);
  return ms;
}

/** Pin (or with undefined, unpin) the clock for tests in this process. */
export function pinClock(ms: number | undefined): void {
  pinned = ms;
}
