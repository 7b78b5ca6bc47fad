import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { CLI, runCli, startDaemon, writeConfig, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { waitUntil } from '../helpers/wait.js';

/**
 * Log output: fail2ban's events at info (`[sshd] Found`, `Ban`, `Unban`), the files each jail
 * follows at start, JSON lines through a pipe, syslog priority prefixes for journald when stdout
 * is the journal stream systemd names in JOURNAL_STREAM, and readable lines on a terminal.
 */
let redis: TestRedis;
const cluster = randomCluster();
const work = mkdtempSync(join(tmpdir(), 'fleetban-logs-'));
const logFile = join(work, 'auth.log');
let dir = '';
const daemons: Daemon[] = [];

before(async () => {
  redis = await startRedis();
  writeFileSync(logFile, '');
  dir = writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = l1\nbanaction = dry-run\nstate_dir = ${join(work, 'state')}\n[coordinator]\nconsumer = lc\nexpire_interval = 1s\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${logFile}\nmaxretry = 2\nfindtime = 10m\nbantime = 2\nnot_an_option = 1\n`,
  });
});

after(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  await redis.stop();
});

test("fail2ban's events at info, and the files each jail follows", async () => {
  const coordinator = startDaemon(['--config', dir, 'coordinator']);
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  const agent = startDaemon(['--config', dir, 'agent']);
  daemons.push(agent);
  await agent.waitFor((l) => l.msg === `[sshd] following ${logFile}` && l.level === 30, 15_000, 'following line');
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
  appendFileSync(logFile, sshdFailure('203.0.113.5', 'l1') + sshdFailure('203.0.113.5', 'l1'));
  const found = await agent.waitFor((l) => l.msg === '[sshd] Found 203.0.113.5', 10_000, 'Found');
  assert.equal(found.level, 30);
  assert.equal(found.event, 'found');
  const decided = await coordinator.waitFor((l) => l.event === 'ban decided', 10_000, 'ban decided');
  assert.equal(decided.msg, '[sshd] Ban 203.0.113.5 (cluster decision)');
  const ban = await agent.waitFor((l) => l.msg === '[sshd] Ban 203.0.113.5', 10_000, 'Ban');
  assert.equal(ban.level, 30);
  // bantime = 2 s: the expirer lifts it.
  const unban = await agent.waitFor((l) => l.msg === '[sshd] Unban 203.0.113.5', 10_000, 'Unban');
  assert.equal(unban.level, 30);
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
});

test('under systemd (stdout is the JOURNAL_STREAM) every line carries its syslog priority', async () => {
  const out = join(work, 'journal-stream.out');
  const fd = openSync(out, 'w');
  const st = fstatSync(fd);
  const proc = spawn(process.execPath, [CLI, '--config', dir, 'coordinator'], {
    stdio: ['ignore', fd, 'ignore'], env: { ...process.env, FLEETBAN_LOG_LEVEL: 'info', JOURNAL_STREAM: `${st.dev}:${st.ino}` },
  });
  closeSync(fd);
  await waitUntil(() => readFileSync(out, 'utf8').includes('coordinator started'), 15_000, 'coordinator start');
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  const warn = lines.find((l) => l.includes("unknown option 'not_an_option'"));
  assert.ok(warn?.startsWith('<4>{"level":40,'), `a warning is priority 4: ${warn}`);
  const info = lines.find((l) => l.includes('coordinator started'));
  assert.ok(info?.startsWith('<6>{"level":30,'), `info is priority 6: ${info}`);
  for (const l of lines) assert.match(l, /^<[2-7]>\{/);
  // Not the journal stream (another file): plain JSON.
  const plain = spawnSync(process.execPath, [CLI, '--config', dir, 'check-config'], { encoding: 'utf8', env: { ...process.env, JOURNAL_STREAM: '1:1' } });
  for (const l of `${plain.stdout}${plain.stderr}`.split('\n').filter((x) => x.startsWith('{') || x.startsWith('<'))) assert.ok(l.startsWith('{'), l);
});

test('on a terminal the lines are readable, not JSON', { skip: spawnSync('script', ['--version']).status !== 0 && !process.env.CI ? 'util-linux script(1) is not installed' : false }, () => {
  // script(1) gives the daemon a pseudo-terminal as stdout.
  const r = spawnSync('script', ['-qec', `timeout -s TERM 4 ${process.execPath} ${CLI} --config ${dir} coordinator`, '/dev/null'], {
    encoding: 'utf8', env: { ...process.env, FLEETBAN_LOG_LEVEL: 'info', NO_COLOR: '1' }, timeout: 20_000,
  });
  // eslint-disable-next-line no-control-regex
  const text = r.stdout.replace(/\u001b\[[0-9;]*m/g, '');
  assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: coordinator: coordinator started/m);
  assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: coordinator: jail \[sshd\]: unknown option 'not_an_option'/m);
  assert.ok(!/^\{"level"/m.test(text), 'no JSON on a terminal');
});

test("fail2ban.conf's loglevel sets the daemons' level; FLEETBAN_LOG_LEVEL and --log-level win over it", async () => {
  const local = join(dir, 'fail2ban.local');
  const jailLocal = join(dir, 'jail.local');
  const started = (l: Record<string, unknown>) => l.msg === 'coordinator started';
  try {
    writeFileSync(local, '[Definition]\nloglevel = DEBUG\n');
    // An agent logs this at debug when it starts the jail: something to see or not see.
    writeFileSync(jailLocal, '[sshd]\njournalmatch = _COMM=sshd\n');
    const isDebugLine = (l: Record<string, unknown>) => l.level === 20 && l.msg === 'journalmatch is ignored for file backends';
    // startDaemon sets FLEETBAN_LOG_LEVEL=info unless told otherwise; empty means unset.
    const debug = startDaemon(['--config', dir, 'agent'], { FLEETBAN_LOG_LEVEL: '' });
    daemons.push(debug);
    await debug.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
    assert.equal(debug.count((l) => l.msg === 'log level debug, from fail2ban.conf loglevel = DEBUG'), 1, 'says where its level comes from');
    assert.equal(debug.count(isDebugLine), 1, 'debug lines are logged');
    await debug.stop();

    const env = startDaemon(['--config', dir, 'agent'], { FLEETBAN_LOG_LEVEL: 'info' });
    daemons.push(env);
    await env.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
    assert.equal(env.count((l) => l.level === 20), 0, 'FLEETBAN_LOG_LEVEL=info wins: no debug line');
    await env.stop();
    rmSync(jailLocal);

    // WARNING (as a number, 30): no info line, but the warnings still come.
    writeFileSync(local, '[Definition]\nloglevel = 30\n');
    const quiet = startDaemon(['--config', dir, 'coordinator'], { FLEETBAN_LOG_LEVEL: '' });
    daemons.push(quiet);
    await quiet.waitFor((l) => /unknown option 'not_an_option'/.test(String(l.msg)), 15_000, 'the warning');
    await waitUntil(async () => (await runCli(['--config', dir, 'ping'])).code === 0, 15_000, 'the coordinator to answer ping');
    assert.equal(quiet.count((l) => Number(l.level) < 40), 0, `only warnings and errors: ${JSON.stringify(quiet.lines.slice(0, 3))}`);
    await quiet.stop();

    const flag = startDaemon(['--config', dir, '--log-level', 'info', 'coordinator'], { FLEETBAN_LOG_LEVEL: '' });
    daemons.push(flag);
    await flag.waitFor(started, 15_000, '--log-level info wins: the start line is logged');
    await flag.stop();

    writeFileSync(local, '[Definition]\n\nloglevel = LOUD\n');
    const bad = await runCli(['--config', dir, 'check-config']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /fail2ban\.local:3, key 'loglevel'.*'LOUD' is not a log level/);
    const refused = startDaemon(['--config', dir, 'coordinator'], { FLEETBAN_LOG_LEVEL: '' });
    daemons.push(refused);
    assert.equal(await new Promise((r) => refused.proc.once('exit', r)), 1, 'a daemon refuses a loglevel fail2ban would refuse');
  } finally {
    rmSync(local, { force: true });
    rmSync(jailLocal, { force: true });
  }
});
