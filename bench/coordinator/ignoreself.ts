/**
 * What checking ignoreself inside the counting script costs: calls of recordFailures in which
 * every failure bans (maxretry 1, so each call reads the fleet's heartbeats), with ignoreself on
 * and off, alternating, against HOSTS registered hosts with live heartbeats. Prints Redis' time
 * per call and per ban for both (INFO commandstats), so the difference is the check.
 *
 *   node dist/bench/coordinator/ignoreself.js          HOSTS=50 CALLS=200 PER_CALL=20
 */
import type { Redis } from 'ioredis';
import { startRedis, randomCluster } from '../../test/helpers/redis-server.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { PROTOCOL_VERSION } from '../../common/protocol/version.js';
import { ClusterScripts, type CountedFailure, type ScriptPolicy } from '../../common/scripts/index.js';

const HOSTS = Number(process.env.HOSTS ?? 50);
const CALLS = Number(process.env.CALLS ?? 200);
const PER_CALL = Number(process.env.PER_CALL ?? 20);
const ROUNDS = 3;

async function evalUsec(c: Redis): Promise<number> {
  const m = /cmdstat_evalsha:calls=\d+,usec=(\d+)/.exec(await c.info('commandstats'));
  return Number(m?.[1] ?? 0);
}

const redis = await startRedis();
try {
  const client = redis.client();
  const [sec] = await client.time();
  const now = Number(sec) * 1000;
  const results = new Map<boolean, number[]>([[true, []], [false, []]]);
  let seq = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const ignoreself of [false, true]) {
      const keys = clusterKeys(randomCluster());
      const hosts = Array.from({ length: HOSTS }, (_, i) => `h${i}`);
      await client.sadd(keys.registry, ...hosts);
      const p = client.pipeline();
      for (const [i, h] of hosts.entries()) {
        p.set(keys.host(h).heartbeat, JSON.stringify({ v: PROTOCOL_VERSION, host: h, addrs: [`192.0.2.${i % 250}`, `2001:db8::${i.toString(16)}`, `fd00::${i.toString(16)}`],
          version: '0.1.0', backend: 'nftables', jails: ['sshd'], pid: 1, startedAt: now, seenAt: now, bansApplied: 0, lastDecision: '0-0' }));
      }
      await p.exec();
      const scripts = new ClusterScripts(client, keys);
      const policy: ScriptPolicy = { jail: 'sshd', findtimeMs: 600_000, maxretry: 1, minhosts: 1, overalljails: false, rndtimeMs: 0, countsBans: false, durationsMs: [600_000], ignoreself };
      await scripts.recordFailures(now, [policy], []);
      await client.config('RESETSTAT');
      for (let c = 0; c < CALLS; c++) {
        const batch: CountedFailure[] = [];
        for (let k = 0; k < PER_CALL; k++, seq++) batch.push({ eid: `e-${seq}`, jail: 'sshd', addr: `2001:db8:a:${(seq >>> 16).toString(16)}:${(seq & 0xffff).toString(16)}::1`, time: now, host: 'h0' });
        await scripts.recordFailures(now, [policy], batch);
      }
      results.get(ignoreself)!.push((await evalUsec(client)) / CALLS);
      await client.flushall();
    }
  }
  const best = (xs: number[]) => Math.min(...xs);
  const off = best(results.get(false)!);
  const on = best(results.get(true)!);
  console.log(`${HOSTS} hosts with live heartbeats, calls of ${PER_CALL} failures that each ban, best of ${ROUNDS}:`);
  console.log(`  ignoreself off: ${off.toFixed(0)} µs of Redis per call (${(off / PER_CALL).toFixed(1)} µs per ban)`);
  console.log(`  ignoreself on:  ${on.toFixed(0)} µs of Redis per call (${(on / PER_CALL).toFixed(1)} µs per ban); the check: ${(on - off).toFixed(0)} µs per call that bans, ${((on - off) / HOSTS).toFixed(2)} µs per host`);
} finally {
  await redis.stop();
}
