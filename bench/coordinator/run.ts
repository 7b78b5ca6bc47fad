/**
 * Sustained failure events per second through the whole counting path: pipelined XADD batches
 * (encoded exactly as agent/reporter.ts does, by this process standing in for the agents) ->
 * failures stream -> coordinator processes (consumer group) -> recordFailures Lua -> stats
 * counter. The clock runs from the first XADD until the jail's `failed` counter reaches N.
 * Compared with redis-benchmark running EVALSHA of a minimal sliding-window script, the ceiling
 * of this Redis on this machine, and followed by Redis' own per-command cost (INFO commandstats).
 *
 *   node dist/bench/coordinator/run.js                 N=200000, 1 and 2 coordinators, 3 runs each
 *   N=500000 ADDRS=100000 REPEAT=5 node dist/bench/coordinator/run.js 1 2 3
 * Each run also prints the CPU time per failure of Redis, the coordinators and the generator
 * (from /proc): on a 2-core machine their sum, not one process, is what bounds the rate.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Redis } from 'ioredis';
import { startRedis, randomCluster, type TestRedis } from '../../test/helpers/redis-server.js';
import { startDaemon, type Daemon } from '../../test/helpers/spawn.js';
import { hostConfig } from '../../test/helpers/cluster-procs.js';
import { clusterKeys, type ClusterKeys } from '../../common/protocol/keys.js';
import { encodeReport, LIMITS, type ReportedFailure } from '../../common/protocol/messages.js';

const N = Number(process.env.N ?? 200_000);
/** Runs of each configuration; the best and the median are printed (this VM's timings vary by up to 50 %). */
const REPEAT = Number(process.env.REPEAT ?? 3);
const ADDRS = Number(process.env.ADDRS ?? 50_000);
/** NOTIFY=1: the jail mails its bans, so the coordinators also keep the matched-line record (no ban happens at maxretry 1000). */
const NOTIFY = process.env.NOTIFY ? { jail: 'action = sendmail-whois-lines[dest=root]' } : {};
const BATCH = 500;
/** Pipelines in flight at once: several agents reporting at the same time. */
const WRITERS = 4;
const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);

function addr(i: number): string {
  return `2001:db8:${(1 + (i >>> 16)).toString(16)}:${(i & 0xffff).toString(16)}:1::1`;
}

/**
 * One agent's batch: failures `from`..`to` of host `h<batch number % 50>` in reports of up to
 * 100, encoded exactly as agent/reporter.ts encodes them.
 */
function reports(from: number, to: number, eidPrefix: string, now: number, mode: Mode): { host: string; reports: string[][] } {
  const host = `h${Math.floor(from / BATCH) % mode.hosts}`;
  const out: string[][] = [];
  for (let start = from; start < to; start += LIMITS.reportFailures) {
    const failures: ReportedFailure[] = [];
    for (let i = start; i < Math.min(to, start + LIMITS.reportFailures); i++) {
      failures.push({ jail: 'sshd', addr: addr(i % ADDRS), eid: `${eidPrefix}-${i}`, time: now, line: 'Failed password for root from x port 22 ssh2' });
    }
    out.push(encodeReport(host, now, failures));
  }
  return { host, reports: out };
}

/**
 * How the agents reach the coordinators. `secured`: 50 hosts, each reporting into its own stream,
 * coordinators logged in as their ACL user (what fleetban does). `baseline`: all reports in one
 * stream (one host's), coordinators logged in as Redis' default user: the single shared stream
 * and shared login fleetban had before, measured in the same run for the comparison.
 */
interface Mode {
  readonly name: string;
  readonly hosts: number;
  readonly acl: boolean;
  readonly signed: boolean;
}
// Secured also means signed: coordinators sign every ban (parked by the script, signed, published).
const ALL_MODES: Mode[] = [
  { name: 'baseline (1 stream, default user, unsigned)', hosts: 1, acl: false, signed: false },
  { name: 'per-host (50 streams, ACL users, unsigned)', hosts: 50, acl: true, signed: false },
  { name: 'secured (50 streams, ACL users, signed bans)', hosts: 50, acl: true, signed: true },
];
/** MODES=baseline,secured picks configurations by the first word of their name (default: all three). */
const MODES = process.env.MODES ? ALL_MODES.filter((m) => process.env.MODES!.split(',').includes(m.name.split(' ')[0]!)) : ALL_MODES;
/** 1000 (default): nothing bans. MAXRETRY = N / ADDRS bans every address once: the most signing work a run can have. */
const MAXRETRY = Number(process.env.MAXRETRY ?? 1000);

/** The agents' hosts, registered as `fleetban acl --apply` does. */
async function registerHosts(client: Redis, keys: ClusterKeys, mode: Mode): Promise<void> {
  await client.sadd(keys.registry, ...Array.from({ length: mode.hosts }, (_, i) => `h${i}`));
}

function coordinatorConfig(redis: TestRedis, cluster: string, host: string, work: string, mode: Mode): string {
  // With the default user's credentials in the URL, the harness adds no per-role identities.
  return hostConfig({ cluster, url: mode.acl ? redis.url : redis.adminUrl, host, work, maxretry: MAXRETRY, findtime: '10m', signing: mode.signed, ...NOTIFY });
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU time per failure of each process of a run, in µs: where the two cores went. */
interface CpuShare {
  redis: number;
  coordinators: number;
  generator: number;
}

function cpuMeter(redisPid: number, daemons: Daemon[]): () => CpuShare {
  const pids = daemons.map((d) => d.proc.pid!);
  const before = { redis: cpuSeconds(redisPid), coordinators: pids.reduce((a, p) => a + cpuSeconds(p), 0), self: process.cpuUsage() };
  return () => {
    const self = process.cpuUsage(before.self);
    return {
      redis: ((cpuSeconds(redisPid) - before.redis) * 1e6) / N,
      coordinators: ((pids.reduce((a, p) => a + cpuSeconds(p), 0) - before.coordinators) * 1e6) / N,
      generator: (self.user + self.system) / N,
    };
  };
}

/** Coordinators that have joined the failures stream's consumer group (0 before it exists). */
async function consumersInGroup(client: Redis, keys: ClusterKeys): Promise<number> {
  const groups = (await client.xinfo('GROUPS', keys.host('h0').failures).catch(() => [])) as unknown[][];
  const g = groups[0];
  return g ? Number(g[g.indexOf('consumers') + 1]) : 0;
}

async function commandStats(c: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of (await c.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/g)) {
    out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/**
 * The coordinators' own rate, without the load generator competing for the same two cores: the
 * stream is filled first (as if agents had reported while no coordinator ran), then the clock runs
 * from the moment the coordinators have joined the group until every failure is counted.
 */
async function drainRun(redis: TestRedis, redisPid: number, coordinators: number, mode: Mode): Promise<{ rate: number; cpu: CpuShare }> {
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const work = mkdtempSync(join(tmpdir(), 'fleetban-bench-drain-'));
  const daemons: Daemon[] = [];
  const client = redis.client();
  try {
    const now = Date.now();
    await registerHosts(client, keys, mode);
    for (let from = 0; from < N; from += BATCH) {
      const p = client.pipeline();
      const r = reports(from, Math.min(N, from + BATCH), 'd', now, mode);
      for (const fields of r.reports) p.xadd(keys.host(r.host).failures, '*', ...fields);
      await p.exec();
    }
    for (let i = 0; i < coordinators; i++) {
      const dir = coordinatorConfig(redis, cluster, `c${i}`, work, mode);
      daemons.push(startDaemon(['--config', dir, 'coordinator'], { FLEETBAN_LOG_LEVEL: 'warn' }));
    }
    let started = 0n;
    let meter: (() => CpuShare) | undefined;
    for (;;) {
      if (!started) {
        if ((await consumersInGroup(client, keys)) >= coordinators) {
          started = process.hrtime.bigint();
          meter = cpuMeter(redisPid, daemons);
        }
      }
      const failed = Number(await client.hget(keys.stats, 'sshd:failed') ?? 0);
      if (started && failed >= N) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    return { rate: N / (Number(process.hrtime.bigint() - started) / 1e9), cpu: meter!() };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    rmSync(work, { recursive: true, force: true });
  }
}

async function pipelineRun(redis: TestRedis, redisPid: number, coordinators: number, mode: Mode): Promise<{ rate: number; writeRate: number; cpu: CpuShare; stats: Map<string, { calls: number; usec: number }> }> {
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const work = mkdtempSync(join(tmpdir(), 'fleetban-bench-coord-'));
  const daemons: Daemon[] = [];
  const client = redis.client();
  try {
    await registerHosts(client, keys, mode);
    for (let i = 0; i < coordinators; i++) {
      // maxretry above what any address reaches: every event takes the full counting path.
      const dir = coordinatorConfig(redis, cluster, `c${i}`, work, mode);
      daemons.push(startDaemon(['--config', dir, 'coordinator'], { FLEETBAN_LOG_LEVEL: 'warn' }));
    }
    // Wait for the consumer group instead of a log line (warn level hides 'coordinator started').
    for (let i = 0; i < 300; i++) {
      if ((await consumersInGroup(client, keys)) >= coordinators) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await client.config('RESETSTAT');
    const meter = cpuMeter(redisPid, daemons);
    const started = process.hrtime.bigint();
    let next = 0;
    const writer = async () => {
      for (;;) {
        const from = next;
        if (from >= N) return;
        next = Math.min(N, from + BATCH);
        const p = client.pipeline();
        const now = Date.now();
        const r = reports(from, next, 'b', now, mode);
        for (const fields of r.reports) p.xadd(keys.host(r.host).failures, 'MAXLEN', '~', 100_000, '*', ...fields);
        await p.exec();
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    const written = Number(process.hrtime.bigint() - started) / 1e9;
    for (;;) {
      const failed = Number(await client.hget(keys.stats, 'sshd:failed') ?? 0);
      if (failed >= N) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = meter();
    const stats = await commandStats(client);
    return { rate: N / seconds, writeRate: N / written, cpu, stats };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    rmSync(work, { recursive: true, force: true });
  }
}

/** A minimal sliding window per key, the work one failure needs at least. */
const WINDOW_LUA = `
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 600000)
local n = redis.call('ZCARD', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 600000)
return n`;

function redisBenchmark(port: number, sha: string, pipeline: number): number {
  const password = decodeURIComponent(new URL(redis.adminUrl).password);
  const r = spawnSync('redis-benchmark', ['-p', String(port), ...(password ? ['--user', 'default', '-a', password] : []), '-n', String(200_000), '-r', String(ADDRS), '-P', String(pipeline), '-q',
    'EVALSHA', sha, '1', 'fb:bench:win:__rand_int__', String(Date.now()), 'm__rand_int__'], { encoding: 'utf8' });
  const m = /([\d.]+) requests per second/.exec(r.stdout);
  if (!m) throw new Error(`redis-benchmark: ${r.stderr || r.stdout}`);
  return Number(m[1]);
}

const redis = await startRedis();
try {
  const c = redis.client();
  const sha = (await c.script('LOAD', WINDOW_LUA)) as string;
  const ceiling1 = redisBenchmark(redis.port, sha, 1);
  const ceiling16 = redisBenchmark(redis.port, sha, 16);
  await c.flushall();
  const redisPid = Number(/process_id:(\d+)/.exec(await c.info('server'))![1]);
  console.log(`N=${N} events over ${ADDRS} addresses, reports of ${LIMITS.reportFailures} in pipelines of ${BATCH}, ${WRITERS} writers in flight; best and median of ${REPEAT} runs`);
  console.log(`redis-benchmark EVALSHA sliding window: ${Math.round(ceiling1)}/s unpipelined, ${Math.round(ceiling16)}/s with -P 16`);
  const cpuText = (x: CpuShare) => `CPU per failure: Redis ${x.redis.toFixed(1)} µs, coordinators ${x.coordinators.toFixed(1)} µs, generator ${x.generator.toFixed(1)} µs`;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const n of counts.length ? counts : [1, 2]) {
    const ends = new Map<Mode, Array<Awaited<ReturnType<typeof pipelineRun>>>>(MODES.map((m) => [m, []]));
    const drains = new Map<Mode, Array<Awaited<ReturnType<typeof drainRun>>>>(MODES.map((m) => [m, []]));
    // The modes alternate run by run, so that both see the same moments of this VM's speed.
    for (let run = 0; run < REPEAT; run++) {
      for (const mode of MODES) {
        ends.get(mode)!.push(await pipelineRun(redis, redisPid, n, mode));
        await c.flushall();
        drains.get(mode)!.push(await drainRun(redis, redisPid, n, mode));
        await c.flushall();
      }
    }
    for (const mode of MODES) {
      const e = ends.get(mode)!;
      const d = drains.get(mode)!;
      const best = e.reduce((a, b) => (b.rate > a.rate ? b : a));
      const bestDrain = d.reduce((a, b) => (b.rate > a.rate ? b : a));
      console.log(`-- ${mode.name}`);
      console.log(`${n} coordinator(s): ${Math.round(best.rate)} failures/s end to end, best (median ${Math.round(median(e.map((r) => r.rate)))}); `
        + `${(best.rate / ceiling1).toFixed(2)}x the unpipelined EVALSHA ceiling, ${(best.rate / ceiling16).toFixed(2)}x the -P 16 one; XADD side alone ${Math.round(best.writeRate)}/s`);
      console.log(`  ${cpuText(best.cpu)}`);
      const rows = [...best.stats.entries()].sort((a, b) => b[1].usec - a[1].usec).slice(0, 6);
      for (const [name, st] of rows) {
        console.log(`  ${name.padEnd(18)} calls ${String(st.calls).padStart(9)}  ${(st.usec / N).toFixed(2).padStart(7)} µs per failure  ${(st.usec / st.calls).toFixed(2)} µs per call`);
      }
      console.log(`${n} coordinator(s), stream pre-filled: ${Math.round(bestDrain.rate)} failures/s counted, best (median ${Math.round(median(d.map((r) => r.rate)))}); `
        + `${(bestDrain.rate / ceiling1).toFixed(2)}x the unpipelined EVALSHA ceiling`);
      console.log(`  ${cpuText(bestDrain.cpu)}`);
    }
  }
} finally {
  await redis.stop();
}
