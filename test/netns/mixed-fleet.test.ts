import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { aclServer, addIdentityLines } from '../helpers/redis-server.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { startDaemon, writeConfig, sshdFailure, CLI, type Daemon } from '../helpers/spawn.js';
import { waitUntil } from '../helpers/wait.js';
import { connectTimed } from '../helpers/firewall.js';

/**
 * A mixed fleet: one host on nftables, one on ipset, one on plain iptables. One attack on the
 * nftables host gets the attacker dropped on port 22 of all three (and only on port 22); someone
 * wiping each host's firewall is repaired within the reconciliation interval; a stopped agent's
 * bans stay in the kernel; `agent --cleanup` removes everything; unban --wait lifts it everywhere.
 */
const available = netnsAvailable();
const missing = ['/usr/sbin/nft', '/usr/sbin/ipset', '/usr/sbin/iptables', '/usr/bin/redis-server'].filter((p) => !existsSync(p));
const skip = !available.ok ? available.reason : missing.length ? `needs ${missing.join(', ')}` : false;
if (skip && process.env.CI) throw new Error(`CI must run the namespace tests: ${skip}`);

const ADDR = { r: '203.0.113.1', nft: '203.0.113.11', ips: '203.0.113.12', ipt: '203.0.113.13', atk: '203.0.113.66', good: '203.0.113.77' };
const HOSTS = { nft: 'nftables', ips: 'ipset', ipt: 'iptables' } as const;
type Host = keyof typeof HOSTS;
const REDIS_PORT = 16391;
const PASSWORD = 'mixed-fleet-secret';
const work = mkdtempSync(join(tmpdir(), 'fleetban-mixed-'));
let fleet: Fleet;
const children: ChildProcess[] = [];
const agents: Partial<Record<Host, Daemon>> = {};
let coordinator: Daemon | undefined;
const dirs: Record<string, string> = {};
const logs: Record<string, string> = {};

function startAgent(h: Host): Daemon {
  const d = startDaemon(['--config', dirs[h]!, 'agent'], {}, fleet.prefix(h));
  agents[h] = d;
  return d;
}

const cli = (...args: string[]) => fleet.exec('r', process.execPath, [CLI, '--config', dirs.r!, ...args], { reject: false });
const reaches = (from: string, h: Host, port: number) => fleet.tcpConnects(from, ADDR[h], port, 1200);

const eventually = (what: string, check: () => Promise<boolean>, timeoutMs = 15_000) => waitUntil(check, timeoutMs, what, 200);

before(async () => {
  if (skip) return;
  fleet = await createFleet(Object.entries(ADDR).map(([name, a]) => ({ name, addrs: [`${a}/24`] })));
  // The shipped Redis settings and ACL users: every daemon and CLI call logs in as its role.
  const acl = aclServer(work, PASSWORD, 'mixed', ['r', ...Object.keys(HOSTS)]);
  children.push(spawn('ip', ['netns', 'exec', fleet.host('r').ns, 'redis-server', ...acl.args, '--bind', ADDR.r, '--port', String(REDIS_PORT),
    '--save', '', '--dir', work], { stdio: 'ignore' }));
  const url = `redis://${ADDR.r}:${REDIS_PORT}`;
  for (const h of ['r', ...Object.keys(HOSTS)]) {
    logs[h] = join(work, `${h}.log`);
    writeFileSync(logs[h]!, '');
    writeFileSync(`${logs[h]}.web`, '');
    dirs[h] = writeConfig({
      'fleetban.conf': addIdentityLines(`[cluster]\nname = mixed\n[redis]\nurl = ${url}\n[agent]\nhost = ${h}\nbanaction = ${HOSTS[h as Host] ?? 'dry-run'}\nstate_dir = ${join(work, h)}\nheartbeat = 1s\nreconcile = 2s\n`, acl.roles(h)),
      // [web]: fail2ban's way of asking for resets, through the action's blocktype parameter.
      'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${logs[h]}\nmaxretry = 5\nbantime = 1h\n`
        + `[web]\nenabled = true\nfilter = sshd\nlogpath = ${logs[h]}.web\naction = iptables-multiport[name=web, port=8080, protocol=tcp, blocktype="REJECT --reject-with tcp-reset"]\n`,
    });
  }
  await eventually('redis up', () => fleet.tcpConnects('r', ADDR.r, REDIS_PORT, 200));
  coordinator = startDaemon(['--config', dirs.r!, 'coordinator'], {}, fleet.prefix('r'));
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  for (const h of Object.keys(HOSTS) as Host[]) {
    for (const port of [22, 8080]) await fleet.listen(h, ADDR[h], port);
    startAgent(h);
  }
  await Promise.all(Object.values(agents).map((a) => a!.waitFor((l) => l.msg === 'agent started', 20_000, 'agent start')));
});

after(async () => {
  await Promise.all([...Object.values(agents), coordinator].map((d) => d?.stop()));
  for (const c of children) c.kill('SIGTERM');
  if (fleet) {
    await fleet.destroy();
  }
});

test('nftables, ipset and iptables hosts enforce the same ban from one attack, and keep enforcing it', { skip }, async () => {
  const hosts = Object.keys(HOSTS) as Host[];
  for (const h of hosts) assert.equal(await reaches('atk', h, 22), true, `attacker reaches ${h} before`);

  for (let i = 0; i < 5; i++) appendFileSync(logs.nft!, sshdFailure(ADDR.atk, 'nft'));
  await Promise.all(hosts.map((h) => agents[h]!.waitFor((l) => l.event === 'ban applied' && l.addr === ADDR.atk, 15_000, `${h} ban`)));
  for (const h of hosts) {
    assert.equal(await reaches('atk', h, 22), false, `attacker dropped on port 22 by ${h} (${HOSTS[h]})`);
    assert.equal(await reaches('atk', h, 8080), true, `attacker still reaches port 8080 of ${h}: the jail is port-scoped`);
    assert.equal(await reaches('good', h, 22), true, `bystander reaches ${h}`);
  }

  // Someone wipes each host's firewall; the agents put the ban back within their 2 s reconcile interval.
  await fleet.exec('nft', 'nft', ['flush', 'ruleset']);
  await fleet.exec('ipt', 'iptables', ['-F']);
  await fleet.exec('ips', 'iptables', ['-F']);
  await fleet.exec('ips', 'ipset', ['flush']);
  for (const h of hosts) await eventually(`${h} re-enforces after the wipe`, async () => !(await reaches('atk', h, 22)), 12_000);
  assert.ok(agents.nft!.count((l) => l.msg === 'firewall differs from the cluster bans; repairing') >= 1, 'the nftables agent logged its repair');

  // A stopped agent leaves its bans in the kernel.
  await agents.ipt!.stop();
  assert.equal(await reaches('atk', 'ipt', 22), false, 'ban stays while the iptables agent is down');
  startAgent('ipt');
  await agents.ipt!.waitFor((l) => l.msg === 'active bans loaded' && l.bans === 1, 20_000, 'ipt restart');
  assert.equal(await reaches('atk', 'ipt', 22), false);

  // --cleanup removes everything fleetban made on a host.
  await agents.ips!.stop();
  const cleanup = await fleet.exec('ips', process.execPath, [CLI, '--config', dirs.ips!, 'agent', '--cleanup'], { reject: false });
  assert.equal(cleanup.exitCode, 0, cleanup.stderr);
  assert.equal(await reaches('atk', 'ips', 22), true, 'after --cleanup nothing of fleetban is left on the ipset host');
  const sets = await fleet.exec('ips', 'ipset', ['list', '-n']);
  assert.equal(sets.stdout.trim(), '');
  startAgent('ips');
  await agents.ips!.waitFor((l) => l.msg === 'active bans loaded', 20_000, 'ips restart');
  await eventually('ipset host enforces again after restart', async () => !(await reaches('atk', 'ips', 22)));

  const unban = await cli('unban', ADDR.atk, '--wait', '--wait-timeout', '10');
  assert.equal(unban.exitCode, 0, unban.stderr);
  assert.match(unban.stdout, /applied by all 3 live hosts/);
  for (const h of hosts) assert.equal(await reaches('atk', h, 22), true, `attacker reaches ${h} after unban`);
});

test("a jail's blocktype reaches every backend from the configuration: tcp-reset refuses at once, the default drops", { skip }, async () => {
  const hosts = Object.keys(HOSTS) as Host[];
  const ban = await cli('ban', ADDR.atk, '--jail', 'web', '--wait', '--wait-timeout', '10');
  assert.equal(ban.exitCode, 0, ban.stderr);
  const drop = await cli('ban', ADDR.good, '--jail', 'sshd', '--wait', '--wait-timeout', '10');
  assert.equal(drop.exitCode, 0, drop.stderr);
  try {
    for (const h of hosts) {
      const r = await connectTimed(fleet, 'atk', ADDR[h], 8080, 3000);
      assert.equal(r.outcome, 'ECONNREFUSED', `${h} (${HOSTS[h]}) answers the web jail's ban with a reset`);
      assert.ok(r.ms < 500, `at once on ${h} (${r.ms} ms)`);
      assert.equal((await connectTimed(fleet, 'atk', ADDR[h], 22)).outcome, 'connected', `${h}: the web jail leaves port 22 alone`);
      const d = await connectTimed(fleet, 'good', ADDR[h], 22, 3000);
      assert.equal(d.outcome, 'timeout', `${h}: the sshd jail, blocktype unset, drops silently`);
    }
  } finally {
    await cli('unban', ADDR.atk, ADDR.good, '--wait', '--wait-timeout', '10');
  }
  for (const h of hosts) assert.equal((await connectTimed(fleet, 'atk', ADDR[h], 8080)).outcome, 'connected', `unbanned on ${h}`);
});
