import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { startRedis, randomCluster, freePort, type TestRedis } from '../../helpers/redis-server.js';
import { clusterKeys } from '../../../common/protocol/keys.js';
import { decodeReport } from '../../../common/protocol/messages.js';
import { Reporter } from '../../../agent/reporter.js';
import { FailureSpool } from '../../../agent/spool.js';

/** agent/reporter.ts against a real redis-server: reports, batches, bounds, and the spool through an outage. */
let server: TestRedis;
before(async () => {
  server = await startRedis();
});
after(async () => server.stop());

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}
const T0 = Date.parse('2026-11-26T10:00:00Z');
const event = (i: number) => ({ jail: 'sshd', addr: `198.51.100.${(i % 250) + 1}`, time: T0 + i, host: 'h1', line: `Failed password ${i}` });

async function readReports(redis: Redis, stream: string) {
  return (await redis.xrange(stream, '-', '+')).map(([, fields]) => {
    const r = decodeReport(fields, 'h1');
    assert.ok(r.ok, r.ok ? '' : r.reason);
    return r.value;
  });
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('failures of one turn go out as reports of at most 100, in order, each with a unique event id', async () => {
  const redis = server.client();
  const stream = clusterKeys(randomCluster()).host('h1').failures;
  const reporter = new Reporter({ redis, stream, log: capture().logger });
  for (let i = 0; i < 250; i++) reporter.report(event(i));
  await until('all sent', () => reporter.pending === 0 && reporter.stats.reported === 250);
  const reports = await readReports(redis, stream);
  assert.deepEqual(reports.map((r) => r.failures.length), [100, 100, 50]);
  const all = reports.flatMap((r) => r.failures);
  assert.deepEqual(all.map((f) => f.time), Array.from({ length: 250 }, (_, i) => T0 + i));
  assert.equal(new Set(all.map((f) => f.eid)).size, 250);
  assert.equal(all[7]!.line, 'Failed password 7');
});

test('batch bounds the failures per pipeline, so the reports are cut at it too', async () => {
  const redis = server.client();
  const stream = clusterKeys(randomCluster()).host('h1').failures;
  const reporter = new Reporter({ redis, stream, log: capture().logger, batch: 50 });
  for (let i = 0; i < 120; i++) reporter.report(event(i));
  await until('all sent', () => reporter.stats.reported === 120);
  assert.deepEqual((await readReports(redis, stream)).map((r) => r.failures.length), [50, 50, 20]);
});

test('with Redis unreachable and no spool, memory holds maxBuffered failures and drops the oldest, counted', async () => {
  // Nothing listens on this port: the connection never becomes ready.
  const nowhere = new Redis({ port: await freePort(), host: '127.0.0.1', retryStrategy: () => 100, maxRetriesPerRequest: 0 });
  nowhere.on('error', () => undefined);
  const { logger, lines } = capture();
  const reporter = new Reporter({ redis: nowhere, stream: 'unused', log: logger, maxBuffered: 5 });
  for (let i = 0; i < 8; i++) reporter.report(event(i));
  assert.equal(reporter.pending, 5);
  assert.equal(reporter.stats.dropped, 3);
  assert.equal(lines.filter((l) => l.msg === 'failure buffer full; oldest failures dropped').length, 3);
  nowhere.disconnect();
});

test('through an outage failures wait in the spool and are delivered, in order, once Redis is back', async () => {
  const redis = server.client();
  redis.on('error', () => undefined);
  const stream = clusterKeys(randomCluster()).host('h1').failures;
  // Connected first: a failure reported while the connection is still being made is spooled too.
  await until('connected', () => redis.status === 'ready');
  const spool = new FailureSpool(join(mkdtempSync(join(tmpdir(), 'fleetban-rep-')), 'spool'), capture().logger);
  const { logger, lines } = capture();
  const reporter = new Reporter({ redis, stream, log: logger, spool });
  reporter.report(event(0));
  await until('the first failure sent', () => reporter.stats.reported === 1);
  await server.kill();
  await until('the connection noticed the outage', () => redis.status !== 'ready');
  for (let i = 1; i <= 3; i++) reporter.report(event(i));
  await until('spooled', () => spool.size === 3);
  assert.ok(lines.some((l) => l.msg === 'Redis unreachable; spooling failures to disk'));
  await server.restart();
  await until('delivered', () => reporter.pending === 0 && reporter.stats.reported === 4, 15_000);
  const times = (await readReports(redis, stream)).flatMap((r) => r.failures.map((f) => f.time));
  // The test server keeps no data over a restart, so the stream holds exactly what the spool delivered.
  assert.deepEqual(times, [T0 + 1, T0 + 2, T0 + 3]);
  assert.deepEqual({ spooled: spool.stats.spooled, delivered: spool.stats.delivered }, { spooled: 3, delivered: 3 }, 'only the outage\'s failures went through the disk');
  assert.ok(lines.some((l) => l.msg === 'spooled failures delivered'));
});
