// One test per filter shipped in deploy/etc/fleetban/filter.d: its annotated sample log under
// test/fixtures/logs/NAME must agree on every line (match, host, user, time), and every failregex
// must be hit by at least one sample.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { pinClock } from '../../../../common/clock.js';
import { builtinFilterDir, type CompiledFilter } from '../../../../common/filter/index.js';
import { loadFilterFrom } from '../../../../common/filter/filter-loader.js';
import { runSampleLog } from '../../../helpers/sample-log.js';

const FIXTURES = fileURLToPath(new URL('../../../../../test/fixtures/logs/', import.meta.url));
// Samples are written as of late November 2026; FLEETBAN_TEST_NOW may pin another "now".
pinClock(process.env.FLEETBAN_TEST_NOW ? undefined : new Date(2026, 10, 26, 12, 0, 0).getTime());

const names = readdirSync(builtinFilterDir())
  .filter((f) => f.endsWith('.conf') && f !== 'common.conf')
  .map((f) => f.slice(0, -5))
  .sort();

test('filter.d ships filters', () => {
  assert.ok(names.includes('sshd'), `no sshd.conf in ${builtinFilterDir()}`);
});

for (const name of names) {
  test(`filter ${name}: sample log agrees and covers every failregex`, () => {
    const sample = join(FIXTURES, name);
    assert.ok(existsSync(sample), `no sample log for filter ${name} at ${sample}`);
    const load = (opts: Map<string, string>): CompiledFilter => {
      const spec = opts.size ? `${name}[${[...opts].map(([k, v]) => `${k}=${v}`).join(', ')}]` : name;
      return loadFilterFrom(spec, { dirs: [builtinFilterDir()] });
    };
    const { outcomes, variants } = runSampleLog(sample, name, load, { checkTime: true });
    assert.ok(outcomes.length > 0, `${name}: sample log has no annotated lines`);
    const problems = outcomes.flatMap((o) => {
      const extra: string[] = [...o.problems];
      const wantUser = o.expected['user'];
      if (typeof wantUser === 'string' && o.result.user !== wantUser) extra.push(`user ${o.result.user} instead of ${wantUser}`);
      return extra.length ? [`line ${o.lineNo} [${o.variant}]: ${extra.join('; ')}\n  ${o.line}`] : [];
    });
    assert.deepEqual(problems, [], `${name}: annotations disagree`);
    const usedTexts = new Set(variants.flatMap((v) => [...v.used].map((i) => v.filter.def.failregex[i]!.text)));
    const unused = variants.flatMap((v) => v.filter.def.failregex.filter((r) => !usedTexts.has(r.text)).map((r) => `[${v.variant}] ${r.text}`));
    assert.deepEqual([...new Set(unused)], [], `${name}: failregex without a sample`);
  });
}
