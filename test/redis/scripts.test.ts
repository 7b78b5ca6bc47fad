import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { clusterKeys, COORDINATOR_GROUP } from '../../common/protocol/keys.js';
import { ClusterScripts, COUNT_RESULT, readWindow, type CountedFailure, type ScriptPolicy, type StreamAcks } from '../../common/scripts/index.js';
import { decodeDecision, encodeReport } from '../../common/protocol/messages.js';

let server: TestRedis;
let redis: Redis;
before(async () => {
  server = await startRedis();
  redis = server.client();
});
after(async () => server.stop());

const T0 = Date.parse('2026-11-26T10:00:00Z');
function jailPolicy(jail: string, over: Partial<ScriptPolicy> = {}): ScriptPolicy {
  return { jail, findtimeMs: 600_000, maxretry: 5, minhosts: 1, overalljails: false, rndtimeMs: 0, countsBans: false, durationsMs: [3_600_000], ...over };
}
const POLICIES = [jailPolicy('sshd'), jailPolicy('postfix')];

/** Scripts bound to a fresh cluster, with recordFailures defaulting to the sshd/postfix policies. */
function setup(policies: ScriptPolicy[] = POLICIES) {
  const keys = clusterKeys(randomCluster());
  const raw = new ClusterScripts(redis, keys);
  const scripts = {
    recordFailures: (now: number, failures: CountedFailure[], acks: StreamAcks = []) => raw.recordFailures(now, policies, failures, acks),
    ban: raw.ban.bind(raw), unban: raw.unban.bind(raw), flush: raw.flush.bind(raw), expire: raw.expire.bind(raw), snapshot: raw.snapshot.bind(raw),
  };
  return { keys, scripts };
}

let seq = 0;
function failure(jail: string, addr: string, time: number, host = 'h1'): CountedFailure {
  seq++;
  return { eid: `e-${seq}`, jail, addr, time, host };
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
  // Failures of a banned address are counted but never ban it a second time.
  const again: number[] = [];
  for (let i = 0; i < 6; i++) again.push(...(await scripts.recordFailures(T0 + 6000 + i, [failure('sshd', '198.51.100.7', T0 + 6000 + i)])).results);
  assert.deepEqual(again, [1, 2, 3, 4, COUNT_RESULT.alreadyBanned, COUNT_RESULT.alreadyBanned]);
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
  assert.equal((await readWindow(redis, keys, 'postfix', v6)).length, 4);
});

test('stale windows leave the jail hash with a later batch; a late older failure keeps a live one', async () => {
  const { keys, scripts } = setup();
  const FIND = 600_000;
  await scripts.recordFailures(T0, [failure('sshd', '192.0.2.61', T0), failure('sshd', '192.0.2.62', T0)]);
  // .63: a newer failure first, then an older one that arrives late (a host's backlog).
  await scripts.recordFailures(T0 + 100_000, [failure('sshd', '192.0.2.63', T0 + 100_000)]);
  await scripts.recordFailures(T0 + 100_001, [failure('sshd', '192.0.2.63', T0 + 1)]);
  assert.equal(await redis.zscore(keys.failing('sshd'), '192.0.2.63'), String(T0 + 100_000));
  await scripts.recordFailures(T0 + FIND + 50, [failure('sshd', '192.0.2.64', T0 + FIND + 50)]);
  const fields = (await redis.hkeys(keys.failureWindows('sshd'))).sort();
  assert.deepEqual(fields, ['192.0.2.63', '192.0.2.64'], 'the windows of .61 and .62 are gone; .63 still has a failure inside findtime');
  assert.deepEqual((await redis.zrange(keys.failing('sshd'), 0, -1)).sort(), ['192.0.2.63', '192.0.2.64']);
  const ttl = await redis.pttl(keys.failureWindows('sshd'));
  assert.ok(ttl > 0 && ttl <= FIND, `the hash expires within findtime of the last batch (${ttl} ms)`);
});

test('failures from several hosts add up cluster-wide', async () => {
  const { scripts } = setup();
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];
  // Each host's failure must add to the same window, and only the fifth may ban: a total of one
  // ban alone would also hold if the first failure had banned.
  const perHost: Array<{ results: number[]; bans: number }> = [];
  for (const h of hosts) {
    const r = await scripts.recordFailures(T0, [failure('sshd', '192.0.2.44', T0, h)]);
    perHost.push({ results: r.results, bans: r.bans.length });
  }
  assert.deepEqual(perHost, [
    { results: [1], bans: 0 }, { results: [2], bans: 0 }, { results: [3], bans: 0 }, { results: [4], bans: 0 }, { results: [5], bans: 1 },
  ]);
});

test('a redelivered event, or one an agent sent twice, is counted once', async () => {
  const { keys, scripts } = setup();
  const f = failure('sshd', '192.0.2.1', T0);
  assert.deepEqual((await scripts.recordFailures(T0, [f])).results, [1]);
  assert.deepEqual((await scripts.recordFailures(T0, [f])).results, [COUNT_RESULT.duplicate]);
  // Same event id in a new stream entry (a pipeline resent after its reply was lost).
  assert.deepEqual((await scripts.recordFailures(T0, [{ ...f }], [[keys.host('h1').failures, [`${T0}-999999`]]])).results, [COUNT_RESULT.duplicate]);
  // Resent later, its `sent` stamp is newer, so the coordinator places it at another time: still the same failure.
  assert.deepEqual((await scripts.recordFailures(T0 + 50, [{ ...f, time: T0 + 40 }])).results, [COUNT_RESULT.duplicate]);
  // Twice in one batch.
  const g = failure('sshd', '192.0.2.2', T0);
  assert.deepEqual((await scripts.recordFailures(T0, [g, { ...g }])).results, [1, COUNT_RESULT.duplicate]);
  assert.deepEqual((await scripts.recordFailures(T0, [failure('sshd', '192.0.2.1', T0)])).results, [2]);
});

test('counting acknowledges the stream entries in the consumer group, malformed ones too', async () => {
  const { keys, scripts } = setup();
  await redis.xgroup('CREATE', keys.host('h1').failures, COORDINATOR_GROUP, '$', 'MKSTREAM');
  const good = await redis.xadd(keys.host('h1').failures, '*', ...encodeReport('h1', T0, [{ jail: 'sshd', addr: '198.51.100.9', eid: 'a-1', time: T0, line: 'x' }]));
  const bad = await redis.xadd(keys.host('h1').failures, '*', 'garbage', 'yes');
  const read = (await redis.xreadgroup('GROUP', COORDINATOR_GROUP, 'c1', 'COUNT', 10, 'STREAMS', keys.host('h1').failures, '>')) as Array<[string, unknown[]]>;
  assert.equal(read[0]![1].length, 2);
  assert.equal(((await redis.xpending(keys.host('h1').failures, COORDINATOR_GROUP)) as [number])[0], 2);
  await scripts.recordFailures(T0, [failure('sshd', '198.51.100.9', T0)], [[keys.host('h1').failures, [good!, bad!]]]);
  assert.equal(((await redis.xpending(keys.host('h1').failures, COORDINATOR_GROUP)) as [number])[0], 0);
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
  assert.deepEqual(lifted.lifted.map((l) => l.jail).sort(), ['nginx', 'sshd']);
  assert.match(lifted.decisionId, /^\d+-\d+$/);
  // Published even with no record: an agent may hold the ban although its record is gone.
  const none = await scripts.unban('cli:t', [['sshd', '192.0.2.99']]);
  assert.deepEqual(none.lifted, []);
  assert.match(none.decisionId, /^\d+-\d+$/);
  assert.deepEqual(await scripts.expire(T0 + 4999), []);
  assert.deepEqual(await scripts.expire(T0 + 5000), ['nginx|192.0.2.11']);
  assert.equal((await scripts.flush('sshd', 'cli:t')).count, 1);
  assert.equal(await redis.hlen(keys.bans), 0);
  // One signed decision lifts the address in every jail (jail '*'), not one per jail.
  const ops = (await decisions(keys)).map((d) => `${d.op} ${d.jail}`);
  assert.deepEqual(ops, ['ban sshd', 'ban nginx', 'ban nginx', 'ban sshd', 'unban *', 'unban sshd', 'unban nginx', 'flush sshd']);
});

test('escalation: each earlier ban in the history picks the next duration; overalljails counts every jail', async () => {
  const durations = [60_000, 120_000, 240_000];
  const { keys, scripts } = setup([jailPolicy('sshd', { maxretry: 1, durationsMs: durations }), jailPolicy('postfix', { maxretry: 1, durationsMs: durations, overalljails: true })]);
  const addr = '198.51.100.50';
  const untils: number[] = [];
  for (let i = 0; i < 4; i++) {
    const t = T0 + i * 1000;
    const r = await scripts.recordFailures(t, [failure('sshd', addr, t)]);
    untils.push(r.bans[0]!.until - t);
    await scripts.unban('cli:t', [['sshd', addr]]);
  }
  assert.deepEqual(untils, [60_000, 120_000, 240_000, 240_000], 'the last duration repeats');
  const history = await redis.zrange(keys.history(addr), 0, -1);
  assert.equal(history.length, 4);
  assert.match(history[0]!, /^sshd\|\d+\|\d+\|h1\|1 failures in 600s$/);
  // postfix counts the four sshd bans too: its first ban is already the fifth overall.
  const p = await scripts.recordFailures(T0 + 10_000, [failure('postfix', addr, T0 + 10_000)]);
  assert.equal(p.bans[0]!.until - (T0 + 10_000), 240_000);
  // Outside the retention (1 day by default) the history is forgotten.
  const later = T0 + 86_400_000 + 20_000;
  const fresh = await scripts.recordFailures(later, [failure('sshd', addr, later)]);
  assert.equal(fresh.bans[0]!.until - later, 60_000);
});

test('minhosts: one host alone never bans; the second distinct host does', async () => {
  const { scripts } = setup([jailPolicy('sshd', { maxretry: 3, minhosts: 2 })]);
  const addr = '203.0.113.77';
  let bans = 0;
  for (let i = 0; i < 10; i++) bans += (await scripts.recordFailures(T0 + i, [failure('sshd', addr, T0 + i, 'compromised')])).bans.length;
  assert.equal(bans, 0, 'ten failures from one host do not ban with minhosts = 2');
  const r = await scripts.recordFailures(T0 + 20, [failure('sshd', addr, T0 + 20, 'h2')]);
  assert.equal(r.bans.length, 1);
});

test('a window that cannot ban stays bounded under a flood, newest failures kept', async () => {
  const { keys, scripts } = setup([jailPolicy('sshd', { maxretry: 3, minhosts: 2 })]);
  const addr = '203.0.113.78';
  const batch: CountedFailure[] = [];
  for (let i = 0; i < 1500; i++) batch.push(failure('sshd', addr, T0 + i, 'one-host'));
  const r = await scripts.recordFailures(T0 + 2000, batch);
  assert.deepEqual(r.results.slice(-3), [3, 3, 3], 'every failure past the third finds a full window');
  const window = await readWindow(redis, keys, 'sshd', addr);
  assert.deepEqual(window.map((e) => e.time), [T0 + 1497, T0 + 1498, T0 + 1499]);
  // A second host still completes the ban from the bounded window.
  const second = await scripts.recordFailures(T0 + 2001, [failure('sshd', addr, T0 + 2001, 'h2')]);
  assert.equal(second.bans.length, 1);
});

test('cluster recidive: bans in other jails count as failures of the recidive jail', async () => {
  const recidive = jailPolicy('recidive', { countsBans: true, maxretry: 3, findtimeMs: 86_400_000, durationsMs: [604_800_000] });
  const { keys, scripts } = setup([jailPolicy('sshd', { maxretry: 1, durationsMs: [60_000] }), recidive]);
  const addr = '192.0.2.99';
  const made: string[] = [];
  for (let i = 0; i < 3; i++) {
    const t = T0 + i * 120_000;
    const r = await scripts.recordFailures(t, [failure('sshd', addr, t)]);
    made.push(...r.bans.map((b) => `${b.jail}:${b.until - t}`));
    await scripts.expire(t + 60_000);
  }
  assert.deepEqual(made, ['sshd:60000', 'sshd:60000', 'sshd:60000', 'recidive:604800000']);
  assert.equal(await redis.hexists(keys.bans, `recidive|${addr}`), 1);
  const ds = await decisions(keys);
  assert.equal(ds.filter((d) => d.op === 'ban' && d.jail === 'recidive').length, 1);
});

test('a failure for a jail without a policy is acknowledged and not counted', async () => {
  const { keys, scripts } = setup();
  const stream = keys.host('h1').failures;
  await redis.xgroup('CREATE', stream, COORDINATOR_GROUP, '$', 'MKSTREAM');
  const id = await redis.xadd(stream, '*', ...encodeReport('h1', T0, [{ jail: 'nosuchjail', addr: '192.0.2.3', eid: 'u-1', time: T0, line: 'x' }]));
  await redis.xreadgroup('GROUP', COORDINATOR_GROUP, 'c1', 'COUNT', 10, 'STREAMS', stream, '>');
  assert.equal(((await redis.xpending(stream, COORDINATOR_GROUP)) as [number])[0], 1, 'read and pending before counting');
  const r = await scripts.recordFailures(T0, [failure('nosuchjail', '192.0.2.3', T0)], [[stream, [id!]]]);
  assert.deepEqual(r.results, [COUNT_RESULT.unknownJail]);
  assert.equal(((await redis.xpending(stream, COORDINATOR_GROUP)) as [number])[0], 0, 'its stream entry is acknowledged');
  assert.equal(await redis.exists(keys.failureWindows('nosuchjail')), 0);
  assert.equal(await redis.zcard(keys.failing('nosuchjail')), 0);
  assert.equal(await redis.hlen(keys.bans), 0);
});
