// The multi-line (<F-MLFID>) state: a failure counts against the address on its own line, and
// what is remembered of a connection expires like fail2ban's cache, in log time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pinClock } from '../../../../common/clock.js';
import { builtinFilterDir, loadFilter, type CompiledFilter, type FailureMatch } from '../../../../common/filter/index.js';
import { MLFID_CACHE_SIZE, MLFID_CACHE_TIME } from '../../../../common/filter/filter-engine.js';
import { obtainFail2ban } from '../../../compat/fail2ban-package.js';

const NOW = new Date(2026, 10, 26, 12, 0, 0).getTime();
const fleetbanSshd = (): CompiledFilter => loadFilter('sshd', { dirs: [builtinFilterDir()] }) as CompiledFilter;

/** Debian's sshd.conf, fetched as the compat test does; skipped only outside CI when it cannot be had. */
async function debianSshd(t: { skip(msg: string): void }): Promise<CompiledFilter | undefined> {
  const files = await obtainFail2ban();
  if ('missing' in files) {
    if (process.env['CI']) assert.fail(`Debian's fail2ban package is needed under CI: ${files.missing}`);
    t.skip(`Debian's fail2ban package not available: ${files.missing}`);
    return undefined;
  }
  return loadFilter(join(files.filterDir, 'sshd.conf'), { dirs: [files.filterDir] }) as CompiledFilter;
}

/**
 * The failures of `lines` as the agent finds them, checked to be the same by every path: line by
 * line, as one batch, as one chunk, and through the detailed matcher `fleetban regex` uses.
 * @returns "ADDR LINE-NUMBER" per failure (1-based: the line that completed it)
 */
function failures(filter: CompiledFilter, lines: readonly string[]): string[] {
  pinClock(NOW);
  try {
    const one = filter.createMatcher();
    const perLine: string[] = [];
    lines.forEach((l, i) => {
      for (const f of one.feed(l)) perLine.push(`${f.addr} ${i + 1}`);
    });
    const key = (fs: readonly FailureMatch[]): string[] => fs.map((f) => `${f.addr} ${lines.indexOf(f.text.slice(f.text.lastIndexOf('\n') + 1)) + 1}`);
    assert.deepEqual(key(filter.createMatcher().feedBatch(lines)), perLine, 'feedBatch');
    assert.deepEqual(key(filter.createMatcher().feedChunk(lines.join('\n'))), perLine, 'feedChunk');
    const detailed = filter.createDetailedMatcher();
    const viaDetailed: string[] = [];
    lines.forEach((l, i) => {
      const r = detailed.feed(l);
      if (r.kind === 'failure') viaDetailed.push(`${r.addr} ${i + 1}`);
    });
    assert.deepEqual(viaDetailed, perLine, 'detailed matcher');
    return perLine;
  } finally {
    pinClock(undefined);
  }
}

const REUSED = [
  'Nov 20 00:04:00 bastion01 sshd[30812]: Failed password for root from 203.0.113.94 port 52224 ssh2',
  'Nov 20 00:10:55 bastion01 sshd[30812]: Failed password for root from 2001:db8:866:381a::d8d6 port 60181 ssh2',
];
// The same pair a few seconds apart: inside any cache's window, fail2ban reports 203.0.113.94 twice.
const REUSED_SOON = [REUSED[0]!, REUSED[1]!.replace('00:10:55', '00:04:04')];

test('a reused pid: each failure counts against the address on its own line', async (t) => {
  const debian = await debianSshd(t);
  for (const [name, filter] of [['fleetban', fleetbanSshd()], ...(debian ? [['debian', debian] as const] : [])] as const) {
    assert.deepEqual(failures(filter, REUSED), ['203.0.113.94 1', '2001:db8:866:381a::d8d6 2'], `${name}: seven minutes apart`);
    assert.deepEqual(failures(filter, REUSED_SOON), ['203.0.113.94 1', '2001:db8:866:381a::d8d6 2'], `${name}: four seconds apart`);
    // the other way round too
    const reversed = [REUSED_SOON[1]!.replace('00:04:04', '00:04:00'), REUSED_SOON[0]!.replace('00:04:00', '00:04:04')];
    assert.deepEqual(failures(filter, reversed), ['2001:db8:866:381a::d8d6 1', '203.0.113.94 2'], `${name}: IPv6 first`);
  }
});

test('a pid reused after its connection closed starts afresh', async (t) => {
  const debian = await debianSshd(t);
  const pid = (s: string, time: string): string => `Nov 26 09:${time} h1 sshd[4242]: ${s}`;
  const first = [
    pid('Invalid user alpha from 192.0.2.10 port 50001', '00:00'),
    pid('Failed password for invalid user alpha from 192.0.2.10 port 50001 ssh2', '00:01'),
  ];
  // A new client gets the same pid: its helper line must not count (only one user was tried on
  // this connection), and its failure is its own address's.
  const second = (time: string): string[] => [
    pid('pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=2001:db8::77  user=root', time),
    pid('Failed password for root from 2001:db8::77 port 50002 ssh2', time),
  ];
  const closed = pid('Connection closed by invalid user alpha 192.0.2.10 port 50001 [preauth]', '00:02');
  for (const [name, filter] of [['fleetban', fleetbanSshd()], ...(debian ? [['debian', debian] as const] : [])] as const) {
    const own = ['192.0.2.10 1', '192.0.2.10 2'];
    assert.deepEqual(failures(filter, [...first, closed, ...second('00:03')]), [...own, '2001:db8::77 5'], `${name}: closed, then reused`);
    // No line closed the first connection (sshd was killed, a line was lost): after the cache's
    // five minutes of log time it is forgotten all the same.
    assert.deepEqual(failures(filter, [...first, ...second('05:01')]), [...own, '2001:db8::77 4'], `${name}: not closed, reused 5 minutes later`);
    // Within the five minutes the state is fail2ban's (two users tried: the helper line counts),
    // but still against the address on each line.
    assert.deepEqual(failures(filter, [...first, ...second('04:59')]), [...own, '2001:db8::77 3', '2001:db8::77 4'], `${name}: not closed, reused within 5 minutes`);
  }
});

test('an empty user name is no user: a reused pid does not look like two users tried', async (t) => {
  const debian = await debianSshd(t);
  const lines = [
    'Nov 26 09:00:00 h1 sshd[24428]: Invalid user  from 2001:db8::cf port 16548',
    'Nov 26 09:00:30 h1 sshd[24428]: fatal: Timeout before authentication for 2001:db8::cf port 16548',
    'Nov 26 09:01:00 h1 sshd[24428]: Invalid user admin from 192.0.2.229 port 41150',
    // one user (admin) on this pid as far as fail2ban is concerned: the helper line does not count
    'Nov 26 09:01:10 h1 sshd[24428]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.229 ',
    'Nov 26 09:01:17 h1 sshd[24428]: Failed password for invalid user admin from 192.0.2.229 port 41150 ssh2',
  ];
  for (const [name, filter] of [['fleetban', fleetbanSshd()], ...(debian ? [['debian', debian] as const] : [])] as const) {
    assert.deepEqual(failures(filter, lines), ['2001:db8::cf 1', '192.0.2.229 3', '192.0.2.229 5'], name);
  }
});

test('a helper line carries the address, the failure line has none: still counted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fb-mlf-'));
  try {
    writeFileSync(
      join(dir, 'app.conf'),
      [
        '[Definition]',
        'prefregex = ^<F-MLFID>\\s*\\S+ app\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$',
        'failregex = ^<F-NOFAIL>connect from</F-NOFAIL> <HOST>$',
        '            ^login failed for <F-USER>\\S+</F-USER>$',
        '            ^<F-NOFAIL><F-MLFFORGET>bye</F-MLFFORGET></F-NOFAIL>$',
        '',
      ].join('\n'),
    );
    const app = loadFilter('app', { dirs: [dir] }) as CompiledFilter;
    const lines = [
      'Nov 26 09:00:00 h1 app[7]: connect from 2001:db8::7',
      'Nov 26 09:00:00 h1 app[8]: connect from 192.0.2.8',
      'Nov 26 09:00:01 h1 app[7]: login failed for root',
      'Nov 26 09:00:02 h1 app[8]: login failed for admin',
      'Nov 26 09:00:03 h1 app[7]: login failed for root',
      'Nov 26 09:00:04 h1 app[7]: bye',
      // after the forget, the pid's next failure has no address to count against
      'Nov 26 09:00:05 h1 app[7]: login failed for root',
    ];
    assert.deepEqual(failures(app, lines), ['2001:db8::7 3', '192.0.2.8 4', '2001:db8::7 5']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Debian's sshd.conf has such a rule ("Disconnecting: Too many authentication failures").
  const debian = await debianSshd(t);
  if (debian) {
    const lines = [
      'Nov 26 09:00:00 h1 sshd[9]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.9  user=root',
      'Nov 26 09:00:01 h1 sshd[9]: Disconnecting: Too many authentication failures for root [preauth]',
    ];
    assert.deepEqual(failures(debian, lines), ['198.51.100.9 2']);
  }
});

test(`multi-line cache: holds ${MLFID_CACHE_SIZE} connections and forgets the oldest first`, () => {
  const sshd = fleetbanSshd();
  // A connection that tried two user names counts its closing line as a failure, but only while
  // the cache still remembers the first name.
  const run = (others: number): number => {
    const m = sshd.createMatcher();
    let n = 0;
    n += m.feed('Nov 26 09:00:00 h1 sshd[1]: Invalid user alpha from 192.0.2.1 port 1').length;
    for (let i = 0; i < others; i++) m.feed(`Nov 26 09:00:01 h1 sshd[${1000 + i}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.${i % 250}`);
    n += m.feed('Nov 26 09:00:02 h1 sshd[1]: Connection closed by invalid user beta 192.0.2.1 port 1 [preauth]').length;
    return n;
  };
  pinClock(NOW);
  try {
    assert.equal(run(MLFID_CACHE_SIZE - 2), 2);
    assert.equal(run(MLFID_CACHE_SIZE - 1), 2);
    assert.equal(run(MLFID_CACHE_SIZE), 1);
    // after many evictions the order still holds
    assert.equal(run(25 * MLFID_CACHE_SIZE), 1);
  } finally {
    pinClock(undefined);
  }
});

test('multi-line cache: five minutes of log time, whatever the clock says', () => {
  const sshd = fleetbanSshd();
  const open = 'Nov 26 09:00:00 h1 sshd[1]: Invalid user alpha from 192.0.2.1 port 1';
  const close = (time: string): string => `Nov 26 09:${time} h1 sshd[1]: Connection closed by invalid user beta 192.0.2.1 port 1 [preauth]`;
  assert.equal(MLFID_CACHE_TIME, 5 * 60_000);
  // Fed within milliseconds (a backlog): the lines' times decide.
  assert.deepEqual(failures(sshd, [open, close('04:59')]), ['192.0.2.1 1', '192.0.2.1 2']);
  assert.deepEqual(failures(sshd, [open, close('05:00')]), ['192.0.2.1 1']);
  // Hours of wall time between the lines change nothing while the log's time stands still.
  const m = sshd.createMatcher();
  pinClock(NOW);
  const a = m.feed(open).length;
  pinClock(NOW + 3 * 3_600_000);
  const b = m.feed(close('00:30')).length;
  pinClock(undefined);
  assert.deepEqual([a, b], [1, 1]);
});

test("multi-line cache: when full, expired connections go first, then the oldest, as in fail2ban's cache", () => {
  const m = fleetbanSshd().createDetailedMatcher();
  const helper = (pid: number, time: string): string => `Nov 26 09:${time} h1 sshd[${pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.${pid % 250}  user=root`;
  pinClock(NOW);
  try {
    const half = MLFID_CACHE_SIZE / 2;
    for (let i = 0; i < half; i++) m.feed(helper(i, '00:00'));
    for (let i = half; i < MLFID_CACHE_SIZE; i++) m.feed(helper(i, '04:00'));
    assert.equal(m.multiLineState().connections, MLFID_CACHE_SIZE);
    // At 09:05:30 the first half has expired: room is made by dropping all of them and the oldest
    // live one (what fail2ban's Utils.Cache.set does), then the new one is kept.
    m.feed(helper(5000, '05:30'));
    assert.equal(m.multiLineState().connections, half);
    // the oldest live connection was dropped, the next one is still known (its second user counts)
    const second = (pid: number): string => `Nov 26 09:05:31 h1 sshd[${pid}]: Connection closed by invalid user other 198.51.100.${pid % 250} port 1 [preauth]`;
    assert.equal(m.feed(second(half)).kind, 'nofail');
    assert.equal(m.feed(second(half + 1)).kind, 'failure');
  } finally {
    pinClock(undefined);
  }
});

test('multi-line state stays bounded: 40,000 lines from one sshd pid, each with another user', () => {
  const sshd = fleetbanSshd();
  const lines: string[] = [];
  for (let i = 0; i < 40_000; i++) lines.push(`Nov 26 09:00:${String(i % 60).padStart(2, '0')} h1 sshd[31337]: Failed password for invalid user u${i} from 203.0.113.${(i % 200) + 1} port ${1024 + i} ssh2`);
  // a helper line after them: several users were tried, so it counts (as in fail2ban)
  lines.push('Nov 26 09:00:59 h1 sshd[31337]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.250  user=u0');
  pinClock(NOW);
  try {
    const m = sshd.createDetailedMatcher();
    let counted = 0;
    let wrong = 0;
    for (let i = 0; i < lines.length; i++) {
      const r = m.feed(lines[i]!);
      if (r.kind !== 'failure') continue;
      counted++;
      const want = i < 40_000 ? `203.0.113.${(i % 200) + 1}` : '203.0.113.250';
      if (r.addr !== want || (i < 40_000 && r.user !== `u${i}`)) wrong++;
    }
    assert.equal(counted, 40_001);
    assert.equal(wrong, 0);
    const state = m.multiLineState();
    assert.equal(state.connections, 1);
    assert.ok(state.maxUsers <= 2, `one connection keeps ${state.maxUsers} users`);
    assert.ok(state.maxLines <= 20, `one connection keeps ${state.maxLines} lines`);
    // many pids: the number of connections is bounded too
    const many = sshd.createDetailedMatcher();
    for (let i = 0; i < 5_000; i++) many.feed(`Nov 26 09:01:00 h1 sshd[${10_000 + i}]: Invalid user u${i} from 198.51.100.${(i % 250) + 1} port 1`);
    assert.equal(many.multiLineState().connections, MLFID_CACHE_SIZE);
  } finally {
    pinClock(undefined);
  }
});
