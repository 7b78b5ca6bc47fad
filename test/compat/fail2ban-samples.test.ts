// Compatibility with fail2ban: every filter.d/*.conf of Debian's fail2ban package, run by our
// engine over fail2ban's own annotated sample log, compared line by line (match and host).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pinClock } from '../../common/clock.js';
import { loadFilterFrom } from '../../common/filter/filter-loader.js';
import type { CompiledFilter } from '../../common/filter/index.js';
import { runSampleLog } from '../helpers/sample-log.js';
import { obtainFail2ban } from './fail2ban-package.js';

/** Filters that must agree on every annotated line. */
const MUST_BE_EXACT = ['sshd', 'nginx-http-auth', 'apache-auth', 'postfix', 'dovecot'];
const OVERALL_MIN = 0.97;

// fail2ban's samples are written as of its TEST_NOW (2005-08-14 12:00 CEST).
pinClock(Date.UTC(2005, 7, 14, 10, 0, 0));

test('fail2ban filters agree with fail2ban on its annotated sample logs', { timeout: 300_000 }, async (t) => {
  const files = await obtainFail2ban();
  if ('missing' in files) {
    if (process.env.CI) assert.fail(`fail2ban package files are needed in CI: ${files.missing}`);
    t.skip(`fail2ban package not available: ${files.missing}`);
    return;
  }
  const names = readdirSync(files.filterDir)
    .filter((f) => f.endsWith('.conf') && f !== 'common.conf')
    .map((f) => f.slice(0, -5))
    .sort();
  assert.ok(names.length > 50, `expected fail2ban's filter.d, found ${names.length} filters in ${files.filterDir}`);
  const rows: Array<{ name: string; ok: number; total: number; note: string }> = [];
  const failures: string[] = [];
  for (const name of names) {
    const sample = join(files.sampleDir, name);
    if (!existsSync(sample)) {
      rows.push({ name, ok: 0, total: 0, note: 'no sample log in the package' });
      continue;
    }
    const cache = new Map<string, CompiledFilter>();
    const load = (opts: Map<string, string>): CompiledFilter => {
      const key = JSON.stringify([...opts]);
      let f = cache.get(key);
      if (!f) {
        const spec = opts.size ? `${name}[${[...opts].map(([k, v]) => `${k}="${v.replace(/["\\]/g, '\\$&')}"`).join(', ')}]` : name;
        f = loadFilterFrom(spec, { dirs: [files.filterDir], jail: new Map([['usedns', 'raw'], ['unsaferegex', 'true']]) });
        cache.set(key, f);
      }
      return f;
    };
    try {
      const { outcomes } = runSampleLog(sample, name, load, { checkTime: false });
      const bad = outcomes.filter((o) => o.problems.length > 0);
      rows.push({ name, ok: outcomes.length - bad.length, total: outcomes.length, note: '' });
      for (const o of bad.slice(0, 5)) failures.push(`${name}${o.variant === '(default)' ? '' : ` ${o.variant}`} line ${o.lineNo}: ${o.problems.join('; ')}\n    ${o.line}`);
    } catch (err) {
      const total = countAnnotations(sample);
      rows.push({ name, ok: 0, total, note: `load error: ${(err as Error).message.split('\n')[0]!.slice(0, 160)}` });
    }
  }
  const total = rows.reduce((s, r) => s + r.total, 0);
  const ok = rows.reduce((s, r) => s + r.ok, 0);
  const table = rows.map((r) => `${r.name.padEnd(28)} ${String(r.ok).padStart(5)}/${String(r.total).padEnd(5)} ${r.total ? ((100 * r.ok) / r.total).toFixed(1).padStart(6) : '     -'}%  ${r.note}`);
  console.log(['filter                          agree/lines   score', ...table, `${'TOTAL'.padEnd(28)} ${String(ok).padStart(5)}/${String(total).padEnd(5)} ${((100 * ok) / total).toFixed(2).padStart(6)}%`].join('\n'));
  if (failures.length) console.log(`differences (first 5 per filter):\n${failures.join('\n')}`);
  for (const name of MUST_BE_EXACT) {
    const r = rows.find((x) => x.name === name);
    assert.ok(r && r.total > 0, `${name}: no annotated samples`);
    assert.equal(r.ok, r.total, `${name} must agree with fail2ban on every annotated line (${r.ok}/${r.total})`);
  }
  assert.ok(ok / total >= OVERALL_MIN, `overall agreement ${((100 * ok) / total).toFixed(2)}% is below ${OVERALL_MIN * 100}%`);
});

function countAnnotations(path: string): number {
  let n = 0;
  const walk = (p: string): void => {
    for (const l of readFileSyncLines(p)) {
      if (/^#+ ?failJSON:/.test(l)) n++;
      const add = /^#+ ?addFILE:\s*"([^"]+)"/.exec(l);
      if (add) walk(join(p, '..', add[1]!));
    }
  };
  walk(path);
  return n;
}

import { readFileSync } from 'node:fs';
import { enableBacktrackingFallback } from '../../common/filter/regex-safety.js';

// Production's regex safety net (a process-wide V8 flag the entry point sets).
enableBacktrackingFallback();
function readFileSyncLines(p: string): string[] {
  return readFileSync(p, 'utf8').split('\n');
}
