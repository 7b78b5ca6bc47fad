import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startDaemon, runCli, writeConfig, sshdFailure, CLI } from '../helpers/spawn.js';

/** The CLI as an operator meets it: check-config, refusing bad configuration, and `fleetban up`. */

test('check-config reports OK with warnings, or the file, line and key of a mistake', async () => {
  const authLog = join(mkdtempSync(join(tmpdir(), 'fleetban-logs-')), 'auth.log');
  writeFileSync(authLog, '');
  const good = writeConfig({
    'jail.conf': `[ssh-iptables]\nenabled = true\nfilter = sshd\naction = iptables[name=SSH, port=ssh, protocol=tcp]\n         abuseipdb[abuseipdb_apikey=x]\nlogpath = ${authLog}\n`,
  });
  const ok = await runCli(['--config', good, 'check-config']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /warning: jail \[ssh-iptables\]: action 'abuseipdb' is not implemented by fleetban and is ignored/);
  assert.match(ok.stdout, /OK: .*: cluster default, 1 enabled jail \(ssh-iptables\)/);

  const bad = writeConfig({ 'jail.conf': '[sshd]\nenabled = true\nlogpath = /var/log/auth.log\nfindtime = 10 mins ago\n' });
  const r = await runCli(['--config', bad, 'check-config']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  assert.match(r.stderr, new RegExp(`^fleetban: ${bad}/jail\\.conf:4, key 'findtime': jail \\[sshd\\]: `));

  const badFilter = writeConfig({ 'jail.conf': '[sshd]\nenabled = true\nfilter = nosuchfilter\nlogpath = /var/log/auth.log\n' });
  const f = await runCli(['--config', badFilter, 'check-config']);
  assert.equal(f.code, 1);
  assert.match(f.stderr, /nosuchfilter/);
});

test('check-config refuses what fail2ban-client -t refuses: a missing directory, a jail without a log file', async () => {
  const gone = join(tmpdir(), `fleetban-no-such-dir-${process.pid}`);
  const r = await runCli(['--config', gone, 'check-config']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fleetban: ${gone}: configuration directory does not exist (ENOENT)\n`);

  const dir = writeConfig({ 'jail.conf': `[sshd]\nenabled = true\nlogpath = ${gone}/auth.log\n          ${gone}/*.log\n[journal]\nenabled = true\nfilter = sshd\nbackend = systemd\n` });
  const m = await runCli(['--config', dir, 'check-config']);
  assert.equal(m.code, 1);
  assert.equal(m.stderr.trim().split('\n').length, 1, 'one line');
  assert.match(m.stderr, new RegExp(`jail\\.conf:1, key 'logpath': jail \\[sshd\\]: have not found any log file \\(logpath ${gone}/auth\\.log ${gone}/\\*\\.log\\)`));
  assert.doesNotMatch(m.stderr, /\[journal\]/, 'the journal backend needs no file');
});

test('a daemon with malformed configuration does not start and says where', async () => {
  const dir = writeConfig({ 'fleetban.conf': '[agent]\nbanaction = dry-run\nheartbeat == 5s\n', 'jail.conf': '' });
  const r = await runCli(['--config', dir, 'agent']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /fleetban\.conf:3, key 'heartbeat'/);
});

test('fleetban up runs a private Redis, a coordinator and an agent; the CLI finds them', async () => {
  const work = mkdtempSync(join(tmpdir(), 'fleetban-up-'));
  const log = join(work, 'auth.log');
  writeFileSync(log, '');
  const dir = writeConfig({
    'fleetban.conf': `[agent]\nhost = solo\nbanaction = dry-run\nstate_dir = ${join(work, 'state')}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nlogpath = ${log}\nmaxretry = 2\n`,
  });
  const up = startDaemon(['--config', dir, 'up']);
  try {
    await up.waitFor((l) => l.msg === 'fleetban is up: `fleetban status`, `fleetban banned`, `fleetban hosts` show what it does', 20_000, 'up');
    assert.ok(existsSync(join(work, 'state', 'redis', 'redis.sock')), 'private Redis listens on a unix socket in the state dir');
    assert.ok(existsSync(join(work, 'state', 'redis', 'appendonlydir')), 'with AOF on');
    appendFileSync(log, sshdFailure('198.51.100.23') + sshdFailure('198.51.100.23'));
    await up.waitFor((l) => l.msg === 'dry-run ban' && l.addr === '198.51.100.23', 10_000, 'ban');
    const status = await runCli(['--config', dir, 'status', 'sshd']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Currently banned:\t1/);
    assert.match(status.stdout, /Banned IP list:\t198\.51\.100\.23/);
  } finally {
    assert.equal(await up.stop(), 0, 'up stops cleanly on SIGTERM');
  }
  assert.equal(existsSync(join(work, 'state', 'redis', 'redis.sock')), false, 'the private Redis stopped with it');
  const after = await runCli(['--config', dir, 'status']);
  assert.equal(after.code, 1);
  assert.match(after.stderr, /cannot reach Redis .*fleetban up` is not running/);
});

test('fleetban up still stops on SIGTERM after its Redis died under it', async () => {
  const work = mkdtempSync(join(tmpdir(), 'fleetban-up-dead-'));
  const log = join(work, 'auth.log');
  writeFileSync(log, '');
  const state = join(work, 'state');
  const dir = writeConfig({
    'fleetban.conf': `[agent]\nhost = solo\nbanaction = dry-run\nstate_dir = ${state}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nlogpath = ${log}\n`,
  });
  const up = startDaemon(['--config', dir, 'up']);
  await up.waitFor((l) => String(l.msg).startsWith('fleetban is up'), 20_000, 'up');
  // The private redis-server is the process whose command line names the socket in our state dir.
  const redisPid = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(join(state, 'redis', 'redis.sock'));
    } catch {
      return false;
    }
  });
  assert.ok(redisPid, 'found the private redis-server');
  process.kill(Number(redisPid), 'SIGKILL');
  await up.waitFor((l) => l.msg === 'Redis unreachable, retrying', 10_000, 'daemons notice');
  up.proc.kill('SIGTERM');
  const code = await new Promise<number | null | 'hung'>((resolve) => {
    const timer = setTimeout(() => resolve('hung'), 20_000);
    up.proc.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  if (code === 'hung') up.proc.kill('SIGKILL');
  assert.equal(code, 0, 'exits cleanly instead of waiting for a Redis that is gone');
});

test('Ctrl-C on a terminal stops fleetban up without Redis warnings', async () => {
  const work = mkdtempSync(join(tmpdir(), 'fleetban-up-int-'));
  const log = join(work, 'auth.log');
  writeFileSync(log, '');
  const dir = writeConfig({
    'fleetban.conf': `[agent]\nhost = solo\nbanaction = dry-run\nstate_dir = ${join(work, 'state')}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nlogpath = ${log}\n`,
  });
  // A terminal's Ctrl-C signals the whole foreground process group: `up` leads its own group here.
  const up = spawn(process.execPath, [CLI, '--config', dir, 'up'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLEETBAN_LOG_LEVEL: 'info' } });
  const lines: Array<Record<string, unknown>> = [];
  let err = '';
  up.stderr.on('data', (d: Buffer) => (err += d.toString()));
  createInterface({ input: up.stdout }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      lines.push({ msg: l });
    }
  });
  const exited = new Promise<number | null>((r) => up.once('exit', (c) => r(c)));
  const deadline = Date.now() + 20_000;
  while (!lines.some((l) => String(l.msg).startsWith('fleetban is up'))) {
    assert.ok(Date.now() < deadline && up.exitCode === null, `up did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(-up.pid!, 'SIGINT');
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('hung'), 20_000))]);
  if (code === 'hung') process.kill(-up.pid!, 'SIGKILL');
  assert.equal(code, 0);
  const stopping = lines.findIndex((l) => l.msg === 'stopping');
  assert.ok(stopping >= 0, 'it says it is stopping');
  const noisy = lines.slice(stopping).filter((l) => Number(l.level) >= 40);
  assert.deepEqual(noisy, [], 'no warnings or errors while stopping');
  assert.equal(existsSync(join(work, 'state', 'redis', 'redis.sock')), false, 'the private Redis stopped too');
});

test('regex uses the configuration\'s filter.d when --config or FLEETBAN_CONFIG is given', async () => {
  const dir = writeConfig({
    'jail.conf': '',
    'filter.d/sshd.conf': '[Definition]\nfailregex = ^ONLY-IN-CONFIG from <HOST>$\n',
  });
  const line = 'ONLY-IN-CONFIG from 198.51.100.4';
  const withConfig = await runCli(['--config', dir, '--json', 'regex', line, 'sshd']);
  assert.equal(withConfig.code, 0, withConfig.stderr);
  assert.equal(JSON.parse(withConfig.stdout).host, '198.51.100.4');
  const viaEnv = await runCli(['--json', 'regex', line, 'sshd'], { FLEETBAN_CONFIG: dir });
  assert.equal(JSON.parse(viaEnv.stdout).host, '198.51.100.4');
  const builtin = await runCli(['--json', 'regex', line, 'sshd'], { FLEETBAN_CONFIG: '' });
  assert.equal(JSON.parse(builtin.stdout).match, false, "fleetban's own sshd filter does not know the line");
});

test('check-config --role reads that role\'s secret only, as each unit does before it starts', async () => {
  const dir = writeConfig({
    'fleetban.conf': '[redis]\nurl = redis://127.0.0.1:1\n[agent]\nredis_password_file = AGENT\n[coordinator]\nredis_password_file = /run/credentials/fleetban-coordinator.service/absent\n',
  });
  const pw = join(dir, 'agent.password');
  writeFileSync(pw, 'agent-secret\n');
  writeFileSync(join(dir, 'fleetban.conf'), readFileSync(join(dir, 'fleetban.conf'), 'utf8').replace('AGENT', pw));
  const agent = await runCli(['--config', dir, 'check-config', '--role', 'agent']);
  assert.equal(agent.code, 0, agent.stderr);
  const coordinator = await runCli(['--config', dir, 'check-config', '--role', 'coordinator']);
  assert.equal(coordinator.code, 1);
  assert.match(coordinator.stderr, /fleetban\.conf:6, key 'redis_password_file': cannot read \/run\/credentials\/fleetban-coordinator\.service\/absent/);
});
