import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { startRedis, randomCluster, provisionIdentities, type TestRedis } from '../helpers/redis-server.js';
import { startReplica, type TestReplica } from '../helpers/redis-replica.js';
import { startDaemon, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { testProcesses, hostConfig, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys, type ClusterKeys } from '../../common/protocol/keys.js';

/**
 * `[agent] decisions_from`: an agent reads decisions and snapshots from Redis replicas while its
 * reports and heartbeats go to the primary. A replica that dies, or stops following the primary,
 * during a stream of bans is left for the next one, and the agent ends up holding exactly the
 * primary's bans, having lifted none on the way (a resync from an older replica would have).
 */
const { work, daemons, servers } = testProcesses('replica');
const BANS = 30;

interface Fleet { redis: TestRedis; replicas: TestReplica[]; keys: ClusterKeys; admin: Redis; agent: Daemon; log: string }

async function fleet(name: string, maxLag = '2s'): Promise<Fleet> {
  const redis = await startRedis();
  servers.push(redis);
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  // The users first: ACLs are not replicated, the replicas load a copy of the primary's ACL file.
  provisionIdentities(redis.port, cluster, ['coord', 'h1']);
  const replicas = [await startReplica(redis), await startReplica(redis)];
  for (const r of replicas) servers.push(r as unknown as TestRedis);
  const log = join(work, `${name}.log`);
  writeFileSync(log, '');
  const coordinator = startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: 'coord', work, maxretry: 1 }), 'coordinator']);
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  const agent = startDaemon(['--config', hostConfig({
    cluster, url: redis.url, host: 'h1', work, logpath: log, maxretry: 1,
    agent: `decisions_from = ${replicas.map((r) => r.url).join(', ')}\ndecisions_max_lag = ${maxLag}`,
  }), 'agent']);
  daemons.push(agent);
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
  const admin = redis.client();
  admin.on('error', () => undefined);
  return { redis, replicas, keys, admin, agent, log };
}

/** Names of the connections a server holds (CLIENT LIST), to see where the agent reads. */
async function clientNames(r: TestReplica): Promise<string[]> {
  const { Redis } = await import('ioredis');
  const c = new Redis(r.adminUrl, { maxRetriesPerRequest: 1 });
  try {
    return ((await c.client('LIST')) as string).split('\n').map((l) => /name=(\S*)/.exec(l)?.[1] ?? '').filter(Boolean);
  } finally {
    c.disconnect();
  }
}

const addr = (run: number, i: number) => `203.0.113.${run * 40 + i + 1}`;

/** Append one failure per ban, `gapMs` apart, calling `midway` before the ban at index BANS/2. */
async function banStream(f: Fleet, run: number, gapMs: number, midway: () => Promise<void>): Promise<void> {
  for (let i = 0; i < BANS; i++) {
    if (i === BANS / 2) await midway();
    appendFileSync(f.log, sshdFailure(addr(run, i), 'h1'));
    await new Promise((r) => setTimeout(r, gapMs));
  }
}

/** The agent holds every ban of the primary, has applied up to its newest decision, and lifted nothing. */
async function assertSameAsPrimary(f: Fleet, run: number): Promise<void> {
  await waitUntil(async () => (await f.admin.hlen(f.keys.bans)) === BANS, 15_000, `${BANS} bans on the primary`);
  const newest = ((await f.admin.xrevrange(f.keys.decisions, '+', '-', 'COUNT', 1))[0] ?? ['none'])[0];
  await waitUntil(async () => (await f.admin.get(f.keys.host('h1').ack)) === newest, 15_000, 'the agent to acknowledge the primary\'s newest decision');
  await waitUntil(async () => {
    const hb = JSON.parse((await f.admin.get(f.keys.host('h1').heartbeat)) ?? '{}') as { bansHeld?: number; lastDecision?: string };
    return hb.bansHeld === BANS && hb.lastDecision === newest;
  }, 15_000, `the agent's heartbeat to report the ${BANS} bans held`);
  const held = new Set((await f.admin.hkeys(f.keys.bans)).map((k) => k.split('|')[1]));
  for (let i = 0; i < BANS; i++) assert.ok(held.has(addr(run, i)), `ban of ${addr(run, i)} on the primary`);
  for (let i = 0; i < BANS; i++) {
    const applied = f.agent.count((l) => l.event === 'ban applied' && l.addr === addr(run, i));
    assert.ok(applied <= 1, `${addr(run, i)} applied ${applied} times`);
  }
  assert.equal(f.agent.count((l) => l.msg === 'dry-run unban'), 0, 'no ban was lifted while the agent changed source');
  // Each resync kept (or grew) what the firewall held: none went back to an older snapshot.
  const syncs = f.agent.lines.filter((l) => l.msg === 'dry-run sync').map((l) => Number(l.count));
  for (let i = 1; i < syncs.length; i++) assert.ok(syncs[i]! >= syncs[i - 1]!, `resync ${i} held ${syncs[i]} bans after ${syncs[i - 1]}`);
}

test('the replica the agent reads decisions from is killed during a stream of bans: it moves on and misses none', { timeout: 120_000 }, async () => {
  const f = await fleet('killed');
  const [r1, r2] = f.replicas as [TestReplica, TestReplica];
  await waitUntil(async () => (await clientNames(r1)).includes('fleetban-agent-decisions'), 10_000, 'the agent reading from the first replica');
  assert.ok(!(await clientNames(r2)).includes('fleetban-agent-decisions'), 'the second replica is not read yet');
  await banStream(f, 0, 60, async () => {
    await r1.kill('SIGKILL');
  });
  await assertSameAsPrimary(f, 0);
  const moved = f.agent.lines.find((l) => l.msg === 'decision source changed; resuming after the last decision applied');
  assert.ok(moved, 'the agent logged the move');
  assert.equal(moved!.to, r2.url);
  assert.ok((await clientNames(r2)).includes('fleetban-agent-decisions'), 'the agent now reads from the second replica');
  // Reports never went to a replica: every ban came from failures counted on the primary.
  assert.equal(Number(await f.admin.hget(f.keys.stats, 'sshd:failed')), BANS);
});

test('the replica hangs (SIGSTOP: its connections stay open): the agent sees it lag behind the primary and moves to the next one', { timeout: 120_000 }, async () => {
  const f = await fleet('lagging', '1s');
  const [r1, r2] = f.replicas as [TestReplica, TestReplica];
  await waitUntil(async () => (await clientNames(r1)).includes('fleetban-agent-decisions'), 10_000, 'the agent reading from the first replica');
  await banStream(f, 1, 100, async () => {
    // Frozen with every socket open: nothing closes, only the stream stops moving (REPLICAOF to
    // another primary would not do: Redis drops blocked readers when a replica changes primary).
    process.kill(r1.pid, 'SIGSTOP');
  });
  try {
    await assertSameAsPrimary(f, 1);
  } finally {
    process.kill(r1.pid, 'SIGCONT');
  }
  const moved = f.agent.lines.find((l) => l.msg === 'decision source changed; resuming after the last decision applied');
  assert.ok(moved, 'the agent logged the move');
  assert.match(String(moved!.reason), /behind the primary/);
  assert.equal(moved!.to, r2.url);
});
