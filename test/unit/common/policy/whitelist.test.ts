import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FleetAddressSet, splitCommand, Whitelist, type WhitelistSpec } from '../../../../common/policy/whitelist.js';
import { InvalidInputError } from '../../../../common/errors.js';

/** common/policy/whitelist.ts: ignoreip (addresses, networks, names, files), ignoreself, ignorecommand. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}
const spec = (over: Partial<WhitelistSpec>): WhitelistSpec => ({ jail: 'sshd', ignoreip: [], ignoreself: false, ignorecommand: undefined, ...over });

test('ignoreip: single addresses and IPv4/IPv6 networks match exactly what they cover', async () => {
  const { logger } = capture();
  const wl = await Whitelist.load(spec({ ignoreip: ['192.0.2.7', '198.51.100.0/24', '2001:db8:1::/48'] }), undefined, logger);
  assert.equal(wl.checkLocal('192.0.2.7'), 'ignoreip');
  assert.equal(wl.checkLocal('192.0.2.8'), undefined);
  assert.equal(wl.checkLocal('198.51.100.255'), 'ignoreip');
  assert.equal(wl.checkLocal('198.51.101.0'), undefined);
  assert.equal(wl.checkLocal('2001:db8:1:ffff::1'), 'ignoreip');
  assert.equal(wl.checkLocal('2001:db8:2::1'), undefined);
  assert.equal(await wl.check('203.0.113.1'), undefined, 'without a command, check is checkLocal');
});

test('ignoreip file: lists are read with # comments and several entries per line; an unreadable file is warned about and skipped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-wl-'));
  const list = join(dir, 'trusted.txt');
  writeFileSync(list, '# office\n203.0.113.0/28  # the VPN\n192.0.2.1, 192.0.2.2\n\n');
  const { logger, lines } = capture();
  const wl = await Whitelist.load(spec({ ignoreip: [`file:${list}`, `file:${join(dir, 'missing.txt')}`, '198.51.100.9'] }), undefined, logger);
  for (const a of ['203.0.113.15', '192.0.2.1', '192.0.2.2', '198.51.100.9']) assert.equal(wl.checkLocal(a), 'ignoreip', a);
  assert.equal(wl.checkLocal('203.0.113.16'), undefined, 'outside the /28');
  const warned = lines.filter((l) => l.msg === 'ignoreip file cannot be read; skipped');
  assert.equal(warned.length, 1);
  assert.equal(warned[0]!.file, join(dir, 'missing.txt'));
});

test('ignoreip host names are resolved when the whitelist loads', async () => {
  const { logger } = capture();
  const wl = await Whitelist.load(spec({ ignoreip: ['localhost'] }), undefined, logger);
  assert.equal(wl.checkLocal('127.0.0.1'), 'ignoreip', 'localhost resolves to 127.0.0.1 (/etc/hosts)');
});

test('ignoreself follows the fleet set as it is updated; off, fleet addresses are not ignored', async () => {
  const { logger } = capture();
  const fleet = new FleetAddressSet();
  const on = await Whitelist.load(spec({ ignoreself: true }), fleet, logger);
  const off = await Whitelist.load(spec({ ignoreself: false }), fleet, logger);
  assert.equal(on.checkLocal('198.51.100.5'), undefined, 'empty fleet');
  fleet.update(['198.51.100.5', 'fe80::1%eth0', 'not an address']);
  assert.equal(on.checkLocal('198.51.100.5'), 'ignoreself');
  assert.equal(on.checkLocal('fe80::1'), 'ignoreself', 'a zone index is dropped');
  assert.equal(off.checkLocal('198.51.100.5'), undefined);
  fleet.update(['198.51.100.6']);
  assert.equal(on.checkLocal('198.51.100.5'), undefined, 'a host that left is no longer protected');
  // ignoreip is checked first: its reason wins when both apply.
  const both = await Whitelist.load(spec({ ignoreself: true, ignoreip: ['198.51.100.6'] }), fleet, logger);
  assert.equal(both.checkLocal('198.51.100.6'), 'ignoreip');
});

test('ignorecommand: exit 0 ignores, 1 does not, anything else warns and does not; answers are cached per address', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-wl-'));
  const runs = join(dir, 'runs');
  writeFileSync(runs, '');
  const { logger, lines } = capture();
  const wl = await Whitelist.load(spec({
    ignorecommand: `/bin/sh -c 'echo "$1 $2" >> ${runs}; case "$1" in 192.0.2.10) exit 0;; 192.0.2.11) exit 1;; *) echo broken >&2; exit 3;; esac' sh <ip> <jail>`,
  }), undefined, logger);
  assert.equal(wl.hasCommand, true);
  assert.equal(wl.checkLocal('192.0.2.10'), undefined, 'the command is not part of the local checks');
  assert.equal(await wl.check('192.0.2.10'), 'ignorecommand');
  assert.equal(await wl.check('192.0.2.11'), undefined);
  assert.equal(await wl.check('192.0.2.12'), undefined);
  const failed = lines.filter((l) => l.msg === 'ignorecommand failed; the address is not ignored');
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.exitCode, 3);
  assert.match(String(failed[0]!.stderr), /broken/);
  // Asked again: answered from the cache, the command does not run again.
  assert.equal(await wl.check('192.0.2.10'), 'ignorecommand');
  assert.equal(await wl.check('192.0.2.11'), undefined);
  assert.deepEqual(readFileSync(runs, 'utf8').trim().split('\n'), ['192.0.2.10 sshd', '192.0.2.11 sshd', '192.0.2.12 sshd'],
    '<ip> and <jail> are replaced, one run per address');
});

test('splitCommand splits like a shell for simple quoting, without expanding anything', () => {
  assert.deepEqual(splitCommand(`/bin/check --ip <ip> 'two words' "a \\"q\\"" back\\ slash $HOME ''`),
    ['/bin/check', '--ip', '<ip>', 'two words', 'a "q"', 'back slash', '$HOME', '']);
  assert.throws(() => splitCommand(`/bin/check 'open`), (err: Error) => err instanceof InvalidInputError && /unterminated ' in/.test(err.message));
});
