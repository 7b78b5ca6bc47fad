// Runs the compiled test files with node's test runner, one file at a time: the files start real
// redis-server, sshd and network namespaces, and running them in parallel on a 2-core machine only
// makes timings flaky. Arguments narrow the run: `npm test -- test/unit test/redis/counting`.
import { existsSync, readdirSync, statSync } from 'node:fs';
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
const res = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env: { ...process.env, FLEETBAN_LOG_LEVEL: process.env.FLEETBAN_LOG_LEVEL ?? 'warn' },
});
process.exit(res.status ?? 1);
