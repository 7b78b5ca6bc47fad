import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FailureSpool, type PendingFailure } from '../../../agent/spool.js';

/** agent/spool.ts: failures on disk while Redis is away, in order, across restarts, bounded. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}
const T0 = Date.parse('2026-11-26T10:00:00Z');
const failure = (i: number, host = 'h1'): PendingFailure => ({ jail: 'sshd', addr: `198.51.100.${i % 250}`, eid: `abc-${i.toString(36)}`, time: T0 + i, host, line: `line ${i}` });
const dir = () => join(mkdtempSync(join(tmpdir(), 'fleetban-spool-')), 'spool');

test('failures come back in the order appended, in batches, and are gone once consumed', () => {
  const d = dir();
  const spool = new FailureSpool(d, capture().logger);
  spool.append([failure(1), failure(2), failure(3)]);
  spool.append([failure(4), failure(5)]);
  assert.equal(spool.size, 5);
  assert.deepEqual(spool.peek(2).map((f) => f.eid), ['abc-1', 'abc-2']);
  assert.deepEqual(spool.peek(2).map((f) => f.eid), ['abc-1', 'abc-2'], 'peek without consume returns the same batch');
  spool.consume();
  assert.equal(spool.size, 3);
  const rest = spool.peek(10);
  assert.deepEqual(rest, [failure(3), failure(4), failure(5)], 'every field survives the disk');
  spool.consume();
  assert.equal(spool.size, 0);
  assert.deepEqual(spool.peek(10), []);
  assert.deepEqual(readdirSync(d).filter((n) => n.endsWith('.jsonl')), [], 'delivered segments are deleted');
  assert.deepEqual(spool.stats, { spooled: 5, delivered: 5, dropped: 0, damaged: 0 });
});

test('a restarted agent takes over the spool where the last one stopped: a consumed batch is not sent again', () => {
  const d = dir();
  const first = new FailureSpool(d, capture().logger, { segmentBytes: 200 });
  first.append(Array.from({ length: 10 }, (_, i) => failure(i)));
  first.append(Array.from({ length: 10 }, (_, i) => failure(10 + i)));
  first.peek(3);
  first.consume();
  first.peek(4); // in flight when the agent died: not consumed, so sent again after the restart
  const { logger, lines } = capture();
  const second = new FailureSpool(d, logger, { segmentBytes: 200 });
  assert.equal(second.size, 17);
  assert.deepEqual(lines.map((l) => [l.msg, l.pending]), [['failure spool from a previous run will be delivered', 17]]);
  const eids: string[] = [];
  for (let batch = second.peek(5); batch.length > 0; batch = second.peek(5)) {
    eids.push(...batch.map((f) => f.eid));
    second.consume();
  }
  assert.deepEqual(eids, Array.from({ length: 17 }, (_, i) => `abc-${(i + 3).toString(36)}`));
});

test('only the agent may read the spool: directory 0700, segments 0600', () => {
  const d = dir();
  const spool = new FailureSpool(d, capture().logger);
  spool.append([failure(1)]);
  assert.equal(statSync(d).mode & 0o777, 0o700);
  for (const n of readdirSync(d)) assert.equal(statSync(join(d, n)).mode & 0o777, 0o600, n);
});

test('damaged lines are skipped and counted; the good ones around them are delivered', () => {
  const d = dir();
  const spool = new FailureSpool(d, capture().logger);
  spool.append([failure(1)]);
  const seg = readdirSync(d).find((n) => n.endsWith('.jsonl'))!;
  appendFileSync(join(d, seg), 'not json\n["sshd","198.51.100.9",1,"bad host!","x","abc-z"]\n');
  spool.append([failure(2)]);
  const again = new FailureSpool(d, capture().logger);
  assert.equal(again.size, 4, 'the damaged lines are still counted as pending until read');
  assert.deepEqual(again.peek(10).map((f) => f.eid), ['abc-1', 'abc-2']);
  again.consume();
  assert.equal(again.stats.damaged, 2);
  assert.equal(again.size, 0);
});

test('past maxBytes whole oldest segments are dropped, counted and warned about; the newest failures stay', () => {
  const { logger, lines } = capture();
  const spool = new FailureSpool(dir(), logger, { maxBytes: 1000, segmentBytes: 300 });
  for (let i = 0; i < 40; i++) spool.append([failure(i)]);
  assert.ok(spool.bytes <= 1000, `${spool.bytes} bytes`);
  assert.ok(spool.stats.dropped > 0);
  assert.equal(spool.size + spool.stats.dropped, 40, 'every failure is either kept or counted as dropped');
  const kept: string[] = [];
  for (let b = spool.peek(100); b.length > 0; b = spool.peek(100)) {
    kept.push(...b.map((f) => f.eid));
    spool.consume();
  }
  assert.equal(kept.at(-1), `abc-${(39).toString(36)}`, 'the newest failure is kept');
  assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => `abc-${(40 - kept.length + i).toString(36)}`), 'what is kept is the newest, in order');
  assert.ok(lines.some((l) => l.msg === 'failure spool full; oldest failures dropped' && Number(l.dropped) > 0));
});
