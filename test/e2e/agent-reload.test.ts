import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, startCoordinatorAndAgent, runCli, writeConfig, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { testProcesses, isBan, isUnban } from '../helpers/cluster-procs.js';

/**
 * SIGHUP (`systemctl reload fleetban-agent`) as separate processes on a real redis-server: the
 * agent process lives on, re-reads jails and filters (a new jail with its own filter starts
 * banning), keeps every ban (also that of a jail the reload removed), neither skips nor re-reads a
 * line of a log it kept following, and a broken configuration is refused while the old one runs on.
 */
const t = testProcesses('reload');
const cluster = randomCluster();
const sshLog = join(t.work, 'auth.log');
const appLog = join(t.work, 'app.log');
let url: string;
let dir: string;
let coordinator: Daemon;
let agent: Daemon;

const fleetbanConf = (host: string) =>
  `[cluster]\nname = ${cluster}\n[redis]\nurl = ${url}\n[agent]\nhost = ${host}\nbanaction = dry-run\nstate_dir = ${join(t.work, host)}\nheartbeat = 1s\n[coordinator]\nconsumer = ${host}\n`;
const sshdJail = `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${sshLog}\nmaxretry = 3\nbantime = 1h\n`;
const appJail = `[app]\nenabled = true\nfilter = app\nport = 8080\nlogpath = ${appLog}\nmaxretry = 2\nbantime = 1h\n`;
const appFilter = '[Definition]\nfailregex = ^app: bad token from <HOST>$\ndatepattern = {NONE}\n';

async function reload(): Promise<void> {
  const before = agent.count((l) => l.msg === 'agent reloaded' || l.msg === 'reload failed; keeping the running jails and filters');
  coordinator.proc.kill('SIGHUP');
  agent.proc.kill('SIGHUP');
  const deadline = Date.now() + 10_000;
  while (agent.count((l) => l.msg === 'agent reloaded' || l.msg === 'reload failed; keeping the running jails and filters') === before) {
    if (Date.now() > deadline) throw new Error('agent did not answer SIGHUP');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function hostRow(): Promise<{ bansHeld: number }> {
  const r = await runCli(['--config', dir, '--json', 'hosts']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ host: string; bansHeld: number }>).find((h) => h.host === 'web1')!;
}

before(async () => {
  const redis = await startRedis();
  t.servers.push(redis);
  url = redis.url;
  writeFileSync(sshLog, '');
  writeFileSync(appLog, '');
  dir = writeConfig({ 'fleetban.conf': fleetbanConf('web1'), 'jail.conf': sshdJail });
  ({ coordinator, agent } = await startCoordinatorAndAgent(dir));
  t.daemons.push(coordinator, agent);
});

test('SIGHUP adds a jail and its filter, keeps bans and the place in every followed log', async () => {
  const first = '198.51.100.31';
  appendFileSync(sshLog, sshdFailure(first).repeat(3));
  await agent.waitFor(isBan(first), 10_000, 'ban before reload');

  // Two failures before the reload, one after: exactly maxretry only if no line is lost and none read twice.
  const second = '198.51.100.32';
  appendFileSync(sshLog, sshdFailure(second) + sshdFailure(second));
  await new Promise((r) => setTimeout(r, 700));
  mkdirSync(join(dir, 'filter.d'), { recursive: true });
  writeFileSync(join(dir, 'filter.d', 'app.conf'), appFilter);
  writeFileSync(join(dir, 'jail.local'), appJail);
  const pid = agent.proc.pid;
  await reload();
  assert.equal(agent.proc.exitCode, null, 'the agent process survives SIGHUP');
  assert.equal(agent.proc.pid, pid);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(agent.count(isBan(second)), 0, 'the two failures read before the reload were not read again');
  appendFileSync(sshLog, sshdFailure(second));
  await agent.waitFor(isBan(second), 10_000, 'third failure after reload completes the ban');

  // The new jail follows its log with its new filter.
  const third = '203.0.113.33';
  appendFileSync(appLog, `app: bad token from ${third}\n`.repeat(2));
  const l = await agent.waitFor(isBan(third), 10_000, 'ban by the jail added at reload');
  assert.equal(l.jail, 'app');

  assert.equal(agent.count((x) => x.msg === 'dry-run unban'), 0, 'a reload lifts no ban');
  const reloaded = agent.lines.filter((x) => x.msg === 'agent reloaded').at(-1)!;
  assert.deepEqual((reloaded.jails as string[]).sort(), ['app', 'sshd']);
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal((await hostRow()).bansHeld, 3);
});

test('a jail removed by a reload keeps its bans; a broken configuration is refused and the old one runs on', async () => {
  writeFileSync(join(dir, 'jail.local'), '');
  await reload();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(agent.count(isUnban('203.0.113.33')), 0, 'the removed jail\'s ban stays');
  assert.equal((await hostRow()).bansHeld, 3);

  writeFileSync(join(dir, 'jail.local'), '[sshd]\nfilter = no-such-filter\n');
  await reload();
  const refused = await agent.waitFor((x) => x.msg === 'reload failed; keeping the running jails and filters', 1000, 'refusal');
  assert.match(String(refused.err), /no-such-filter/);
  const fourth = '198.51.100.34';
  appendFileSync(sshLog, sshdFailure(fourth).repeat(3));
  await agent.waitFor(isBan(fourth), 10_000, 'the running sshd jail still bans');
  assert.equal(agent.proc.exitCode, null);
});

test('a SIGHUP while the agent is still starting is applied once it is up, not fatal', async () => {
  const early = startDaemon(['--config', writeConfig({ 'fleetban.conf': fleetbanConf('web2'), 'jail.conf': sshdJail }), 'agent']);
  t.daemons.push(early);
  // Logged inside startAgent, before "agent started": the moment `systemctl reload` after a start hits.
  await early.waitFor((l) => l.msg === 'active bans loaded', 15_000, 'first snapshot');
  early.proc.kill('SIGHUP');
  await early.waitFor((l) => l.msg === 'agent started', 15_000, 'start despite SIGHUP');
  await early.waitFor((l) => l.msg === 'agent reloaded', 10_000, 'the reload asked for during the start');
  assert.equal(early.proc.exitCode, null);
});

/** @returns whether the process has a handler for SIGHUP (signal 1: the lowest bit of SigCgt) */
function catchesSighup(pid: number): boolean {
  const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m !== null && (BigInt(`0x${m[1]}`) & 1n) === 1n;
}

test('the launcher catches SIGHUP before fleetban\'s modules load: a reload right after a unit starts is kept, not fatal', async () => {
  // bin/fleetban as the units run /usr/bin/fleetban (same --require): without the preload the
  // first handler is the daemon's own, ~0.3-2 s after exec, and a SIGHUP before it ends node.
  const proc = spawn(resolve('bin', 'fleetban'), ['--config', writeConfig({ 'fleetban.conf': fleetbanConf('web3'), 'jail.conf': sshdJail }), 'agent'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLEETBAN_LOG_LEVEL: 'info' } });
  const msgs: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    try {
      msgs.push(String((JSON.parse(text) as { msg?: unknown }).msg));
    } catch {
      msgs.push(text);
    }
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const pid = proc.pid!;
    const deadline = Date.now() + 10_000;
    while (!catchesSighup(pid)) {
      assert.ok(Date.now() < deadline, 'no SIGHUP handler within 10 s');
      assert.equal(proc.exitCode, null, stderr);
      await new Promise((r) => setTimeout(r, 2));
    }
    // At the first handler: the preload's, so the daemon must say it saw this one while loading.
    proc.kill('SIGHUP');
    const until = async (msg: string): Promise<void> => {
      const end = Date.now() + 15_000;
      while (!msgs.includes(msg)) {
        assert.equal(proc.exitCode, null, `exited before '${msg}': ${stderr}\n${msgs.join('\n')}`);
        assert.equal(proc.signalCode, null, `ended by ${proc.signalCode} before '${msg}'`);
        assert.ok(Date.now() < end, `no '${msg}' within 15 s:\n${msgs.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until('SIGHUP while loading: reloading once started');
    await until('agent started');
    await until('agent reloaded');
    assert.ok(msgs.indexOf('agent reloaded') > msgs.indexOf('agent started'), 'the reload runs once the agent is up');
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(undefined) : proc.once('exit', r)));
  }
});
