/**
 * One fleetban filter run over a log file, in its own process so its peak RSS is the filter's
 * alone. By default it does what the agent's file source and agent/main.ts do: the file is read
 * in 256 KiB chunks, each chunk's complete lines are decoded as one string, and that string goes
 * through `matcher.feedChunk(text)` (the matcher finds the lines itself).
 *
 *   node dist/bench/filter/fleetban-run.js LOG FILTER [--dir DIR] [--record OUT] [--read-only] [--batch | --lines]
 *
 * FILTER is a name found in --dir (default: fleetban's filter.d) or a path to a .conf file.
 * Prints one JSON object: lines, failures, ms (wall: read + decode + match), filterMs (wall, inside
 * the matcher only), cpuMs (process CPU time of the whole loop), maxRssMB.
 * --record writes "ADDR<TAB>LINE" for every failure (the line that completed it) to OUT.
 * --read-only reads and decodes without matching (the floor of this harness); with --lines or
 *   --batch it also splits the lines.
 * --batch splits each chunk into lines and feeds them with feedBatch() (the agent before chunks);
 * --lines splits them and calls feed() per line.
 */
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { builtinFilterDir, loadFilter, type FailureMatch, type LineMatcher } from '../../common/filter/index.js';
import { enableBacktrackingFallback } from '../../common/filter/regex-safety.js';

// Production's regex safety net (a process-wide V8 flag the entry point sets).
enableBacktrackingFallback();

const CHUNK = 256 * 1024;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const [logPath, filterSpec] = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.match(/^--(dir|record)$/));
if (!logPath || !filterSpec) {
  console.error('usage: fleetban-run.js LOG FILTER [--dir DIR] [--record OUT] [--read-only] [--batch | --lines]');
  process.exit(2);
}
const readOnly = process.argv.includes('--read-only');
const batch = process.argv.includes('--batch');
const perLine = process.argv.includes('--lines');
const chunked = !batch && !perLine;
const recordPath = arg('--record');

const filter = loadFilter(filterSpec, { dirs: [arg('--dir') ?? builtinFilterDir()] });
const matcher: LineMatcher = filter.createMatcher();
const recorded: string[] = [];
let failures = 0;
let lines = 0;

function onFailure(m: FailureMatch): void {
  failures++;
  if (recordPath) recorded.push(`${m.addr}\t${m.text.slice(m.text.lastIndexOf('\n') + 1)}`);
}

// Lines of a chunk are split first and then fed, so the time spent matching (filterMs) can be
// told apart from reading and splitting, with two clock readings per chunk.
const chunkLines: string[] = [];
let filterMs = 0;
const feedChunk = (): void => {
  const t = performance.now();
  if (batch) {
    for (const m of matcher.feedBatch(chunkLines)) onFailure(m);
  } else {
    for (let i = 0; i < chunkLines.length; i++) for (const m of matcher.feed(chunkLines[i]!)) onFailure(m);
  }
  filterMs += performance.now() - t;
  chunkLines.length = 0;
};
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const fd = openSync(logPath, 'r');
if (chunked) {
  // As agent/sources/file-tail.ts reads: the bytes after the chunk's last newline wait for the
  // next read, and the complete lines are decoded as one string.
  const buf = Buffer.allocUnsafe(2 * CHUNK);
  const feedText = (text: string): void => {
    if (readOnly) return;
    const t = performance.now();
    for (const m of matcher.feedChunk(text)) onFailure(m);
    filterMs += performance.now() - t;
  };
  let carry = 0;
  for (;;) {
    const n = readSync(fd, buf, carry, CHUNK, null);
    const end = carry + n;
    if (n === 0) {
      if (end > 0) feedText(buf.toString('utf8', 0, end));
      break;
    }
    const lastNl = buf.lastIndexOf(10, end - 1);
    if (lastNl >= 0) {
      feedText(buf.toString('utf8', 0, lastNl));
      buf.copy(buf, 0, lastNl + 1, end);
      carry = end - lastNl - 1;
    } else carry = end;
    if (carry >= CHUNK) throw new Error(`a line longer than ${CHUNK} bytes: this harness does not cut lines`);
  }
} else {
  const buf = Buffer.allocUnsafe(CHUNK);
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for (;;) {
    const n = readSync(fd, buf, 0, CHUNK, null);
    const text = n > 0 ? rest + decoder.write(buf.subarray(0, n)) : rest + decoder.end();
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      chunkLines.push(text.slice(start, nl));
      start = nl + 1;
    }
    rest = text.slice(start);
    if (n === 0 && rest !== '') {
      chunkLines.push(rest);
      rest = '';
    }
    lines += chunkLines.length;
    if (readOnly) chunkLines.length = 0;
    else feedChunk();
    if (n === 0) break;
  }
}
closeSync(fd);
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
// Counted after the clock stopped: the chunked loop never cuts the file into lines.
if (chunked) lines = countLines(logPath);
if (recordPath) writeFileSync(recordPath, recorded.length ? `${recorded.join('\n')}\n` : '');
// maxRSS is in kilobytes; cpuMs is user + system time of this process (less disturbed by other
// processes on a shared machine than wall time).
console.log(JSON.stringify({ lines, failures, ms, filterMs, cpuMs: (cpu.user + cpu.system) / 1000, maxRssMB: process.resourceUsage().maxRSS / 1024 }));

function countLines(path: string): number {
  const f = openSync(path, 'r');
  const b = Buffer.allocUnsafe(CHUNK);
  let n = 0;
  let last = 10;
  for (let got = readSync(f, b, 0, CHUNK, null); got > 0; got = readSync(f, b, 0, CHUNK, null)) {
    for (let i = b.indexOf(10); i >= 0 && i < got; i = b.indexOf(10, i + 1)) n++;
    last = b[got - 1]!;
  }
  closeSync(f);
  return last !== 10 ? n + 1 : n;
}
