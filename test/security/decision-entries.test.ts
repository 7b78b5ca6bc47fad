import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { startDaemon, type Daemon } from '../helpers/spawn.js';
import { hostConfig, testProcesses, isBan } from '../helpers/cluster-procs.js';
import { testKeys } from '../helpers/keys.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { signDecision } from '../../common/protocol/signing.js';
import { loadSigningKey } from '../../common/config/keys.js';
import { ClusterScripts } from '../../common/scripts/index.js';

/**
 * Big decision entries, written by anyone with write access to the stream, leave agents' memory
 * bounded: the shipped Redis settings (deploy/redis: proto-max-bulk-len 1mb,
 * client-query-buffer-limit 8mb) refuse the 50 MB entries that took every agent from 67 to 311
 * MB, and the agent reads the stream four entries at a time, so the biggest entries Redis does
 * accept cost a bounded amount while they are read; the agent keeps applying signed bans.
 */
const t = testProcesses('security-entries');
const cluster = randomCluster();
const keys = clusterKeys(cluster);
let redis: TestRedis;
let agent: Daemon;
let signed: ClusterScripts;

/** Resident set size and its high-water mark, MB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

before(async () => {
  redis = await startRedis(['--proto-max-bulk-len', '1mb', '--client-query-buffer-limit', '8mb']);
  t.servers.push(redis);
  const key = loadSigningKey(testKeys().keyFile);
  signed = new ClusterScripts(redis.client(), keys, 100_000, undefined, (d) => signDecision(key, cluster, d));
  agent = startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: 'm1', work: t.work }), 'agent']);
  t.daemons.push(agent);
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
});

async function signedBanApplied(addr: string): Promise<void> {
  await signed.ban({ jail: 'sshd', addr, now: Date.now(), until: Date.now() + 600_000, reason: 'marker', origin: 'cli:test' });
  await agent.waitFor(isBan(addr), 15_000, `the agent applies ${addr}`);
}

test('three 50 MB decision entries are refused by Redis; entries of the largest size it accepts leave the agent bounded and working', async () => {
  await signedBanApplied('198.51.100.1');
  // Let start-up allocations settle before the baseline.
  await new Promise((r) => setTimeout(r, 1000));
  const base = memory(agent.proc.pid!);
  const attacker = new Redis(redis.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
  const big = 'x'.repeat(50 * 1024 * 1024);
  for (let i = 0; i < 3; i++) {
    await assert.rejects(attacker.xadd(keys.decisions, '*', 'v', '2', 'op', 'ban', 'reason', big), 'Redis refuses a 50 MB entry');
  }
  attacker.disconnect();
  // The largest entries Redis takes: seven fields just under 1 MB each (under 8 MB per command).
  const writer = redis.client();
  const field = 'y'.repeat(1024 * 1024 - 64);
  for (let i = 0; i < 24; i++) {
    await writer.xadd(keys.decisions, '*', 'v', '2', 'op', 'ban', 'jail', 'sshd', 'a', field, 'b', field, 'c', field, 'd', field, 'e', field, 'f', field, 'g', field);
  }
  await signedBanApplied('198.51.100.2');
  const after = memory(agent.proc.pid!);
  assert.ok(agent.count((l) => l.msg === 'malformed decision skipped') >= 1, 'the big entries were read and skipped');
  // 24 entries of ~7 MB (168 MB) were in the stream; read all at once they cost the agent more
  // than twice that (the reply's buffer, then a string per field). Read 4 at a time, the peak
  // stays near 4 entries' worth.
  const growth = after.hwm - base.hwm;
  console.log(`agent memory: peak ${base.hwm.toFixed(0)} -> ${after.hwm.toFixed(0)} MB, resident ${base.rss.toFixed(0)} -> ${after.rss.toFixed(0)} MB`);
  assert.ok(growth < 120, `the agent's peak grew by ${growth.toFixed(0)} MB (from ${base.hwm.toFixed(0)} MB)`);
});
