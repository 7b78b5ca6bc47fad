import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConf, ConfSet, readWithIncludes } from '../../../../common/config/conf-reader.js';
import { ConfigError } from '../../../../common/errors.js';

test('joins indented continuation lines and skips comments inside them', () => {
  const doc = parseConf(['[Definition]', 'failregex = ^one <HOST>$', '            # a commented-out regex', '            ^two <HOST>$', '', '            ^three <HOST>$', 'other: x ; inline comment', 'hash = a #b'].join('\n'), 'f.conf');
  const opts = doc.sections[0]!.options;
  assert.equal(opts.get('failregex')!.value, '^one <HOST>$\n^two <HOST>$\n\n^three <HOST>$');
  assert.equal(opts.get('other')!.value, 'x');
  assert.equal(opts.get('hash')!.value, 'a #b', "'#' after text is not a comment in fail2ban's dialect");
  assert.equal(opts.get('failregex')!.line, 2);
});

test('a malformed line names file and line', () => {
  assert.throws(() => parseConf('[a]\nkey = 1\nthis is not an option\n', '/etc/fleetban/jail.local'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /^\/etc\/fleetban\/jail\.local:3: cannot parse 'this is not an option'/);
    return true;
  });
  assert.throws(() => parseConf('key = 1\n', 'x.conf'), /x\.conf:1, key 'key': option before any \[section\]/);
});

test('interpolates %(name)s from the section, then DEFAULT, with __name__ and known/', () => {
  const set = new ConfSet([
    parseConf('[DEFAULT]\nport = ssh\nlog = /var/log/%(__name__)s.log\n[sshd]\nfilter = %(__name__)s[mode=%(mode)s]\nmode = normal\n', 'jail.conf'),
    parseConf('[sshd]\nmode = aggressive\nport = %(known/port)s,2222\n', 'jail.local'),
  ]);
  assert.equal(set.get('sshd', 'filter'), 'sshd[mode=aggressive]');
  assert.equal(set.get('sshd', 'log'), '/var/log/sshd.log');
  assert.equal(set.get('sshd', 'port'), 'ssh,2222');
  assert.equal(set.get('sshd', 'PORT'), 'ssh,2222', 'keys are case-insensitive');
});

test('a missing reference or a loop is a ConfigError with file, line and key', () => {
  const set = new ConfSet([parseConf('[j]\na = %(nope)s\nb = %(c)s\nc = %(b)s\n', 'jail.conf')]);
  assert.throws(() => set.get('j', 'a'), /jail\.conf:2, key 'a': '%\(nope\)s' refers to an option that is not set/);
  assert.throws(() => set.get('j', 'b'), /nested more than 10 deep/);
});

test('[INCLUDES] before/after and NAME.local are read in fail2ban order', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fb-conf-'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'common.conf'), '[DEFAULT]\nv = common\nw = common\n');
  writeFileSync(join(dir, 'sub', 'after.conf'), '[DEFAULT]\nafter = yes\n');
  writeFileSync(join(dir, 'f.conf'), '[INCLUDES]\nbefore = common.conf\nafter = sub/after.conf\n[DEFAULT]\nv = own\n');
  writeFileSync(join(dir, 'f.local'), '[DEFAULT]\nw = local\n');
  const docs = readWithIncludes(join(dir, 'f.conf'));
  assert.deepEqual(docs.map((d) => d.file.slice(dir.length + 1)), ['common.conf', 'f.conf', 'sub/after.conf', 'f.local']);
  const set = new ConfSet(docs);
  assert.equal(set.get('DEFAULT', 'v'), 'own');
  assert.equal(set.get('DEFAULT', 'w'), 'local');
  assert.equal(set.get('DEFAULT', 'after'), 'yes');
});
