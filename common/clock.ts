import { InvalidInputError } from './errors.js';

/*
 * Which clock, where (the rule for newcomers):
 * - Decisions and liveness use the cluster's clock, Redis' TIME: coordinators through
 *   coordinator/redis-clock.ts, heartbeats and `reload` by Redis' own stamps. Never compare one
 *   host's Date.now() with another host's.
 * - now() (below) is this host's wall clock for what the host itself dates: log lines, a
 *   failure's time and age, local expiry of bans it holds. Tests pin or skew it.
 * - Date.now() is for durations and timers inside one process (backoff, rate limits, "took N ms"),
 *   where only differences on the same clock matter.
 */

/**
 * Wall clock in epoch milliseconds. Tests pin it with FLEETBAN_TEST_NOW (ISO-8601 or epoch ms),
 * so log lines without a year and findtime windows give the same answer on every run.
 * FLEETBAN_CLOCK_SKEW_MS (test only) shifts a running clock instead of stopping it: a process
 * then behaves like a host whose clock is that far off, which is how clock-skew tests run
 * several "hosts" on one machine.
 */
export function now(): number {
  return pinned ?? Date.now() + skew;
}

const skew = parseSkew(process.env.FLEETBAN_CLOCK_SKEW_MS);

function parseSkew(value: string | undefined): number {
  if (value === undefined || value === '') return 0;
  const ms = Number(value);
  if (!Number.isSafeInteger(ms)) throw new InvalidInputError(`FLEETBAN_CLOCK_SKEW_MS is not a whole number of milliseconds: ${value}`);
  return ms;
}

const pinnedEnv = process.env.FLEETBAN_TEST_NOW;
let pinned: number | undefined = pinnedEnv ? parsePinned(pinnedEnv) : undefined;

function parsePinned(value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new InvalidInputError(`FLEETBAN_TEST_NOW is not a time: ${value}`);
  return ms;
}

/** Pin (or with undefined, unpin) the clock for tests in this process. */
export function pinClock(ms: number | undefined): void {
  pinned = ms;
}
