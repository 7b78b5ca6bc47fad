/**
 * Filter throughput: fleetban's sshd filter against fail2ban-regex (Debian's fail2ban, sshd
 * filter) and `grep -c` on the same generated auth.log, plus whether both find the same failures.
 *
 *   node dist/bench/filter/run.js [--lines N] [--seed S] [--runs R] [--no-fail2ban] [--keep]
 *
 * --lines   size of the generated log (default 1,000,000)
 * --runs    fleetban timing runs (default 5); best and median are printed
 * --keep    keep the generated log and the outputs (their directory is printed)
 * Each fleetban run is its own process (bench/filter/fleetban-run.ts): it reads the file in
 * 256 KiB chunks and hands each chunk's decoded lines to matcher.feedChunk(), as the agent's file
 * source and agent/main.ts do; its peak RSS is printed.
 * fail2ban-regex runs twice: as shipped (timed), and with its caches on the log's clock
 * (fail2ban-regex-logtime.py), which is how a live fail2ban sees a log and how fleetban counts;
 * the failures of both are compared with fleetban's.
 */
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { obtainFail2ban } from '../../test/compat/fail2ban-package.js';
import { writeAuthLog } from '../../test/helpers/auth-log.js';
import { compareFailures, explainDifferences, parseFail2banOut, type Agreement } from './agreement.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}

const LINES = option('--lines', 1_000_000);
const SEED = option('--seed', 20261126);
const RUNS = option('--runs', 5);
const WITH_F2B = !process.argv.includes('--no-fail2ban');
const KEEP = process.argv.includes('--keep');
const CHILD = fileURLToPath(new URL('./fleetban-run.js', import.meta.url));
// Not compiled: run from the source tree (dist/bench/filter -> bench/filter).
const F2B_LOGTIME = fileURLToPath(new URL('../../../bench/filter/fail2ban-regex-logtime.py', import.meta.url));
// fail2ban-regex takes ~30 s per million lines here; anything far beyond means it is stuck.
const F2B_TIMEOUT_MS = 20 * 60_000;

interface RunResult {
  lines: number;
  failures: number;
  /** wall time of read + decode + match */
  ms: number;
  /** wall time inside the matcher only */
  filterMs: number;
  /** CPU time of the whole loop */
  cpuMs: number;
  maxRssMB: number;
}

const rate = (lines: number, ms: number): number => Math.round((lines / ms) * 1000);
const fmt = (n: number): string => n.toLocaleString('en');

async function fleetban(log: string, filter: string, extra: string[] = []): Promise<RunResult> {
  // Same V8 flag as bin/fleetban, which starts the agent: the RSS measured is the agent's.
  const r = await execa(process.execPath, ['--max-semi-space-size=4', CHILD, log, filter, ...extra], { timeout: 10 * 60_000 });
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as RunResult;
}

async function timedRuns(label: string, log: string, filter: string, extra: string[]): Promise<RunResult[]> {
  const runs: RunResult[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await fleetban(log, filter, extra);
    runs.push(r);
    console.log(
      `  ${label} run ${i + 1}: filter ${fmt(rate(r.lines, r.filterMs))} lines/s, read+decode+filter ${fmt(rate(r.lines, r.ms))} lines/s ` +
        `(${r.filterMs.toFixed(0)} / ${r.ms.toFixed(0)} ms wall, ${r.cpuMs.toFixed(0)} ms CPU, ${fmt(r.failures)} failures, peak RSS ${r.maxRssMB.toFixed(1)} MB)`,
    );
  }
  return runs;
}

interface Summary {
  /** filter only: best and median lines/s */
  best: number;
  median: number;
  /** read + decode + filter */
  e2eBest: number;
  e2eMedian: number;
  rss: number;
}

function summary(runs: RunResult[]): Summary {
  const pick = (f: (r: RunResult) => number): [number, number] => {
    const rates = runs.map((r) => rate(r.lines, f(r))).sort((a, b) => a - b);
    return [rates[rates.length - 1]!, rates[Math.floor(rates.length / 2)]!];
  };
  const [best, median] = pick((r) => r.filterMs);
  const [e2eBest, e2eMedian] = pick((r) => r.ms);
  return { best, median, e2eBest, e2eMedian, rss: Math.max(...runs.map((r) => r.maxRssMB)) };
}

function printAgreement(title: string, a: Agreement, left?: readonly string[], right?: readonly string[], reference?: readonly string[]): void {
  console.log(`${title}: ${fmt(a.left)} vs ${fmt(a.right)} failures, ${a.differences} differences`);
  if (left && right && a.differences > 0) {
    const e = explainDifferences(left, right, reference);
    const clock = reference ? `; fail2ban-regex's wall clock (gone on the log clock): ${e.clock}` : '';
    console.log(`    deliberate: the line's own address (docs/regex.md) ${e.ownAddress}${clock}; unexplained: ${e.unexplained}`);
    for (const x of e.examples) console.log(`    ${x}`);
    return;
  }
  for (const e of a.examples) console.log(`    ${e}`);
}

/** One fail2ban-regex run (python3 SCRIPT ...) writing its failures to `out`. */
async function fail2banRegex(script: string, python: string, log: string, filter: string, out: string): Promise<{ ms: number; error?: string }> {
  // --usedns=no: every peer in the log is an address; it guarantees no DNS query leaves the machine.
  const args = [script, '--usedns=no', '-o', '@@<ip>@@<matches>', log, filter];
  const t = performance.now();
  const r = await execa('python3', args, { env: { PYTHONPATH: python }, stdout: { file: out }, reject: false, timeout: F2B_TIMEOUT_MS });
  const ms = performance.now() - t;
  if (r.exitCode !== 0) return { ms, error: `${script} failed (exit ${r.exitCode}): ${String(r.stderr).trim().split('\n').slice(-3).join(' | ')}` };
  return { ms };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-filter-bench-'));
  try {
    const log = join(dir, 'auth.log');
    console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    let t = performance.now();
    const mix = writeAuthLog(log, LINES, SEED);
    const size = statSync(log).size;
    console.log(`generated ${fmt(LINES)} lines (${(size / 1e6).toFixed(1)} MB, seed ${SEED}) in ${(performance.now() - t).toFixed(0)} ms: ${log}`);
    const kinds = [...mix].sort((a, b) => b[1] - a[1]);
    for (const [k, n] of kinds) console.log(`  ${k.padEnd(30)} ${String(n).padStart(8)}  ${((100 * n) / LINES).toFixed(1).padStart(5)}%`);

    const floor = await fleetban(log, 'sshd', ['--read-only']);
    console.log(`read + decode only (harness floor): ${fmt(rate(floor.lines, floor.ms))} lines/s, peak RSS ${floor.maxRssMB.toFixed(1)} MB`);

    console.log(`fleetban, filter.d/sshd.conf (fleetban's), ${RUNS} runs:`);
    const ours = summary(await timedRuns('fleetban', log, 'sshd', []));
    const oursOut = join(dir, 'fleetban.out');
    await fleetban(log, 'sshd', ['--record', oursOut]);
    const oursFailures = readLines(oursOut);

    let f2bRate: number | undefined;
    let f2bNote = '';
    let debian: Summary | undefined;
    const agreements: Array<[string, Agreement, (readonly string[])?, (readonly string[])?, (readonly string[])?]> = [];
    const files = WITH_F2B ? await obtainFail2ban() : { missing: '--no-fail2ban' };
    if ('missing' in files) {
      f2bNote = `fail2ban-regex skipped: ${files.missing}`;
      console.log(f2bNote);
    } else {
      const debianSshd = join(files.filterDir, 'sshd.conf');
      console.log(`fleetban engine, Debian's sshd.conf, ${RUNS} runs:`);
      debian = summary(await timedRuns('fleetban+debian', log, debianSshd, []));
      const debianOut = join(dir, 'fleetban-debian.out');
      await fleetban(log, debianSshd, ['--record', debianOut]);

      const f2bOut = join(dir, 'fail2ban.out');
      console.log(`fail2ban-regex (python3 fail2ban-regex --usedns=no -o @@<ip>@@<matches> ... sshd.conf), one run:`);
      const plain = await fail2banRegex(files.fail2banRegex, files.python, log, debianSshd, f2bOut);
      if (plain.error) {
        f2bNote = plain.error;
        console.log(f2bNote);
      } else {
        f2bRate = rate(LINES, plain.ms);
        const f2b = parseFail2banOut(f2bOut);
        console.log(`  fail2ban-regex: ${fmt(f2bRate)} lines/s (${(plain.ms / 1000).toFixed(1)} s wall, ${fmt(f2b.length)} failures)`);
        const logOut = join(dir, 'fail2ban-logtime.out');
        console.log('fail2ban-regex with its caches on the log clock (fail2ban-regex-logtime.py), one run:');
        const logtime = await fail2banRegex(F2B_LOGTIME, files.python, log, debianSshd, logOut);
        const debianFailures = readLines(debianOut);
        let f2bLog: string[] | undefined;
        if (logtime.error) console.log(logtime.error);
        else {
          f2bLog = parseFail2banOut(logOut);
          console.log(`  fail2ban-regex, log clock: ${fmt(rate(LINES, logtime.ms))} lines/s (${(logtime.ms / 1000).toFixed(1)} s wall, ${fmt(f2bLog.length)} failures)`);
          agreements.push(['fleetban engine (Debian sshd.conf) vs fail2ban-regex on the log clock (Debian sshd.conf)', compareFailures(debianFailures, f2bLog, ['fleetban', 'fail2ban']), debianFailures, f2bLog]);
          agreements.push(['fail2ban-regex on the log clock vs fail2ban-regex as shipped (wall clock)', compareFailures(f2bLog, f2b, ['log clock', 'wall clock'])]);
        }
        agreements.push(['fleetban engine (Debian sshd.conf) vs fail2ban-regex as shipped (Debian sshd.conf)', compareFailures(debianFailures, f2b, ['fleetban', 'fail2ban']), debianFailures, f2b, f2bLog]);
        agreements.push(['fleetban (own sshd.conf) vs fail2ban-regex as shipped (Debian sshd.conf)', compareFailures(oursFailures, f2b, ['fleetban', 'fail2ban'])]);
        // Another filter: the README lists how the two sshd.conf differ on purpose.
        if (f2bLog) agreements.push(['fleetban (own sshd.conf) vs fail2ban-regex on the log clock (Debian sshd.conf)', compareFailures(oursFailures, f2bLog, ['fleetban', 'fail2ban']), oursFailures, f2bLog]);
      }
    }

    const grepRuns: number[] = [];
    let grepCount = '';
    for (let i = 0; i < 3; i++) {
      t = performance.now();
      const g = await execa('grep', ['-c', '-E', 'sshd\\[[0-9]+\\]: (error: )?(Failed|Invalid user|maximum authentication)', log], { env: { LC_ALL: 'C' }, reject: false });
      grepRuns.push(rate(LINES, performance.now() - t));
      grepCount = g.stdout.trim();
    }
    const grepRate = Math.max(...grepRuns);
    console.log(`grep -c -E 'sshd\\[[0-9]+\\]: (error: )?(Failed|Invalid user|maximum authentication)': ${fmt(grepRate)} lines/s (best of 3; counted ${grepCount})`);

    console.log('');
    console.log(`| tool | lines/s, best of ${RUNS} | median | vs fail2ban-regex (best) |`);
    console.log('|---|---:|---:|---:|');
    const ratio = (x: number): string => (f2bRate ? `${(x / f2bRate).toFixed(1)}x` : '-');
    const row = (name: string, best: number, median: number | string): void => console.log(`| ${name} | ${fmt(best)} | ${typeof median === 'number' ? fmt(median) : median} | ${ratio(best)} |`);
    row("fleetban, own sshd.conf: filter only (matcher.feedChunk)", ours.best, ours.median);
    row("fleetban, own sshd.conf: read + decode + filter", ours.e2eBest, ours.e2eMedian);
    if (debian) {
      row("fleetban engine, Debian's sshd.conf: filter only", debian.best, debian.median);
      row("fleetban engine, Debian's sshd.conf: read + decode + filter", debian.e2eBest, debian.e2eMedian);
    }
    console.log(`| fail2ban-regex 1.0.2, Debian's sshd.conf (one run, wall, incl. startup) | ${f2bRate ? fmt(f2bRate) : 'skipped'} | - | ${f2bRate ? '1.0x' : '-'} |`);
    row('grep -c (floor)', grepRate, '-');
    row('read + decode only (harness floor)', rate(floor.lines, floor.ms), '-');
    console.log(`fleetban peak RSS: ${ours.rss.toFixed(1)} MB (read + decode alone: ${floor.maxRssMB.toFixed(1)} MB)`);
    if (f2bNote) console.log(f2bNote);
    for (const [title, a, left, right, reference] of agreements) printAgreement(title, a, left, right, reference);
    if (KEEP) console.log(`kept: ${dir}`);
  } finally {
    if (!KEEP) rmSync(dir, { recursive: true, force: true });
  }
}

function readLines(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

await main();
