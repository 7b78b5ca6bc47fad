import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, writeConfig } from '../helpers/spawn.js';

/**
 * Mistakes an operator makes reach them as one line naming what to fix, from the real CLI: an
 * unknown firewall backend (which check-config used to report as OK, leaving the agent to fail at
 * start), a bad ignorecommand (which only failed when a coordinator loaded its policy), a bad
 * command-line value. No Redis is needed: each fails before anything connects.
 */
const logDir = mkdtempSync(join(tmpdir(), 'fleetban-operr-'));
const authLog = join(logDir, 'auth.log');
writeFileSync(authLog, '');

function config(agent: string, jail = ''): string {
  return writeConfig({
    'fleetban.conf': `[redis]\nurl = redis://127.0.0.1:1/\n[agent]\nstate_dir = ${join(logDir, 'state')}\nallow_unsigned = true\n${agent}`,
    'fleetban.local': '',
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nlogpath = ${authLog}\n${jail}`,
  });
}

test('an unknown backend is one line naming the file, line, banaction and the valid names, from check-config and from the agent', async () => {
  const dir = config('banaction = pf\n');
  // banaction is the sixth line of the generated fleetban.conf.
  const BACKEND_LINE = `fleetban: ${join(dir, 'fleetban.conf')}:6, key 'banaction': unknown firewall backend 'pf' in [agent]; valid: auto, nftables, ipset, iptables, shorewall, dry-run\n`;
  const check = await runCli(['--config', dir, 'check-config']);
  assert.equal(check.code, 1, check.stdout);
  assert.equal(check.stderr, BACKEND_LINE);
  assert.doesNotMatch(check.stdout, /OK/);

  const agent = await runCli(['--config', dir, 'agent']);
  assert.equal(agent.code, 1);
  assert.equal(agent.stderr, BACKEND_LINE);
  const cleanup = await runCli(['--config', dir, 'agent', '--cleanup']);
  assert.equal(cleanup.code, 1);
  assert.equal(cleanup.stderr, BACKEND_LINE);

  const json = await runCli(['--config', dir, '--json', 'check-config']);
  assert.equal(json.code, 1);
  assert.deepEqual(JSON.parse(json.stderr), { error: BACKEND_LINE.slice('fleetban: '.length, -1), exitCode: 1 });
});

test('an ignorecommand with an unterminated quote is refused by check-config with its file, line and key', async () => {
  const dir = config('banaction = dry-run\n', "ignorecommand = /usr/local/bin/known-host 'unterminated <ip>\n");
  const r = await runCli(['--config', dir, 'check-config']);
  assert.equal(r.code, 1, r.stdout);
  assert.equal(r.stderr, `fleetban: ${dir}/jail.conf:5, key 'ignorecommand': jail [sshd]: unterminated ' in '/usr/local/bin/known-host 'unterminated <ip>'\n`);
});

test('a bad --start-at is one line, without a stack, even with FLEETBAN_DEBUG', async () => {
  const dir = config('banaction = dry-run\n');
  const r = await runCli(['--config', dir, 'agent', '--start-at', 'middle'], { FLEETBAN_DEBUG: '1' });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "fleetban: --start-at must be end, beginning or resume, not 'middle'\n");
});
