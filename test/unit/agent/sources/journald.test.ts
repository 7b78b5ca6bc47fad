import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JournalSource, type JournalSourceOptions } from '../../../../agent/sources/journald.js';
import { parseJournalMatch } from '../../../../agent/sources/journal-match.js';
import { appendJournal, journalRemoteBin, type ExportEntry } from '../../../helpers/journal.js';
import { Collector, waitFor, settle } from '../../../helpers/collector.js';

// These run against real journal files: systemd-journal-remote writes them from export format and
// the real journalctl follows them. There is no systemd (PID 1) here, hence files, not the system journal.
const remote = journalRemoteBin();
const skip = remote ? false : 'needs systemd-journal-remote (apt-get install systemd-journal-remote)';

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'fleetban-journal-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function sshd(message: string | Buffer, extra: ExportEntry = {}): ExportEntry {
  return {
    _HOSTNAME: 'h1',
    SYSLOG_IDENTIFIER: 'sshd',
    _PID: '4242',
    _COMM: 'sshd',
    _SYSTEMD_UNIT: 'ssh.service',
    MESSAGE: message,
    ...extra,
  };
}

function failed(i: number): string {
  return `Failed password for root from 192.0.2.${i % 250} port ${2000 + i} ssh2`;
}

/** The message part of a formatted line (after `ident[pid]: `). */
function messages(c: Collector): string[] {
  return c.lines.map((l) => l.replace(/^\S+ h1 sshd\[4242\]: /, ''));
}

async function withJournal(
  file: string,
  extra: Partial<JournalSourceOptions>,
  body: (c: Collector, s: JournalSource) => Promise<void>,
): Promise<void> {
  const s = new JournalSource({
    name: 'test',
    matches: parseJournalMatch(['_SYSTEMD_UNIT=ssh.service + _COMM=sshd'], 'test'),
    files: [file],
    restartMinMs: 50,
    restartMaxMs: 200,
    ...extra,
  });
  const c = new Collector();
  await c.start(s);
  try {
    await body(c, s);
  } finally {
    await s.stop();
  }
}

test('a missing journalctl binary is retried quietly and stop() still returns', async () => {
  const s = new JournalSource({ name: 'nobin', matches: [], journalctl: join(root, 'no-such-journalctl'), restartMinMs: 20, restartMaxMs: 40 });
  const c = new Collector();
  await c.start(s);
  await settle(150);
  await s.stop();
  assert.deepEqual(c.lines, []);
  assert.equal(s.pid(), undefined);
});

describe('JournalSource (journalctl on a real journal file)', { skip }, () => {
  test('delivers new matching entries as syslog-style lines, in order, once', async () => {
    const file = join(root, `j${n++}.journal`);
    await appendJournal(file, [sshd('before start')]);
    await withJournal(file, {}, async (c) => {
      const t0 = Date.now();
      await appendJournal(file, [
        sshd(failed(1)),
        sshd('not sshd', { _SYSTEMD_UNIT: 'cron.service', _COMM: 'cron', SYSLOG_IDENTIFIER: 'CRON' }),
        sshd(failed(2), { _SYSTEMD_UNIT: 'other.service' }), // matches through `+ _COMM=sshd`
        sshd(Buffer.from([0x62, 0x69, 0x6e, 0x00, 0xff, 0x21])), // not UTF-8: JSON gives a byte array
        sshd('first\nsecond'),
        sshd(failed(3)),
      ]);
      await waitFor(() => c.lines.length >= 5, 'matching entries');
      await settle();
      assert.deepEqual(messages(c), [failed(1), failed(2), 'bin\u0000\ufffd!', 'first\\nsecond', failed(3)]);
      assert.ok(c.origins.every((o) => o === 'journal'));
      const [stamp] = (c.lines[0] as string).split(' ');
      assert.match(stamp as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$/);
      assert.ok(Math.abs(Date.parse(stamp as string) - t0) < 60_000, `time ${stamp} is the entry's time`);
    });
  });

  test('start at beginning reads the stored entries', async () => {
    const file = join(root, `j${n++}.journal`);
    await appendJournal(file, [sshd(failed(1)), sshd(failed(2))]);
    await withJournal(file, { startAt: 'beginning' }, async (c) => {
      await waitFor(() => c.lines.length >= 2, 'stored entries');
      await appendJournal(file, [sshd(failed(3))]);
      await waitFor(() => c.lines.length >= 3, 'new entry');
      assert.deepEqual(messages(c), [failed(1), failed(2), failed(3)]);
    });
  });

  test('resume after a restart continues after the saved cursor: nothing lost, nothing repeated', async () => {
    const file = join(root, `j${n++}.journal`);
    const stateFile = join(root, `j${n++}.cursor.json`);
    await appendJournal(file, [sshd('old')]);
    const seen: string[] = [];
    await withJournal(file, { startAt: 'resume', stateFile }, async (c) => {
      await appendJournal(file, [sshd(failed(1)), sshd(failed(2))]);
      await waitFor(() => c.lines.length >= 2, 'first run');
      seen.push(...messages(c));
    });
    const doc = JSON.parse(await readFile(stateFile, 'utf8')) as { cursor?: string };
    assert.match(doc.cursor ?? '', /^s=[0-9a-f]+;i=/);
    await appendJournal(file, [sshd(failed(3)), sshd(failed(4))]); // while stopped
    await withJournal(file, { startAt: 'resume', stateFile }, async (c) => {
      await waitFor(() => c.lines.length >= 2, 'entries written while stopped');
      await appendJournal(file, [sshd(failed(5))]);
      await waitFor(() => c.lines.length >= 3, 'second run');
      await settle();
      seen.push(...messages(c));
    });
    assert.deepEqual(seen, [1, 2, 3, 4, 5].map(failed));
  });

  test('journalctl is restarted when it dies and continues after the last delivered entry', async () => {
    const file = join(root, `j${n++}.journal`);
    await appendJournal(file, [sshd('old')]);
    await withJournal(file, {}, async (c, s) => {
      await appendJournal(file, [sshd(failed(1))]);
      await waitFor(() => c.lines.length >= 1, 'first entry');
      const pid = s.pid();
      assert.ok(pid, 'journalctl running');
      process.kill(pid, 'SIGKILL'); // the journalctl this test's source started
      await appendJournal(file, [sshd(failed(2)), sshd(failed(3))]);
      await waitFor(() => c.lines.length >= 3, 'entries after the restart');
      assert.notEqual(s.pid(), pid);
      await settle();
      assert.deepEqual(messages(c), [1, 2, 3].map(failed));
    });
  });

  test('a journal file that does not exist yet is waited for', async () => {
    const file = join(root, `j${n++}.journal`);
    await withJournal(file, {}, async (c) => {
      await settle(150);
      await appendJournal(file, [sshd(failed(7))]);
      await waitFor(() => c.lines.length >= 1, 'entry of the new journal');
      assert.deepEqual(messages(c), [failed(7)]);
    });
  });
});
