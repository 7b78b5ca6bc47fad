// Host checks against real files, a real `sshd -T` and a real journal file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { loadJails, type JailConfig } from '../../../common/config/jails.js';
import {
  chooseSshdSource,
  hostChecks,
  journalReadable,
  shorewallBlacklistWarning,
  sshdLogLevelWarning,
  sshdLogSourceWarnings,
} from '../../../agent/preflight.js';
import { appendJournal, journalRemoteBin } from '../../helpers/journal.js';
import { writeConfig } from '../../helpers/spawn.js';

const SHIPPED = '/usr/share/shorewall/configfiles/shorewall.conf';

test('shorewall: which BLACKLIST / BLACKLISTNEWONLY / FASTACCEPT settings let an open connection survive a ban', () => {
  const f = '/etc/shorewall/shorewall.conf';
  const w = shorewallBlacklistWarning(f, 'A=1\nBLACKLIST="NEW,INVALID,UNTRACKED"\n');
  assert.match(w!, /^\/etc\/shorewall\/shorewall\.conf:2: BLACKLIST="NEW,INVALID,UNTRACKED" .*open connections survive its ban.*Change the line to BLACKLIST="ALL"/);
  assert.equal(shorewallBlacklistWarning(f, 'BLACKLIST=ALL\n'), undefined);
  assert.equal(shorewallBlacklistWarning(f, "BLACKLIST='NEW,ESTABLISHED,INVALID'\n"), undefined);
  assert.equal(shorewallBlacklistWarning(f, 'BLACKLIST=NEW,INVALID\nBLACKLIST="ALL"\n'), undefined, 'the last assignment wins');
  assert.match(shorewallBlacklistWarning(f, 'BLACKLIST=ALL\n\nBLACKLIST=NEW # only new\n')!, /:3: BLACKLIST="NEW" /, 'a trailing comment is not part of the value');
  // Empty BLACKLIST: Shorewall 4's BLACKLISTNEWONLY decides, then FASTACCEPT, else established ones are included.
  assert.match(shorewallBlacklistWarning(f, 'BLACKLIST=\nBLACKLISTNEWONLY=Yes\n')!, /:2: BLACKLISTNEWONLY=Yes: .*Change the line to BLACKLISTNEWONLY=No/);
  assert.equal(shorewallBlacklistWarning(f, 'BLACKLIST=\nBLACKLISTNEWONLY=No\nFASTACCEPT=Yes\n'), undefined);
  assert.match(shorewallBlacklistWarning(f, 'BLACKLIST=""\nFASTACCEPT=Yes\n')!, /:2: FASTACCEPT=Yes accepts established connections before the blacklist/);
  assert.equal(shorewallBlacklistWarning(f, 'FASTACCEPT=No\n'), undefined);
  assert.match(shorewallBlacklistWarning(f, 'BLACKLIST=NEW\nFASTACCEPT=Yes\n')!, /BLACKLIST="ALL" and FASTACCEPT=No at line 2/);
  if (existsSync(SHIPPED)) {
    const text = readFileSync(SHIPPED, 'utf8');
    const line = text.split('\n').findIndex((l) => l.startsWith('BLACKLIST=')) + 1;
    assert.match(shorewallBlacklistWarning(SHIPPED, text)!, new RegExp(`:${line}: BLACKLIST="NEW,INVALID,UNTRACKED"`), "Debian's shipped shorewall.conf spares open connections");
  }
});

test('check-config side: hostChecks reads shorewall.conf (and shorewall6.conf where installed) only for banaction = shorewall', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-shorewall-'));
  mkdirSync(join(dir, 'shorewall'));
  writeFileSync(join(dir, 'shorewall', 'shorewall.conf'), 'BLACKLIST="NEW,INVALID"\n');
  const files = { 4: join(dir, 'shorewall', 'shorewall.conf'), 6: join(dir, 'shorewall6', 'shorewall6.conf') };
  const found = await hostChecks([], { banaction: 'shorewall', shorewallConf: files });
  assert.deepEqual(found.map((w) => w.check), ['shorewall-blacklist'], 'no shorewall6 directory: IPv4 only');
  assert.match(found[0]!.message, new RegExp(`^${files[4]}:1: `));
  mkdirSync(join(dir, 'shorewall6'));
  const both = await hostChecks([], { banaction: 'shorewall', shorewallConf: files });
  assert.match(both[1]!.message, new RegExp(`^cannot read ${files[6]}: `), 'an unreadable file is said, not taken as fine');
  assert.deepEqual(await hostChecks([], { banaction: 'nftables', shorewallConf: files }), []);
  assert.deepEqual(await hostChecks([], { banaction: 'shorewall', shorewallConf: files, firewall: false }), []);
});

const SSHD = '/usr/sbin/sshd';
const noSshd = !existsSync(SSHD) ? 'needs the Debian package openssh-server (sshd)' : undefined;

/** A directory with a host key and an sshd_config made of `lines` plus the HostKey line. */
async function sshdConfig(lines: string[], extra: Record<string, string> = {}): Promise<string> {
  // sshd -T refuses to run without its privilege separation directory, which only a started
  // ssh service creates: on a fresh machine nothing has made it yet.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-sshd-'));
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  for (const [name, text] of Object.entries(extra)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  const file = join(dir, 'sshd_config');
  writeFileSync(file, [...lines.map((l) => l.replaceAll('$DIR', dir)), `HostKey ${join(dir, 'host_key')}`, ''].join('\n'));
  return file;
}

test('sshd LogLevel: a real sshd -T on a test config warns below VERBOSE and names the line', async (t) => {
  if (noSshd) return process.env.CI ? assert.fail(noSshd) : t.skip(noSshd);
  const verbose = await sshdConfig(['Port 2222', 'LogLevel VERBOSE']);
  assert.equal(await sshdLogLevelWarning({ sshdConfig: verbose }), undefined, 'VERBOSE: no warning');
  assert.equal(await sshdLogLevelWarning({ sshdConfig: await sshdConfig(['LogLevel DEBUG2']) }), undefined, 'more than VERBOSE is fine');

  const unset = await sshdConfig(['Port 2222']);
  assert.match(
    (await sshdLogLevelWarning({ sshdConfig: unset }))!,
    new RegExp(`^sshd logs at LogLevel INFO \\(sshd -T -f ${unset}\\): .*add the line "LogLevel VERBOSE" to ${unset} before any Match block`),
    'the default (INFO) warns and says which line to add',
  );
  const info = await sshdConfig(['Port 2222', 'LogLevel INFO']);
  assert.match((await sshdLogLevelWarning({ sshdConfig: info }))!, new RegExp(`change ${info}:2 "LogLevel INFO" to "LogLevel VERBOSE"`));

  // sshd keeps the first value, reading an Include where it stands: the included line is the one to change.
  const included = await sshdConfig(['Include $DIR/conf.d/*.conf', 'LogLevel VERBOSE'], { 'conf.d/10-quiet.conf': '# quiet\nloglevel=ERROR\n' });
  const w = await sshdLogLevelWarning({ sshdConfig: included });
  assert.match(w!, /sshd logs at LogLevel ERROR/);
  assert.match(w!, /conf\.d\/10-quiet\.conf:2 "loglevel=ERROR"/);

  assert.equal(await sshdLogLevelWarning({ sshdConfig: '/nonexistent/sshd_config' }), undefined, 'sshd -T cannot run: nothing to say');
  assert.equal(await sshdLogLevelWarning({ sshd: '/nonexistent/sshd' }), undefined);
});

/** Enabled jails from a jail.conf. */
function jails(text: string): JailConfig[] {
  return loadJails(writeConfig({ 'jail.conf': text })).jails;
}

const noJournal = !journalRemoteBin() ? 'needs the Debian package systemd-journal-remote' : undefined;

async function journalDir(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-journal-'));
  mkdirSync(join(dir, '0123456789abcdef0123456789abcdef'));
  await appendJournal(join(dir, '0123456789abcdef0123456789abcdef', 'system.journal'), [{ MESSAGE: 'hello', _COMM: 'sshd' }]);
  return dir;
}

test('an sshd jail on a log file that does not exist, on a host with a readable journal: use backend = systemd', async (t) => {
  if (noJournal) return process.env.CI ? assert.fail(noJournal) : t.skip(noJournal);
  const journal = await journalDir();
  const empty = mkdtempSync(join(tmpdir(), 'fleetban-nojournal-'));
  assert.equal(journalReadable([journal]), true);
  assert.equal(journalReadable([empty, '/nonexistent']), false);

  const work = mkdtempSync(join(tmpdir(), 'fleetban-logs-'));
  const present = join(work, 'auth.log');
  writeFileSync(present, '');
  const missing = join(work, 'missing', 'auth.log');
  const js = jails(
    `[sshd]\nenabled = true\nlogpath = ${missing}\n[ssh-iptables]\nenabled = true\nfilter = sshd[mode=aggressive]\nlogpath = ${work}/auth*.log\n` +
      `[sshd-journal]\nenabled = true\nfilter = sshd\nbackend = systemd\n[web]\nenabled = true\nfilter = nginx-http-auth\nlogpath = ${missing}\n`,
  );
  const w = await sshdLogSourceWarnings(js.filter((j) => j.name !== 'web'), [journal]);
  assert.equal(w.length, 1, w.join(' | '));
  assert.match(w[0]!, new RegExp(`jail\\.conf:1: jail \\[sshd\\]: logpath ${missing} does not exist, and this host logs to the systemd journal: set "backend = systemd"`));
  assert.deepEqual(await sshdLogSourceWarnings(js, [empty]), [], 'no journal either: nothing better to suggest');

  const all = await hostChecks(js, { journalDirs: [journal], sshd: '/nonexistent/sshd' });
  assert.deepEqual(all.map((x) => x.check), ['sshd-logpath'], 'only sshd jails are checked');
  assert.deepEqual(await hostChecks(js.filter((j) => j.name === 'web'), { journalDirs: [journal] }), [], 'no sshd jail: no sshd checks');

  // fleetban up's default jail: the file when it exists, else the journal, else the file.
  const [sshd] = js;
  const onJournal = await chooseSshdSource(sshd!, [journal]);
  assert.equal(onJournal.jail.backend, 'systemd');
  assert.deepEqual(onJournal.jail.journalmatch, ['_SYSTEMD_UNIT=ssh.service + _COMM=sshd']);
  assert.match(onJournal.source, new RegExp(`jail \\[sshd\\] reads the systemd journal .*: ${missing} does not exist`));
  const onFile = await chooseSshdSource({ ...sshd!, logpath: [present] }, [journal]);
  assert.equal(onFile.jail.backend, 'auto');
  assert.equal(onFile.source, `jail [sshd] reads ${present}`);
  const neither = await chooseSshdSource(sshd!, [empty]);
  assert.equal(neither.jail, sshd);
  assert.match(neither.source, /waits for/);
});
