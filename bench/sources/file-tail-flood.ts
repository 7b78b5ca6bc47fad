// Flood benchmark for the file follower: a writer appends LINES syslog-like lines while the
// source follows the file; prints lines/s from the first write to the last delivered line, and the
// same for reading a pre-filled file from the beginning. With `--tail` it runs npm `tail` on the
// same flood, for the comparison written down in agent/sources/file-tail.ts.
//   node dist/bench/sources/file-tail-flood.js [lines=1000000] [--tail]
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { FileTailSource } from '../../agent/sources/file-tail.js';
import { linesOf } from '../../agent/sources/source.js';

const LINES = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1_000_000);
const WITH_TAIL = process.argv.includes('--tail');
const PER_WRITE = 10_000;
const TIMEOUT_MS = 120_000;

function block(from: number, count: number): string {
  let s = '';
  for (let i = from; i < from + count; i++) {
    s += `Nov 26 09:30:30 h1 sshd[${1000 + (i % 5000)}]: Failed password for root from 192.0.2.${i % 250} port ${i % 65536} ssh2\n`;
  }
  return s;
}

async function append(path: string): Promise<number> {
  const fh = await open(path, 'a');
  let bytes = 0;
  try {
    for (let i = 0; i < LINES; i += PER_WRITE) {
      const b = block(i, Math.min(PER_WRITE, LINES - i));
      bytes += Buffer.byteLength(b);
      await fh.write(b);
    }
  } finally {
    await fh.close();
  }
  return bytes;
}

async function until(cond: () => boolean): Promise<boolean> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  return cond();
}

function report(what: string, lines: number, bytes: number, ms: number, batches?: number): void {
  const extra = batches !== undefined ? `, ${batches} callbacks` : '';
  console.log(
    `${what}: ${lines} lines in ${ms.toFixed(0)} ms = ${Math.round((lines / ms) * 1000).toLocaleString('en')} lines/s, ` +
      `${((bytes / ms) * 1000 / 1e6).toFixed(0)} MB/s${extra}`,
  );
}

async function followFlood(dir: string): Promise<void> {
  const path = join(dir, 'follow.log');
  await writeFile(path, '');
  let got = 0;
  let batches = 0;
  let lastOk = true;
  const src = new FileTailSource({ name: 'bench', patterns: [path], encoding: 'utf8' });
  await src.start((batch) => {
    const lines = linesOf(batch);
    batches++;
    got += lines.length;
    lastOk &&= lines[lines.length - 1]?.endsWith(' ssh2') ?? false;
  });
  const t0 = performance.now();
  const bytes = await append(path);
  const tWritten = performance.now();
  const done = await until(() => got >= LINES);
  const t1 = performance.now();
  await src.stop();
  console.log(`writer finished after ${(tWritten - t0).toFixed(0)} ms`);
  report('follow while appending', got, bytes, t1 - t0, batches);
  if (!done || got !== LINES || !lastOk) console.log(`  LOST OR BROKEN LINES: got ${got} of ${LINES}`);
}

async function readFlood(dir: string): Promise<void> {
  const path = join(dir, 'prefilled.log');
  await writeFile(path, '');
  const bytes = await append(path);
  let got = 0;
  let batches = 0;
  const src = new FileTailSource({ name: 'bench', patterns: [path], encoding: 'utf8', startAt: 'beginning' });
  const t0 = performance.now();
  await src.start((batch) => {
    batches++;
    got += linesOf(batch).length;
  });
  await until(() => got >= LINES);
  const t1 = performance.now();
  await src.stop();
  report('read pre-filled file', got, bytes, t1 - t0, batches);
}

async function tailFlood(dir: string): Promise<void> {
  const require = createRequire(import.meta.url);
  const { Tail } = require('tail') as typeof import('tail');
  const path = join(dir, 'tail.log');
  await writeFile(path, '');
  let got = 0;
  const t = new Tail(path, { fromBeginning: false });
  t.on('line', () => {
    got++;
  });
  const t0 = performance.now();
  const bytes = await append(path);
  const done = await until(() => got >= LINES);
  const t1 = performance.now();
  t.unwatch();
  report('npm tail, follow while appending', got, bytes, t1 - t0);
  if (!done) console.log(`  npm tail delivered ${got} of ${LINES} lines within ${TIMEOUT_MS} ms`);
}

const dir = await mkdtemp(join(tmpdir(), 'fleetban-bench-'));
try {
  await followFlood(dir);
  await readFlood(dir);
  if (WITH_TAIL) await tailFlood(dir);
} finally {
  await rm(dir, { recursive: true, force: true });
}
