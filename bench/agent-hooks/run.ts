/**
 * What the agent's metrics and `[jail] Found` log cost on its hot path, beside the filter they
 * sit next to, in the same run: the sshd filter fed chunk by chunk (as agent/main.ts does) alone,
 * then with AgentMetrics.lines() per chunk and FoundLog.found() per failure (logging to
 * /dev/null at info, rate-limited as in the agent). Rounds alternate, medians are printed.
 *   node dist/bench/agent-hooks/run.js [lines=300000] [rounds=5]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, destination } from 'pino';
import { builtinFilterDir, loadFilter } from '../../common/filter/index.js';
import { writeAuthLog } from '../../test/helpers/auth-log.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { FoundLog } from '../../agent/found-log.js';
import { enableBacktrackingFallback } from '../../common/filter/regex-safety.js';

// Production's regex safety net (a process-wide V8 flag the entry point sets).
enableBacktrackingFallback();

const LINES = Number(process.argv[2] ?? 300_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const CHUNK = 64 * 1024;

const work = mkdtempSync(join(tmpdir(), 'fleetban-bench-hooks-'));
const path = join(work, 'auth.log');
writeAuthLog(path, LINES, 1);
const text = readFileSync(path, 'utf8');
rmSync(work, { recursive: true, force: true });
const chunks: string[] = [];
for (let i = 0; i < text.length;) {
  let end = text.lastIndexOf('\n', i + CHUNK);
  if (end <= i) end = text.length;
  chunks.push(text.slice(i, end));
  i = end + 1;
}
const filter = loadFilter('sshd', { dirs: [builtinFilterDir()] });
const metrics = new AgentMetrics({ enforcer: {}, reporter: { stats: {} }, follower: {}, keys: {}, commands: {}, connections: [] } as never);
const found = new FoundLog(pino({ level: 'info' }, destination({ dest: '/dev/null', sync: true })));

function round(withHooks: boolean): { ms: number; failures: number } {
  const matcher = filter.createMatcher();
  let failures = 0;
  const t = performance.now();
  for (const chunk of chunks) {
    const out = matcher.feedChunk(chunk);
    failures += out.length;
    if (withHooks) {
      metrics.lines('sshd', { text: chunk, longerThan: Infinity, cut: (l) => l }, out.length);
      for (const m of out) found.found('sshd', m.addr, path);
    }
  }
  return { ms: performance.now() - t, failures };
}

const plain: number[] = [];
const hooked: number[] = [];
let failures = 0;
round(false); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  // ABBA order, so whatever one round leaves behind (garbage, a cold cache) falls on both alike.
  if (r % 2 === 0) plain.push(round(false).ms);
  const h = round(true);
  hooked.push(h.ms);
  failures = h.failures;
  if (r % 2 === 1) plain.push(round(false).ms);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p = median(plain);
const h = median(hooked);
console.log(`${LINES} lines in ${chunks.length} chunks, ${failures} failures, ${ROUNDS} rounds`);
console.log(`filter alone:            ${p.toFixed(1)} ms median (${Math.round(LINES / (p / 1000))} lines/s)`);
console.log(`filter + metrics + Found: ${h.toFixed(1)} ms median (${Math.round(LINES / (h / 1000))} lines/s): ${(((h - p) / p) * 100).toFixed(1)} % more`);
