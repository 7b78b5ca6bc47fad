import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { startDaemon, sshdFailure, CLI, type Daemon } from '../helpers/spawn.js';
import { hostConfig, isBan, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { randomCluster, aclServer, addIdentityLines } from '../helpers/redis-server.js';

/**
 * An agent loses its network for 60 s (`ip link set eth0 down` in its namespace) while failures
 * keep appearing in its log and bans are decided elsewhere. It notices the dead connection by
 * itself (no reply within the socket timeout), keeps enforcing its nftables bans, spools its
 * failure reports to disk, survives a restart during the cut without losing them, and when the
 * link returns delivers them (exactly once) and catches up on the bans it missed.
 */
const available = netnsAvailable();
const missing = ['/usr/sbin/nft', '/usr/bin/redis-server'].filter((p) => !existsSync(p));
const skip = !available.ok ? available.reason : missing.length ? `needs ${missing.join(', ')}` : false;
if (skip && process.env.CI) throw new Error(`CI must run the namespace tests: ${skip}`);

const CUT_MS = 60_000;
const ADDR = { r: '198.51.100.1', h1: '198.51.100.11', h2: '198.51.100.12' };
const PASSWORD = 'fleetban-cut-secret';
const REDIS_PORT = 16391;
const work = mkdtempSync(join(tmpdir(), 'fleetban-cut-'));
let fleet: Fleet | undefined;
let redisProc: ChildProcess | undefined;
const daemons: Daemon[] = [];

after(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  if (redisProc && redisProc.exitCode === null) {
    const exited = new Promise((r) => redisProc!.once('exit', r));
    redisProc.kill('SIGTERM');
    await exited;
  }
  await fleet?.destroy();
  rmSync(work, { recursive: true, force: true });
});

/** Spooled failures for `addr` in host h1's spool files. */
function spooled(addr: string): number {
  const dir = join(work, 'h1', 'spool');
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
    .filter((l) => l.includes(`"${addr}"`)).length;
}

test('agent cut off for 60 s: keeps enforcing, spools reports across a restart, catches up when back', { skip, timeout: 180_000 }, async () => {
  fleet = await createFleet(Object.entries(ADDR).map(([name, a]) => ({ name, addrs: [`${a}/24`] })));
  const f = fleet;
  const cluster = randomCluster();
  // The shipped Redis settings and ACL users: every daemon and CLI call logs in as its role.
  const acl = aclServer(work, PASSWORD, cluster, ['r', 'h1', 'h2']);
  redisProc = spawn('ip', ['netns', 'exec', f.host('r').ns, 'redis-server', ...acl.args, '--bind', ADDR.r, '--port', String(REDIS_PORT),
    '--save', '', '--dir', work], { stdio: 'ignore' });
  await waitUntil(() => f.tcpConnects('r', ADDR.r, REDIS_PORT, 200), 10_000, 'redis in the namespace');
  const url = `redis://${ADDR.r}:${REDIS_PORT}`;
  const withRole = (dir: string, host: string): string => {
    const file = join(dir, 'fleetban.conf');
    writeFileSync(file, addIdentityLines(readFileSync(file, 'utf8'), acl.roles(host)));
    return dir;
  };
  const keys = clusterKeys(cluster);
  const logs = { h1: join(work, 'h1.log'), h2: join(work, 'h2.log') };
  for (const l of Object.values(logs)) writeFileSync(l, '');
  const coordDir = withRole(hostConfig({ cluster, url, host: 'r', work }), 'r');
  const h1Dir = withRole(hostConfig({ cluster, url, host: 'h1', work, logpath: logs.h1, banaction: 'nftables', agent: 'reconcile = 5s' }), 'h1');
  const h2Dir = withRole(hostConfig({ cluster, url, host: 'h2', work, logpath: logs.h2 }), 'h2');
  const coordinator = startDaemon(['--config', coordDir, 'coordinator'], {}, f.prefix('r'));
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  let h1 = startDaemon(['--config', h1Dir, 'agent'], {}, f.prefix('h1'));
  const h2 = startDaemon(['--config', h2Dir, 'agent'], {}, f.prefix('h2'));
  daemons.push(h1, h2);
  await Promise.all([h1, h2].map((a) => a.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start')));

  const ban = async (addr: string) => {
    const r = await f.exec('r', process.execPath, [CLI, '--config', coordDir, 'ban', addr], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
  };
  const kernelHas = async (addr: string) => (await f.exec('h1', 'nft', ['list', 'ruleset'])).stdout.includes(addr);

  const before = '203.0.113.10';
  const during = '203.0.113.20';
  const attacker = '198.51.100.66';
  await ban(before);
  await waitUntil(() => kernelHas(before), 10_000, 'ban in h1 kernel before the cut');

  await f.exec('h1', 'ip', ['link', 'set', 'eth0', 'down']);
  const cutAt = Date.now();
  appendFileSync(logs.h1, sshdFailure(attacker, 'h1') + sshdFailure(attacker, 'h1'));
  await ban(during);
  await h2.waitFor(isBan(during), 10_000, 'h2 applies the ban decided during the cut');
  // Nothing tells the agent the link is gone: it must notice by itself (socket timeout), on the
  // connection that reports failures as well as on the one blocked in XREAD.
  for (const purpose of ['agent', 'agent-decisions']) {
    await h1.waitFor((l) => l.msg === 'Redis unreachable, retrying' && l.purpose === purpose, 30_000, `h1 noticing the cut (${purpose})`);
  }
  assert.ok(Date.now() - cutAt < 30_000, 'the cut was noticed within the socket timeout');

  // Restart during the cut: the failures go to the spool on the way out; the spool and the
  // kernel's bans outlive the process.
  await h1.stop();
  assert.equal(spooled(attacker), 2, 'the two failures were spooled at shutdown');
  h1 = startDaemon(['--config', h1Dir, 'agent', '--start-at', 'resume'], {}, f.prefix('h1'));
  daemons.push(h1);
  await h1.waitFor((l) => l.msg === 'agent started', 20_000, 'h1 restart while cut off');
  appendFileSync(logs.h1, sshdFailure(attacker, 'h1') + sshdFailure(attacker, 'h1'));
  await h1.waitFor((l) => l.msg === 'Redis unreachable; spooling failures to disk', 10_000, 'h1 spooling');
  await waitUntil(() => spooled(attacker) === 4, 15_000, 'four failures spooled across the restart');
  assert.ok(await kernelHas(before), 'the ban made before the cut is still enforced after the restart');

  await new Promise((r) => setTimeout(r, Math.max(0, CUT_MS - (Date.now() - cutAt))));
  // Reconciliation ran several times (every 5 s) without a snapshot: it must not lift anything.
  assert.ok(await kernelHas(before), 'still enforced at the end of the cut');
  assert.equal(await kernelHas(during), false, 'the ban decided during the cut cannot have arrived yet');
  await f.exec('h1', 'ip', ['link', 'set', 'eth0', 'up']);

  await waitUntil(() => kernelHas(during), 30_000, 'h1 catching up on the ban decided during the cut');
  await h1.waitFor((l) => l.msg === 'spooled failures delivered', 30_000, 'spool delivered');
  // The fifth failure: a ban only if the four spooled ones all arrived.
  appendFileSync(logs.h1, sshdFailure(attacker, 'h1'));
  await h2.waitFor(isBan(attacker), 15_000, 'ban from failures spooled during the cut');
  await waitUntil(() => kernelHas(attacker), 10_000, 'h1 applies it too');
  // The test process is outside the namespaces: ask Redis from inside the Redis host.
  const failed = await f.exec('r', 'redis-cli', ['-h', ADDR.r, '-p', String(REDIS_PORT), '-a', PASSWORD, '--no-auth-warning', 'HGET', keys.stats, 'sshd:failed']);
  assert.equal(Number(failed.stdout.trim()), 5, 'five failures counted: none lost, none twice');
  assert.equal(spooled(attacker), 0, 'spool emptied');
});
