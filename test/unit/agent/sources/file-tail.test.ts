import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, appendFile, writeFile, rename, truncate, open, copyFile, readFile, unlink, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileTailSource, type FileTailOptions } from '../../../../agent/sources/file-tail.js';
import { Collector, waitFor, settle, numbered } from '../../../helpers/collector.js';

let root: string;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'fleetban-tail-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function freshDir(): Promise<string> {
  return mkdtemp(join(root, `t${n++}-`));
}

function source(patterns: string[], extra: Partial<FileTailOptions> = {}): FileTailSource {
  return new FileTailSource({
    name: 'test',
    patterns,
    encoding: 'utf8',
    pollIntervalMs: 100,
    rescanIntervalMs: 200,
    rotateGraceMs: 600,
    ...extra,
  });
}

const text = (lines: string[]): string => lines.map((l) => `${l}\n`).join('');

/** Run `body` with a started source and a collector; the source is always stopped. */
async function withSource(
  patterns: string[],
  extra: Partial<FileTailOptions>,
  body: (c: Collector, s: FileTailSource) => Promise<void>,
): Promise<void> {
  const s = source(patterns, extra);
  const c = new Collector();
  await c.start(s);
  try {
    await body(c, s);
  } finally {
    await s.stop();
  }
}

describe('FileTailSource', () => {
  test('appended lines arrive in order exactly once; lines already there are skipped (start at end)', async () => {
    const dir = await freshDir();
    const log = join(dir, 'auth.log');
    await writeFile(log, text(numbered('old', 50)));
    await withSource([log], {}, async (c) => {
      const expected: string[] = [];
      for (let i = 0; i < 20; i++) {
        const batch = numbered('new', 50, i * 50);
        expected.push(...batch);
        await appendFile(log, text(batch));
      }
      await waitFor(() => c.lines.length >= expected.length, 'all appended lines');
      await settle();
      assert.deepEqual(c.lines, expected);
      assert.ok(c.origins.every((o) => o === log));
    });
  });

  test('a flood arrives in a few large batches, not one callback per line', async () => {
    const dir = await freshDir();
    const log = join(dir, 'flood.log');
    await writeFile(log, '');
    await withSource([log], {}, async (c) => {
      const lines = numbered('f', 20_000);
      await appendFile(log, text(lines));
      await waitFor(() => c.lines.length >= lines.length, 'flood');
      assert.deepEqual(c.lines, lines);
      // One callback per read chunk (256 KiB, ~2,800 of these lines); a watch event per write may split a chunk.
      assert.ok(c.batches * 500 <= lines.length, `expected few batches, got ${c.batches}`);
    });
  });

  test('a partial last line is held until its newline', async () => {
    const dir = await freshDir();
    const log = join(dir, 'partial.log');
    await writeFile(log, 'complete\nhalf');
    await withSource([log], {}, async (c) => {
      await appendFile(log, ' more');
      await settle();
      assert.deepEqual(c.lines, [], 'the unfinished line was there at start; nothing is complete yet');
      await appendFile(log, ' done\nnext\n');
      await waitFor(() => c.lines.length >= 2, 'completed lines');
      // Start at end begins at the start of the line being written, so it arrives whole.
      assert.deepEqual(c.lines, ['half more done', 'next']);
    });
  });

  test('rename + create rotation loses no line, including lines written to the old file after the rename', async () => {
    const dir = await freshDir();
    const log = join(dir, 'auth.log');
    await writeFile(log, '');
    // A grace period far above the test's pauses, so a slow CI machine cannot close the old file early.
    await withSource([log], { rotateGraceMs: 5000 }, async (c) => {
      // A writer that keeps its descriptor across the rename, like syslog before its HUP.
      const writer = await open(log, 'a');
      try {
        const a = numbered('A', 100);
        await writer.appendFile(text(a));
        await waitFor(() => c.lines.length >= 100, 'A lines');
        await rename(log, `${log}.1`);
        const b = numbered('B', 100);
        await writer.appendFile(text(b)); // old inode, no file at the path yet
        await settle(250); // several polls see the path missing
        const cLines = numbered('C', 100);
        await writeFile(log, text(cLines)); // the new file
        const d = numbered('D', 50);
        await writer.appendFile(text(d)); // still the old inode, within the grace period
        const all = [...a, ...b, ...cLines, ...d];
        await waitFor(() => c.lines.length >= all.length, 'lines of both files');
        await settle(800);
        assert.equal(c.lines.length, all.length, 'no line repeated');
        assert.deepEqual([...c.lines].sort(), [...all].sort());
        // The old file is read to its end before the new one.
        assert.deepEqual(c.lines.slice(0, 200), [...a, ...b]);
        assert.deepEqual(c.lines.filter((l) => l.startsWith('C-')), cLines);
        assert.deepEqual(c.lines.filter((l) => l.startsWith('D-')), d);
      } finally {
        await writer.close();
      }
    });
  });

  test('repeated rename rotations during a steady stream: every line exactly once, in order', async () => {
    const dir = await freshDir();
    const log = join(dir, 'busy.log');
    await writeFile(log, '');
    await withSource([log], {}, async (c) => {
      let written = 0;
      const write = async (count: number): Promise<void> => {
        await writer.appendFile(text(numbered('L', count, written)));
        written += count;
      };
      let writer = await open(log, 'a');
      let rotations = 0;
      try {
        for (let i = 1; i <= 60; i++) {
          await write(500);
          if (i % 10 === 0) {
            // logrotate: rename, a few more writes to the old inode, then the writer reopens the path.
            await rename(log, `${log}.${++rotations}`);
            await write(100);
            await writer.close();
            writer = await open(log, 'a');
          }
        }
      } finally {
        await writer.close();
      }
      const total = written;
      await waitFor(() => c.lines.length >= total, `${total} lines`, 20_000);
      await settle();
      assert.equal(rotations, 6);
      assert.equal(c.lines.length, total, 'no line repeated');
      assert.deepEqual(c.lines, numbered('L', total), 'no line lost, order kept');
    });
  });

  test('without inotify (polling only) appends, rename rotation and truncation are still followed', async () => {
    const dir = await freshDir();
    const log = join(dir, 'polled.log');
    await writeFile(log, '');
    await withSource([log], { watch: false, pollIntervalMs: 50 }, async (c) => {
      const writer = await open(log, 'a');
      try {
        await writer.appendFile('p1\n');
        await waitFor(() => c.lines.length >= 1, 'polled append');
        await rename(log, `${log}.1`);
        await writer.appendFile('p2\n');
        await writeFile(log, 'p3\n');
        await waitFor(() => c.lines.length >= 3, 'lines around the rotation');
        await truncate(log, 0);
        await appendFile(log, 'p4\n');
        await waitFor(() => c.lines.length >= 4, 'line after truncation');
        await settle();
        assert.deepEqual(c.lines, ['p1', 'p2', 'p3', 'p4']);
      } finally {
        await writer.close();
      }
    });
  });

  test('copytruncate: after the truncation the file is read again from its start', async () => {
    const dir = await freshDir();
    const log = join(dir, 'app.log');
    await writeFile(log, '');
    await withSource([log], {}, async (c) => {
      const a = numbered('A', 200);
      await appendFile(log, text(a));
      await waitFor(() => c.lines.length >= 200, 'A lines');
      await copyFile(log, `${log}.1`);
      await truncate(log, 0);
      const b = numbered('B', 10);
      await appendFile(log, text(b));
      await waitFor(() => c.lines.length >= 210, 'B lines after truncation');
      await settle();
      assert.deepEqual(c.lines, [...a, ...b]);
    });
  });

  test('copytruncate rewritten past the old offset before we look is caught by the first-line fingerprint', async () => {
    const dir = await freshDir();
    const log = join(dir, 'app.log');
    await writeFile(log, '');
    await withSource([log], { pollIntervalMs: 50 }, async (c, s) => {
      const a = numbered('A', 10);
      await appendFile(log, text(a));
      await waitFor(() => c.lines.length >= 10, 'A lines');
      // Truncate and write more than before in one call: the size never looks smaller.
      const b = numbered('B', 40);
      await writeFile(log, text(b));
      await waitFor(() => c.lines.length >= 50, 'B lines');
      await settle();
      assert.deepEqual(c.lines, [...a, ...b]);
      assert.deepEqual(s.files(), [log]);
    });
  });

  test('a glob picks up files created later and ignores compressed rotations', async () => {
    const dir = await freshDir();
    const first = join(dir, 'a-error.log');
    await writeFile(first, 'before start\n');
    await withSource([join(dir, '*error.log*')], {}, async (c) => {
      await appendFile(first, 'a1\n');
      const later = join(dir, 'b-error.log');
      await writeFile(later, 'b0\nb1\n');
      for (const ext of ['gz', 'bz2', 'xz', 'zst']) await writeFile(join(dir, `c-error.log.${ext}`), `compressed ${ext}\n`);
      await waitFor(() => c.from(later).length >= 2, 'lines of the new file');
      await appendFile(later, 'b2\n');
      await waitFor(() => c.from(later).length >= 3, 'appended line of the new file');
      await settle(500);
      assert.deepEqual(c.from(first), ['a1']);
      assert.deepEqual(c.from(later), ['b0', 'b1', 'b2'], 'a file that appears later is read from its start');
      assert.ok(!c.lines.some((l) => l.startsWith('compressed')), 'compressed files are never read');
    });
  });

  test('a missing file is waited for and read from its start when it appears', async () => {
    const dir = await freshDir();
    const log = join(dir, 'later.log');
    await withSource([log], {}, async (c) => {
      await settle(150);
      await writeFile(log, 'x1\nx2\n');
      await waitFor(() => c.lines.length >= 2, 'lines of the file that appeared');
      await unlink(log);
      await settle(800);
      await writeFile(log, 'y1\n');
      await waitFor(() => c.lines.length >= 3, 'lines after the file came back');
      assert.deepEqual(c.lines, ['x1', 'x2', 'y1']);
    });
  });

  test('one file reached through two paths (symlink) is read once', async () => {
    const dir = await freshDir();
    const log = join(dir, 'real.log');
    const link = join(dir, 'link.log');
    await writeFile(log, '');
    await symlink(log, link);
    await withSource([log, link], {}, async (c) => {
      await appendFile(log, 'once\n');
      await waitFor(() => c.lines.length >= 1, 'the line');
      await settle();
      assert.deepEqual(c.lines, ['once']);
    });
  });

  test('latin-1 bytes decode to their characters', async () => {
    const dir = await freshDir();
    const log = join(dir, 'latin.log');
    await writeFile(log, '');
    await withSource([log], { encoding: 'latin1' }, async (c) => {
      await appendFile(log, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xfc, 0x0a])); // "café ü\n"
      await waitFor(() => c.lines.length >= 1, 'latin-1 line');
      assert.deepEqual(c.lines, ['café ü']);
    });
  });

  test('UTF-8 characters split across read chunks stay whole; CRLF is stripped', async () => {
    const dir = await freshDir();
    const log = join(dir, 'utf8.log');
    await writeFile(log, '');
    await withSource([log], { readChunkBytes: 5 }, async (c) => {
      const lines = ['žluťoučký kůň', '日本語のログ', 'plain'];
      await appendFile(log, lines.map((l) => `${l}\r\n`).join(''));
      await waitFor(() => c.lines.length >= 3, 'utf-8 lines');
      assert.deepEqual(c.lines, lines);
    });
  });

  test('start at beginning reads what is already there', async () => {
    const dir = await freshDir();
    const log = join(dir, 'begin.log');
    await writeFile(log, 'one\ntwo\n');
    await withSource([log], { startAt: 'beginning' }, async (c) => {
      await appendFile(log, 'three\n');
      await waitFor(() => c.lines.length >= 3, 'all lines');
      assert.deepEqual(c.lines, ['one', 'two', 'three']);
    });
  });

  test('resume: a restart neither loses nor repeats a line, also with a partial line and a rotation while stopped', async () => {
    const dir = await freshDir();
    const log = join(dir, 'auth.log');
    const stateFile = join(dir, 'state', 'positions.json');
    await writeFile(log, text(numbered('pre', 5)));
    const seen: string[] = [];

    // First run: no saved position yet, so it starts at the end.
    await withSource([log], { startAt: 'resume', stateFile }, async (c) => {
      await appendFile(log, text(numbered('r1', 30)) + 'par');
      await waitFor(() => c.lines.length >= 30, 'first run lines');
      seen.push(...c.lines);
    });
    const saved = JSON.parse(await readFile(stateFile, 'utf8')) as { files: Record<string, { pos: number }> };
    assert.ok(saved.files[log], 'position saved on stop');

    // Stopped: lines and the rest of the partial line are written.
    await appendFile(log, 'tial\n' + text(numbered('gap', 20)));
    await withSource([log], { startAt: 'resume', stateFile }, async (c) => {
      await waitFor(() => c.lines.length >= 21, 'lines written while stopped');
      await appendFile(log, text(numbered('r2', 10)));
      await waitFor(() => c.lines.length >= 31, 'second run lines');
      await settle();
      seen.push(...c.lines);
    });

    // Stopped again: more lines, then logrotate renames the file and creates a new one.
    await appendFile(log, text(numbered('tail-of-old', 15)));
    await rename(log, `${log}.1`);
    await writeFile(log, text(numbered('new-file', 12)));
    await withSource([log], { startAt: 'resume', stateFile }, async (c) => {
      await waitFor(() => c.lines.length >= 27, 'rest of the rotated file and the new file');
      await settle();
      seen.push(...c.lines);
    });

    const expected = [
      ...numbered('r1', 30), 'partial', ...numbered('gap', 20), ...numbered('r2', 10),
      ...numbered('tail-of-old', 15), ...numbered('new-file', 12),
    ];
    assert.deepEqual(seen, expected);
  });

  test('resume does not trust an offset when the file at the path is another file', async () => {
    const dir = await freshDir();
    const log = join(dir, 'auth.log');
    const stateFile = join(dir, 'positions.json');
    await writeFile(log, '');
    await withSource([log], { startAt: 'resume', stateFile }, async (c) => {
      await appendFile(log, text(numbered('x', 40)));
      await waitFor(() => c.lines.length >= 40, 'first run');
    });
    // Replaced by a different file (deleted and recreated: new inode, different first line).
    await unlink(log);
    await writeFile(log, text(numbered('other', 3)));
    await withSource([log], { startAt: 'resume', stateFile }, async (c) => {
      await waitFor(() => c.lines.length >= 3, 'the replacement read from its start');
      await settle();
      assert.deepEqual(c.lines, numbered('other', 3));
    });
  });

  test('very long lines are cut at maxLineBytes and the rest of them dropped', async () => {
    const dir = await freshDir();
    const log = join(dir, 'long.log');
    await writeFile(log, '');
    await withSource([log], { maxLineBytes: 1024, readChunkBytes: 300 }, async (c) => {
      // One over-long line arriving in several chunks, one that fits, and a long UTF-8 line.
      await appendFile(log, 'x'.repeat(5000));
      await appendFile(log, 'y'.repeat(3000) + '\nshort\n' + 'é'.repeat(2000) + '\nend\n');
      await waitFor(() => c.lines.length >= 4, 'cut lines');
      await settle();
      assert.equal(c.lines.length, 4);
      assert.equal(c.lines[0], 'x'.repeat(1024));
      assert.equal(c.lines[1], 'short');
      assert.equal(c.lines[2], 'é'.repeat(512), 'cut on a character boundary');
      assert.equal(c.lines[3], 'end');
    });
  });

  test('plain lines arrive as one decoded chunk, CRLF lines one by one; both cut long lines alike', async () => {
    const dir = await freshDir();
    const log = join(dir, 'chunk.log');
    await writeFile(log, '');
    await withSource([log], { maxLineBytes: 1024 }, async (c) => {
      // The long lines lie inside one read: the chunk's cut() must do what the line path does.
      await appendFile(log, `a\n${'é'.repeat(2000)}\n${'z'.repeat(1500)}\nb\n`);
      await waitFor(() => c.lines.length >= 4, 'chunk lines');
      assert.deepEqual(c.lines, ['a', 'é'.repeat(512), 'z'.repeat(1024), 'b']);
      const chunk = c.raw[0]!;
      assert.ok(!Array.isArray(chunk), 'a chunk, not lines');
      assert.equal(chunk.text.split('\n').length, 4);
      await appendFile(log, `c\r\n${'é'.repeat(2000)}\r\nd\r\n`);
      await waitFor(() => c.lines.length >= 7, 'CRLF lines');
      assert.deepEqual(c.lines.slice(4), ['c', 'é'.repeat(512), 'd']);
      assert.ok(Array.isArray(c.raw[c.raw.length - 1]), 'carriage returns are stripped line by line');
    });
  });
});
