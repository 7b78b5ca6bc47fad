import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, appendFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogSources } from '../../../../agent/sources/index.js';
import { appendJournal, journalRemoteBin } from '../../../helpers/journal.js';
import { Collector, waitFor, settle } from '../../../helpers/collector.js';

// The way the agent uses sources: from a jail's settings, with a state directory, restarted with resume.

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetban-sources-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a file jail (glob, latin-1) resumes through createLogSources with per-jail state files', async () => {
  const logs = join(dir, 'logs');
  const stateDir = join(dir, 'state');
  await mkdir(logs);
  await writeFile(join(logs, 'a.log'), 'old\n');
  const jail = { name: 'web', backend: 'polling', logpath: [join(logs, '*.log')], logencoding: 'latin-1', journalmatch: [] };
  const seen: string[] = [];
  for (const [i, extra] of [Buffer.from('caf\xe9 1\n', 'latin1'), Buffer.from('caf\xe9 2\n', 'latin1')].entries()) {
    const [source] = createLogSources(jail, { stateDir, startAt: 'resume', pollIntervalMs: 100, rescanIntervalMs: 200 });
    assert.ok(source);
    const c = new Collector();
    await c.start(source);
    try {
      if (i === 0) await appendFile(join(logs, 'a.log'), extra);
      await waitFor(() => c.lines.length >= 1, 'line');
      await settle(200);
      seen.push(...c.lines);
    } finally {
      await source.stop();
    }
    if (i === 0) await appendFile(join(logs, 'a.log'), Buffer.from('caf\xe9 2\n', 'latin1')); // while stopped
  }
  assert.deepEqual(seen, ['café 1', 'café 2']);
  assert.deepEqual(await readdir(stateDir), ['web.files.json']);
});

test('a systemd jail reads the journal files given in the options', { skip: journalRemoteBin() ? false : 'needs systemd-journal-remote' }, async () => {
  const file = join(dir, 'x.journal');
  await appendJournal(file, [{ SYSLOG_IDENTIFIER: 'sshd', _SYSTEMD_UNIT: 'ssh.service', MESSAGE: 'old' }]);
  const jail = { name: 'sshd', backend: 'systemd', logpath: [], logencoding: 'auto', journalmatch: ['_SYSTEMD_UNIT=ssh.service'] };
  const [source] = createLogSources(jail, { journalFiles: [file], stateDir: join(dir, 'state2') });
  assert.ok(source);
  const c = new Collector();
  await c.start(source);
  try {
    await appendJournal(file, [
      { SYSLOG_IDENTIFIER: 'cron', _SYSTEMD_UNIT: 'cron.service', MESSAGE: 'no' },
      { SYSLOG_IDENTIFIER: 'sshd', _SYSTEMD_UNIT: 'ssh.service', _PID: '7', MESSAGE: 'Invalid user x from 203.0.113.9' },
    ]);
    await waitFor(() => c.lines.length >= 1, 'journal line');
    await settle();
    assert.equal(c.lines.length, 1);
    assert.match(c.lines[0] as string, /^\S+ sshd\[7\]: Invalid user x from 203\.0\.113\.9$/);
  } finally {
    await source.stop();
  }
  assert.deepEqual(await readdir(join(dir, 'state2')), ['sshd.journal.json']);
});
