// `fleetban regex` as a user runs it: the compiled CLI as a child process, real files, real stdin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CLI, runCli } from '../helpers/spawn.js';

const FIXTURES = resolve('test/fixtures/logs');
// Year-less syslog dates are placed relative to "now"; the fixtures were written in November 2026.
const ENV = { FLEETBAN_TEST_NOW: '2026-11-26T12:00:00Z' };

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetban-regex-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Run the CLI with `input` on its stdin. */
function runWithStdin(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...ENV } });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
    proc.stdin.end(input);
  });
}

interface JsonLine {
  line: number;
  match: boolean;
  host: string | null;
  time: string | null;
  user: string | null;
  kind: string;
}

function parseJsonLines(stdout: string): JsonLine[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as JsonLine);
}

const SSHD_LOG = [
  '# a comment and a blank line are not log lines',
  '',
  'Nov 26 10:00:01 h1 sshd[100]: Failed password for root from 198.51.100.1 port 40001 ssh2',
  'Nov 26 10:00:02 h1 sshd[101]: Server listening on 0.0.0.0 port 22.',
  'Nov 26 10:00:03 h1 sshd[102]: Failed password for invalid user oracle from 2001:db8::3 port 40003 ssh2',
  'Nov 26 10:00:04 h1 sshd[103]: Invalid user test from 198.51.100.4 port 40004',
  'Nov 26 10:00:05 h1 cron[104]: (root) CMD (run-parts /etc/cron.hourly)',
  '',
].join('\n');

test('human report counts lines, hits per failregex and date templates', async () => {
  const log = join(dir, 'sshd.log');
  writeFileSync(log, SSHD_LOG);
  const r = await runCli(['regex', log, 'sshd'], ENV);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Use {3}failregex filter file : sshd, basedir: .*deploy\/etc\/fleetban\/filter\.d/);
  assert.match(r.stdout, new RegExp(`Use {9}log file : ${log.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  assert.match(r.stdout, /Lines: 5 lines, 0 ignored, 3 matched, 2 missed/);
  assert.match(r.stdout, /\| {3}1\) \[2\] \^Failed /, 'two failed passwords hit the first failregex');
  assert.match(r.stdout, /\| {3}2\) \[1\] \^\(\?:Invalid\|Illegal\) user /);
  assert.match(r.stdout, /\| {2}\[5\] \{\^LN-BEG\}/, 'every line had its syslog date found');
  assert.match(r.stdout, /\[processed in [\d.]+ sec, \d+ lines\/s\]/);
  assert.match(r.stdout, /Missed line\(s\):\n\| {2}Nov 26 10:00:02 h1 sshd\[101\]: Server listening.*\n\| {2}Nov 26 10:00:05 h1 cron/);
});

test('missed lines are capped unless --print-all-missed', async () => {
  const log = join(dir, 'many-missed.log');
  writeFileSync(log, Array.from({ length: 30 }, (_, i) => `Nov 26 10:01:${String(i).padStart(2, '0')} h1 sshd[200]: Server listening on port ${i}.`).join('\n'));
  const capped = await runCli(['regex', log, 'sshd'], ENV);
  assert.equal(capped.code, 0, capped.stderr);
  assert.match(capped.stdout, /too many to print.*--print-all-missed to print all 30 lines/);
  assert.doesNotMatch(capped.stdout, /listening on port 29\./);
  const all = await runCli(['regex', '--print-all-missed', log, 'sshd'], ENV);
  assert.equal((all.stdout.match(/^\| {2}Nov 26 .*Server listening/gm) ?? []).length, 30);
});

test('ignoreregex hits are counted (recidive ignores its own bans)', async () => {
  const r = await runCli(['regex', join(FIXTURES, 'fleetban-recidive'), 'fleetban-recidive'], ENV);
  assert.equal(r.code, 0, r.stderr);
  const expectMatched = countAnnotations(join(FIXTURES, 'fleetban-recidive'), true);
  assert.match(r.stdout, new RegExp(`Lines: \\d+ lines, 1 ignored, ${expectMatched} matched, \\d+ missed`));
  assert.match(r.stdout, /Ignoreregex: 1 total\n\|- {2}#\) \[# of hits\] regular expression\n\| {3}1\) \[1\] /);
});

/** Number of `# failJSON:` annotations in a sample log with the given "match". */
function countAnnotations(path: string, match: boolean): number {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('# failJSON:') && (JSON.parse(l.slice(11)) as { match: boolean }).match === match).length;
}

test('--json prints one object per log line that agrees with the sample annotations', async () => {
  const file = join(FIXTURES, 'fleetban-recidive');
  const r = await runCli(['regex', '--json', file, 'fleetban-recidive'], ENV);
  assert.equal(r.code, 0, r.stderr);
  const out = parseJsonLines(r.stdout);
  const lines = readFileSync(file, 'utf8').split('\n');
  const logLines = lines.flatMap((l, i) => (l.trim() === '' || l.startsWith('#') ? [] : [i + 1]));
  assert.deepEqual(out.map((o) => o.line), logLines, 'one object per non-comment line, numbered as in the file');
  for (const o of out) {
    const ann = JSON.parse(lines[o.line - 2]!.replace(/^# failJSON:/, '')) as { match: boolean; host?: string };
    assert.equal(o.match, ann.match, `line ${o.line}`);
    if (ann.host !== undefined) assert.equal(o.host, ann.host, `line ${o.line}`);
    if (!o.match) assert.equal(o.host, null, `line ${o.line}: no host without a match`);
  }
  // The date is pino's ISO "time" field (UTC), not the syslog prefix of the journald line.
  assert.deepEqual(out[0], { line: 7, match: true, host: '198.51.100.7', time: '2026-11-26T11:05:12.345Z', user: null, kind: 'failure', regex: 1 });
  assert.equal(out[3]!.time, '2026-11-26T11:08:00.500Z');
});

test('--json gives year-less syslog dates the year of the pinned clock, and the user', async () => {
  const log = join(dir, 'sshd-json.log');
  writeFileSync(log, SSHD_LOG);
  const r = await runCli(['--json', 'regex', log, 'sshd'], ENV);
  assert.equal(r.code, 0, r.stderr);
  const out = parseJsonLines(r.stdout);
  assert.equal(out.length, 5);
  assert.deepEqual(out[0], { line: 3, match: true, host: '198.51.100.1', time: new Date(2026, 10, 26, 10, 0, 1).toISOString(), user: 'root', kind: 'failure', regex: 1 });
  assert.deepEqual([out[1]!.match, out[1]!.host, out[1]!.kind], [false, null, 'missed']);
  assert.deepEqual([out[2]!.host, out[2]!.user], ['2001:db8::3', 'oracle']);
  assert.equal(out[3]!.host, '198.51.100.4');
  // A year-less date in the "future" belongs to last year.
  const late = await runCli(['--json', 'regex', 'Dec 30 23:59:59 h1 sshd[1]: Failed password for root from 198.51.100.9 port 1 ssh2', 'sshd'], ENV);
  assert.equal(parseJsonLines(late.stdout)[0]!.time, new Date(2025, 11, 30, 23, 59, 59).toISOString());
});

test('--json: a reused sshd pid counts each failure against the address on its own line (issue 15)', async () => {
  const log = join(dir, 'sshd-reused-pid.log');
  const first = 'Nov 20 00:04:00 bastion01 sshd[30812]: Failed password for root from 203.0.113.94 port 52224 ssh2';
  const second = (time: string): string => `Nov 20 ${time} bastion01 sshd[30812]: Failed password for root from 2001:db8:866:381a::d8d6 port 60181 ssh2`;
  for (const time of ['00:10:55', '00:04:04']) {
    writeFileSync(log, `${first}\n${second(time)}\n`);
    const r = await runCli(['--json', 'regex', log, 'sshd'], ENV);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      parseJsonLines(r.stdout).map((l) => [l.match, l.host]),
      [
        [true, '203.0.113.94'],
        [true, '2001:db8:866:381a::d8d6'],
      ],
      `second line at ${time}`,
    );
  }
});

test('a literal log line is tested on its own', async () => {
  const line = 'Nov 26 10:00:01 h1 sshd[100]: Failed password for root from 203.0.113.5 port 40001 ssh2';
  const r = await runCli(['regex', line, 'sshd'], ENV);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Use {6}single line : Nov 26 10:00:01/);
  assert.match(r.stdout, /Lines: 1 lines, 0 ignored, 1 matched, 0 missed/);
  const j = await runCli(['regex', '--json', line, 'sshd'], ENV);
  assert.deepEqual(parseJsonLines(j.stdout).map((o) => [o.line, o.match, o.host]), [[1, true, '203.0.113.5']]);
});

test("'-' reads the log from stdin", async () => {
  const r = await runWithStdin(['regex', '-', 'sshd'], SSHD_LOG);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Use {9}log file : - \(stdin\)/);
  assert.match(r.stdout, /Lines: 5 lines, 0 ignored, 3 matched, 2 missed/);
  const j = await runWithStdin(['regex', '--json', '-', 'sshd[mode=aggressive]'], 'Nov 26 10:00:01 h1 sshd[1]: Did not receive identification string from 198.51.100.77 port 4\n');
  assert.equal(j.code, 0, j.stderr);
  assert.deepEqual(parseJsonLines(j.stdout).map((o) => [o.match, o.host]), [[true, '198.51.100.77']], 'filter options in the spec apply');
});

test('a literal failregex with <HOST> runs with default date detection', async () => {
  const log = join(dir, 'app.log');
  writeFileSync(log, ['2026-11-26 10:00:01 app: bad token from 192.0.2.10', '2026-11-26 10:00:02 app: bad token from 192.0.2.11', '2026-11-26 10:00:03 app: good token from 192.0.2.12'].join('\n'));
  const r = await runCli(['regex', log, 'bad token from <HOST>$'], ENV);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Use {3}failregex line : bad token from <HOST>\$/);
  assert.match(r.stdout, /Lines: 3 lines, 0 ignored, 2 matched, 1 missed/);
  const j = await runCli(['--json', 'regex', log, 'bad token from <HOST>$'], ENV);
  const out = parseJsonLines(j.stdout);
  assert.deepEqual(out.map((o) => o.host), ['192.0.2.10', '192.0.2.11', null]);
  assert.equal(out[0]!.time, new Date(2026, 10, 26, 10, 0, 1).toISOString());
});

test('--filter-dir is searched before the shipped filter.d, and .conf paths work', async () => {
  const custom = join(dir, 'filter.d');
  mkdirSync(custom, { recursive: true });
  writeFileSync(join(custom, 'myapp.conf'), '[Definition]\nfailregex = ^\\s*myapp: login failed for \\S+ from <ADDR>$\n');
  // A custom sshd.conf that only knows one message shadows the shipped one.
  writeFileSync(join(custom, 'sshd.conf'), '[Definition]\nfailregex = ^\\s*\\S+ sshd\\[\\d+\\]: custom failure from <ADDR>$\n');
  const log = join(dir, 'mixed.log');
  writeFileSync(log, ['Nov 26 10:00:01 myapp: login failed for bob from 198.51.100.21', 'Nov 26 10:00:02 h1 sshd[5]: custom failure from 198.51.100.22', 'Nov 26 10:00:03 h1 sshd[6]: Failed password for root from 198.51.100.23 port 1 ssh2'].join('\n'));
  const mine = await runCli(['--json', 'regex', '--filter-dir', custom, log, 'myapp'], ENV);
  assert.equal(mine.code, 0, mine.stderr);
  assert.deepEqual(parseJsonLines(mine.stdout).map((o) => o.host), ['198.51.100.21', null, null]);
  const shadowed = await runCli(['--json', 'regex', '--filter-dir', join(dir, 'nonexistent'), '--filter-dir', custom, log, 'sshd'], ENV);
  assert.deepEqual(parseJsonLines(shadowed.stdout).map((o) => o.host), [null, '198.51.100.22', null]);
  const human = await runCli(['regex', '--filter-dir', custom, log, 'sshd'], ENV);
  assert.match(human.stdout, new RegExp(`failregex filter file : sshd, basedir: ${custom.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\n`));
  const shipped = await runCli(['--json', 'regex', log, 'sshd'], ENV);
  assert.deepEqual(parseJsonLines(shipped.stdout).map((o) => o.host), [null, null, '198.51.100.23'], 'without --filter-dir the shipped sshd.conf is used');
  const byPath = await runCli(['--json', 'regex', log, join(custom, 'myapp.conf')], ENV);
  assert.deepEqual(parseJsonLines(byPath.stdout).map((o) => o.host), ['198.51.100.21', null, null]);
});

test('a filter the ReDoS guard refuses names --unsafe-regex, which loads it', async () => {
  const custom = join(dir, 'risky.d');
  mkdirSync(custom, { recursive: true });
  // Lookahead (backtracking) around nested unbounded loops: refused unless accepted explicitly.
  writeFileSync(join(custom, 'risky.conf'), '[Definition]\nfailregex = ^\\s*(?=\\S)(?:\\S+ ?)+ from <ADDR>$\n');
  const log = join(dir, 'risky.log');
  writeFileSync(log, 'Nov 26 10:00:01 h1 app: denied from 192.0.2.30\n');
  const refused = await runCli(['regex', '--filter-dir', custom, log, 'risky'], ENV);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^fleetban: .*risky\.conf.*nests unbounded quantifiers[^]*--unsafe-regex/);
  assert.equal(refused.stdout, '');
  const loaded = await runCli(['regex', '--unsafe-regex', '--filter-dir', custom, log, 'risky'], { ...ENV, FLEETBAN_LOG_LEVEL: 'error' });
  assert.equal(loaded.code, 0, loaded.stderr);
  assert.match(loaded.stderr, /warning: loaded a regex the ReDoS guard would refuse/);
  assert.match(loaded.stdout, /Lines: 1 lines, 0 ignored, 1 matched, 0 missed/);
  const literal = await runCli(['regex', log, '^\\s*(?=\\S)(?:\\S+ ?)+ from <ADDR>$'], ENV);
  assert.equal(literal.code, 1);
  assert.match(literal.stderr, /--unsafe-regex/);
});

test('errors are one line on stderr with a non-zero exit', async () => {
  const log = join(dir, 'errors.log');
  writeFileSync(log, 'Nov 26 10:00:01 h1 sshd[1]: Failed password for root from 198.51.100.1 port 1 ssh2\n');
  const cases: Array<[string[], RegExp]> = [
    [['regex', join(dir, 'no-such.log'), 'sshd'], /^fleetban: log file not found: .*no-such\.log\n$/],
    [['regex', dir, 'sshd'], /^fleetban: log file .* is a directory\n$/],
    [['regex', log, 'no-such-filter'], /^fleetban: filter 'no-such-filter' not found in .*filter\.d\n$/],
    [['regex', log, join(dir, 'missing.conf')], /^fleetban: .*missing\.conf: filter file not found\n$/],
    [['regex', log, 'sshd[mode=aggressive'], /^fleetban: filter 'sshd\[mode=aggressive': option list is not closed/],
    [['regex', log, 'from (<HOST>'], /^fleetban: invalid regex 'from \(<HOST>': /],
    [['regex', log, 'no failure id here'], /^fleetban: 'no failure id here' is neither a known filter nor a failregex with a failure id/],
  ];
  for (const [args, want] of cases) {
    const r = await runCli(args, ENV);
    assert.notEqual(r.code, 0, `${args.join(' ')} must fail`);
    assert.match(r.stderr, want, args.join(' '));
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
  }
});
