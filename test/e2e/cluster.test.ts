import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { startDaemon, runCli, writeConfig, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { PROTOCOL_VERSION } from '../../common/protocol/version.js';
import { LIMITS } from '../../common/protocol/messages.js';

/**
 * Coordinator and three agents as separate processes on loopback, dry-run firewalls, a real
 * redis-server: failures on different hosts add up, every agent applies the ban, unban lifts it
 * everywhere, a restarted agent re-applies active bans, and garbage in the streams bans nobody.
 */
let redis: TestRedis;
const cluster = randomCluster();
const work = mkdtempSync(join(tmpdir(), 'fleetban-e2e-'));
const hosts = ['h1', 'h2', 'h3'];
const logs = Object.fromEntries(hosts.map((h) => [h, join(work, `${h}-auth.log`)]));
const dirs: Record<string, string> = {};
const agents: Record<string, Daemon> = {};
let coordinator: Daemon;

function configFor(host: string): string {
  return writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = ${host}\nbanaction = dry-run\nstate_dir = ${join(work, host)}\nheartbeat = 1s\n[coordinator]\nconsumer = ${host}\nexpire_interval = 1s\n`,
    'jail.conf': `[DEFAULT]\nignoreip = 127.0.0.1/8 192.0.2.250\n[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${logs[host] ?? join(work, 'none.log')}\nmaxretry = 5\nfindtime = 10m\nbantime = 1h\n`,
  });
}

const isBan = (addr: string) => (l: Record<string, unknown>) => l.msg === 'dry-run ban' && l.addr === addr;
const isUnban = (addr: string) => (l: Record<string, unknown>) => l.msg === 'dry-run unban' && l.addr === addr;

function startAgent(host: string): Daemon {
  return startDaemon(['--config', dirs[host]!, 'agent']);
}

before(async () => {
  redis = await startRedis();
  for (const h of hosts) {
    writeFileSync(logs[h]!, '');
    dirs[h] = configFor(h);
  }
  dirs.coord = configFor('coord');
  coordinator = startDaemon(['--config', dirs.coord, 'coordinator']);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  for (const h of hosts) agents[h] = startAgent(h);
  await Promise.all(hosts.map((h) => agents[h]!.waitFor((l) => l.msg === 'agent started', 15_000, `${h} start`)));
});

after(async () => {
  await Promise.all([...Object.values(agents), coordinator].map((d) => d?.stop()));
  await redis.stop();
});

test('failures spread over three hosts add up to a ban that all three apply', async () => {
  const attacker = '198.51.100.77';
  appendFileSync(logs.h1!, sshdFailure(attacker, 'h1') + sshdFailure(attacker, 'h1'));
  appendFileSync(logs.h2!, sshdFailure(attacker, 'h2') + sshdFailure(attacker, 'h2'));
  // Four failures: below maxretry, nobody bans.
  await new Promise((r) => setTimeout(r, 500));
  for (const h of hosts) assert.equal(agents[h]!.count(isBan(attacker)), 0, `${h} must not ban at 4 failures`);
  appendFileSync(logs.h3!, sshdFailure(attacker, 'h3'));
  const applied = await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan(attacker), 10_000, `${h} ban`)));
  for (const l of applied) assert.equal(l.jail, 'sshd');
  await coordinator.waitFor((l) => l.event === 'ban decided' && l.addr === attacker, 5000, 'ban decided');

  const banned = await runCli(['--config', dirs.coord!, '--json', 'banned']);
  assert.equal(banned.code, 0, banned.stderr);
  const list = JSON.parse(banned.stdout) as Array<{ addr: string; jail: string; origin: string }>;
  assert.deepEqual(list.map((b) => [b.addr, b.jail, b.origin]), [[attacker, 'sshd', 'h3']]);

  const status = await runCli(['--config', dirs.coord!, '--json', 'status', 'sshd']);
  const s = JSON.parse(status.stdout) as { totalFailed: number; currentlyBanned: number; bannedList: string[] };
  assert.equal(s.totalFailed, 5);
  assert.deepEqual(s.bannedList, [attacker]);
});

test('fleetban unban lifts the ban on every host', async () => {
  const attacker = '198.51.100.77';
  const r = await runCli(['--config', dirs.coord!, 'unban', attacker]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /unbanned 198\.51\.100\.77 in jail sshd/);
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isUnban(attacker), 10_000, `${h} unban`)));
  const again = await runCli(['--config', dirs.coord!, 'unban', attacker]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /was not banned/);
});

test('IPv6 attackers are banned like IPv4 ones; whitelisted addresses never', async () => {
  const v6 = '2001:db8:77::5';
  // Each whitelisted failure is written before the IPv6 one on the same host: a host's reports are
  // counted in order, so once the IPv6 ban is decided all five whitelisted failures were seen.
  for (let i = 0; i < 5; i++) appendFileSync(logs[hosts[i % 3]!]!, sshdFailure('192.0.2.250', 'hx') + sshdFailure(v6, 'hx'));
  await coordinator.waitFor((l) => l.msg === 'failure from a whitelisted address not counted' && l.addr === '192.0.2.250' && l.reason === 'ignoreip',
    10_000, 'the whitelisted address is seen and skipped');
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan(v6), 10_000, `${h} IPv6 ban`)));
  for (const h of hosts) assert.equal(agents[h]!.count(isBan('192.0.2.250')), 0, 'ignoreip address must not be banned');
  const c = redis.client();
  const keys = clusterKeys(cluster);
  assert.equal(await c.hexists(keys.bans, 'sshd|192.0.2.250'), 0, 'no ban record');
  assert.equal(await c.hexists(keys.failureWindows('sshd'), '192.0.2.250'), 0, 'its failures were never counted');
});

test('manual ban: bad addresses refused with a reason; a restarted agent re-applies active bans', async () => {
  const bad = await runCli(['--config', dirs.coord!, 'ban', '198.51.100.300']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^fleetban: invalid address '198\.51\.100\.300': .*not a valid IPv4 address/);
  const cidr = await runCli(['--config', dirs.coord!, 'ban', '203.0.113.0/24', '--bantime', '2h', '--reason', 'scanner', '--wait']);
  assert.equal(cidr.code, 0, cidr.stderr);
  assert.match(cidr.stdout, /applied by all 3 live hosts/);
  // --wait returned only after every agent applied it: the lines are already there.
  for (const h of hosts) assert.equal(agents[h]!.count(isBan('203.0.113.0/24')), 1, `${h} applied before --wait returned`);

  await agents.h3!.stop();
  // h3 still counts as live (heartbeat < 15 s old) but applies nothing: --wait names it and fails.
  const stuck = await runCli(['--config', dirs.coord!, 'ban', '198.51.100.201', '--wait', '--wait-timeout', '1.5']);
  assert.equal(stuck.code, 2);
  assert.match(stuck.stderr, /timed out: not yet applied by 1 of 3 live hosts: h3/);
  agents.h3 = startAgent('h3');
  const sync = await agents.h3.waitFor((l) => l.msg === 'dry-run sync', 15_000, 'h3 sync after restart');
  assert.equal(sync.count, 3, 'the IPv6 ban, the manual CIDR ban and the ban made while it was down are applied');
  const held = await runCli(['--config', dirs.coord!, '--json', 'hosts']);
  const rows = JSON.parse(held.stdout) as Array<{ host: string; alive: boolean; backend: string }>;
  assert.deepEqual(rows.map((r) => [r.host, r.alive, r.backend]), hosts.map((h) => [h, true, 'dry-run']));
});

test('malformed entries in both streams are logged and skipped; nobody is banned, nothing crashes', async () => {
  const c = redis.client();
  const keys = clusterKeys(cluster);
  const v = String(PROTOCOL_VERSION);
  // A good envelope around one injected address: that failure alone is skipped.
  await c.sadd(keys.registry, 'evil');
  await c.xadd(keys.host('evil').failures, '*', 'v', v, 'host', 'evil', 'sent', '1', 'failures', JSON.stringify([['e-1', 'sshd', '198.51.100.66; reboot', 1, '']]));
  await c.xadd(keys.host('evil').failures, '*', 'v', v, 'x', 'y'.repeat(LIMITS.reportBytes));
  await c.xadd(keys.decisions, '*', 'v', v, 'op', 'ban', 'jail', 'sshd', 'addr', '0.0.0.0/0', 'since', '1', 'until', '-1');
  await c.xadd(keys.decisions, '*', 'garbage', 'x'.repeat(20_000));
  await coordinator.waitFor((l) => l.msg === 'malformed failure skipped' && String(l.reason).startsWith('invalid addr'), 5000, 'coordinator skips the failure');
  await coordinator.waitFor((l) => l.msg === 'malformed failure report skipped' && String(l.reason).includes('byte limit'), 5000, 'coordinator skips the report');
  await Promise.all(hosts.map((h) => agents[h]!.waitFor((l) => l.msg === 'malformed decision skipped', 5000, `${h} skip`)));
  // Still alive and still working: a fresh ban goes through.
  const r = await runCli(['--config', dirs.coord!, 'ban', '198.51.100.99']);
  assert.equal(r.code, 0, r.stderr);
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan('198.51.100.99'), 10_000, `${h} ban after garbage`)));
  for (const h of hosts) assert.equal(agents[h]!.count((l) => l.msg === 'dry-run ban' && String(l.addr).startsWith('0.0.0.0')), 0);
  assert.equal(coordinator.proc.exitCode, null);
});
