// Shorewall runs for real inside the host namespace: `ip netns exec` bind-mounts
// /etc/netns/<ns>/shorewall over /etc/shorewall, which gives that namespace its own configuration
// and, through the `vardir` file, its own state directory, leaving the machine's Shorewall alone.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JailRule } from '../../agent/firewall/backend.js';
import { ShorewallBackend } from '../../agent/firewall/shorewall.js';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ATK4, ATK6, HOST4, HOST6, ban, captureLogger, connectTimed } from '../helpers/firewall.js';
import { openSession, startEchoServer } from '../helpers/tcp-session.js';
import { CLI, writeConfig as writeFleetbanConfig } from '../helpers/spawn.js';

const net = netnsAvailable();
const installed = existsSync('/usr/share/shorewall/configfiles/shorewall.conf') && existsSync('/usr/share/shorewall6/configfiles/shorewall6.conf');
const skip = !net.ok ? net.reason : !installed ? 'needs the Debian packages shorewall and shorewall6' : undefined;

const SSH: JailRule = { jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] };
const WEB: JailRule = { jail: 'web.auth', ports: [[80, 80]], protocols: ['tcp'] };

let fleet: Fleet;
const stops: Array<() => Promise<void>> = [];
const cleanupPaths: string[] = [];

function writeConfig(ns: string, product: 'shorewall' | 'shorewall6'): void {
  const dir = join('/etc/netns', ns, product);
  mkdirSync(dir, { recursive: true });
  const vardir = mkdtempSync(join(tmpdir(), `fleetban-${product}-`));
  cleanupPaths.push(vardir);
  writeFileSync(join(dir, 'zones'), `fw\tfirewall\nnet\t${product === 'shorewall' ? 'ipv4' : 'ipv6'}\n`);
  writeFileSync(join(dir, 'interfaces'), '?FORMAT 2\nnet\teth0\t-\n');
  writeFileSync(join(dir, 'policy'), '$FW\tall\tACCEPT\nnet\tall\tACCEPT\nall\tall\tACCEPT\n');
  writeFileSync(join(dir, 'rules'), '');
  const conf = readFileSync(`/usr/share/${product}/configfiles/${product}.conf`, 'utf8')
    .replace(/^LOGFILE=.*$/m, 'LOGFILE=/dev/null')
    .replace(/^STARTUP_ENABLED=.*$/m, 'STARTUP_ENABLED=Yes');
  writeFileSync(join(dir, `${product}.conf`), conf);
  writeFileSync(join(dir, 'vardir'), `VARDIR=${vardir}\n`);
}

const reach = (from: string, addr: string, port: number) => fleet.tcpConnects(from, addr, port, 700);

/**
 * Give both families' policy a last `all all REJECT` line (unreachable: the lines before accept
 * everything) or take it away; Shorewall builds its reject chain only when something REJECTs.
 */
async function setPolicy(withReject: boolean): Promise<void> {
  for (const product of ['shorewall', 'shorewall6'] as const) {
    writeFileSync(join('/etc/netns', fleet.host('host').ns, product, 'policy'),
      `$FW\tall\tACCEPT\nnet\tall\tACCEPT\nall\tall\t${withReject ? 'REJECT' : 'ACCEPT'}\n`);
    await fleet.exec('host', product, ['reload']);
  }
}

before(async () => {
  if (skip) return;
  fleet = await createFleet([
    { name: 'host', addrs: [`${HOST4}/24`, `${HOST6}/64`] },
    { name: 'atk', addrs: [`${ATK4}/24`, `${ATK6}/64`] },
    { name: 'good', addrs: ['198.51.100.77/24', '2001:db8::77/64'] },
  ]);
  const ns = fleet.host('host').ns;
  cleanupPaths.push(join('/etc/netns', ns));
  writeConfig(ns, 'shorewall');
  writeConfig(ns, 'shorewall6');
  await fleet.exec('host', 'shorewall', ['start']);
  await fleet.exec('host', 'shorewall6', ['start']);
  for (const port of [22, 80]) stops.push((await fleet.listen('host', '::', port)).stop);
  stops.push((await startEchoServer(fleet.prefix('host'), '::', 2222)).stop);
});

after(async () => {
  for (const s of stops) await s();
  await fleet?.destroy();
  for (const p of cleanupPaths) rmSync(p, { recursive: true, force: true });
});

test('shorewall dynamic blacklist: ban drops the attacker (all ports), bystander connects, unban and expiry restore', async (t) => {
  if (skip) return t.skip(skip);
  const fw = new ShorewallBackend({ commandPrefix: fleet.prefix('host'), expireIntervalMs: 250 });
  try {
    await fw.init([SSH, WEB]);
    assert.equal(await reach('atk', HOST4, 22), true);
    fw.add(ban('sshd', ATK4, 60_000));
    fw.add(ban('sshd', ATK6, 60_000));
    const short = ban('web.auth', ATK4, 3000);
    fw.add(short);
    await fw.commit();
    assert.deepEqual((await fw.list()).map((b) => `${b.jail} ${b.addr}`).sort(), [`sshd ${ATK4}`, `sshd ${ATK6}`, `web.auth ${ATK4}`]);
    assert.equal(await reach('atk', HOST4, 22), false, 'attacker dropped');
    assert.equal(await reach('atk', HOST4, 80), false, 'the blacklist has no ports: every port is dropped');
    assert.equal(await reach('atk', HOST6, 22), false, 'IPv6 attacker dropped via shorewall6');
    assert.equal(await reach('good', HOST4, 22), true, 'bystander connects');
    assert.equal(await reach('good', HOST6, 22), true, 'IPv6 bystander connects');

    // web.auth's short ban expires, sshd's still holds the address.
    await new Promise((r) => setTimeout(r, Math.max(0, short.until - Date.now()) + 600));
    assert.deepEqual((await fw.list()).map((b) => `${b.jail} ${b.addr}`).sort(), [`sshd ${ATK4}`, `sshd ${ATK6}`]);
    assert.equal(await reach('atk', HOST4, 22), false, 'still banned by the other jail');

    fw.delete('sshd', ATK4);
    await fw.commit();
    assert.equal(await reach('atk', HOST4, 22), true, 'allowed after the last jail lets go');
    assert.equal(await reach('atk', HOST6, 22), false);

    await fw.sync([ban('web.auth', '203.0.113.0/24', -1)]);
    assert.equal(await reach('atk', HOST6, 22), true, 'sync allowed what it was not given');
    const dyn = await fleet.exec('host', 'shorewall', ['show', 'dynamic']);
    assert.match(dyn.stdout, /203\.0\.113\.0\/24/);
    assert.deepEqual((await fw.list()).map((b) => b.addr), ['203.0.113.0/24']);
  } finally {
    await fw.shutdown({ cleanup: true });
  }
  const dyn = await fleet.exec('host', 'shorewall', ['show', 'dynamic']);
  assert.doesNotMatch(dyn.stdout, /203\.0\.113\.0/, 'cleanup allowed everything it dropped');
});

test('shorewall: blocktype = reject uses shorewall reject (a reset at once); a drop jail holding the same address keeps it silent', async (t) => {
  if (skip) return t.skip(skip);
  const { logger, lines } = captureLogger();
  const fw = new ShorewallBackend({ commandPrefix: fleet.prefix('host'), logger });
  const target = async (addr: string): Promise<string | undefined> => {
    const out = (await fleet.exec('host', 'shorewall', ['show', 'dynamic'])).stdout;
    return out.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[7] === addr)?.[2];
  };
  try {
    // This configuration's policy never REJECTs, so Shorewall has built no reject chain.
    await fw.init([{ ...SSH, blocktype: 'reject' }, WEB]);
    assert.ok(lines.some((l) => l.level === 40 && /needs Shorewall's reject chain.*these jails drop instead/.test(String(l.msg))), 'warned');
    fw.add(ban('sshd', ATK4, 60_000));
    await fw.commit();
    assert.equal(await target(ATK4), 'DROP', 'dropped, not silently unbanned');
    fw.delete('sshd', ATK4);
    await fw.commit();
    await setPolicy(true);
    lines.length = 0;
    await fw.init([{ ...SSH, blocktype: 'reject' }, WEB]);
    assert.ok(!lines.some((l) => /reject chain/.test(String(l.msg))), 'no warning once the chain exists');
    fw.add(ban('sshd', ATK4, 60_000));
    fw.add(ban('sshd', ATK6, 60_000));
    fw.add(ban('web.auth', '198.51.100.77', 60_000));
    await fw.commit();
    assert.equal(await target(ATK4), 'reject', `blacklisted with shorewall reject: ${(await fleet.exec('host', 'shorewall', ['show', 'dynamic'])).stdout}`);
    for (const addr of [HOST4, HOST6]) {
      const r = await connectTimed(fleet, 'atk', addr, 22, 3000);
      assert.equal(r.outcome, 'ECONNREFUSED', `rejected over ${addr}`);
      assert.ok(r.ms < 500, `Shorewall's reject resets TCP at once (${r.ms} ms)`);
    }
    const dropped = await connectTimed(fleet, 'good', HOST4, 22, 3000);
    assert.equal(dropped.outcome, 'timeout', 'the drop jail drops silently');
    assert.equal(await target('198.51.100.77'), 'DROP');

    fw.add(ban('web.auth', ATK4, 60_000));
    await fw.commit();
    assert.equal(await target(ATK4), 'DROP', 'a drop jail on the same address makes it silent');
    assert.equal((await connectTimed(fleet, 'atk', HOST4, 22, 1500)).outcome, 'timeout');
    fw.delete('web.auth', ATK4);
    await fw.commit();
    assert.equal(await target(ATK4), 'reject', 'rejected again once only the reject jail holds it');
    assert.equal((await connectTimed(fleet, 'atk', HOST4, 22, 3000)).outcome, 'ECONNREFUSED');

    // A sync after a restart finds the entries and their verbs, and changes nothing that is right.
    await fw.sync([ban('sshd', ATK4, 60_000), ban('web.auth', '198.51.100.77', 60_000)]);
    assert.equal(await target(ATK4), 'reject');
    assert.equal(await target('198.51.100.77'), 'DROP');
    assert.equal(await target(ATK6), undefined, 'sync allowed what it was not given');
  } finally {
    await fw.shutdown({ cleanup: true });
    await setPolicy(false);
  }
  assert.equal(await target(ATK4), undefined, 'cleanup allowed everything');
});

test('shorewall backend refuses to start when Shorewall is not running', async (t) => {
  if (skip) return t.skip(skip);
  const fw = new ShorewallBackend({ commandPrefix: fleet.prefix('good') });
  await assert.rejects(fw.init([SSH]), /Shorewall is not running/);
});

const ECHO: JailRule = { jail: 'echo', ports: [[2222, 2222]], protocols: ['tcp'] };

/** The line of `KEY=` in the namespace's configuration of `product`, 1-based. */
function confLine(product: 'shorewall' | 'shorewall6', key: string): number {
  const lines = readFileSync(join('/etc/netns', fleet.host('host').ns, product, `${product}.conf`), 'utf8').split('\n');
  return lines.findIndex((l) => l.startsWith(`${key}=`)) + 1;
}

/** Set BLACKLIST= in both families' configuration and make Shorewall use it. */
async function setBlacklist(value: string): Promise<void> {
  for (const product of ['shorewall', 'shorewall6'] as const) {
    const file = join('/etc/netns', fleet.host('host').ns, product, `${product}.conf`);
    writeFileSync(file, readFileSync(file, 'utf8').replace(/^BLACKLIST=.*$/m, `BLACKLIST=${value}`));
    await fleet.exec('host', product, ['reload']);
  }
}

/** fleetban check-config run inside the host namespace, where /etc/shorewall is the test's. */
async function checkConfig(): Promise<string> {
  const dir = writeFleetbanConfig({ 'fleetban.conf': '[agent]\nbanaction = shorewall\n', 'jail.conf': '' });
  cleanupPaths.push(dir);
  const r = await fleet.exec('host', process.execPath, [CLI, '--config', dir, 'check-config']);
  return r.stdout;
}

/**
 * Ban the attacker while it holds an established connection (IPv4 and IPv6) to the echo port.
 * @returns whether each connection still carried data after the ban, and the backend's warnings
 */
async function banDuringConnection(tag: string): Promise<{ v4: boolean; v6: boolean; newV4: boolean; warnings: string[] }> {
  const { logger, lines } = captureLogger();
  const fw = new ShorewallBackend({ commandPrefix: fleet.prefix('host'), logger });
  const s4 = await openSession(fleet.prefix('atk'), HOST4, 2222);
  const s6 = await openSession(fleet.prefix('atk'), HOST6, 2222);
  try {
    await fw.init([ECHO]);
    fw.add(ban('echo', ATK4, 60_000));
    fw.add(ban('echo', ATK6, 60_000));
    await fw.commit();
    const v4 = await s4.roundTrip(`${tag}-v4`, 1500);
    const v6 = await s6.roundTrip(`${tag}-v6`, 1500);
    const newV4 = await reach('atk', HOST4, 2222);
    const warnings = lines.filter((l) => l.level === 40).map((l) => String(l.msg)).filter((m) => /BLACKLIST/.test(m));
    assert.deepEqual(warnings, [...fw.openConnectionWarnings]);
    return { v4, v6, newV4, warnings };
  } finally {
    await s4.close();
    await s6.close();
    await fw.shutdown({ cleanup: true });
  }
}

test('shorewall with its default BLACKLIST (new connections only): the backend and check-config warn, naming the line, and an open connection survives the ban', async (t) => {
  if (skip) return t.skip(skip);
  await setBlacklist('"NEW,INVALID,UNTRACKED"');
  const r = await banDuringConnection('wrong');
  assert.equal(r.warnings.length, 2, `one warning per family: ${r.warnings.join(' | ')}`);
  assert.match(r.warnings[0]!, new RegExp(`^/etc/shorewall/shorewall\\.conf:${confLine('shorewall', 'BLACKLIST')}: BLACKLIST="NEW,INVALID,UNTRACKED" .*open connections survive.*Change the line to BLACKLIST="ALL"`));
  assert.match(r.warnings[1]!, new RegExp(`^/etc/shorewall6/shorewall6\\.conf:${confLine('shorewall6', 'BLACKLIST')}: `));
  assert.equal(r.newV4, false, 'a new connection is dropped');
  assert.equal(r.v4, true, 'as warned: the open IPv4 connection still carries data');
  assert.equal(r.v6, true, 'as warned: the open IPv6 connection still carries data');
  const out = await checkConfig();
  assert.match(out, new RegExp(`warning: /etc/shorewall/shorewall\\.conf:${confLine('shorewall', 'BLACKLIST')}: BLACKLIST="NEW,INVALID,UNTRACKED"`));
  assert.match(out, /warning: \/etc\/shorewall6\/shorewall6\.conf:\d+: /);
});

test('shorewall with BLACKLIST="ALL": no warning, and the ban cuts the open connection', async (t) => {
  if (skip) return t.skip(skip);
  await setBlacklist('"ALL"');
  try {
    const r = await banDuringConnection('right');
    assert.deepEqual(r.warnings, []);
    assert.equal(r.newV4, false);
    assert.equal(r.v4, false, 'no data flows on the open IPv4 connection after the ban');
    assert.equal(r.v6, false, 'no data flows on the open IPv6 connection after the ban');
    const out = await checkConfig();
    assert.doesNotMatch(out, /warning:/);
    assert.match(out, /^OK: /m);
  } finally {
    await setBlacklist('"NEW,INVALID,UNTRACKED"');
  }
});
