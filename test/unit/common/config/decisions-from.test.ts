import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFleetbanConfig } from '../../../../common/config/fleetban-config.js';
import { ConfigError } from '../../../../common/errors.js';

function load(agent: string) {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-decisions-from-'));
  writeFileSync(join(dir, 'fleetban.conf'), `[redis]\nurl = redis://127.0.0.1:6390\n[agent]\nhost = h1\n${agent}\n`);
  return { dir, load: () => loadFleetbanConfig(dir) };
}

test('decisions_from: replica URLs in order, the lag bound in seconds; none by default', () => {
  const c = load('decisions_from = redis://127.0.0.1:6391, rediss://replica.example:6380\ndecisions_max_lag = 3s').load();
  assert.deepEqual(c.agent.decisionsFrom, ['redis://127.0.0.1:6391', 'rediss://replica.example:6380']);
  assert.equal(c.agent.decisionsMaxLag, 3);
  const d = load('').load();
  assert.deepEqual(d.agent.decisionsFrom, []);
  assert.equal(d.agent.decisionsMaxLag, 2);
});

test('decisions_from: a URL that is not a replica\'s is refused with the file, line and key', () => {
  const { dir, load: l } = load('decisions_from = sentinel://127.0.0.1:26379/mymaster');
  assert.throws(l, (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /decisions_from/);
    assert.match(err.message, /not a redis:\/\/, rediss:\/\/ or unix:\/\/ URL of a replica/);
    assert.match(err.message, new RegExp(`${join(dir, 'fleetban.conf')}:5`));
    return true;
  });
});
