// The same enforcement scenarios for the two iptables-based backends, proven with real TCP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import type { FirewallBackend } from '../../agent/firewall/backend.js';
import { IpsetBackend } from '../../agent/firewall/ipset.js';
import { IptablesBackend } from '../../agent/firewall/iptables.js';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ALL, ATK4, ATK6, HOST4, HOST6, SSH, ban, captureLogger, connectOutcome, connectTimed } from '../helpers/firewall.js';
import { waitUntil } from '../helpers/wait.js';

const avail = netnsAvailable();


let fleet: Fleet;
const stops: Array<() => Promise<void>> = [];


const reach = (from: string, addr: string, port: number) => fleet.tcpConnects(from, addr, port, 700);

before(async () => {
  if (!avail.ok) return;
  fleet = await createFleet([
    { name: 'host', addrs: [`${HOST4}/24`, `${HOST6}/64`] },
    { name: 'atk', addrs: [`${ATK4}/24`, `${ATK6}/64`] },
    { name: 'good', addrs: ['198.51.100.77/24', '2001:db8::77/64'] },
  ]);
  for (const port of [22, 80]) stops.push((await fleet.listen('host', '::', port)).stop);
});

after(async () => {
  for (const s of stops) await s();
  await fleet?.destroy();
});

type Make = (extra?: { logger?: Logger; maxBans?: number }) => FirewallBackend;
const backends: Array<[string, Make, string]> = [
  ['ipset', (extra = {}) => new IpsetBackend({ commandPrefix: fleet.prefix('host'), ...extra }), 'ipset commit'],
  ['iptables', (extra = {}) => new IptablesBackend({ commandPrefix: fleet.prefix('host'), expireIntervalMs: 250, ...extra }), 'iptables commit'],
];

for (const [name, make, commitOp] of backends) {
  describe(`${name} backend`, () => {
    test('port-scoped ban, bystander, unban, IPv6 and overlapping CIDR', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const fw = make();
      try {
        await fw.init([SSH, ALL]);
        fw.add(ban('ssh-test.v1', ATK4, 60_000));
        const v6ban = ban('ssh-test.v1', ATK6, 60_000);
        fw.add(v6ban);
        await fw.commit();
        assert.equal(await reach('atk', HOST4, 22), false, 'attacker dropped on the jail port');
        assert.equal(await reach('atk', HOST6, 22), false, 'IPv6 attacker dropped');
        assert.equal(await reach('atk', HOST4, 80), true, 'attacker reaches another port');
        assert.equal(await reach('good', HOST4, 22), true, 'bystander connects');
        assert.equal(await reach('good', HOST6, 22), true, 'IPv6 bystander connects');
        fw.add(ban('all_ports', '198.51.100.64/29', 60_000));
        fw.add(ban('all_ports', ATK4, 60_000));
        await fw.commit();
        assert.equal(await reach('atk', HOST4, 80), false, 'network ban drops every port');
        assert.equal(await reach('good', HOST4, 80), true);
        const listed = (await fw.list()).map((b) => `${b.jail} ${b.addr}`).sort();
        assert.deepEqual(listed, ['all_ports 198.51.100.64/29', `all_ports ${ATK4}`, `ssh-test.v1 ${ATK4}`, `ssh-test.v1 ${ATK6}`]);
        const until = (await fw.list()).find((b) => b.addr === ATK6)!.until;
        assert.ok(Math.abs(until - v6ban.until) < 2000, `listed until ${until} is close to the ban's ${v6ban.until}`);
        fw.delete('all_ports', '198.51.100.64/29');
        fw.delete('all_ports', ATK4);
        fw.delete('ssh-test.v1', ATK4);
        fw.delete('ssh-test.v1', '2001:db8::0:66');
        fw.delete('ssh-test.v1', '192.0.2.200'); // never banned
        await fw.commit();
        assert.equal(await reach('atk', HOST4, 22), true, 'unbanned');
        assert.equal(await reach('atk', HOST6, 22), true, 'unbanned over IPv6');
        assert.equal(await reach('atk', HOST4, 80), true);
        assert.deepEqual(await fw.list(), []);
      } finally {
        await fw.shutdown({ cleanup: true });
      }
    });

    test('a 2 s ban expires by itself', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const fw = make();
      try {
        await fw.init([SSH]);
        fw.add(ban('ssh-test.v1', ATK4, 2000));
        await fw.commit();
        assert.equal(await reach('atk', HOST4, 22), false);
        await waitUntil(() => reach('atk', HOST4, 22), 6000, 'attacker connects again after expiry', 300);
        assert.deepEqual(await fw.list(), []);
      } finally {
        await fw.shutdown({ cleanup: true });
      }
    });

    test('sync replaces content, init is idempotent, 10,000 bans in one commit, cleanup removes all', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const { logger, lines } = captureLogger();
      const fw = make({ logger });
      try {
        await fw.init([SSH, ALL]);
        fw.add(ban('ssh-test.v1', '203.0.113.5', 60_000));
        await fw.commit();
        await fw.sync([ban('ssh-test.v1', ATK4, 60_000), ban('all_ports', '2001:db8:9::/48', -1)]);
        assert.deepEqual((await fw.list()).map((b) => `${b.jail} ${b.addr} ${b.until === -1 ? 'forever' : 'timed'}`).sort(), [
          'all_ports 2001:db8:9::/48 forever',
          `ssh-test.v1 ${ATK4} timed`,
        ]);
        assert.equal(await reach('atk', HOST4, 22), false);
        await fw.init([SSH, ALL]);
        assert.equal((await fw.list()).length, 2, 're-init keeps bans');
        assert.equal(await reach('atk', HOST4, 22), false, 're-init keeps enforcing');

        for (let i = 0; i < 9999; i++) fw.add(ban('ssh-test.v1', `2001:db8:1:${(i >> 8).toString(16)}::${(i & 0xff).toString(16)}`, 600_000));
        lines.length = 0;
        await fw.commit();
        const cmds = lines.filter((l) => l.msg === 'firewall command');
        assert.ok(cmds.every((l) => l.operation === commitOp), 'only the commit ran');
        assert.equal(cmds.length, name === 'ipset' ? 1 : 1, 'one process for the batch (all IPv6 here)');
        assert.equal((await fw.list()).length, 10_001);
        assert.equal(await reach('atk', HOST4, 22), false);
        assert.equal(await reach('good', HOST4, 22), true);
      } finally {
        await fw.shutdown({ cleanup: true });
      }
      for (const tool of ['iptables', 'ip6tables']) {
        const rules = await fleet.exec('host', tool, ['-S']);
        assert.doesNotMatch(rules.stdout, /fleetban|f2b-/, `${tool} cleaned`);
      }
      assert.equal((await fleet.exec('host', 'ipset', ['list', '-n'])).stdout.trim(), '', 'no sets left');
    });

    test('the cap refuses bans with a warning; a flushed chain is repaired', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const { logger, lines } = captureLogger();
      const fw = make({ logger, maxBans: 2 });
      try {
        await fw.init([SSH]);
        for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) fw.add(ban('ssh-test.v1', a, 60_000));
        await fw.commit();
        assert.equal((await fw.list()).length, 2);
        assert.ok(lines.some((l) => l.level === 40 && l.maxBans === 2 && l.refused === 1));
        await fw.sync([]);
        // Someone else wipes the filter table: our rules and chains are gone.
        await fleet.exec('host', 'iptables', ['-F']);
        await fleet.exec('host', 'iptables', ['-X']);
        await fleet.exec('host', 'ip6tables', ['-F']);
        await fleet.exec('host', 'ip6tables', ['-X']);
        if (name === 'ipset') await fleet.exec('host', 'ipset', ['destroy']);
        fw.add(ban('ssh-test.v1', ATK4, 60_000));
        await fw.commit();
        assert.equal(await reach('atk', HOST4, 22), false, 'enforced again after repair');
      } finally {
        await fw.shutdown({ cleanup: true });
      }
    });
  });
}

test('iptables names a labelled jail\'s chain f2b-<label>, as fail2ban\'s name= does, and renames it on relabel', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fw = new IptablesBackend({ commandPrefix: fleet.prefix('host') });
  const chainsOf = async () => (await fleet.exec('host', 'iptables', ['-S'])).stdout;
  try {
    await fw.init([{ ...SSH, label: 'SSH' }, ALL]);
    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    await fw.commit();
    const rules = await chainsOf();
    assert.match(rules, new RegExp(`^-A f2b-SSH -s ${ATK4}/32 -j DROP$`, 'm'), 'the ban is a rule in f2b-SSH');
    assert.match(rules, /^-A fleetban -p tcp -m multiport --dports 22 -j f2b-SSH$/m, 'the jail port leads to f2b-SSH');
    assert.match(rules, /^-N f2b-all_ports$/m, 'a jail without a label keeps f2b-<jail>');
    assert.doesNotMatch(rules, /f2b-ssh-test/, 'no chain named after the labelled jail');
    assert.equal(await reach('atk', HOST4, 22), false, 'attacker dropped');
    assert.equal(await reach('good', HOST4, 22), true, 'bystander connects');
    assert.deepEqual((await fw.list()).map((b) => `${b.jail} ${b.addr}`), [`ssh-test.v1 ${ATK4}`], 'listed under the jail, not the label');
    fw.delete('ssh-test.v1', ATK4);
    await fw.commit();
    assert.doesNotMatch(await chainsOf(), /-A f2b-SSH -s/, 'unban removes the rule from f2b-SSH');

    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    await fw.commit();
    await fw.init([SSH, ALL]);
    const relabelled = await chainsOf();
    assert.doesNotMatch(relabelled, /f2b-SSH/, 'the old chain is gone');
    assert.match(relabelled, /^-N f2b-ssh-test\.v1$/m);
    await fw.sync([ban('ssh-test.v1', ATK4, 60_000)]);
    assert.match(await chainsOf(), new RegExp(`^-A f2b-ssh-test\\.v1 -s ${ATK4}/32 -j DROP$`, 'm'), 'a sync puts the ban in the renamed chain');
    assert.equal(await reach('atk', HOST4, 22), false, 'enforced again');
  } finally {
    await fw.shutdown({ cleanup: true });
  }
  assert.doesNotMatch(await chainsOf(), /fleetban|f2b-/, 'cleanup removes every chain');
});

/**
 * Connect from the attacker to port 22 over both families and assert a refusal well before the
 * 3 s a drop would take: at once over IPv4, and over IPv6 within the SYN retransmit that ICMPv6
 * errors wait for (connectTimed), or at once when the answer is a reset.
 */
async function assertRefused(v6Ms: number): Promise<void> {
  for (const [addr, limit] of [[HOST4, 500], [HOST6, v6Ms]] as const) {
    const r = await connectTimed(fleet, 'atk', addr, 22, 3000);
    assert.equal(r.outcome, 'ECONNREFUSED', `rejected over ${addr}`);
    assert.ok(r.ms < limit, `refused over ${addr} within ${limit} ms, not after a timeout (${r.ms} ms)`);
  }
}

for (const [name, make] of backends) {
  test(`${name}: blocktype = reject refuses the attacker with port unreachable over IPv4 and IPv6; drop stays silent`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const fw = make();
    try {
      await fw.init([{ ...SSH, blocktype: 'reject' }, ALL]);
      fw.add(ban('ssh-test.v1', ATK4, 60_000));
      fw.add(ban('ssh-test.v1', ATK6, 60_000));
      fw.add(ban('all_ports', '198.51.100.77', 60_000));
      await fw.commit();
      await assertRefused(2000);
      assert.equal(await connectOutcome(fleet, 'atk', HOST4, 80), 'connected');
      const dropped = await connectTimed(fleet, 'good', HOST4, 22, 3000);
      assert.equal(dropped.outcome, 'timeout', 'a drop jail still drops silently');
      assert.ok(dropped.ms >= 2900, `a drop is only noticed by the timeout (${dropped.ms} ms)`);
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });

  test(`${name}: blocktype = tcp-reset answers TCP with a reset at once, on a TCP jail and on an all-protocols jail`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const fw = make();
    try {
      await fw.init([{ ...SSH, blocktype: 'tcp-reset' }, { ...ALL, blocktype: 'tcp-reset' }]);
      fw.add(ban('ssh-test.v1', ATK4, 60_000));
      fw.add(ban('ssh-test.v1', ATK6, 60_000));
      await fw.commit();
      await assertRefused(500);
      assert.equal(await connectOutcome(fleet, 'atk', HOST4, 80), 'connected', 'the port-scoped jail leaves port 80 alone');
      fw.delete('ssh-test.v1', ATK4);
      fw.delete('ssh-test.v1', ATK6);
      fw.add(ban('all_ports', ATK4, 60_000));
      fw.add(ban('all_ports', ATK6, 60_000));
      await fw.commit();
      await assertRefused(500);
      const text = (await fleet.exec('host', 'iptables-save', ['-t', 'filter'])).stdout + (await fleet.exec('host', 'ip6tables-save', ['-t', 'filter'])).stdout;
      // The all-protocols jail resets TCP and answers every other protocol with port unreachable.
      assert.match(text, /-p tcp .*-j REJECT --reject-with tcp-reset$/m);
      assert.match(text, /-j REJECT --reject-with icmp-port-unreachable$/m);
      assert.match(text, /-j REJECT --reject-with icmp6-port-unreachable$/m);
      assert.equal(await connectOutcome(fleet, 'good', HOST4, 22), 'connected', 'bystander connects');
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });
}

test('iptables: a jail whose blocktype changes keeps its bans, now with the new target; unban and expiry remove them', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const fw = new IptablesBackend({ commandPrefix: fleet.prefix('host'), expireIntervalMs: 250 });
  const rules = async (): Promise<string> =>
    (await fleet.exec('host', 'iptables-save', ['-t', 'filter'])).stdout + (await fleet.exec('host', 'ip6tables-save', ['-t', 'filter'])).stdout;
  try {
    await fw.init([SSH, ALL]);
    fw.add(ban('ssh-test.v1', ATK4, 60_000));
    fw.add(ban('ssh-test.v1', ATK6, 60_000));
    await fw.commit();
    assert.equal((await connectTimed(fleet, 'atk', HOST4, 22)).outcome, 'timeout', 'the default blocktype drops');
    assert.equal((await connectTimed(fleet, 'atk', HOST6, 22)).outcome, 'timeout');

    await fw.init([{ ...SSH, blocktype: 'reject' }, ALL]);
    const text = await rules();
    assert.match(text, new RegExp(`^-A f2b-ssh-test\\.v1 -s ${ATK4}/32 -j REJECT --reject-with icmp-port-unreachable$`, 'm'));
    assert.match(text, new RegExp(`^-A f2b-ssh-test\\.v1 -s ${ATK6}/128 -j REJECT --reject-with icmp6-port-unreachable$`, 'm'));
    assert.doesNotMatch(text, /-j DROP$/m, 'no ban rule kept the old target');
    assert.equal((await fw.list()).length, 2, 'both bans still held');
    assert.equal((await connectTimed(fleet, 'atk', HOST4, 22)).outcome, 'ECONNREFUSED');
    assert.equal((await connectTimed(fleet, 'atk', HOST6, 22, 3000)).outcome, 'ECONNREFUSED', 'over IPv6 too');

    fw.delete('ssh-test.v1', ATK4);
    fw.add(ban('ssh-test.v1', '198.51.100.77', 1500));
    await fw.commit();
    assert.equal(await connectOutcome(fleet, 'atk', HOST4, 22), 'connected', 'the unban removed the REJECT rule');
    assert.equal(await connectOutcome(fleet, 'good', HOST4, 22), 'ECONNREFUSED');
    await waitUntil(async () => (await connectOutcome(fleet, 'good', HOST4, 22)) === 'connected', 5000, 'the short REJECT ban to expire');
    assert.doesNotMatch(await rules(), /198\.51\.100\.77/, 'the expired REJECT rule is gone');

    await fw.sync([ban('ssh-test.v1', ATK4, 60_000)]);
    assert.equal(await connectOutcome(fleet, 'atk', HOST4, 22), 'ECONNREFUSED', 'a sync writes reject rules too');
    assert.equal(await connectOutcome(fleet, 'atk', HOST6, 22), 'connected', 'and removes what it was not given');
  } finally {
    await fw.shutdown({ cleanup: true });
  }
  assert.doesNotMatch(await rules(), /fleetban|f2b-/, 'cleanup removes every chain');
});
