// The engine's shortcuts must never change a result: literal prefixes of anchored failregexes,
// the prefregex head, the agent matcher's lazy dates, the multi-line cache's eviction and texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pinClock } from '../../../../common/clock.js';
import { DateDetector } from '../../../../common/filter/date-detector.js';
import { builtinFilterDir, loadFilter, type CompiledFilter } from '../../../../common/filter/index.js';
import { translateContentHead, translatePythonRegex } from '../../../../common/filter/py-regex.js';
import { FailRegex } from '../../../../common/filter/fail-regex.js';
import { AuthLogGenerator } from '../../../helpers/auth-log.js';
import { PACKAGE_ROOT } from '../../../compat/fail2ban-package.js';

const FIXTURES = fileURLToPath(new URL('../../../../../test/fixtures/logs/', import.meta.url));
const prefixes = (p: string, multiline = false): readonly string[] | undefined => translatePythonRegex(p, { multiline }).anchoredPrefixes;

test('prefixes: what every match of an anchored regex starts with', () => {
  assert.deepEqual(prefixes('^Failed (?:password|none) for (?P<user>.*) from'), ['Failed none for ', 'Failed password for ']);
  assert.deepEqual(prefixes('^Failed (?!publickey )\\S+ for'), ['Failed ']);
  assert.deepEqual(prefixes('^(?:Invalid|Illegal) user '), ['Invalid user ', 'Illegal user ']);
  assert.deepEqual(prefixes('^[Aa]uth'), ['Auth', 'auth']);
  assert.deepEqual(prefixes('(?i)^ab'), ['AB', 'Ab', 'aB', 'ab']);
  assert.deepEqual(prefixes('^(?P<nofail>(?P<x>Connection) from)'), ['Connection from']);
  assert.deepEqual(prefixes('^a?b'), ['b', 'ab']);
  // a shorter prefix makes the longer one it begins redundant
  assert.deepEqual(prefixes('^(?:abc|ab)d|^ab'), ['ab']);
  assert.deepEqual(prefixes('^x{2}y'), ['xxy']);
  // nothing known: not anchored, may be empty, starts with a class, or multiline
  for (const p of ['Failed', '^\\s*x', '^.x', '^(?:a|b*)c', '^a|b', '^\\d+x']) assert.equal(prefixes(p), undefined, p);
  assert.equal(prefixes('^abc', true), undefined);
});

test('prefixes: a regex that matches never fails its prefix check', () => {
  const cases: Array<[string, string]> = [
    ['^Failed (?:password|publickey) for (?P<user>\\S+) from (?P<host>\\S+)', 'Failed publickey for x from 192.0.2.1'],
    ['(?i)^user (?P<u>\\w+)', 'USER bob'],
    ['^(?:ab)?c', 'c'],
    ['^(?:ab)?c', 'abc'],
    ['^\\x41\\u0042\\tC', 'AB\tC'],
    ['^[Ee]rror: (?:PAM: )?Auth', 'Error: PAM: Auth'],
  ];
  for (const [p, line] of cases) {
    const fr = new FailRegex(p, { usedns: 'no', multiline: false });
    assert.ok(fr.match(`${line}\n`), `${p} should match ${line}`);
    assert.ok(fr.mayStartAt(`${line}\n`, 0), `prefix check refused a match: ${p} on ${line}`);
  }
});

test('prefregex head: finds the content where the whole prefregex puts it, or refuses the shape', () => {
  const sshd = loadFilter('sshd', { dirs: [builtinFilterDir()] }) as CompiledFilter;
  const pref = sshd.def.prefregex!;
  assert.ok(pref.hasHead, 'the sshd prefregex has the usual shape');
  const lines = [
    ' h1 sshd[1]: Failed password for root from 192.0.2.1 port 1 ssh2',
    ' h1 sshd[1]: error: PAM: Authentication failure for x from 192.0.2.1',
    ' <auth.info> h1 sshd[1]: [ID 800047 auth.info] Invalid user a from 192.0.2.1',
    ' h1 kernel: [ 12.345] x',
    ' h1 CRON[5]: pam_unix(cron:session): session opened',
    ' sshd[1]: x',
    ' h1 ',
    ' h1 sshd[1]: ',
    'x',
    ' error: ',
  ];
  for (const line of lines) {
    const full = pref.exec(`${line}\n`);
    const cs = pref.contentStart(line);
    if (!full) {
      assert.equal(cs, -1, `head matched where the prefregex does not: '${line}'`);
      continue;
    }
    assert.equal(line.slice(cs), full.groups.get('content'), `content of '${line}'`);
    const head = pref.execHead(line, cs);
    assert.deepEqual([...head], [...full.groups], `groups of '${line}'`);
  }
  assert.ok(translateContentHead('^(?P<mlfid>\\S+ )(?P<content>.+)$'));
  // shapes the equivalence does not cover
  for (const p of ['^(?P<a>\\S+ )(?P<content>.+)x$', '^(?=a)(?P<content>.+)$', '^\\S+ (?P<content>.*)$', '(?m)^\\S+ (?P<content>.+)$', '^\\S+ (?P<content>.+)$ ', '^\\S+$ (?P<content>.+)$']) {
    assert.equal(translateContentHead(p), undefined, p);
  }
});

test('prefregex head: a newline in the content takes the general path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fb-fast-'));
  try {
    // The lazy head would stop at the first ': ', but the whole prefregex must run to the end.
    writeFileSync(join(dir, 'nl.conf'), '[Definition]\nprefregex = ^<F-MLFID>[\\s\\S]*?: </F-MLFID><F-CONTENT>.+</F-CONTENT>$\nfailregex = ^fail <HOST>$\ndatepattern = {NONE}\n');
    const f = loadFilter('nl', { dirs: [dir] }) as CompiledFilter;
    const line = 'a: b\nc: fail 192.0.2.1';
    assert.equal(f.createDetailedMatcher().feed(line).addr, '192.0.2.1');
    assert.equal(f.createMatcher().feed(line)[0]?.addr, '192.0.2.1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Feeds the same lines to both matchers; every line must give the same failure (or none). The
 * agent's chunk path (all lines as one string) must give the same failures too.
 */
function assertAgree(filter: CompiledFilter, lines: readonly string[], where: string): number {
  const fast = filter.createMatcher();
  const detailed = filter.createDetailedMatcher();
  const all: unknown[] = [];
  for (const line of lines) {
    const r = detailed.feed(line);
    const want = r.kind === 'failure' && r.addr !== undefined ? [r.user !== undefined ? { addr: r.addr, time: r.time, user: r.user, text: r.text } : { addr: r.addr, time: r.time, text: r.text }] : [];
    const got = fast.feed(line);
    assert.deepEqual(got, want, `${where}: ${line}`);
    all.push(...want);
  }
  if (lines.length > 0) assert.deepEqual(filter.createMatcher().feedChunk(lines.join('\n')), all, `${where}: feedChunk`);
  return all.length;
}

function sampleLines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
}

test('agent matcher agrees with the detailed matcher on the shipped sample logs and a generated auth.log', () => {
  pinClock(new Date(2026, 10, 26, 12, 0, 0).getTime());
  try {
    const names = readdirSync(builtinFilterDir()).filter((f) => f.endsWith('.conf') && f !== 'common.conf').map((f) => f.slice(0, -5));
    for (const name of names) {
      const sample = join(FIXTURES, name);
      if (!existsSync(sample)) continue;
      const filter = loadFilter(name, { dirs: [builtinFilterDir()] }) as CompiledFilter;
      assertAgree(filter, sampleLines(sample), name);
    }
    const gen = new AuthLogGenerator(7);
    const lines = Array.from({ length: 30_000 }, () => gen.line());
    for (const spec of ['sshd', 'sshd[mode=aggressive]']) {
      const n = assertAgree(loadFilter(spec, { dirs: [builtinFilterDir()] }) as CompiledFilter, lines, spec);
      assert.ok(n > 5000, `${spec}: only ${n} failures in the generated log`);
    }
  } finally {
    pinClock(undefined);
  }
});

test("agent matcher agrees with the detailed matcher on fail2ban's own filters and samples", (t) => {
  const filterDir = join(PACKAGE_ROOT, 'etc/fail2ban/filter.d');
  const sampleDir = join(PACKAGE_ROOT, 'usr/lib/python3/dist-packages/fail2ban/tests/files/logs');
  if (!existsSync(filterDir) || !existsSync(sampleDir)) {
    t.skip('fail2ban package not unpacked (the compat test fetches it)');
    return;
  }
  pinClock(Date.UTC(2005, 7, 14, 10, 0, 0));
  try {
    let filters = 0;
    for (const name of readdirSync(sampleDir)) {
      if (!existsSync(join(filterDir, `${name}.conf`))) continue;
      let filter: CompiledFilter;
      try {
        filter = loadFilter(name, { dirs: [filterDir], jail: new Map([['usedns', 'raw'], ['unsaferegex', 'true']]) }) as CompiledFilter;
      } catch {
        continue; // the compat test reports filters that do not load
      }
      assertAgree(filter, sampleLines(join(sampleDir, name)), name);
      filters++;
    }
    assert.ok(filters > 50, `only ${filters} filters compared`);
  } finally {
    pinClock(undefined);
  }
});

test('syslog dates: the remembered minute does not skip checking the seconds', () => {
  const d = new DateDetector();
  assert.equal(d.find('Nov 26 09:30:31 h1 x')?.end, 15);
  assert.equal(d.skim('Nov 26 09:30:45 h1 x'), 15);
  assert.equal(d.skim('Nov 26 09:30:6x h1 x'), -1);
  assert.equal(d.skim('Nov 26 09:30:62 h1 x'), -1);
  assert.equal(d.skim('Nov 26 09:30:45.123 h1 x'), -1, 'fractions go to the full templates');
  assert.equal(d.skim('Nov 26 09:30:45 2026 h1 x'), -1, 'a year goes to the full templates');
  assert.equal(d.skim('Nov 26 09:30:45'), 15);
  assert.equal(d.skim('Nov 26 1x:30:45 h1 x'), -1);
  assert.equal(d.skim('Dec 26 09:30:45 h1 x'), 15);
  pinClock(new Date(2026, 10, 26, 12, 0, 0).getTime());
  try {
    assert.equal(d.skimmedTime('Nov 26 09:30:45 h1 x'), new Date(2026, 10, 26, 9, 30, 45).getTime());
    // more than a day ahead of now: last year's
    assert.equal(d.skimmedTime('Dec 26 09:30:45 h1 x'), new Date(2025, 11, 26, 9, 30, 45).getTime());
  } finally {
    pinClock(undefined);
  }
});

test('syslog dates: the time of the latest skimmed line, with detectors sharing the remembered minute', () => {
  pinClock(new Date(2026, 10, 26, 12, 0, 0).getTime());
  try {
    const a = new DateDetector();
    const b = new DateDetector();
    a.find('Nov 26 09:30:00 h1 x');
    b.find('Nov 26 09:31:00 h1 x');
    const at = (d: DateDetector, line: string): number => {
      assert.equal(d.skim(line), 15);
      return d.skimmedTime(line, undefined, 0, true);
    };
    // Each skim of the other detector moves the shared minute; every time is still its own line's.
    for (let i = 0; i < 3; i++) {
      assert.equal(at(a, 'Nov 26 09:30:05 h1 x'), new Date(2026, 10, 26, 9, 30, 5).getTime());
      assert.equal(at(a, 'Nov 26 09:30:59 h1 x'), new Date(2026, 10, 26, 9, 30, 59).getTime());
      assert.equal(at(b, 'Nov 26 09:31:07 h1 x'), new Date(2026, 10, 26, 9, 31, 7).getTime());
      assert.equal(at(a, 'Dec 26 09:30:45 h1 x'), new Date(2025, 11, 26, 9, 30, 45).getTime(), 'more than a day ahead: last year');
      assert.equal(at(b, 'Nov 26 09:31:08 h1 x'), new Date(2026, 10, 26, 9, 31, 8).getTime());
      assert.equal(at(b, 'Nov 26 09:31:08 h1 x'), new Date(2026, 10, 26, 9, 31, 8).getTime());
    }
  } finally {
    pinClock(undefined);
  }
});

test('failure text: the lines that led to a failure, then only what came after', () => {
  const m = loadFilter('sshd', { dirs: [builtinFilterDir()] }).createMatcher();
  const a = 'Nov 26 09:00:00 h1 sshd[7]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.7  user=root';
  const b = 'Nov 26 09:00:01 h1 sshd[7]: Failed password for root from 192.0.2.7 port 22 ssh2';
  const c = 'Nov 26 09:00:02 h1 sshd[7]: Failed password for root from 192.0.2.7 port 22 ssh2';
  assert.deepEqual(m.feed(a), []);
  assert.equal(m.feed(b)[0]?.text, `${a}\n${b}`);
  assert.equal(m.feed(c)[0]?.text, c);
  // batches give the same failures as single lines
  const batch = loadFilter('sshd', { dirs: [builtinFilterDir()] }).createMatcher();
  assert.deepEqual(batch.feedBatch([a, b, c]).map((f) => f.text), [`${a}\n${b}`, c]);
});

test('chunks: lines found in place give what feedBatch() gives for the same lines', () => {
  pinClock(new Date(2026, 10, 26, 12, 0, 0).getTime());
  try {
    const sshd = loadFilter('sshd', { dirs: [builtinFilterDir()] });
    const fail = (t: string, pid: number, ip: string): string => `Nov 26 09:00:${t} h1 sshd[${pid}]: Failed password for root from ${ip} port 22 ssh2`;
    const lines = [
      // the head would run from the end of a date-only line into the next line: the line alone decides
      'Nov 26 09:00:00 ',
      fail('01', 1, '192.0.2.1'),
      '',
      'Nov 26 09:00:02',
      'no date h1 sshd[1]: Failed password for root from 192.0.2.2 port 22 ssh2',
      fail('03', 2, '192.0.2.3'),
      `Nov 26 09:00:04 h1 sshd[3]: Failed password for ${'x'.repeat(100)} from 192.0.2.4 port 22 ssh2`,
      fail('05', 3, '2001:db8::5'),
    ];
    const batch = sshd.createMatcher().feedBatch(lines);
    assert.equal(batch.length, 4);
    assert.deepEqual(sshd.createMatcher().feedChunk(lines.join('\n')), batch);
    // A source's limit: lines longer than it are cut before matching, exactly as it would deliver them.
    const long = { longerThan: 90, cut: (l: string): string => l.slice(0, 95) };
    const cut = lines.map((l) => (l.length > long.longerThan ? long.cut(l) : l));
    const shortened = sshd.createMatcher().feedBatch(cut);
    assert.equal(shortened.length, 3, 'the cut line lost its address');
    assert.deepEqual(sshd.createMatcher().feedChunk(lines.join('\n'), long), shortened);
  } finally {
    pinClock(undefined);
  }
});

test('chunks: a head that could look past the line (atomic group) is run on the line alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fb-chunk-'));
  try {
    writeFileSync(join(dir, 'atomic.conf'), '[Definition]\nprefregex = ^(?>\\s*\\S+\\s+)<F-CONTENT>.+</F-CONTENT>$\nfailregex = ^fail <HOST>$\n');
    const f = loadFilter('atomic', { dirs: [dir] }) as CompiledFilter;
    assert.equal(f.def.prefregex!.headAtReadsOnlyWhatItMatches, false);
    const lines = ['Nov 26 09:00:00 h1', 'fail 192.0.2.1', 'Nov 26 09:00:01 h1 fail 192.0.2.2', 'Nov 26 09:00:02 h1 fail 192.0.2.3'];
    const batch = f.createMatcher().feedBatch(lines);
    assert.deepEqual(batch.map((x) => x.addr), ['192.0.2.2', '192.0.2.3']);
    assert.deepEqual(f.createMatcher().feedChunk(lines.join('\n')), batch);
    const sshd = loadFilter('sshd', { dirs: [builtinFilterDir()] }) as CompiledFilter;
    assert.ok(sshd.def.prefregex!.headAtReadsOnlyWhatItMatches, 'the sshd head runs on chunks');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
