import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadJails } from '../../../common/config/jails.js';
import { loadPolicy } from '../../../coordinator/policy.js';
import { FleetAddressSet } from '../../../common/policy/whitelist.js';

/** coordinator/policy.ts: from jail.conf to what the counting script and the whitelist use. */
const silent = pino({ level: 'silent' });

function jails(text: string) {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-policy-'));
  const log = join(dir, 'auth.log');
  writeFileSync(log, '');
  writeFileSync(join(dir, 'jail.conf'), text.replaceAll('LOG', log));
  return loadJails(dir).jails;
}

test('script policies carry the jail options in milliseconds, escalation precomputed, permanent as -1', async () => {
  const js = jails([
    '[sshd]\nenabled = true\nlogpath = LOG\nmaxretry = 3\nfindtime = 5m\nbantime = 1h\nminhosts = 2\nignoreself = false\n',
    '[perm]\nenabled = true\nfilter = sshd\nlogpath = LOG\nbantime = -1\n',
    '[esc]\nenabled = true\nfilter = sshd\nlogpath = LOG\nbantime = 10m\nbantime.increment = true\nbantime.multipliers = 1 2 4\nbantime.rndtime = 30s\nbantime.overalljails = true\n',
    '[recidive]\nenabled = true\nbackend = bans\nmaxretry = 2\nfindtime = 1d\nbantime = 1w\n',
  ].join(''));
  const p = await loadPolicy(js, new FleetAddressSet(), silent);
  assert.deepEqual([...p.jails.keys()], ['sshd', 'perm', 'esc', 'recidive']);
  assert.deepEqual(p.jails.get('sshd')!.script, {
    jail: 'sshd', findtimeMs: 300_000, maxretry: 3, minhosts: 2, overalljails: false, rndtimeMs: 0, countsBans: false, ignoreself: false, durationsMs: [3_600_000],
  });
  assert.deepEqual(p.jails.get('perm')!.script.durationsMs, [-1]);
  const esc = p.jails.get('esc')!.script;
  assert.deepEqual(esc.durationsMs.slice(0, 4), [600_000, 1_200_000, 2_400_000, 2_400_000], 'the last multiplier repeats');
  assert.equal(esc.rndtimeMs, 30_000);
  assert.equal(esc.overalljails, true);
  assert.deepEqual(p.recidives.map((r) => r.jail), ['recidive'], 'only ban-counting jails go to every call');
  assert.equal(p.jails.get('sshd')!.ipv6prefix, 128);
});

test('each jail gets its own whitelist; the digest changes with any policy change and only then', async () => {
  const fleet = new FleetAddressSet();
  const text = '[DEFAULT]\nignoreip = 192.0.2.0/24\n[sshd]\nenabled = true\nlogpath = LOG\n[nginx]\nenabled = true\nfilter = sshd\nlogpath = LOG\nignoreip = 198.51.100.1\n';
  const a = await loadPolicy(jails(text), fleet, silent);
  assert.equal(a.jails.get('sshd')!.whitelist.checkLocal('192.0.2.9'), 'ignoreip');
  assert.equal(a.jails.get('nginx')!.whitelist.checkLocal('192.0.2.9'), undefined, 'a jail that sets ignoreip replaces the default');
  assert.equal(a.jails.get('nginx')!.whitelist.checkLocal('198.51.100.1'), 'ignoreip');
  assert.match(a.digest, /^[0-9a-f]{12}$/);
  const same = await loadPolicy(jails(text), fleet, silent);
  assert.equal(same.digest, a.digest, 'the same jails in another directory: coordinators agree');
  const changed = await loadPolicy(jails(text.replace('[sshd]\nenabled = true\n', '[sshd]\nenabled = true\nmaxretry = 4\n')), fleet, silent);
  assert.notEqual(changed.digest, a.digest);
  const wl = await loadPolicy(jails(text.replace('198.51.100.1', '198.51.100.2')), fleet, silent);
  assert.notEqual(wl.digest, a.digest, 'a whitelist change is a policy change');
});
