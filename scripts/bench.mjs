#!/usr/bin/env node
// `npm run bench`: every benchmark under bench/ once, with small bounded sizes, one after another,
// each printing its own figures beside the peer or floor it measures in the same run. It shows that
// every benchmark still runs and gives a rough reading; the figures in the README come from the full
// sizes each bench/*/README.md gives. `uptime` is printed before each benchmark, since this kind of
// machine's speed moves with its load.
//
//   npm run bench                    all of them (the firewall ones need root and network namespaces)
//   npm run bench -- filter signing  only these (names below)
//   BENCH_TIMEOUT_S=600 npm run bench
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const root = process.getuid?.() === 0;
const BENCHES = [
  { name: 'filter', argv: ['dist/bench/filter/run.js', '--lines', '20000', '--runs', '2', '--no-fail2ban'],
    note: 'fail2ban-regex left out (--no-fail2ban: it may need fetching and takes ~30 s per million lines); the read + decode floor and grep are the peers' },
  { name: 'agent-hooks', argv: ['dist/bench/agent-hooks/run.js', '20000', '2'] },
  { name: 'sources', argv: ['dist/bench/sources/file-tail-flood.js', '100000', '--tail'], note: 'npm tail is the peer' },
  { name: 'coordinator-script', argv: ['dist/bench/coordinator/script.js'], env: { N: '20000', ADDRS: '5000' } },
  { name: 'coordinator', argv: ['dist/bench/coordinator/run.js', '1'], env: { N: '20000', ADDRS: '5000', REPEAT: '1' } },
  { name: 'ignoreself', argv: ['dist/bench/coordinator/ignoreself.js'], env: { HOSTS: '10', CALLS: '40' } },
  { name: 'signing', argv: ['dist/bench/signing/run.js'], env: { N: '2000' } },
  { name: 'propagation', argv: ['dist/bench/propagation/run.js', '3'], env: { TRIALS: '20' } },
  { name: 'firewall', argv: ['dist/bench/firewall/run.js', '--bans', '5000', '--singles', '50', '--f2b', '100'], needsRoot: true },
];

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !BENCHES.some((b) => b.name === w));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(', ')}; known: ${BENCHES.map((b) => b.name).join(', ')}`);
  process.exit(2);
}
if (!existsSync('dist/bench')) {
  console.error('bench: dist/bench is missing; build first (npm run build)');
  process.exit(2);
}
const timeoutMs = Number(process.env.BENCH_TIMEOUT_S ?? 300) * 1000;
const results = [];
for (const b of BENCHES) {
  if (wanted.length > 0 && !wanted.includes(b.name)) continue;
  if (b.needsRoot && !root) {
    console.log(`\n=== ${b.name}: not run (needs root for network namespaces and the real firewall tools)`);
    results.push([b.name, 'not run: needs root']);
    continue;
  }
  console.log(`\n=== ${b.name}: node ${b.argv.join(' ')}${b.env ? ` (${Object.entries(b.env).map(([k, v]) => `${k}=${v}`).join(' ')})` : ''}`);
  if (b.note) console.log(`    ${b.note}`);
  console.log(`    uptime: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  const started = Date.now();
  const r = spawnSync(process.execPath, b.argv, { stdio: 'inherit', env: { ...process.env, ...b.env }, timeout: timeoutMs, killSignal: 'SIGTERM' });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const outcome = r.error?.code === 'ETIMEDOUT' || r.signal ? `killed after ${secs} s (${r.signal ?? 'timeout'})` : r.status === 0 ? `ok, ${secs} s` : `failed (exit ${r.status}), ${secs} s`;
  results.push([b.name, outcome]);
}
console.log(`\n=== summary (uptime: ${execFileSync('uptime', { encoding: 'utf8' }).trim()})`);
for (const [name, outcome] of results) console.log(`${name.padEnd(20)} ${outcome}`);
process.exit(results.some(([, o]) => /^(failed|killed)/.test(o)) ? 1 : 0);
