import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nftDuration, nftJailId } from '../../../../agent/firewall/nftables.js';
import { boundedName } from '../../../../agent/firewall/jail-rules.js';
import { PendingChanges } from '../../../../agent/firewall/pending-changes.js';

test('jail names map to distinct nft identifiers', () => {
  const names = ['ssh', 'ssh-1', 'ssh.1', 'ssh_1', 'ssh_d1', 'ssh__1', 'a-b.c_d', 'a_db_pc__d'];
  const ids = names.map(nftJailId);
  assert.equal(new Set(ids).size, names.length);
  for (const id of ids) assert.match(id, /^j_[A-Za-z0-9_]+$/);
  assert.equal(nftJailId('a-b.c_d'), 'j_a_db_pc__d');
});

test('nft durations use mixed units so long bans stay below the per-unit limit', () => {
  assert.equal(nftDuration(1500), '1s500ms');
  assert.equal(nftDuration(30 * 86_400_000 + 1), '30d1ms');
  assert.equal(nftDuration(90_061_001), '1d1h1m1s1ms');
  assert.equal(nftDuration(0.2), '1ms');
});

test('bounded names keep short jails readable and hash long ones apart', () => {
  assert.equal(boundedName('f2b-', 'sshd', 28), 'f2b-sshd');
  const a = boundedName('f2b-', 'x'.repeat(40) + 'a', 28);
  const b = boundedName('f2b-', 'x'.repeat(40) + 'b', 28);
  assert.equal(a.length, 28);
  assert.notEqual(a, b);
});

test('pending changes keep the longest ban, let a later unban win, and restore without losing newer ones', () => {
  const p = new PendingChanges();
  p.add({ jail: 'j', addr: '192.0.2.1', family: 4, until: 5000 });
  p.add({ jail: 'j', addr: '192.0.2.1', family: 4, until: 9000 });
  p.add({ jail: 'j', addr: '192.0.2.1', family: 4, until: 7000 });
  p.add({ jail: 'j', addr: '192.0.2.2', family: 4, until: -1 });
  p.add({ jail: 'j', addr: '192.0.2.2', family: 4, until: 99_999 });
  p.add({ jail: 'j', addr: '192.0.2.3', family: 4, until: 1 });
  p.delete('j', '192.0.2.3');
  const taken = p.take();
  assert.equal(p.size, 0);
  assert.deepEqual(taken.map((c) => (c.kind === 'add' ? `add ${c.ban.addr} ${c.ban.until}` : `del ${c.addr}`)), [
    'add 192.0.2.1 9000',
    'add 192.0.2.2 -1',
    'del 192.0.2.3',
  ]);
  p.delete('j', '192.0.2.1'); // arrived while the failed commit ran
  p.restore(taken);
  const again = p.take().map((c) => (c.kind === 'add' ? `add ${c.ban.addr}` : `del ${c.addr}`)).sort();
  assert.deepEqual(again, ['add 192.0.2.2', 'del 192.0.2.1', 'del 192.0.2.3']);
});

test('the fast address check agrees with the general parser and never accepts what it refuses', async () => {
  const { fastTargetForTests } = await import('../../../../agent/firewall/jail-rules.js');
  const { parseBanTarget } = await import('../../../../common/address.js');
  const samples = [
    '198.51.100.7', '0.0.0.0', '255.255.255.255', '198.051.100.7', '256.1.1.1', '1.2.3', '01.2.3.4',
    '2001:db8::1', '2001:DB8::1', '2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', '2001:0db8::1', '::', '::1',
    '1::', '2001:db8:0:1:1:1:1:1', '2001:db8::1:1:1:1:1', 'fe80::1%eth0', '::ffff:c000:201', '::ffff:192.0.2.1',
    '2001:db8:1:2:3:4:5:6', '2001:db8:0:0:0:0:2:1', '2001:db8::2:1', '1:0:0:1:0:0:0:1', '1:0:0:1::1', '1::1:0:0:1',
    '203.0.113.0/24', '2001:db8::/32', 'x', '', '1.2.3.4 ', '2001:db8::1]', '2001:db8::g',
  ];
  for (const s of samples) {
    let slow: string | undefined;
    try {
      slow = parseBanTarget(s).text;
    } catch {
      slow = undefined;
    }
    const fast = fastTargetForTests(s);
    if (fast) assert.equal(fast.text, slow, `fast path accepted '${s}' as '${fast.text}', parser says '${slow}'`);
    if (slow === s && !s.includes('/') && !s.includes('.')) assert.ok(fast, `canonical '${s}' should take the fast path`);
  }
});
