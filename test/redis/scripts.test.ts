import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { clusterKeys, COORDINATOR_GROUP } from '../../common/protocol/keys.js';
import { ClusterScripts, COUNT_RESULT, type CountedFailure } from '../../common/scripts/index.js';
import { decodeDecision, encodeFailure } from '../../common/protocol/messages.js';

let server: TestRedis;
let redis: Redis;
before(async () => {
  server = await startRedis();
  redis = server.client();
});
after(async () => server.stop());

const T0 = Date.parse('2026-11-26T10:00:00Z');
const policy = { findtimeMs: 600_000, maxretry: 5, bantimeMs: 3_600_000 };

function setup() {
  const keys = clusterKeys(randomCluster());
  return { keys, scripts: new ClusterScripts(redis, keys) };
}

let seq = 0;
function failure(jail: string, addr: string, time: number, host = 'h1'): CountedFailure {
  seq++;
  return { id: `${time}-${seq}`, jail, addr, time, host, ...policy };
}

async function decisions(keys: ReturnType<typeof clusterKeys>) {
  const entries = await redis.xrange(keys.decisions, '-', '+');
  return entries.map(([, fields]) => {
    const d = decodeDecision(fields);
    assert.ok(d.ok, 'decision decodes');
    return d.value;
  });
}

test('bans exactly at maxretry within findtime, not before', async () => {
  const { keys, scripts } = setup();
  for (let i = 0; i < 4; i++) {
    const r = await scripts.recordFailures(T0 + i * 1000, [failure('sshd', '198.51.100.7', T0 + i * 1000)]);
    assert.deepEqual(r.results, [i + 1]);
    assert.equal(r.bans.length, 0);
  }
  assert.equal(await redis.hlen(keys.bans), 0);
  const r = await scripts.recordFailures(T0 + 5000, [failure('sshd', '198.51.100.7', T0 + 5000)]);
  assert.deepEqual(r.bans, [{ jail: 'sshd', addr: '198.51.100.7', until: T0 + 5000 + 3_600_000 }]);
  const ds = await decisions(keys);
  assert.equal(ds.length, 1);
  assert.equal(ds[0]!.op, 'ban');
  assert.equal(await redis.zscore(keys.banExpiry, 'sshd|198.51.100.7'), String(T0 + 5000 + 3_600_000));
  // A failure from a banned address counts nothing and bans nothing again.
  const again = await scripts.recordFailures(T0 + 6000, [failure('sshd', '198.51.100.7', T0 + 6000)]);
  assert.deepEqual(again.results, [COUNT_RESULT.alreadyBanned]);
  assert.equal((await decisions(keys)).length, 1);
});

test('failures older than findtime drop out of the window (edge is exclusive)', async () => {
  const { keys, scripts } = setup();
  const addr = '203.0.113.9';
  // Four failures at T0, then the fifth exactly findtime later: the first four are at the edge and no longer count.
  for (let i = 0; i < 4; i++) await scripts.recordFailures(T0, [failure('sshd', addr, T0)]);
  const atEdge = await scripts.recordFailures(T0 + 600_000, [failure('sshd', addr, T0 + 600_000)]);
  assert.deepEqual(atEdge.results, [1]);
  assert.equal(atEdge.bans.length, 0);
  // One millisecond inside the window they would all have counted.
  const { scripts: s2 } = setup();
  for (let i = 0; i < 4; i++) await s2.recordFailures(T0, [failure('sshd', addr, T0)]);
  const inside = await s2.recordFailures(T0 + 599_999, [failure('sshd', addr, T0 + 599_999)]);
  assert.equal(inside.bans.length, 1);
  // A failure whose own time is already outside the window is not counted at all.
  const old = await scripts.recordFailures(T0 + 2_000_000, [failure('sshd', addr, T0)]);
  assert.deepEqual(old.results, [COUNT_RESULT.tooOld]);
  assert.equal(await redis.hlen(keys.bans), 0);
});

test('two jails count separately; IPv6 addresses count like IPv4', async () => {
  const { keys, scripts } = setup();
  const v6 = '2001:db8::bad';
  const batch: CountedFailure[] = [];
  for (let i = 0; i < 4; i++) batch.push(failure('sshd', v6, T0 + i), failure('postfix', v6, T0 + i));
  const r = await scripts.recordFailures(T0 + 10, batch);
  assert.deepEqual(r.bans, []);
  const fifth = await scripts.recordFailures(T0 + 20, [failure('sshd', v6, T0 + 20)]);
  assert.deepEqual(fifth.bans.map((b) => `${b.jail}|${b.addr}`), [`sshd|${v6}`]);
  assert.equal(await redis.hexists(keys.bans, `postfix|${v6}`), 0);
  assert.equal(await redis.zcard(keys.failureWindow('postfix', v6)), 4);
});

test('failures from several hosts add up cluster-wide', async () => {
  const { scripts } = setup();
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];
  let bans = 0;
  for (const h of hosts) bans += (await scripts.recordFailures(T0, [failure('sshd', '192.0.2.44', T0, h)])).bans.length;
  assert.equal(bans, 1);
});

test('a redelivered event is counted once', async () => {
  const { scripts } = setup();
  const f = failure('sshd', '192.0.2.1', T0);
  assert.deepEqual((await scripts.recordFailures(T0, [f])).results, [1]);
  assert.deepEqual((await scripts.recordFailures(T0, [f])).results, [COUNT_RESULT.duplicate]);
  assert.deepEqual((await scripts.recordFailures(T0, [failure('sshd', '192.0.2.1', T0)])).results, [2]);
});

test('counting acknowledges the stream entries in the consumer group, malformed ones too', async () => {
  const { keys, scripts } = setup();
  await redis.xgroup('CREATE', keys.failures, COORDINATOR_GROUP, '$', 'MKSTREAM');
  const good = await redis.xadd(keys.failures, '*', ...encodeFailure({ jail: 'sshd', addr: '198.51.100.9', time: T0, sent: T0, host: 'h1', line: 'x' }));
  const bad = await redis.xadd(keys.failures, '*', 'garbage', 'yes');
  const read = (await redis.xreadgroup('GROUP', COORDINATOR_GROUP, 'c1', 'COUNT', 10, 'STREAMS', keys.failures, '>')) as Array<[string, unknown[]]>;
  assert.equal(read[0]![1].length, 2);
  assert.equal(((await redis.xpending(keys.failures, COORDINATOR_GROUP)) as [number])[0], 2);
  await scripts.recordFailures(T0, [{ ...failure('sshd', '198.51.100.9', T0), id: good! }], [bad!]);
  assert.equal(((await redis.xpending(keys.failures, COORDINATOR_GROUP)) as [number])[0], 0);
});

test('snapshot plus stream: nothing missed, nothing decided twice', async () => {
  const { keys, scripts } = setup();
  await scripts.ban({ jail: 'sshd', addr: '198.51.100.1', now: T0, until: T0 + 60_000, reason: 'r', origin: 'cli:test' });
  await scripts.ban({ jail: 'sshd', addr: '198.51.100.2', now: T0, until: -1, reason: 'r', origin: 'cli:test' });
  const snap = await scripts.snapshot();
  assert.deepEqual(snap.bans.map((b) => b.addr).sort(), ['198.51.100.1', '198.51.100.2']);
  assert.equal(snap.bans.find((b) => b.addr === '198.51.100.2')!.until, -1);
  // Decisions after the snapshot are exactly the ones read after its id.
  await scripts.unban('cli:test', [['sshd', '198.51.100.1']]);
  await scripts.ban({ jail: 'sshd', addr: '198.51.100.3', now: T0, until: T0 + 1000, reason: 'r', origin: 'cli:test' });
  const after = await redis.xrange(keys.decisions, `(${snap.lastId}`, '+');
  const ops = after.map(([, f]) => decodeDecision(f)).map((d) => (d.ok ? `${d.value.op} ${'addr' in d.value ? d.value.addr : ''}` : 'bad'));
  assert.deepEqual(ops, ['unban 198.51.100.1', 'ban 198.51.100.3']);
});

test('unban lifts one address in every jail; flush lifts a jail; expire lifts what is due', async () => {
  const { keys, scripts } = setup();
  const ban = (jail: string, addr: string, until: number) => scripts.ban({ jail, addr, now: T0, until, reason: '', origin: 'cli:t' });
  await ban('sshd', '192.0.2.10', T0 + 1000);
  await ban('nginx', '192.0.2.10', T0 + 5000);
  await ban('nginx', '192.0.2.11', T0 + 5000);
  await ban('sshd', '192.0.2.12', -1);
  const lifted = await scripts.unban('cli:t', [['*', '192.0.2.10']]);
  assert.deepEqual(lifted.map((l) => l.jail).sort(), ['nginx', 'sshd']);
  assert.deepEqual(await scripts.unban('cli:t', [['sshd', '192.0.2.99']]), []);
  assert.deepEqual(await scripts.expire(T0 + 4999), []);
  assert.deepEqual(await scripts.expire(T0 + 5000), ['nginx|192.0.2.11']);
  assert.equal(await scripts.flush('sshd', 'cli:t'), 1);
  assert.equal(await redis.hlen(keys.bans), 0);
  const ops = (await decisions(keys)).map((d) => d.op);
  assert.deepEqual(ops, ['ban', 'ban', 'ban', 'ban', 'unban', 'unban', 'unban', 'flush']);
});
