// What is particular to the iptables-based backends (chain names, REJECT targets, blocktype changes),
// proven with real TCP; the contract every backend keeps is in firewall-conformance.test.ts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import type { FirewallBackend } from '../../agent/firewall/backend.js';
import { IpsetBackend } from '../../agent/firewall/ipset.js';
import { IptablesBackend } from '../../agent/firewall/iptables.js';
import { netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ALL, ATK4, ATK6, HOST4, HOST6, SSH, ban, connectOutcome, connectTimed, startFirewallFleet } from '../helpers/firewall.js';
import { waitUntil } from '../helpers/wait.js';

const avail = netnsAvailable();


let fleet: Fleet;
let stop: (() => Promise<void>) | undefined;


const reach = (from: string, addr: string, port: number) => fleet.tcpConnects(from, addr, port, 700);

before(async () => {
  if (!avail.ok) return;
  ({ fleet, stop } = await startFirewallFleet());
});

after(async () => {
  await stop?.();
});

type Make = (extra?: { logger?: Logger; maxBans?: number }) => FirewallBackend;
const backends: Array<[string, Make]> = [
  ['ipset', (extra = {}) => new IpsetBackend({ commandPrefix: fleet.prefix('host'), ...extra })],
  ['iptables', (extra = {}) => new IptablesBackend({ commandPrefix: fleet.prefix('host'), expireIntervalMs: 250, ...extra })],
];

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
