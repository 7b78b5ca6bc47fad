// One contract, every backend: what the FirewallBackend interface promises (agent/firewall/backend.ts),
// proven the same way for nftables, ipset, iptables and dry-run. Kernel backends are also checked
// with real TCP from an attacker's and a bystander's namespace; dry-run, which changes nothing on
// the host, answers through list() alone. Shorewall's dynamic blacklist has no ports and needs a
// running Shorewall in the namespace: its file (firewall-shorewall.test.ts) proves the same
// contract with all-ports jails. What is particular to one backend (nft sessions and timeouts,
// iptables chain names, blocktype targets) stays in that backend's file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import { InvalidInputError } from '../../common/errors.js';
import type { FirewallBackend } from '../../agent/firewall/backend.js';
import { DryRunBackend } from '../../agent/firewall/dry-run.js';
import { IpsetBackend } from '../../agent/firewall/ipset.js';
import { IptablesBackend } from '../../agent/firewall/iptables.js';
import { NftablesBackend } from '../../agent/firewall/nftables.js';
import { netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ALL, ATK4, ATK6, GOOD4, HOST4, HOST6, SSH, ban, captureLogger, startFirewallFleet } from '../helpers/firewall.js';
import { waitUntil } from '../helpers/wait.js';

const avail = netnsAvailable();

let fleet: Fleet;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  if (!avail.ok) return;
  ({ fleet, stop } = await startFirewallFleet());
});

after(async () => {
  await stop?.();
});

type Extra = { logger?: Logger; maxBans?: number };
interface Subject {
  readonly name: string;
  make(extra?: Extra): FirewallBackend;
  /** True when the kernel enforces: reachability is checked too. */
  readonly kernel: boolean;
  /** The operation name of one commit in the 'firewall command' log lines (kernel backends). */
  readonly commitOp?: string;
  /** Wipe what the backend made, as another tool or an admin might. */
  wipe?(): Promise<void>;
  /** Assert nothing of the backend is left on the host after shutdown({ cleanup: true }). */
  assertClean?(): Promise<void>;
}

const prefix = () => fleet.prefix('host');
const out = async (cmd: string, args: string[]) => (await fleet.exec('host', cmd, args)).stdout;

const subjects: Subject[] = [
  {
    name: 'nftables', kernel: true, commitOp: 'nft commit',
    make: (extra = {}) => new NftablesBackend({ commandPrefix: prefix(), table: 'fbconform', ...extra }),
    wipe: async () => { await fleet.exec('host', 'nft', ['flush', 'ruleset']); },
    assertClean: async () => assert.doesNotMatch(await out('nft', ['list', 'tables']), /fbconform/, 'table removed'),
  },
  {
    name: 'ipset', kernel: true, commitOp: 'ipset commit',
    make: (extra = {}) => new IpsetBackend({ commandPrefix: prefix(), ...extra }),
    wipe: async () => {
      for (const tool of ['iptables', 'ip6tables']) for (const op of ['-F', '-X']) await fleet.exec('host', tool, [op]);
      await fleet.exec('host', 'ipset', ['destroy']);
    },
    assertClean: async () => {
      for (const tool of ['iptables', 'ip6tables']) assert.doesNotMatch(await out(tool, ['-S']), /fleetban|f2b-/, `${tool} cleaned`);
      assert.equal((await out('ipset', ['list', '-n'])).trim(), '', 'no sets left');
    },
  },
  {
    name: 'iptables', kernel: true, commitOp: 'iptables commit',
    make: (extra = {}) => new IptablesBackend({ commandPrefix: prefix(), expireIntervalMs: 250, ...extra }),
    wipe: async () => { for (const tool of ['iptables', 'ip6tables']) for (const op of ['-F', '-X']) await fleet.exec('host', tool, [op]); },
    assertClean: async () => { for (const tool of ['iptables', 'ip6tables']) assert.doesNotMatch(await out(tool, ['-S']), /fleetban|f2b-/, `${tool} cleaned`); },
  },
  { name: 'dry-run', kernel: false, make: (extra = {}) => new DryRunBackend(extra) },
];

const reach = (from: string, addr: string, port: number) => fleet.tcpConnects(from, addr, port, 700);

for (const s of subjects) {
  describe(`${s.name} backend (conformance)`, () => {
    /** Where the kernel enforces, `expect` is the attacker's or bystander's reachability. */
    const expectReach = async (from: string, addr: string, port: number, expected: boolean, why: string) => {
      if (s.kernel) assert.equal(await reach(from, addr, port), expected, why);
    };

    test('bans by jail and port, over IPv4 and IPv6, networks overlapping addresses; unban in any spelling; list() is the truth', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const fw = s.make();
      try {
        await fw.init([SSH, ALL]);
        await expectReach('atk', HOST4, 22, true, 'attacker connects before the ban');
        const v6 = ban('ssh-test.v1', ATK6, 60_000);
        fw.add(ban('ssh-test.v1', ATK4, 60_000));
        fw.add(v6);
        fw.add(ban('ssh-test.v1', GOOD4, -5000)); // already expired: skipped, not an error
        await fw.commit();
        await expectReach('atk', HOST4, 22, false, 'attacker dropped on the jail port');
        await expectReach('atk', HOST6, 22, false, 'IPv6 attacker dropped');
        await expectReach('atk', HOST4, 80, true, 'attacker reaches a port outside the jail');
        await expectReach('good', HOST4, 22, true, 'bystander connects');
        await expectReach('good', HOST6, 22, true, 'IPv6 bystander connects');
        fw.add(ban('all_ports', '198.51.100.64/29', 60_000)); // holds the attacker, not the bystander
        fw.add(ban('all_ports', ATK4, 60_000)); // inside the network: must not fail the batch
        await fw.commit();
        await expectReach('atk', HOST4, 80, false, 'the network ban drops every port');
        await expectReach('good', HOST4, 80, true, 'outside the network');
        const listed = await fw.list();
        assert.deepEqual(listed.map((b) => `${b.jail} ${b.addr} ${b.family}`).sort(),
          ['all_ports 198.51.100.64/29 4', `all_ports ${ATK4} 4`, `ssh-test.v1 ${ATK4} 4`, `ssh-test.v1 ${ATK6} 6`]);
        const until = listed.find((b) => b.addr === ATK6)!.until;
        assert.ok(Math.abs(until - v6.until) < 2000, `listed until ${until} is close to the ban's ${v6.until}`);
        fw.delete('all_ports', '198.51.100.64/29');
        await fw.commit();
        await expectReach('atk', HOST4, 80, false, 'the address ban holds after its network goes');
        fw.delete('all_ports', ATK4);
        fw.delete('ssh-test.v1', ATK4);
        fw.delete('ssh-test.v1', '2001:DB8:0::66'); // the same IPv6 address, spelled otherwise
        fw.delete('ssh-test.v1', '192.0.2.200'); // never banned: not an error
        await fw.commit();
        await expectReach('atk', HOST4, 22, true, 'unbanned');
        await expectReach('atk', HOST6, 22, true, 'unbanned over IPv6');
        await expectReach('atk', HOST4, 80, true, 'unbanned on every port');
        assert.deepEqual(await fw.list(), []);
      } finally {
        await fw.shutdown({ cleanup: true });
      }
    });

    test('a 2 s ban ends by itself', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const fw = s.make();
      try {
        await fw.init([SSH]);
        fw.add(ban('ssh-test.v1', ATK4, 2000));
        await fw.commit();
        await expectReach('atk', HOST4, 22, false, 'banned');
        await waitUntil(async () => (await fw.list()).length === 0, 6000, 'the ban leaves list()', 200);
        if (s.kernel) await waitUntil(() => reach('atk', HOST4, 22), 6000, 'attacker connects again after expiry', 300);
      } finally {
        await fw.shutdown({ cleanup: true });
      }
    });

    test('sync replaces everything, init is idempotent, a changed jail list takes its bans along, 10,000 bans in one commit, cleanup leaves nothing', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const { logger, lines } = captureLogger();
      const fw = s.make({ logger });
      try {
        await fw.init([SSH, ALL]);
        fw.add(ban('ssh-test.v1', '203.0.113.5', 60_000));
        await fw.commit();
        // The same address twice in one sync: the later entry is the one kept, once.
        await fw.sync([ban('ssh-test.v1', ATK4, 60_000), ban('all_ports', '2001:db8:9::/48', -1), ban('ssh-test.v1', ATK4, 30_000)]);
        assert.deepEqual((await fw.list()).map((b) => `${b.jail} ${b.addr} ${b.until === -1 ? 'forever' : 'timed'}`).sort(),
          ['all_ports 2001:db8:9::/48 forever', `ssh-test.v1 ${ATK4} timed`]);
        await expectReach('atk', HOST4, 22, false, 'synced ban enforced');
        await fw.init([SSH, ALL]);
        assert.equal((await fw.list()).length, 2, 're-init keeps the bans');
        await expectReach('atk', HOST4, 22, false, 're-init keeps enforcing');

        for (let i = 0; i < 9999; i++) fw.add(ban('ssh-test.v1', `2001:db8:1:${(i >> 8).toString(16)}::${(i & 0xff).toString(16)}`, 600_000));
        lines.length = 0;
        await fw.commit();
        if (s.commitOp) {
          const cmds = lines.filter((l) => l.msg === 'firewall command');
          assert.deepEqual(cmds.map((l) => l.operation), [s.commitOp], 'one process (or session batch) for the whole commit');
        }
        assert.equal((await fw.list()).length, 10_001);
        await expectReach('atk', HOST4, 22, false, 'still enforced');
        await expectReach('good', HOST4, 22, true, 'bystander connects');

        await fw.init([SSH]);
        assert.deepEqual([...new Set((await fw.list()).map((b) => b.jail))], ['ssh-test.v1'], 'the removed jail took its bans along');
        assert.throws(() => fw.add(ban('all_ports', ATK4, 1000)), InvalidInputError, 'a jail that is no longer set up');
      } finally {
        await fw.shutdown({ cleanup: true });
      }
      await s.assertClean?.();
    });

    test('the per-host cap refuses new bans with a warning (an unban in the same batch makes room); bad input is refused before any command; a wiped firewall is repaired on the next commit', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      const { logger, lines } = captureLogger();
      const fw = s.make({ logger, maxBans: 3 });
      try {
        await fw.init([SSH]);
        for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5']) fw.add(ban('ssh-test.v1', a, 60_000));
        await fw.commit();
        if (s.kernel) {
          assert.equal((await fw.list()).length, 3);
          assert.ok(lines.some((l) => l.level === 40 && l.maxBans === 3 && l.refused === 2), 'cap warning logged');
          fw.delete('ssh-test.v1', '192.0.2.1');
          fw.add(ban('ssh-test.v1', '192.0.2.6', 60_000));
          await fw.commit();
          assert.deepEqual((await fw.list()).map((b) => b.addr).sort(), ['192.0.2.2', '192.0.2.3', '192.0.2.6']);
        } else {
          // dry-run holds no kernel elements, so it has no cap to enforce: it keeps what it was told.
          assert.equal((await fw.list()).length, 5);
        }
        assert.throws(() => fw.add(ban('ssh-test.v1', '192.0.2.1; flush ruleset', 1000)), InvalidInputError);
        assert.throws(() => fw.add(ban('ssh-test.v1', '203.0.113.9/24', 1000)), /host bits/);
        assert.throws(() => fw.add(ban('nosuch', ATK4, 1000)), InvalidInputError, 'a jail init() did not set up');
        if (s.wipe) {
          await fw.sync([]);
          await s.wipe();
          fw.add(ban('ssh-test.v1', ATK4, 60_000));
          await fw.commit();
          await expectReach('atk', HOST4, 22, false, 'enforced again after the repair');
          assert.deepEqual((await fw.list()).map((b) => b.addr), [ATK4]);
        }
      } finally {
        await fw.shutdown({ cleanup: true });
      }
    });
  });
}
