import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatJournalEntry, fieldText } from '../../../../agent/sources/journal-format.js';
import { parseJournalMatch } from '../../../../agent/sources/journal-match.js';
import { parseBackend } from '../../../../common/config/backend-spec.js';
import { lineEncoding } from '../../../../agent/sources/encoding.js';
import { expandGlob, globMatches, segmentRegExp, literalParent } from '../../../../agent/sources/glob.js';
import { stateFileName } from '../../../../agent/sources/state-file.js';
import { createLogSources, FileTailSource, JournalSource } from '../../../../agent/sources/index.js';
import { ConfigError } from '../../../../common/errors.js';

const US = '1764150796373732'; // 2025-11-26T09:53:16.373732Z in microseconds

describe('formatJournalEntry', () => {
  test('host, identifier[pid] and message after an ISO time with offset', () => {
    const line = formatJournalEntry({
      __REALTIME_TIMESTAMP: US, _HOSTNAME: 'h1', SYSLOG_IDENTIFIER: 'sshd', _PID: '123', MESSAGE: 'Failed password',
    });
    const m = /^(\S+) h1 sshd\[123\]: Failed password$/.exec(line ?? '');
    assert.ok(m, line);
    assert.equal(Date.parse(m[1] as string), 1764150796373);
    assert.match(m[1] as string, /\.373732[+-]\d\d:\d\d$/);
  });

  test('source time wins, SYSLOG_PID wins over _PID, _COMM stands in for a missing identifier', () => {
    const a = formatJournalEntry({
      __REALTIME_TIMESTAMP: '1', _SOURCE_REALTIME_TIMESTAMP: US, SYSLOG_IDENTIFIER: 'sshd', SYSLOG_PID: '7', _PID: '8', MESSAGE: 'm',
    });
    assert.match(a ?? '', /^\S+ sshd\[7\]: m$/);
    assert.equal(Date.parse((a ?? '').split(' ')[0] as string), 1764150796373);
    assert.match(formatJournalEntry({ __REALTIME_TIMESTAMP: US, _COMM: 'dovecot', _PID: '9', MESSAGE: 'x' }) ?? '', /^\S+ dovecot\[9\]: x$/);
    assert.match(formatJournalEntry({ __REALTIME_TIMESTAMP: US, MESSAGE: 'bare' }) ?? '', /^\S+ bare$/);
  });

  test('kernel lines carry the monotonic stamp; byte arrays and repeated fields are decoded', () => {
    assert.match(
      formatJournalEntry({ __REALTIME_TIMESTAMP: US, _HOSTNAME: 'h', SYSLOG_IDENTIFIER: 'kernel', __MONOTONIC_TIMESTAMP: '12345678', MESSAGE: 'IN=eth0' }) ?? '',
      /^\S+ h kernel: \[ {3}12\.345678\] IN=eth0$/,
    );
    assert.equal(fieldText([104, 105]), 'hi');
    assert.equal(fieldText(['first', 'second']), 'first');
    assert.equal(fieldText([[111, 107], 'x']), 'ok');
    assert.equal(fieldText(null), undefined);
    assert.equal(formatJournalEntry({ __REALTIME_TIMESTAMP: US }), undefined);
  });
});

describe('parseJournalMatch', () => {
  test('tokens, alternatives within and across lines, quoted values', () => {
    assert.deepEqual(parseJournalMatch(['_SYSTEMD_UNIT=sshd.service + _COMM=sshd'], 'j'), ['_SYSTEMD_UNIT=sshd.service', '+', '_COMM=sshd']);
    assert.deepEqual(parseJournalMatch(['_SYSTEMD_UNIT=a.service _COMM=a', '"_SYSTEMD_UNIT=my unit.service"'], 'j'), [
      '_SYSTEMD_UNIT=a.service', '_COMM=a', '+', '_SYSTEMD_UNIT=my unit.service',
    ]);
    assert.deepEqual(parseJournalMatch([], 'j'), []);
  });

  test('anything that journalctl could take for an option, or a dangling +, is refused', () => {
    for (const bad of [['--since=yesterday'], ['-n1'], ['sshd'], ['+ _COMM=x'], ['_COMM=x +'], ['"_COMM=x']]) {
      assert.throws(() => parseJournalMatch(bad, 'j'), (e: unknown) => e instanceof ConfigError && /journalmatch/.test(e.message), bad.join());
    }
  });
});

describe('backend, encoding, globs, state names', () => {
  test('parseBackend', () => {
    assert.equal(parseBackend('auto', 'j').kind, 'files');
    assert.equal(parseBackend('polling', 'j').kind, 'files');
    assert.equal(parseBackend('pyinotify', 'j').kind, 'files');
    const s = parseBackend('systemd[journalpath=/var/log/journal/remote, journalfiles="/a.journal, /b.journal"]', 'j');
    assert.equal(s.kind, 'systemd');
    assert.equal(s.options.get('journalpath'), '/var/log/journal/remote');
    assert.equal(s.options.get('journalfiles'), '/a.journal, /b.journal');
    assert.throws(() => parseBackend('inotifyx', 'j'), ConfigError);
    assert.throws(() => parseBackend('systemd[=x]', 'j'), ConfigError);
  });

  test('lineEncoding', () => {
    assert.equal(lineEncoding('auto'), 'utf8');
    assert.equal(lineEncoding('UTF-8'), 'utf8');
    assert.equal(lineEncoding('latin-1'), 'latin1');
    assert.equal(lineEncoding('ISO-8859-1'), 'latin1');
    assert.throws(() => lineEncoding('utf-16', 'sshd'), (e: unknown) => e instanceof ConfigError && e.key === 'logencoding');
  });

  test('glob matching follows fnmatch: *, ?, classes, no hidden files', async () => {
    assert.ok(segmentRegExp('*error.log').test('site-error.log'));
    assert.ok(!segmentRegExp('*error.log').test('error.log.1'));
    assert.ok(segmentRegExp('auth.log.[0-9]').test('auth.log.1'));
    assert.ok(segmentRegExp('x[!a]').test('xb') && !segmentRegExp('x[!a]').test('xa'));
    assert.ok(segmentRegExp('a+b(c).log').test('a+b(c).log'));
    assert.ok(globMatches('/var/log/*/error.log', '/var/log/nginx/error.log'));
    assert.ok(!globMatches('/var/log/*.log', '/var/log/.hidden.log'));
    assert.equal(literalParent('/var/log/nginx/*.log'), '/var/log/nginx');
    assert.equal(literalParent('/var/log/*/error.log'), undefined);

    const dir = await mkdtemp(join(tmpdir(), 'fleetban-glob-'));
    try {
      await mkdir(join(dir, 'a'));
      await mkdir(join(dir, 'b'));
      await writeFile(join(dir, 'a', 'x.log'), '');
      await writeFile(join(dir, 'b', 'y.log'), '');
      await writeFile(join(dir, 'b', '.z.log'), '');
      await mkdir(join(dir, 'b', 'd.log'));
      assert.deepEqual(await expandGlob(join(dir, '*', '*.log')), [join(dir, 'a', 'x.log'), join(dir, 'b', 'y.log')]);
      assert.deepEqual(await expandGlob(join(dir, 'missing', '*.log')), []);
      assert.deepEqual(await expandGlob(join(dir, 'literal.log')), [join(dir, 'literal.log')]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('state file names cannot leave the state directory', () => {
    assert.equal(stateFileName('sshd', 'files'), 'sshd.files.json');
    assert.ok(!stateFileName('../../etc/x', 'files').includes('/'));
    assert.ok(!stateFileName('..', 'files').startsWith('.'));
  });
});

describe('createLogSources', () => {
  const jail = { name: 'sshd', backend: 'auto', logpath: ['/var/log/auth.log'], logencoding: 'auto', journalmatch: [] };

  test('file backends give one file follower for all paths, systemd one journal reader', () => {
    const files = createLogSources({ ...jail, logpath: ['/var/log/auth.log', '/var/log/secure*'] }, { stateDir: '/tmp/x' });
    assert.equal(files.length, 1);
    assert.ok(files[0] instanceof FileTailSource);
    const journal = createLogSources({ ...jail, backend: 'systemd', logpath: [], journalmatch: ['_SYSTEMD_UNIT=sshd.service + _COMM=sshd'] });
    assert.equal(journal.length, 1);
    assert.ok(journal[0] instanceof JournalSource);
  });

  test('configuration mistakes are ConfigErrors naming the key', () => {
    const key = (k: string) => (e: unknown) => e instanceof ConfigError && e.key === k;
    assert.throws(() => createLogSources({ ...jail, backend: 'bogus' }), key('backend'));
    assert.throws(() => createLogSources({ ...jail, logencoding: 'utf-16' }), key('logencoding'));
    assert.throws(() => createLogSources({ ...jail, logpath: ['relative.log'] }), key('logpath'));
    assert.throws(() => createLogSources({ ...jail, backend: 'systemd', journalmatch: ['--output=cat'] }), key('journalmatch'));
  });
});
