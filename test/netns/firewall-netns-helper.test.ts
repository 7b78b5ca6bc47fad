import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { createFleet, netnsAvailable } from '../helpers/netns.js';

const avail = netnsAvailable();

test('fleet hosts reach each other over IPv4 and IPv6 and destroy removes every namespace', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fleet = await createFleet([
    { name: 'srv', addrs: ['198.51.100.11/24', '2001:db8::11/64'] },
    { name: 'cli', addrs: ['198.51.100.12/24', '2001:db8::12/64'] },
  ]);
  const namespaces = [fleet.host('srv').ns, fleet.host('cli').ns];
  try {
    assert.deepEqual(fleet.host('srv').addrs, ['198.51.100.11', '2001:db8::11']);
    assert.deepEqual(fleet.prefix('cli'), ['ip', 'netns', 'exec', fleet.host('cli').ns]);
    // Nothing listens yet: the connection is refused, not a false positive.
    assert.equal(await fleet.tcpConnects('cli', '198.51.100.11', 8022), false);
    const l4 = await fleet.listen('srv', '198.51.100.11', 8022);
    const l6 = await fleet.listen('srv', '2001:db8::11', 8022);
    assert.equal(await fleet.tcpConnects('cli', '198.51.100.11', 8022), true);
    assert.equal(await fleet.tcpConnects('cli', '2001:db8::11', 8022), true);
    const r = await fleet.exec('srv', 'ip', ['-o', 'addr', 'show', 'dev', 'eth0']);
    assert.match(r.stdout, /198\.51\.100\.11\/24/);
    const bad = await fleet.exec('srv', 'false', [], { reject: false });
    assert.equal(bad.exitCode, 1);
    await l4.stop();
    await l6.stop();
    assert.equal(await fleet.tcpConnects('cli', '198.51.100.11', 8022), false);
  } finally {
    await fleet.destroy();
  }
  const { stdout } = await execa('ip', ['netns', 'list']);
  for (const ns of namespaces) assert.ok(!stdout.includes(ns), `${ns} still exists`);
});

test('a bad host definition leaves no namespace behind', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const before = (await execa('ip', ['netns', 'list'])).stdout;
  await assert.rejects(
    createFleet([{ name: 'okhost', addrs: ['198.51.100.21/24'] }, { name: 'badhost', addrs: ['not-an-address/24'] }]),
    /ip .* failed/,
  );
  // Other runs may add namespaces meanwhile, so look only for ones named like this fleet's.
  const after = (await execa('ip', ['netns', 'list'])).stdout;
  const leaked = after.split('\n').filter((l) => /^fb[0-9a-f]{6}-(br|okhost|badhost)\b/.test(l) && !before.includes(l));
  assert.deepEqual(leaked, []);
});
