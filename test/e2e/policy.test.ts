import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { startDaemon, runCli, writeConfig, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { clusterKeys } from '../../common/protocol/keys.js';

/**
 * Cluster policy with real processes: ignoreself from heartbeats, ignorecommand, per-/64 counting
 * of IPv6, ban history, and `fleetban reload` changing a running coordinator's policy.
 */
let redis: TestRedis;
const cluster = randomCluster();
const work = mkdtempSync(join(tmpdir(), 'fleetban-policy-'));
const log = join(work, 'auth.log');
let dir = '';
let coordinator: Daemon;
let agent: Daemon;
const FLEET_MEMBER = '198.51.100.5';

const jail = (maxretry: number) => `[sshd]
enabled = true
filter = sshd
logpath = ${log}
maxretry = ${maxretry}
findtime = 10m
bantime = 1h
ipv6prefix = 64
ignorecommand = /bin/sh -c 'test "$1" = 192.0.2.33' sh <ip>
`;

const isBan = (addr: string) => (l: Record<string, unknown>) => l.msg === 'dry-run ban' && l.addr === addr;
const cli = (...args: string[]) => runCli(['--config', dir, ...args]);

before(async () => {
  redis = await startRedis();
  writeFileSync(log, '');
  dir = writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = p1\nbanaction = dry-run\nstate_dir = ${join(work, 'state')}\nheartbeat = 1s\n[coordinator]\nconsumer = c1\n`,
    'jail.conf': jail(3),
  });
  // Another fleet member's heartbeat, as its agent would write it.
  const c = redis.client();
  const k = clusterKeys(cluster);
  const [sec] = await c.time();
  await c.sadd(k.registry, 'web9');
  await c.set(k.host('web9').heartbeat, JSON.stringify({ v: 1, host: 'web9', addrs: [FLEET_MEMBER], version: 'x', backend: 'nftables', jails: [], pid: 1, startedAt: Number(sec) * 1000, seenAt: Number(sec) * 1000, bansApplied: 0, lastDecision: '0-0' }));
  coordinator = startDaemon(['--config', dir, 'coordinator']);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  agent = startDaemon(['--config', dir, 'agent']);
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
});

after(async () => {
  await Promise.all([agent?.stop(), coordinator?.stop()]);
  await redis.stop();
});

test('ignoreself: a fleet member is never banned, by failures or by hand without --force', async () => {
  for (let i = 0; i < 4; i++) appendFileSync(log, sshdFailure(FLEET_MEMBER));
  await coordinator.waitFor((l) => l.msg === 'failure from a whitelisted address not counted' && l.reason === 'ignoreself', 10_000, 'ignoreself');
  const refused = await cli('ban', FLEET_MEMBER);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /refusing to ban 198\.51\.100\.5: it is an address of a fleet member \(ignoreself\); use --force/);
  const forced = await cli('ban', FLEET_MEMBER, '--force', '--bantime', '1m');
  assert.equal(forced.code, 0, forced.stderr);
  await agent.waitFor(isBan(FLEET_MEMBER), 10_000, 'forced ban');
  assert.equal((await cli('unban', FLEET_MEMBER)).code, 0);
});

test('ignorecommand: the command, run without a shell string, decides per address', async () => {
  for (let i = 0; i < 3; i++) appendFileSync(log, sshdFailure('192.0.2.33') + sshdFailure('192.0.2.34'));
  await agent.waitFor(isBan('192.0.2.34'), 10_000, 'ban of 192.0.2.34');
  await coordinator.waitFor((l) => l.msg === 'failure from a whitelisted address not counted' && l.addr === '192.0.2.33' && l.reason === 'ignorecommand', 5000, 'ignorecommand');
  assert.equal(agent.count(isBan('192.0.2.33')), 0);
});

test('ipv6prefix = 64: three addresses of one /64 add up and the network is banned', async () => {
  appendFileSync(log, sshdFailure('2001:db8:1:2::a') + sshdFailure('2001:db8:1:2::b') + sshdFailure('2001:db8:1:2:ffff::c'));
  await agent.waitFor(isBan('2001:db8:1:2::/64'), 10_000, '/64 ban');
});

test('history lists every ban of an address with its origin and reason', async () => {
  const r = await cli('--json', 'history', '192.0.2.34');
  assert.equal(r.code, 0, r.stderr);
  const h = JSON.parse(r.stdout) as Array<{ jail: string; origin: string; reason: string }>;
  assert.deepEqual(h.map((e) => [e.jail, e.origin, e.reason]), [['sshd', 'p1', '3 failures in 600s']]);
  const bad = await cli('history', 'not-an-ip');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /invalid address 'not-an-ip'/);
});

test('fleetban reload applies a changed jail policy to the running coordinator', async () => {
  appendFileSync(log, sshdFailure('203.0.113.40'));
  writeFileSync(join(dir, 'jail.local'), '[sshd]\nmaxretry = 2\n');
  const r = await cli('reload');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /c1\s+\S+\s+reloaded/);
  appendFileSync(log, sshdFailure('203.0.113.40'));
  await agent.waitFor(isBan('203.0.113.40'), 10_000, 'ban at the new maxretry of 2');
  // A broken edit is refused and the previous policy stays.
  writeFileSync(join(dir, 'jail.local'), '[sshd]\nmaxretry = lots\n');
  const broken = await cli('reload');
  assert.equal(broken.code, 1);
  assert.match(broken.stdout + broken.stderr, /failed: .*jail\.local:2, key 'maxretry'/);
  assert.equal(coordinator.proc.exitCode, null);
});
