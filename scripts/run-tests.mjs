// Runs the compiled test files with node's test runner, one file at a time: the files start real
// redis-server, sshd and network namespaces, and running them in parallel on a 2-core machine only
// makes timings flaky. Arguments narrow the run: `npm test -- test/unit test/redis/counting`.
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = 'dist/test';
const filters = process.argv.slice(2).map((a) => a.replace(/^(dist\/)?/, 'dist/').replace(/\.ts$/, ''));

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.js') ? [p] : [];
  });
}

const files = walk(root)
  // tsc never deletes outputs: a test removed or renamed in the source must not run from dist.
  .filter((f) => existsSync(f.replace(/^dist\//, '').replace(/\.js$/, '.ts')))
  .filter((f) => filters.length === 0 || filters.some((x) => f.startsWith(x)))
  // The booted-container fleet test has its own script (`npm run test:fleet`): run only when named.
  .filter((f) => filters.length > 0 || !f.startsWith(`${root}/fleet/`))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ') || root}`);
  process.exit(1);
}
console.log(`running ${files.length} test files: ${files.map((f) => relative(root, f)).join(' ')}`);
// A second reporter writes TAP to a file so that skipped tests can be counted: under CI=true
// (root, every package installed by setup.sh) a skip means a test that should have run did not,
// and the run fails instead of reporting green for something it never tried.
const tapFile = join(mkdtempSync(join(tmpdir(), 'fleetban-tests-')), 'results.tap');
const res = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`, ...files],
  { stdio: 'inherit', env: { ...process.env, FLEETBAN_LOG_LEVEL: process.env.FLEETBAN_LOG_LEVEL ?? 'warn' } },
);
const skipped = existsSync(tapFile)
  ? readFileSync(tapFile, 'utf8').split('\n').filter((l) => /^\s*(not )?ok \d+ .*# SKIP/.test(l))
  : [];
if (process.env.CI === 'true' && skipped.length > 0) {
  console.error(`\n${skipped.length} test(s) skipped under CI=true, which must run everything:`);
  for (const l of skipped) console.error(`  ${l.trim()}`);
  process.exit(1);
}
process.exit(res.status ?? 1);
