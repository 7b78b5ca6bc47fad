// What only nftables has (timeouts on re-add, repair of a vanished table, blocktype, the factory);
// the contract every backend keeps is proven in firewall-conformance.test.ts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { FirewallError, InvalidInputError } from '../../common/errors.js';
import { NftablesBackend } from '../../agent/firewall/nftables.js';
import { netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ALL, ATK4, ATK6, GOOD4, HOST4, HOST6, SSH, ban, captureLogger, connectOutcome, connectTimed, startFirewallFleet } from '../helpers/firewall.js';

const avail = netnsAvailable();


let fleet: Fleet;
let stop: (() => Promise<void>) | undefined;


function backend(extra: Partial<ConstructorParameters<typeof NftablesBackend>[0]> = {}): NftablesBackend {
  return new NftablesBackend({ commandPrefix: fleet.prefix('host'), ...extra });
}


const reach = (from: string, addr: string, port: number) => fleet.tcpConnects(from, addr, port, 700);

before(async () => {
  if (!avail.ok) return;
  ({ fleet, stop } = await startFirewallFleet());
});

after(async () => {
  await stop?.();
});

test('sync replaces the content, init is idempotent, and a changed jail list rewrites rules', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fw = backend();
  try {
    await fw.init([SSH, ALL]);
    fw.add(ban('ssh-test.v1', '203.0.113.5', 60_000));
    fw.add(ban('all_ports', '2001:db8:5::/48', 60_000));
    await fw.commit();
    await fw.sync([ban('ssh-test.v1', ATK4, 60_000), ban('all_ports', '192.0.2.9', -1), ban('ssh-test.v1', ATK4, 30_000)]);
    const listed = (await fw.list()).map((b) => `${b.jail} ${b.addr} ${b.until === -1 ? 'forever' : 'timed'}`).sort();
    assert.deepEqual(listed, ['all_ports 192.0.2.9 forever', `ssh-test.v1 ${ATK4} timed`]);
    assert.equal(await reach('atk', HOST4, 22), false);

    await fw.init([SSH, ALL]);
    assert.equal((await fw.list()).length, 2, 're-init keeps the elements');
    assert.equal(await reach('atk', HOST4, 22), false, 're-init keeps enforcing');
    const fresh = backend();
    await fresh.init([SSH, ALL]); // a second agent process (restart) sees the same kernel state
    assert.equal((await fresh.list()).length, 2);

    await fw.init([{ jail: 'ssh-test.v1', ports: [[80, 80]], protocols: ['tcp'] }]);
    assert.equal(await reach('atk', HOST4, 22), true, 'port 22 no longer in the jail');
    assert.equal(await reach('atk', HOST4, 80), false, 'port 80 now is');
    assert.deepEqual((await fw.list()).map((b) => b.jail), ['ssh-test.v1'], 'the removed jail took its sets along');
    assert.throws(() => fw.add(ban('all_ports', ATK4, 1000)), InvalidInputError);
  } finally {
    await fw.shutdown({ cleanup: true });
  }
  const tables = await fleet.exec('host', 'nft', ['list', 'tables']);
  assert.doesNotMatch(tables.stdout, /fleetban/, 'cleanup removed the table');
});

test('on kernels that keep the old timeout on re-add, add/delete/add still refreshes it', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fw = backend({ forceReAdd: true });
  try {
    await fw.init([SSH]);
    fw.add(ban('ssh-test.v1', ATK4, 10_000));
    await fw.commit();
    fw.add(ban('ssh-test.v1', ATK4, 120_000));
    fw.add(ban('ssh-test.v1', '192.0.2.44', 120_000)); // new element in the same batch
    await fw.commit();
    const listed = await fw.list();
    assert.equal(listed.length, 2);
    for (const b of listed) assert.ok(b.until > Date.now() + 100_000, `${b.addr} has the long timeout`);
    assert.equal(await reach('atk', HOST4, 22), false);
  } finally {
    await fw.shutdown({ cleanup: true });
  }
});

test('a repeated ban refreshes the timeout; a vanished table is repaired on commit', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const { logger, lines } = captureLogger();
  const fw = backend({ logger, table: 'fbrepair' });
  try {
    await fw.init([SSH]);
    fw.add(ban('ssh-test.v1', ATK4, 10_000));
    await fw.commit();
    fw.add(ban('ssh-test.v1', ATK4, 120_000));
    await fw.commit();
    const [b] = await fw.list();
    assert.ok(b && b.until > Date.now() + 100_000, 'the longer timeout replaced the shorter one');
    fw.add(ban('ssh-test.v1', ATK4, 50_000));
    fw.add(ban('ssh-test.v1', ATK4, 300_000)); // longest ban of one batch wins
    fw.add(ban('ssh-test.v1', ATK4, 40_000));
    await fw.commit();
    assert.ok((await fw.list())[0]!.until > Date.now() + 250_000);
    fw.add(ban('ssh-test.v1', '192.0.2.30', 30 * 86_400_000 + 1)); // a single nft time unit tops out near 2^31 ms
    fw.add(ban('ssh-test.v1', '192.0.2.31', 3650 * 86_400_000));
    await fw.commit();
    const long = (await fw.list()).filter((x) => x.addr.startsWith('192.0.2.3')).map((x) => Math.round((x.until - Date.now()) / 86_400_000)).sort((a, b) => a - b);
    assert.deepEqual(long, [30, 3650]);
    fw.delete('ssh-test.v1', '192.0.2.30');
    fw.delete('ssh-test.v1', '192.0.2.31');
    await fw.commit();

    await fleet.exec('host', 'nft', ['delete', 'table', 'inet', 'fbrepair']); // someone flushed our table
    assert.equal(await reach('atk', HOST4, 22), true);
    fw.add(ban('ssh-test.v1', '203.0.113.0/24', 60_000)); // needs a network set that is gone too
    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    await fw.commit();
    assert.ok(lines.some((l) => l.level === 40 && String(l.msg).includes('repairing')), 'repair was logged');
    assert.equal(await reach('atk', HOST4, 22), false, 'ban enforced after repair');
    assert.equal((await fw.list()).length, 2);
  } finally {
    await fw.shutdown({ cleanup: true });
  }
});

test('a missing nft binary and a bad port range are FirewallErrors naming the cause', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const broken = backend({ nftBinary: '/nonexistent/nft' });
  await assert.rejects(broken.init([SSH]), (err: unknown) => err instanceof FirewallError && /nft/.test(err.message));
  const bad = backend();
  await assert.rejects(bad.init([{ jail: 'x', ports: [[0, 70000]], protocols: ['tcp'] }]), /port range/);
});

test("the factory's 'auto' picks nftables where nft works, and builds each named backend", async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const { createFirewallBackend, detectBackend } = await import('../../agent/firewall/index.js');
  assert.equal(await detectBackend(fleet.prefix('host')), 'nftables');
  const fw = await createFirewallBackend('auto', { commandPrefix: fleet.prefix('host'), nftTable: 'fbauto' });
  assert.equal(fw.name, 'nftables');
  try {
    await fw.init([SSH]);
    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    await fw.commit();
    assert.equal(await reach('atk', HOST4, 22), false, 'the auto-picked backend enforces');
  } finally {
    await fw.shutdown({ cleanup: true });
  }
  for (const name of ['ipset', 'iptables', 'shorewall', 'dry-run']) {
    assert.equal((await createFirewallBackend(name, { commandPrefix: fleet.prefix('host') })).name, name);
  }
  // A prefix under which no firewall tool can run: auto says so instead of guessing.
  await assert.rejects(detectBackend(['env', 'PATH=/nonexistent']), /none of nft, ipset, iptables works/);
});

test('blocktype = reject answers the banned address with port unreachable; drop stays silent', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fw = backend();
  try {
    await fw.init([{ ...SSH, blocktype: 'reject' }, ALL]);
    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    fw.add(ban('all_ports', GOOD4, 60_000));
    await fw.commit();
    assert.equal(await connectOutcome(fleet, 'atk', HOST4, 22), 'ECONNREFUSED', 'rejected: the attacker is told at once');
    assert.equal(await connectOutcome(fleet, 'atk', HOST4, 80), 'connected', 'other ports untouched');
    assert.equal(await connectOutcome(fleet, 'good', HOST4, 22), 'timeout', 'a drop jail still drops silently');
  } finally {
    await fw.shutdown({ cleanup: true });
  }
});

test('blocktype = tcp-reset resets TCP at once over IPv4 and IPv6, on a TCP jail and an all-protocols one', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fw = backend();
  try {
    await fw.init([{ ...SSH, blocktype: 'tcp-reset' }, { ...ALL, blocktype: 'tcp-reset' }]);
    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    fw.add(ban('ssh-test.v1', ATK6, 60_000));
    fw.add(ban('all_ports', GOOD4, 60_000));
    await fw.commit();
    for (const [from, addr] of [['atk', HOST4], ['atk', HOST6], ['good', HOST4]] as const) {
      const r = await connectTimed(fleet, from, addr, 22, 3000);
      assert.equal(r.outcome, 'ECONNREFUSED', `${from} -> ${addr} refused`);
      assert.ok(r.ms < 500, `by a reset, at once (${r.ms} ms)`);
    }
    assert.equal(await connectOutcome(fleet, 'atk', HOST4, 80), 'connected', 'other ports untouched');
    const rules = (await fleet.exec('host', 'nft', ['list', 'chain', 'inet', 'fleetban', 'input'])).stdout;
    assert.match(rules, /reject with tcp reset/);
    // The all-protocols jail answers what is not TCP with port unreachable.
    assert.match(rules, /@j_all__ports_s4 reject with icmp port-unreachable comment/);
  } finally {
    await fw.shutdown({ cleanup: true });
  }
});
