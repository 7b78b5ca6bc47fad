/**
 * The counting script alone: recordFailures called directly (no stream, no coordinator process)
 * with batches of 2,000 failures, N failures over ADDRS addresses, maxretry 1000 so no ban
 * short-cuts the path. Prints Redis' own time per failure (INFO commandstats), which is what
 * bounds a coordinator, and the wall rate of this single caller.
 *
 *   node dist/bench/coordinator/script.js            N=200000 ADDRS=50000
 */
import type { Redis } from 'ioredis';
import { startRedis, randomCluster } from '../../test/helpers/redis-server.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { ClusterScripts, type CountedFailure, type ScriptPolicy } from '../../common/scripts/index.js';

const N = Number(process.env.N ?? 200_000);
const ADDRS = Number(process.env.ADDRS ?? 50_000);
const BATCH = 2000;

function addr(i: number): string {
  return `2001:db8:${(1 + (i >>> 16)).toString(16)}:${(i & 0xffff).toString(16)}:1::1`;
}

async function redisUsec(c: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await c.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/g)) out.set(m[1]!, Number(m[3]));
  return out;
}

const redis = await startRedis();
try {
  const client = redis.client();
  const keys = clusterKeys(randomCluster());
  const scripts = new ClusterScripts(client, keys);
  const policy: ScriptPolicy = { jail: 'sshd', findtimeMs: 600_000, maxretry: 1000, minhosts: 1, overalljails: false, rndtimeMs: 0, countsBans: false, durationsMs: [600_000] };
  const now = Date.now();
  const batches: CountedFailure[][] = [];
  for (let from = 0; from < N; from += BATCH) {
    const b: CountedFailure[] = [];
    for (let i = from; i < Math.min(N, from + BATCH); i++) b.push({ eid: `e-${i}`, jail: 'sshd', addr: addr(i % ADDRS), time: now, host: `h${i % 50}` });
    batches.push(b);
  }
  await scripts.recordFailures(now, [policy], []);
  await client.config('RESETSTAT');
  const started = process.hrtime.bigint();
  for (const b of batches) await scripts.recordFailures(now, [policy], b);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const usec = await redisUsec(client);
  // EVALSHA's time includes the commands the script calls (they are also listed on their own).
  const script = usec.get('evalsha') ?? 0;
  const inner = [...usec].filter(([name]) => name !== 'evalsha' && name !== 'config|resetstat').reduce((a, [, us]) => a + us, 0);
  console.log(`recordFailures alone: ${Math.round(N / seconds)} failures/s from one caller; Redis ${(script / N).toFixed(2)} µs per failure` +
    ` (Lua ${((script - inner) / N).toFixed(2)} µs, commands it calls ${(inner / N).toFixed(2)} µs)`);
  for (const [name, us] of [...usec].filter(([name]) => name !== 'evalsha').sort((a, b) => b[1] - a[1]).slice(0, 6)) {
    console.log(`  ${name.padEnd(18)} ${(us / N).toFixed(2)} µs per failure`);
  }
} finally {
  await redis.stop();
}
