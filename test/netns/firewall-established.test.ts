// A ban must cut an attacker's open connections, not only refuse new ones (fail2ban's guides warn
// about firewalls that check the blacklist for new connections only). For each kernel backend: the
// host already has the usual "accept established first" rule, the attacker holds an established
// TCP connection that carries data, the address is banned, and no more data flows on it.
// Shorewall, whose answer depends on its BLACKLIST= setting, is proven in firewall-shorewall.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FirewallBackend } from '../../agent/firewall/backend.js';
import { NftablesBackend } from '../../agent/firewall/nftables.js';
import { IpsetBackend } from '../../agent/firewall/ipset.js';
import { IptablesBackend } from '../../agent/firewall/iptables.js';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ATK4, ATK6, HOST4, HOST6, SSH, ban } from '../helpers/firewall.js';
import { openSession, startEchoServer, type EchoServer } from '../helpers/tcp-session.js';

const avail = netnsAvailable();
let fleet: Fleet;
let server: EchoServer;

before(async () => {
  if (!avail.ok) return;
  fleet = await createFleet([
    { name: 'host', addrs: [`${HOST4}/24`, `${HOST6}/64`] },
    { name: 'atk', addrs: [`${ATK4}/24`, `${ATK6}/64`] },
  ]);
  server = await startEchoServer(fleet.prefix('host'), '::', 22);
});

after(async () => {
  await server?.stop();
  await fleet?.destroy();
});

/** The rules a typical host has before fleetban: established traffic accepted first. */
async function hostFirewall(kind: 'nft' | 'iptables'): Promise<void> {
  if (kind === 'nft') {
    await fleet.exec('host', 'nft', ['-f', '-'], {
      input: 'table inet hostfw {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ct state established,related accept\n }\n}\n',
    });
    return;
  }
  for (const tool of ['iptables', 'ip6tables']) {
    await fleet.exec('host', tool, ['-w', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
  }
}

async function clearHostFirewall(): Promise<void> {
  await fleet.exec('host', 'nft', ['delete', 'table', 'inet', 'hostfw'], { reject: false });
  for (const tool of ['iptables', 'ip6tables']) {
    await fleet.exec('host', tool, ['-w', '-D', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'], { reject: false });
  }
}

const backends: Array<[string, 'nft' | 'iptables', () => FirewallBackend]> = [
  ['nftables', 'nft', () => new NftablesBackend({ commandPrefix: fleet.prefix('host') })],
  ['ipset', 'iptables', () => new IpsetBackend({ commandPrefix: fleet.prefix('host') })],
  ['iptables', 'iptables', () => new IptablesBackend({ commandPrefix: fleet.prefix('host'), expireIntervalMs: 250 })],
];

for (const [name, kind, make] of backends) {
  describe(`${name} backend`, () => {
    test('a ban cuts the attacker\'s established TCP connection (IPv4 and IPv6)', async (t) => {
      if (!avail.ok) return t.skip(avail.reason);
      await hostFirewall(kind);
      const fw = make();
      const v4 = await openSession(fleet.prefix('atk'), HOST4, 22);
      const v6 = await openSession(fleet.prefix('atk'), HOST6, 22);
      try {
        await fw.init([SSH]);
        assert.equal(await v4.roundTrip(`${name}-v4-before`, 3000), true, 'the connection carries data before the ban');
        assert.equal(await v6.roundTrip(`${name}-v6-before`, 3000), true);
        fw.add(ban(SSH.jail, ATK4, 60_000));
        fw.add(ban(SSH.jail, ATK6, 60_000));
        await fw.commit();
        assert.equal(await v4.roundTrip(`${name}-v4-after`, 1500), false, 'no echo on the open IPv4 connection after the ban');
        assert.equal(await v6.roundTrip(`${name}-v6-after`, 1500), false, 'no echo on the open IPv6 connection after the ban');
        assert.ok(!server.received.includes(`${name}-v4-after`), 'the server received nothing sent after the ban');
        assert.ok(!server.received.includes(`${name}-v6-after`));
      } finally {
        await v4.close();
        await v6.close();
        await fw.shutdown({ cleanup: true });
        await clearHostFirewall();
      }
    });
  });
}
