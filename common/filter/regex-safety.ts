import v8 from 'node:v8';

let enabled = false;

/**
 * A pathological line must not hang an agent. V8 can switch a regex that backtracks excessively
 * to its linear-time engine; that covers every pattern without lookaround or backreferences.
 * Patterns that need backtracking and nest unbounded quantifiers are refused when the filter is
 * loaded (see filter-loader.ts), and lines are capped in length, which bounds polynomial cases.
 *
 * The switch is a process-wide V8 flag, so it is the entry point's decision (cli/main.ts, and the
 * benchmarks and tests that run filters themselves), not a side effect of importing a module.
 */
export function enableBacktrackingFallback(): void {
  if (enabled) return;
  v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
  enabled = true;
}
