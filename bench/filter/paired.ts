/**
 * Paired comparison of two builds of the filter engine in one process, for changes smaller than
 * the noise of separate runs on a shared machine (CPU time per run varies up to 50% there).
 *
 *   node --max-semi-space-size=4 dist/bench/filter/paired.js LOG DIST_A [DIST_B ...] [--rounds N]
 *
 * DIST_x is a build root holding common/filter/index.js (e.g. this tree's dist, and a copy of an
 * older dist with a node_modules symlink next to it). LOG is read into memory once and cut into
 * chunks of 2,400 lines (about one 256 KiB read); each round feeds every chunk through a fresh
 * sshd matcher's feedBatch() for each build in turn, and the best CPU time per build is printed.
 * Keep LOG small (300,000 lines): all its lines stay in memory.
 */
import { readFileSync } from 'node:fs';
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
const ri = args.indexOf('--rounds');
const rounds = ri >= 0 ? Number(args.splice(ri, 2)[1]) : 7;
const [log, ...dists] = args;
if (!log || dists.length === 0 || !(rounds > 0)) {
  console.error('usage: paired.js LOG DIST_A [DIST_B ...] [--rounds N]');
  process.exit(2);
}
const text = readFileSync(log, 'utf8');
const chunks: string[][] = [];
let cur: string[] = [];
let start = 0;
for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
  cur.push(text.slice(start, nl));
  start = nl + 1;
  if (cur.length === 2400) {
    chunks.push(cur);
    cur = [];
  }
}
if (cur.length) chunks.push(cur);
const lines = chunks.reduce((n, c) => n + c.length, 0);

const engines: Engine[] = [];
for (const d of dists) engines.push((await import(pathToFileURL(resolve(d, 'common/filter/index.js')).href)) as Engine);
// Every build reads this tree's filter files, so only the engine differs.
const filterDir = builtinFilterDir();
const best = dists.map(() => Infinity);
const failures = dists.map(() => 0);
for (let r = 0; r < rounds; r++) {
  engines.forEach((engine, k) => {
    const m = engine.loadFilter('sshd', { dirs: [filterDir] }).createMatcher();
    const c0 = process.cpuUsage();
    let f = 0;
    for (const c of chunks) f += m.feedBatch(c).length;
    const c1 = process.cpuUsage(c0);
    best[k] = Math.min(best[k]!, (c1.user + c1.system) / 1000);
    failures[k] = f;
  });
}
dists.forEach((d, k) => {
  const ms = best[k]!;
  console.log(`${d}: best CPU ${ms.toFixed(0)} ms of ${rounds}, ${Math.round((lines / ms) * 1000).toLocaleString('en')} lines/s, ${Math.round((ms * 1e6) / lines)} ns/line, ${failures[k]} failures`);
});
