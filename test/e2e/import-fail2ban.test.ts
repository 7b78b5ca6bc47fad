import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { startDaemon, runCli, writeConfig, type Daemon } from '../helpers/spawn.js';
import { testProcesses, isBan } from '../helpers/cluster-procs.js';
import { installFail2ban, createFail2banDb } from '../helpers/fail2ban-install.js';

/**
 * `fleetban import-fail2ban` against a database written by fail2ban's own code (Debian's package,
 * installed at test time, its service never started): active bans reach every agent with their
 * jail and remaining time; expired ones, and those of jails the cluster does not run, do not.
 */
const t = testProcesses('import-f2b');
const installed = await installFail2ban();
if (!installed.ok && process.env.CI) throw new Error(`CI must run the fail2ban import test: ${installed.reason}`);
let redis: TestRedis;
let dir: string;
let agent: Daemon;
const db = join(t.work, 'fail2ban.sqlite3');
const nowS = Math.floor(Date.now() / 1000);

before(async () => {
  if (!installed.ok) return;
  redis = await startRedis();
  t.servers.push(redis);
  dir = writeConfig({
    'fleetban.conf': `[cluster]\nname = ${randomCluster()}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = h1\nbanaction = dry-run\nstate_dir = ${join(t.work, 'h1')}\nheartbeat = 1s\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nbackend = systemd\n[recidive]\nenabled = true\nbackend = bans\nbantime = 1w\n`,
  });
  await createFail2banDb(db, [
    ['sshd', '198.51.100.20', nowS - 60, 3600],
    ['sshd', '198.51.100.21', nowS - 7200, 600], // expired an hour and fifty minutes ago
    ['sshd', '2001:db8::21', nowS - 10, 600],
    ['recidive', '203.0.113.7', nowS - 86_400, -1],
    ['nginx-http-auth', '198.51.100.22', nowS - 5, 600], // a jail this cluster does not run
  ]);
  const coordinator = startDaemon(['--config', dir, 'coordinator']);
  t.daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  agent = startDaemon(['--config', dir, 'agent']);
  t.daemons.push(agent);
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
});

test('--dry-run shows the active bans and publishes nothing', async (tt) => {
  if (!installed.ok) return tt.skip(installed.reason);
  const r = await runCli(['--config', dir, 'import-fail2ban', '--db', db, '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^would ban 203\.0\.113\.7 in jail recidive permanently\nwould ban 198\.51\.100\.20 in jail sshd until \S+\nwould ban 2001:db8::21 in jail sshd until \S+\n/);
  assert.match(r.stdout, /would import 3 active bans from .*fail2ban\.sqlite3 \(recidive: 1, sshd: 2\)\nskipped bans of jails this cluster does not run: nginx-http-auth \(1\)/);
  const banned = await runCli(['--config', dir, 'banned']);
  assert.equal(banned.stdout, 'no active bans\n');
});

test('the import publishes each active ban with its jail and remaining time; every agent applies it', async (tt) => {
  if (!installed.ok) return tt.skip(installed.reason);
  const r = await runCli(['--config', dir, 'import-fail2ban', '--db', db]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /imported 3 active bans/);
  for (const addr of ['198.51.100.20', '2001:db8::21', '203.0.113.7']) await agent.waitFor(isBan(addr), 10_000, `agent applies ${addr}`);
  const list = JSON.parse((await runCli(['--config', dir, '--json', 'banned'])).stdout) as Array<{ addr: string; jail: string; until: string | null; reason: string }>;
  const by = new Map(list.map((b) => [b.addr, b]));
  assert.deepEqual([...by.keys()].sort(), ['198.51.100.20', '2001:db8::21', '203.0.113.7']);
  assert.equal(by.get('198.51.100.20')!.jail, 'sshd');
  assert.equal(Date.parse(by.get('198.51.100.20')!.until!), (nowS - 60 + 3600) * 1000, 'ends when fail2ban would have lifted it');
  assert.equal(by.get('203.0.113.7')!.until, null, 'permanent stays permanent');
  assert.equal(by.get('203.0.113.7')!.jail, 'recidive');
  assert.match(by.get('198.51.100.20')!.reason, /^imported from fail2ban/);
});

test('a file that is not a fail2ban database is refused with the reason', async (tt) => {
  if (!installed.ok) return tt.skip(installed.reason);
  const r = await runCli(['--config', dir, 'import-fail2ban', '--db', join(dir, 'jail.conf')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^fleetban: sqlite3 .*jail\.conf: .*(not a database|file is not a database)/);
  const gone = await runCli(['--config', dir, 'import-fail2ban', '--db', join(dir, 'nope.sqlite3')]);
  assert.equal(gone.stderr, `fleetban: cannot read fail2ban database ${join(dir, 'nope.sqlite3')}: ENOENT\n`);
});
