import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { DryRunBackend } from '../../../../agent/firewall/dry-run.js';
import { createFirewallBackend, FIREWALL_BACKENDS } from '../../../../agent/firewall/index.js';
import { ConfigError } from '../../../../common/errors.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

test('dry-run logs one line per change with the fields end-to-end tests wait for, and remembers bans', async () => {
  const { logger, lines } = capture();
  const fw = new DryRunBackend({ logger });
  await fw.init([{ jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] }]);
  const until = Date.now() + 60_000;
  fw.add({ jail: 'sshd', addr: '2001:DB8::1', family: 6, until });
  fw.add({ jail: 'sshd', addr: '2001:db8::1', family: 6, until: until - 1000 }); // shorter: the longer one stays
  fw.add({ jail: 'sshd', addr: '198.51.100.7', family: 4, until: -1 });
  fw.add({ jail: 'sshd', addr: '198.51.100.8', family: 4, until: Date.now() - 1 }); // expired: nothing to do
  lines.length = 0;
  await fw.commit();
  const pick = (l: Record<string, unknown>) => ({ msg: l.msg, action: l.action, jail: l.jail, addr: l.addr, until: l.until });
  assert.deepEqual(lines.map(pick), [
    { msg: 'dry-run ban', action: 'ban', jail: 'sshd', addr: '2001:db8::1', until },
    { msg: 'dry-run ban', action: 'ban', jail: 'sshd', addr: '198.51.100.7', until: -1 },
  ]);
  assert.equal(lines[0]!.component, undefined, 'a given logger is used as is');
  assert.equal((await fw.list()).length, 2);

  lines.length = 0;
  fw.delete('sshd', '198.51.100.7');
  await fw.commit();
  assert.deepEqual(lines.map(pick), [{ msg: 'dry-run unban', action: 'unban', jail: 'sshd', addr: '198.51.100.7', until: undefined }]);
  assert.deepEqual((await fw.list()).map((b) => b.addr), ['2001:db8::1']);

  lines.length = 0;
  await fw.sync([
    { jail: 'sshd', addr: '203.0.113.0/24', family: 4, until: -1 },
    { jail: 'sshd', addr: 'not an address', family: 4, until: -1 },
  ]);
  assert.deepEqual(lines.filter((l) => l.msg === 'dry-run sync').map((l) => ({ action: l.action, count: l.count })), [{ action: 'sync', count: 1 }]);
  assert.deepEqual((await fw.list()).map((b) => b.addr), ['203.0.113.0/24']);
  assert.throws(() => fw.add({ jail: 'sshd', addr: '198.51.100.1 } ; flush ruleset', family: 4, until: -1 }), /not a valid/);
});

test('an unknown backend name is refused with the list of valid names', async () => {
  await assert.rejects(createFirewallBackend('pf'), (err: Error) => {
    for (const n of FIREWALL_BACKENDS) assert.ok(err.message.includes(n), `${n} listed`);
    // A ConfigError, so the CLI prints it as the operator's mistake, naming the key to fix.
    assert.ok(err instanceof ConfigError, err.name);
    assert.equal(err.key, 'banaction');
    return /unknown firewall backend 'pf'/.test(err.message);
  });
});
