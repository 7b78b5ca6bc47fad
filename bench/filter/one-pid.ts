/**
 * One busy sshd pid against many: N failure lines that all share one `<F-MLFID>` (one pid, a new
 * user name on every line, as a client cycling through a user list on one connection) beside the
 * same N lines with a pid each. The per-connection state is bounded, so the two take about as long.
 *
 *   node dist/bench/filter/one-pid.js [--lines N] [--rounds R] [DIST ...]
 *
 * DIST is a build root holding common/filter/index.js (default: this tree's dist); several are
 * measured in turn, in one process, with this tree's filter.d. Prints the best CPU time of R
 * rounds for each log and build.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinFilterDir } from '../../common/filter/index.js';
import { enableBacktrackingFallback } from '../../common/filter/regex-safety.js';

// Production's regex safety net (a process-wide V8 flag the entry point sets).
enableBacktrackingFallback();

interface Engine {
  loadFilter(name: string, options: { dirs: string[] }): { createMatcher(): { feedBatch(lines: readonly string[]): readonly unknown[] } };
}

const args = process.argv.slice(2);
const take = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(args.splice(i, 2)[1]);
  if (!(v > 0)) throw new Error(`${name} needs a positive number`);
  return v;
};
const LINES = take('--lines', 40_000);
const ROUNDS = take('--rounds', 5);
const dists = args.length > 0 ? args : [resolve(new URL('../..', import.meta.url).pathname)];

const line = (i: number, pid: number): string =>
  `Nov 26 09:${String(Math.floor(i / 60_000) % 60).padStart(2, '0')}:${String(Math.floor(i / 1000) % 60).padStart(2, '0')} h1 sshd[${pid}]: Failed password for invalid user u${i} from 203.0.113.${(i % 200) + 1} port ${1024 + (i % 60_000)} ssh2`;
const logs: Array<[string, string[]]> = [
  ['one pid', Array.from({ length: LINES }, (_, i) => line(i, 31_337))],
  ['a pid per line', Array.from({ length: LINES }, (_, i) => line(i, 1000 + i))],
];

const filterDir = builtinFilterDir();
for (const d of dists) {
  const engine = (await import(pathToFileURL(resolve(d, 'common/filter/index.js')).href)) as Engine;
  const row: string[] = [];
  for (const [name, lines] of logs) {
    let best = Infinity;
    let failures = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const m = engine.loadFilter('sshd', { dirs: [filterDir] }).createMatcher();
      const c0 = process.cpuUsage();
      // chunks of 2,400 lines, about one 256 KiB read
      failures = 0;
      for (let i = 0; i < lines.length; i += 2400) failures += m.feedBatch(lines.slice(i, i + 2400)).length;
      const c = process.cpuUsage(c0);
      best = Math.min(best, (c.user + c.system) / 1000);
    }
    row.push(`${name}: ${best.toFixed(0)} ms (${failures} failures)`);
  }
  console.log(`${d}: ${LINES.toLocaleString('en')} lines, best CPU of ${ROUNDS}: ${row.join('; ')}`);
}
