import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pinClock } from '../../../../common/clock.js';
import { ConfigError } from '../../../../common/errors.js';
import { DateDetector } from '../../../../common/filter/date-detector.js';
import { loadFilterFrom, parseFilterSpec } from '../../../../common/filter/filter-loader.js';
import { builtinFilterDir, loadFilter } from '../../../../common/filter/index.js';
import { RegexTranslationError, translatePythonRegex } from '../../../../common/filter/py-regex.js';
import { enableBacktrackingFallback } from '../../../../common/filter/regex-safety.js';

// Production's regex safety net (a process-wide V8 flag the entry point sets).
enableBacktrackingFallback();

const local = (y: number, mo: number, d: number, h: number, mi: number, s: number): number => new Date(y, mo - 1, d, h, mi, s).getTime();

test('python regex: named groups and backreferences', () => {
  const t = translatePythonRegex('^(?P<a>x+)-(?P=a)$');
  assert.ok(t.regex.test('xx-xx'));
  assert.ok(!t.regex.test('xx-x'));
  const m = t.regex.exec('xxx-xxx')!;
  assert.equal(m[t.groups.get('a')![0]!], 'xxx');
});

test('python regex: conditional groups become alternatives', () => {
  const t = translatePythonRegex('^(?P<q>")?(?P<v>\\w+)(?(q)"|!)$');
  assert.ok(t.regex.test('"abc"'));
  assert.ok(t.regex.test('abc!'));
  assert.ok(!t.regex.test('"abc!'));
  assert.ok(!t.regex.test('abc"'));
  // a condition on a group inside an alternation
  const u = translatePythonRegex('^(?:(?P<n>\\d+)|[a-z]+)(?(n)#|@)$');
  assert.ok(u.regex.test('12#') && u.regex.test('ab@'));
  assert.ok(!u.regex.test('12@') && !u.regex.test('ab#'));
});

test("python regex: $ matches before a final newline, '.' stops at newlines, \\A and \\Z", () => {
  assert.ok(translatePythonRegex('abc$').regex.test('xabc\n'));
  assert.ok(!translatePythonRegex('abc$').regex.test('abc\nx'));
  assert.ok(!translatePythonRegex('^a.c').regex.test('a\nc'));
  assert.ok(translatePythonRegex('(?s)^a.c').regex.test('a\nc'));
  assert.ok(!translatePythonRegex('abc\\Z').regex.test('abc\n'));
  assert.ok(translatePythonRegex('\\Aabc').regex.test('abc'));
  assert.ok(!translatePythonRegex('\\Aabc').regex.test('xabc'));
});

test('python regex: flags, sets and quantifier forms', () => {
  assert.ok(translatePythonRegex('(?i)^user FOO$').regex.test('USER foo'));
  assert.ok(translatePythonRegex('^a(?i:b)c$').regex.test('aBc'));
  assert.ok(!translatePythonRegex('^a(?i:b)c$').regex.test('aBC'));
  assert.ok(translatePythonRegex('^[]a]+$').regex.test(']a]'));
  assert.ok(translatePythonRegex('^x{,2}$').regex.test('xx'));
  assert.ok(!translatePythonRegex('^x{,2}$').regex.test('xxx'));
  assert.ok(translatePythonRegex('^(?>a+)b$').regex.test('aab'));
  assert.ok(translatePythonRegex('^a(?#comment)b$').regex.test('ab'));
});

test('python regex: what cannot be translated is named', () => {
  assert.throws(() => translatePythonRegex('a(?L)b'), (e: unknown) => e instanceof RegexTranslationError && e.construct.includes('(?L'));
  assert.throws(() => translatePythonRegex('\\N{DIGIT ONE}'), RegexTranslationError);
  assert.throws(() => translatePythonRegex('(?P<a>x)(?P<a>y)'), /redefinition/);
});

test('dates: syslog without a year takes the year of now, or the previous one across new year', () => {
  pinClock(local(2027, 1, 1, 0, 5, 0));
  try {
    const d = new DateDetector();
    assert.equal(d.find('Dec 31 23:59:58 h sshd[1]: x')!.time, local(2026, 12, 31, 23, 59, 58));
    assert.equal(d.find('Jan  1 00:04:00 h sshd[1]: x')!.time, local(2027, 1, 1, 0, 4, 0));
  } finally {
    pinClock(undefined);
  }
});

test('dates: ISO 8601 with zone, epoch, TAI64N and strftime patterns', () => {
  const d = new DateDetector();
  assert.equal(d.find('2026-11-20T09:30:31.123+01:00 host sshd[1]: x')!.time, Date.UTC(2026, 10, 20, 8, 30, 31, 123));
  assert.equal(new DateDetector('EPOCH').find('1700000000.500 msg')!.time, 1_700_000_000_500);
  assert.equal(new DateDetector('TAI64N').find('@4000000065535f0e1c0a8b2c msg')!.time, 0x65535f0e * 1000 - 10_000 + 10_000);
  const p = new DateDetector('^%%d/%%b/%%Y:%%H:%%M:%%S %%z'.replace(/%%/g, '%'));
  assert.equal(p.find('20/Nov/2026:09:30:31 +0000 GET /')!.time, Date.UTC(2026, 10, 20, 9, 30, 31));
  const hit = new DateDetector('{^LN-BEG}').find('Nov 20 09:30:31 h1 sshd[1]: x')!;
  assert.deepEqual([hit.start, hit.end], [0, 15]);
});

test('catastrophic backtracking: a known ReDoS pattern returns quickly on a pathological line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fb-filter-'));
  try {
    writeFileSync(join(dir, 'redos.conf'), '[Definition]\nfailregex = ^(?:\\w+\\s?)+: from <ADDR>$\ndatepattern = {NONE}\n');
    const filter = loadFilterFrom('redos', { dirs: [dir] });
    const m = filter.createMatcher();
    const start = process.hrtime.bigint();
    assert.deepEqual(m.feed(`${'a '.repeat(5000)}!`), []);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.ok(ms < 5000, `pathological line took ${ms} ms`);
    assert.equal(m.feed('user x: from 192.0.2.4')[0]?.addr, '192.0.2.4');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('catastrophic backtracking: a risky pattern that needs backtracking is refused, naming file and line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fb-filter-'));
  try {
    writeFileSync(join(dir, 'bad.conf'), '[Definition]\n# comment\nfailregex = ^x\n            ^(?:(\\w+)\\s?)+\\1 from <HOST>$\n');
    assert.throws(
      () => loadFilterFrom('bad', { dirs: [dir] }),
      (e: unknown) => e instanceof ConfigError && e.file === join(dir, 'bad.conf') && e.line === 4 && /unsaferegex/.test(e.message),
    );
    writeFileSync(join(dir, 'bad2.conf'), '[Definition]\nfailregex = ^(?L)x <HOST>\n');
    assert.throws(
      () => loadFilterFrom('bad2', { dirs: [dir] }),
      (e: unknown) => e instanceof ConfigError && e.line === 2 && /bad2/.test(e.message) && /\(\?L/.test(e.message),
    );
    writeFileSync(join(dir, 'noid.conf'), '[Definition]\nfailregex = ^failed login$\n');
    assert.throws(() => loadFilterFrom('noid', { dirs: [dir] }), /no failure id/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('filter specs, .local overrides, jail options and unknown filters', () => {
  assert.deepEqual([...parseFilterSpec('sshd[mode=aggressive, publickey="a, b"]').options], [['mode', 'aggressive'], ['publickey', 'a, b']]);
  assert.throws(() => loadFilter('nope', { dirs: [builtinFilterDir()] }), ConfigError);
  assert.throws(() => loadFilter('../etc/passwd', { dirs: [builtinFilterDir()] }), ConfigError);
  const dir = mkdtempSync(join(tmpdir(), 'fb-filter-'));
  try {
    writeFileSync(join(dir, 'app.conf'), '[Init]\nword = denied\n[Definition]\nfailregex = ^<word> for <HOST>$\n');
    writeFileSync(join(dir, 'app.local'), '[Init]\nword = refused\n');
    const m = loadFilter('app', { dirs: [dir] }).createMatcher();
    assert.equal(m.feed('refused for 198.51.100.3').length, 1);
    assert.equal(m.feed('denied for 198.51.100.3').length, 0);
    const n = loadFilter('app[word=blocked]', { dirs: [dir] }).createMatcher();
    assert.equal(n.feed('blocked for 2001:db8::3')[0]?.addr, '2001:db8::3');
    // the jail's maxlines turns on multi-line matching
    writeFileSync(join(dir, 'two.conf'), '[Definition]\nfailregex = ^login <F-USER>\\S+</F-USER>\\n.*denied for <HOST>$\n');
    const t = loadFilter('two', { dirs: [dir], jail: new Map([['maxlines', '2']]) }).createMatcher();
    assert.equal(t.feed('login bob').length, 0);
    const hit = t.feed('access denied for 203.0.113.7');
    assert.equal(hit[0]?.addr, '203.0.113.7');
    assert.equal(hit[0]?.user, 'bob');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sshd: failures carry the line time, the user and a canonical address', () => {
  pinClock(local(2026, 11, 26, 12, 0, 0));
  try {
    const m = loadFilter('sshd', { dirs: [builtinFilterDir()] }).createMatcher();
    const [f] = m.feed('Nov 26 09:30:31 h1 sshd[99]: Failed password for root from 2001:DB8:0:0::9 port 4242 ssh2');
    assert.deepEqual({ ...f, text: undefined }, { addr: '2001:db8::9', time: local(2026, 11, 26, 9, 30, 31), user: 'root', text: undefined });
  } finally {
    pinClock(undefined);
  }
});
