// check-config and the agent's start run the host checks on a real `sshd -T -f <test config>`:
// a warning naming the line to add below VERBOSE, none at VERBOSE.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { runCli, startDaemon, writeConfig } from '../helpers/spawn.js';

const noSshd = !existsSync('/usr/sbin/sshd') ? 'needs the Debian package openssh-server (sshd)' : undefined;
const work = mkdtempSync(join(tmpdir(), 'fleetban-hostchecks-'));
let redis: TestRedis;

before(async () => {
  if (noSshd) return;
  redis = await startRedis();
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'host_key')]);
});

after(async () => {
  await redis?.stop();
});

/** A fleetban configuration with an sshd jail, checked against an sshd_config with these lines. */
function config(name: string, sshdLines: string[]): { dir: string; sshdConfig: string } {
  const sshdConfig = join(work, `${name}_sshd_config`);
  writeFileSync(sshdConfig, [...sshdLines, `HostKey ${join(work, 'host_key')}`, ''].join('\n'));
  const log = join(work, `${name}-auth.log`);
  writeFileSync(log, '');
  const dir = writeConfig({
    'fleetban.conf': `[cluster]\nname = ${randomCluster()}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = ${name}\nbanaction = dry-run\nstate_dir = ${join(work, name)}\nsshd_config = ${sshdConfig}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${log}\n`,
  });
  return { dir, sshdConfig };
}

/** The agent installs its signal handlers just after it logs 'agent started'. */
const settle = () => new Promise((r) => setTimeout(r, 300));

const isLevelWarning = (l: Record<string, unknown>) => l.check === 'sshd-loglevel';

test('LogLevel INFO: check-config and the agent warn and name the line to add', async (t) => {
  if (noSshd) return process.env.CI ? assert.fail(noSshd) : t.skip(noSshd);
  const { dir, sshdConfig } = config('info', ['Port 2222', 'LogLevel INFO']);
  const r = await runCli(['--config', dir, 'check-config']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`warning: sshd logs at LogLevel INFO \\(sshd -T -f ${sshdConfig}\\): .*change ${sshdConfig}:2 "LogLevel INFO" to "LogLevel VERBOSE"`));
  assert.match(r.stdout, /^OK: /m, 'a warning, not an error');

  const agent = startDaemon(['--config', dir, 'agent']);
  try {
    const w = await agent.waitFor(isLevelWarning, 15_000, 'the LogLevel warning');
    assert.equal(w.level, 40);
    assert.match(String(w.msg), new RegExp(`change ${sshdConfig}:2 "LogLevel INFO" to "LogLevel VERBOSE"`));
    await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent started');
    await settle();
  } finally {
    assert.equal(await agent.stop(), 0);
  }
});

test('LogLevel VERBOSE: neither check-config nor the agent warns', async (t) => {
  if (noSshd) return process.env.CI ? assert.fail(noSshd) : t.skip(noSshd);
  const { dir } = config('verbose', ['Port 2222', 'LogLevel VERBOSE']);
  const r = await runCli(['--config', dir, 'check-config']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /warning:/);
  const agent = startDaemon(['--config', dir, 'agent']);
  try {
    await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent started');
    await settle();
    assert.equal(agent.count(isLevelWarning), 0);
  } finally {
    assert.equal(await agent.stop(), 0);
  }
});
