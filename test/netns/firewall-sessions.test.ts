/**
 * The long-lived firewall tool processes (nft -i, ipset -, iptables-restore --noflush -v) against
 * real kernels in namespaces: batches go through one process, its answer per batch is the
 * kernel's, a killed or hung process is replaced with the batch retried on a one-shot process,
 * the one-shot path still works alone, and a change the kernel refuses is dropped instead of
 * failing every later batch.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { IpsetBackend } from '../../agent/firewall/ipset.js';
import { IptablesBackend } from '../../agent/firewall/iptables.js';
import { NFT_MAX_TIMEOUT_MS, NftablesBackend, nftJailId } from '../../agent/firewall/nftables.js';
import type { FirewallBackend } from '../../agent/firewall/backend.js';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ATK4, GOOD4, HOST4, SSH, ban, captureLogger } from '../helpers/firewall.js';

const avail = netnsAvailable();
let fleet: Fleet;
let stops: Array<() => Promise<void>> = [];

const reach = (from: string, addr: string, port: number) => fleet.tcpConnects(from, addr, port, 700);
type Lines = Array<Record<string, unknown>>;
const commands = (lines: Lines) => lines.filter((l) => l.msg === 'firewall command');
const viaSession = (l: Record<string, unknown>) => Array.isArray(l.argv) && l.argv[0] === 'session';
/** Pids of the session processes a backend has started, from its debug log. */
const sessionPids = (lines: Lines) => lines.filter((l) => l.msg === 'firewall session started').map((l) => l.pid as number);

before(async () => {
  if (!avail.ok) return;
  fleet = await createFleet([
    { name: 'host', addrs: [`${HOST4}/24`, '2001:db8::10/64'] },
    { name: 'atk', addrs: [`${ATK4}/24`, '2001:db8::66/64'] },
    { name: 'good', addrs: [`${GOOD4}/24`, '2001:db8::77/64'] },
  ]);
  stops.push((await fleet.listen('host', '::', 22)).stop);
});

after(async () => {
  for (const s of stops) await s();
  stops = [];
  await fleet?.destroy();
});

interface Kind {
  name: string;
  make: (extra: Record<string, unknown>) => FirewallBackend;
}

const kinds: Kind[] = [
  { name: 'nftables', make: (extra) => new NftablesBackend({ commandPrefix: fleet.prefix('host'), table: 'fbsess', ...extra }) },
  { name: 'ipset', make: (extra) => new IpsetBackend({ commandPrefix: fleet.prefix('host'), namePrefix: 'fs-', chain: 'fbsess', ...extra }) },
  { name: 'iptables', make: (extra) => new IptablesBackend({ commandPrefix: fleet.prefix('host'), namePrefix: 'fs-', chain: 'fbsess', ...extra }) },
];

for (const kind of kinds) {
  test(`${kind.name}: commits go through one long-lived process and the kernel enforces them`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const { logger, lines } = captureLogger();
    const fw = kind.make({ logger });
    try {
      await fw.init([SSH]);
      const started = sessionPids(lines).length;
      assert.equal(started, kind.name === 'iptables' ? 2 : 1, 'init started the session (iptables: one per family)');
      const before = lines.length;
      fw.add(ban(SSH.jail, ATK4, 60_000));
      await fw.commit();
      assert.equal(await reach('atk', HOST4, 22), false, 'attacker dropped');
      for (const a of ['192.0.2.1', '192.0.2.2', '2001:db8:7::1']) {
        fw.add(ban(SSH.jail, a, 60_000));
        await fw.commit();
      }
      fw.delete(SSH.jail, ATK4);
      await fw.commit();
      assert.equal(await reach('atk', HOST4, 22), true, 'attacker connects after the unban');
      assert.equal(await reach('good', HOST4, 22), true, 'bystander connects');
      const cmds = commands(lines.slice(before));
      assert.ok(cmds.length >= 5 && cmds.every(viaSession), `every commit went through the session: ${JSON.stringify(cmds.map((c) => c.argv))}`);
      assert.equal(sessionPids(lines).length, started, 'no process started per batch');
      assert.deepEqual((await fw.list()).map((b) => b.addr).sort(), ['192.0.2.1', '192.0.2.2', '2001:db8:7::1']);
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });

  test(`${kind.name}: a killed session is replaced, the batch retried on a one-shot process`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const { logger, lines } = captureLogger();
    const fw = kind.make({ logger });
    try {
      await fw.init([SSH]);
      fw.add(ban(SSH.jail, '192.0.2.5', 60_000));
      await fw.commit();
      const [first] = sessionPids(lines);
      assert.ok(first, 'a session started');
      process.kill(first, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      lines.length = 0;
      fw.add(ban(SSH.jail, ATK4, 60_000));
      await fw.commit();
      assert.equal(await reach('atk', HOST4, 22), false, 'the ban applied despite the dead process');
      // The death is noticed either before the write (a new session answers) or by the write
      // (one-shot retry); a ban after that runs in a fresh session.
      fw.add(ban(SSH.jail, '192.0.2.6', 60_000));
      await fw.commit();
      const pids = sessionPids(lines);
      assert.ok(pids.length >= 1 && !pids.includes(first), 'a fresh process replaced the killed one');
      assert.ok(viaSession(commands(lines).at(-1)!), 'the next batch went through the new session');
      assert.deepEqual((await fw.list()).map((b) => b.addr).sort(), ['192.0.2.5', '192.0.2.6', ATK4]);
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });

  test(`${kind.name}: a hung session is killed after its timeout and the batch applies one-shot`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const { logger, lines } = captureLogger();
    const fw = kind.make({ logger, sessionTimeoutMs: 500 });
    try {
      await fw.init([SSH]);
      fw.add(ban(SSH.jail, '192.0.2.5', 60_000));
      await fw.commit();
      const pids = sessionPids(lines);
      for (const pid of pids) process.kill(pid, 'SIGSTOP'); // alive but answering nothing
      lines.length = 0;
      fw.add(ban(SSH.jail, ATK4, 60_000));
      await fw.commit();
      assert.ok(lines.some((l) => l.msg === 'firewall session broke; retrying the batch on a one-shot process' && /no answer within 500 ms/.test(String(l.reason))), 'the hang was noticed');
      const oneShot = commands(lines).filter((l) => !viaSession(l));
      assert.ok(oneShot.length >= 1, 'the batch ran on a one-shot process');
      assert.equal(await reach('atk', HOST4, 22), false, 'and the kernel holds it');
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      // iptables: only the IPv4 process had a batch to hang on.
      assert.ok(pids.some((pid) => !alive(pid)), 'the hung process was killed');
      lines.length = 0;
      fw.add(ban(SSH.jail, '192.0.2.6', 60_000));
      await fw.commit();
      assert.ok(sessionPids(lines).length >= 1 && commands(lines).every(viaSession), 'a fresh session takes the next batch');
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });

  test(`${kind.name}: with persistent off every batch is a one-shot process`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const { logger, lines } = captureLogger();
    const fw = kind.make({ logger, persistent: false });
    try {
      await fw.init([SSH]);
      lines.length = 0;
      fw.add(ban(SSH.jail, ATK4, 60_000));
      await fw.commit();
      fw.delete(SSH.jail, ATK4);
      fw.add(ban(SSH.jail, '192.0.2.9', 60_000));
      await fw.commit();
      assert.equal(sessionPids(lines).length, 0, 'no session started');
      assert.ok(commands(lines).length >= 2 && !commands(lines).some(viaSession));
      assert.deepEqual((await fw.list()).map((b) => b.addr), ['192.0.2.9']);
      assert.equal(await reach('atk', HOST4, 22), true);
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });
}

test('nftables: a session reports the kernel refusing a batch, and the repair path still runs', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const { logger, lines } = captureLogger();
  const fw = new NftablesBackend({ commandPrefix: fleet.prefix('host'), table: 'fbsrep', logger });
  try {
    await fw.init([SSH]);
    fw.add(ban(SSH.jail, '192.0.2.5', 60_000));
    await fw.commit();
    await fleet.exec('host', 'nft', ['delete', 'table', 'inet', 'fbsrep']); // the session's next batch fails in the kernel
    fw.add(ban(SSH.jail, ATK4, 60_000));
    await fw.commit();
    const warn = lines.find((l) => l.msg === 'nft batch failed; repairing the table and retrying once');
    assert.ok(warn && /No such file or directory/.test(String(warn.stderr)), `the session carried nft's error: ${JSON.stringify(warn)}`);
    assert.equal(await reach('atk', HOST4, 22), false, 'enforced after the repair');
  } finally {
    await fw.shutdown({ cleanup: true });
  }
});

for (const persistent of [true, false]) {
  test(`nftables (${persistent ? 'session' : 'one-shot'}): a 1000-year ban is clamped to the kernel's limit and later bans still apply`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const { logger, lines } = captureLogger();
    const fw = new NftablesBackend({ commandPrefix: fleet.prefix('host'), table: 'fbclamp', logger, persistent });
    try {
      await fw.init([SSH]);
      assert.equal(fw.maxTimeoutMs, NFT_MAX_TIMEOUT_MS);
      fw.add(ban(SSH.jail, ATK4, 1000 * 365 * 86_400_000));
      await fw.commit();
      fw.add(ban(SSH.jail, '192.0.2.7', 60_000));
      await fw.commit();
      assert.ok(!lines.some((l) => (l.level as number) >= 40), `no warning or error: ${JSON.stringify(lines.filter((l) => (l.level as number) >= 40))}`);
      const listed = await fw.list();
      const long = listed.find((b) => b.addr === ATK4);
      assert.ok(long && Math.abs(long.until - Date.now() - NFT_MAX_TIMEOUT_MS) < 86_400_000, `the kernel holds it with the longest timeout: ${JSON.stringify(long)}`);
      assert.ok(listed.some((b) => b.addr === '192.0.2.7'));
      assert.equal(await reach('atk', HOST4, 22), false);
      await fw.sync([ban(SSH.jail, ATK4, 1000 * 365 * 86_400_000), ban(SSH.jail, '192.0.2.8', 60_000)]);
      assert.deepEqual((await fw.list()).map((b) => b.addr).sort(), ['192.0.2.8', ATK4], 'a sync with it applies too');
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });

  test(`nftables (${persistent ? 'session' : 'one-shot'}): a change the kernel refuses is dropped and logged, not re-queued`, async (t) => {
    if (!avail.ok) return t.skip(avail.reason);
    const { logger, lines } = captureLogger();
    const fw = new NftablesBackend({ commandPrefix: fleet.prefix('host'), table: 'fbrefuse', logger, persistent });
    const set = `${nftJailId(SSH.jail)}_s4`;
    try {
      await fw.init([SSH]);
      // Make the kernel refuse a second element: our set replaced by one that holds a single one
      // (the repair's `add set` keeps an existing set as it is).
      await fleet.exec('host', 'nft', ['-f', '-'], {
        input: `flush chain inet fbrefuse input\ndelete set inet fbrefuse ${set}\nadd set inet fbrefuse ${set} { type ipv4_addr; flags timeout; size 1; }\n`,
      });
      fw.add(ban(SSH.jail, ATK4, 60_000));
      fw.add(ban(SSH.jail, '192.0.2.20', 60_000));
      await fw.commit(); // does not throw: one element applies, the other is dropped
      const refused = lines.filter((l) => l.msg === 'the kernel refused this firewall change; dropped, not retried');
      assert.equal(refused.length, 1, 'one change dropped');
      assert.equal(refused[0]!.addr, '192.0.2.20');
      assert.equal(fw.kernelRefused, 1, 'counted, for the heartbeat\'s bansRefused');
      assert.match(String(refused[0]!.stderr), /Error/);
      assert.equal(await reach('atk', HOST4, 22), false, 'the accepted ban is enforced');
      lines.length = 0;
      fw.delete(SSH.jail, ATK4);
      fw.add(ban(SSH.jail, '192.0.2.21', 60_000)); // fits once the unban freed the one place
      await fw.commit();
      assert.ok(!lines.some((l) => (l.level as number) >= 40), 'the next batch applied cleanly: the refused element was not retried');
      assert.deepEqual((await fw.list()).map((b) => b.addr), ['192.0.2.21']);
    } finally {
      await fw.shutdown({ cleanup: true });
    }
  });
}
