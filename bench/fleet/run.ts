/**
 * Fleet simulator: N agents in this one process, each with its own decision connection, running
 * the agent's own classes (DecisionFollower, DecisionGate, Enforcer over the dry-run backend,
 * HeartbeatSender, Reporter) against a real redis-server and real `fleetban coordinator` processes.
 * See bench/fleet/README.md for what it measures and what it leaves out.
 *
 *   bash -c 'ulimit -n 20000; node dist/bench/fleet/run.js 50 1000 10000'
 *   env: TRIALS (bans per size, default 30), GAP_MS (between bans, 300), SIGNED (1: coordinators
 *   sign, agents verify; 0: allow_unsigned), SHARE (agents per command connection; default 1 up to
 *   5,000 agents, 10 above: see README), FLOOD (failures reported in the throughput phase, 200000),
 *   REPLICAS (e.g. 0,1,2: one run per count, agents reading decisions from that many replicas,
 *   spread round robin, the primary last), COORDS (1).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { clusterKeys, type ClusterKeys } from '../../common/protocol/keys.js';
import { connectRedis } from '../../common/redis.js';
import { loadTrustedKeys } from '../../common/config/keys.js';
import { DecisionFollower } from '../../agent/decisions.js';
import { DecisionGate } from '../../agent/decision-gate.js';
import { Enforcer } from '../../agent/enforcer.js';
import { DryRunBackend } from '../../agent/firewall/dry-run.js';
import { HeartbeatSender } from '../../agent/heartbeat.js';
import { Reporter } from '../../agent/reporter.js';
import { jailRules } from '../../agent/main.js';
import type { JailConfig } from '../../common/config/jails.js';
import { tryParseAddress } from '../../common/address.js';
import { parsePorts, parseProtocols } from '../../common/config/ports.js';
import type { Decision } from '../../common/protocol/messages.js';
import { startRedis, randomCluster } from '../../test/helpers/redis-server.js';
import { startReplica, type TestReplica } from '../../test/helpers/redis-replica.js';
import { startDaemon, writeConfig, type Daemon } from '../../test/helpers/spawn.js';
import { signingConfig, unsignedConfig, testKeys } from '../../test/helpers/keys.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const TRIALS = Number(process.env.TRIALS ?? 30);
const GAP_MS = Number(process.env.GAP_MS ?? 300);
const SIGNED = process.env.SIGNED !== '0';
const FLOOD = Number(process.env.FLOOD ?? 200_000);
const REPLICA_SETS = (process.env.REPLICAS ?? '0').split(',').map(Number);
/** Replicas of the run in progress. */
let REPLICAS = 0;
const COORDS = Number(process.env.COORDS ?? 1);
const silent = pino({ level: 'silent' });

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function info(client: Redis, section: string): Promise<Record<string, string>> {
  return client.info(section).then((text) => Object.fromEntries(text.split('\r\n').filter((l) => l.includes(':')).map((l) => l.split(':', 2) as [string, string])));
}
async function redisCpu(client: Redis): Promise<number> {
  const i = await info(client, 'cpu');
  return Number(i.used_cpu_sys) + Number(i.used_cpu_user);
}
/** CPU seconds (user + sys) of a process, from /proc. */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** One simulated agent: the agent's own decision, heartbeat and report classes on its own connections. */
interface SimAgent {
  host: string;
  follower: DecisionFollower;
  reporter: Reporter;
  heartbeat: HeartbeatSender;
  blocking: Redis;
  commands: Redis;
}

const SIM_JAILS = ['sshd', 'flood'].map((name) => ({ name, enforce: true, ports: parsePorts('ssh'), protocols: parseProtocols('tcp') })) as unknown as JailConfig[];

async function run(n: number): Promise<Record<string, string | number>> {
  const share = Number(process.env.SHARE ?? (n > 5000 ? 10 : 1));
  // Every blocking reader, every shared command connection, the coordinators and the harness; the
  // process' own descriptor limit (20,000 here, not raisable in this container) caps it.
  const redis = await startRedis(['--maxclients', String(Math.min(19_500, n + Math.ceil(n / share) + 200)), '--appendonly', 'yes', '--appendfsync', 'everysec',
    // 10,000 clients reconnecting at once overflow the default backlog of 511: the dropped SYNs
    // come back after 1, 3, 7, 15, 31, 63 s of kernel retransmit backoff (68 s to resync, measured).
    '--tcp-backlog', '4096']);
  const replicas: TestReplica[] = [];
  for (let r = 0; r < REPLICAS; r++) replicas.push(await startReplica(redis, ['--maxclients', String(Math.min(19_500, n + 200))]));
  const admin = new Redis(redis.adminUrl);
  const cluster = randomCluster();
  const keys: ClusterKeys = clusterKeys(cluster);
  const conf = (host: string) => writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.adminUrl}\n[coordinator]\nconsumer = ${host}\n`,
    'jail.conf': '[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = /dev/null\nmaxretry = 1\nbantime = 1h\n'
      + '[flood]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = /dev/null\nmaxretry = 1000000000\nfindtime = 1h\nbantime = 1h\n',
    'fleetban.local': SIGNED ? signingConfig() : unsignedConfig(),
  });
  const coords: Daemon[] = [];
  for (let c = 0; c < COORDS; c++) coords.push(startDaemon(['--config', conf(`coord${c}`), 'coordinator']));
  await Promise.all(coords.map((c) => c.waitFor((l) => l.msg === 'coordinator started', 60_000)));

  const trusted = SIGNED ? loadTrustedKeys([testKeys().pubFile]).keys : new Map();
  const memBefore = Number((await info(admin, 'memory')).used_memory);
  const simRssBefore = process.memoryUsage().rss;
  const applied = new Map<string, { count: number; last: number; first: number }>();
  const onApplied = (ds: readonly Decision[]) => {
    const t = Date.now();
    for (const d of ds) {
      if (d.op !== 'ban') continue;
      const a = applied.get(d.addr) ?? { count: 0, last: 0, first: t };
      a.count++;
      a.last = t;
      applied.set(d.addr, a);
    }
  };
  const agents: SimAgent[] = [];
  const commandConns: Redis[] = [];
  const decisionUrls = [redis.adminUrl, ...replicas.map((r) => r.adminUrl)];
  const tStart = Date.now();
  // In waves: a burst of 10,000 SYNs overflows the listen backlog and costs retransmit seconds.
  const WAVE = 250;
  for (let base = 0; base < n; base += WAVE) {
    const wave: Promise<void>[] = [];
    for (let i = base; i < Math.min(n, base + WAVE); i++) {
      const host = `s${i}`;
      if (i % share === 0) {
        const c = connectRedis({ url: redis.adminUrl, private: false }, 'agent', silent);
        // Each agent sharing it listens for its reconnects (reporter, follower): not a leak.
        c.setMaxListeners(0);
        commandConns.push(c);
      }
      const commands = commandConns[commandConns.length - 1]!;
      // With replicas, the agent's decisions_from list starting at a different replica per agent.
      const urls = REPLICAS > 0 ? [...decisionUrls.slice(1 + (i % REPLICAS)), ...decisionUrls.slice(1, 1 + (i % REPLICAS)), redis.adminUrl] : [redis.adminUrl];
      const blocking = connectRedis({ url: urls[0]!, private: false }, 'agent-decisions', silent);
      const enforcer = new Enforcer(new DryRunBackend({ logger: silent }), jailRules(SIM_JAILS), silent);
      const realApply = enforcer.apply.bind(enforcer);
      enforcer.apply = async (ds) => {
        const r = await realApply(ds);
        onApplied(ds);
        return r;
      };
      const gate = new DecisionGate({ cluster, trusted, allowUnsigned: !SIGNED, ownAddresses: [], neverBan: [], minPrefixV4: 8, minPrefixV6: 32 }, silent);
      const ack = keys.host(host).ack;
      const follower = new DecisionFollower({
        redis: blocking, other: commands, keys, enforcer, log: silent, gate,
        ack: (id) => {
          if (commands.status === 'ready') commands.set(ack, id).catch(() => undefined);
        },
        ...(REPLICAS > 0 ? { sources: { urls: urls.map((url) => ({ url, private: false })), log: silent } } : {}),
      });
      const reporter = new Reporter({ redis: commands, stream: keys.host(host).failures, log: silent, batch: 500, streamMaxlen: 1_000_000 });
      const heartbeat = new HeartbeatSender(commands, keys, 5000, () => ({
        host, addrs: [], version: 'sim', backend: 'dry-run', jails: ['sshd', 'flood'], bansApplied: enforcer.applied, bansRefused: 0,
        bansHeld: enforcer.size, lastDecision: follower.lastId, decisionsRefused: gate.refused, guardRefused: gate.guarded,
      }), silent);
      agents.push({ host, follower, reporter, heartbeat, blocking, commands });
      wave.push((async () => {
        await enforcer.init();
        await follower.start();
        heartbeat.start();
      })());
    }
    await Promise.all(wave);
  }
  const startMs = Date.now() - tStart;
  await sleep(1000);
  const mem = await info(admin, 'memory');
  const clients = Number((await info(admin, 'clients')).connected_clients);
  const memPerAgent = (Number(mem.used_memory) - memBefore) / n;
  const simRssPerAgent = (process.memoryUsage().rss - simRssBefore) / n;
  process.stderr.write(`n=${n}: ${n} agents synced in ${startMs} ms, ${clients} Redis clients, loadavg ${loadavg()}\n`);

  // Idle cost (heartbeats, acks) measured first, so the per-decision figure is what a ban adds.
  const idleCpu0 = await redisCpu(admin);
  const idleCoord0 = coords.reduce((s, c) => s + procCpu(c.proc.pid!), 0);
  const idleT0 = Date.now();
  await sleep(3000);
  const idleSec = (Date.now() - idleT0) / 1000;
  const idleRate = ((await redisCpu(admin)) - idleCpu0) / idleSec;
  const coordIdleRate = (coords.reduce((s, c) => s + procCpu(c.proc.pid!), 0) - idleCoord0) / idleSec;

  const fromReport: number[] = [];
  const fromDecision: number[] = [];
  const cpu0 = await redisCpu(admin);
  const replicaClients = replicas.map((r) => new Redis(r.adminUrl));
  const repCpu0 = await Promise.all(replicaClients.map((c) => redisCpu(c)));
  const coordCpu0 = coords.reduce((s, c) => s + procCpu(c.proc.pid!), 0);
  const t0 = Date.now();
  const load0 = loadavg();
  const sim0 = process.cpuUsage();
  const firsts: number[] = [];
  for (let t = 0; t < TRIALS; t++) {
    const addr = tryParseAddress(`2001:db8:f1ee:${n.toString(16)}::${(t + 1).toString(16)}`)!.text;
    await sleep(GAP_MS);
    const sent = Date.now();
    const reporterAgent = agents[t % n]!;
    reporterAgent.reporter.report({ jail: 'sshd', addr, time: sent, host: reporterAgent.host, line: `Failed password for root from ${addr} port 22 ssh2` });
    const deadline = Date.now() + 60_000;
    while ((applied.get(addr)?.count ?? 0) < n && Date.now() < deadline) await sleep(2);
    const a = applied.get(addr);
    if (!a || a.count < n) throw new Error(`ban ${addr}: applied by ${a?.count ?? 0} of ${n} agents within 60 s`);
    const id = ((await admin.xrevrange(keys.decisions, '+', '-', 'COUNT', 1))[0] ?? ['0-0'])[0];
    fromReport.push(a.last - sent);
    firsts.push(a.first - Number(id.split('-')[0]));
    fromDecision.push(a.last - Number(id.split('-')[0]));
  }
  const elapsed = (Date.now() - t0) / 1000;
  const simCpu = process.cpuUsage(sim0);
  // This process' CPU per agent and decision: what each real agent spends on its own core.
  const simUsPerAgentDecision = (simCpu.user + simCpu.system) / TRIALS / n;
  firsts.sort((x, y) => x - y);
  const cpuPerDecision = ((await redisCpu(admin)) - cpu0 - idleRate * elapsed) / TRIALS;
  // Replicas' CPU per decision, idle included (they do little else: the replication stream).
  const repCpu = (await Promise.all(replicaClients.map((c) => redisCpu(c)))).map((v, i) => +(((v - repCpu0[i]!) / TRIALS) * 1000).toFixed(2));
  for (const c of replicaClients) c.disconnect();
  const coordCpu = (coords.reduce((s, c) => s + procCpu(c.proc.pid!), 0) - coordCpu0 - coordIdleRate * elapsed) / TRIALS;
  fromReport.sort((x, y) => x - y);
  fromDecision.sort((x, y) => x - y);

  // Throughput: every host reports failures of the never-banning jail at once.
  const failedBefore = Number((await admin.hget(keys.stats, 'flood:failed')) ?? 0);
  const per = Math.max(1, Math.floor(FLOOD / n));
  const total = per * n;
  const fl0 = Date.now();
  const floodLoad = loadavg();
  const fcpu0 = await redisCpu(admin);
  for (let i = 0; i < n; i++) {
    const ag = agents[i]!;
    for (let k = 0; k < per; k++) {
      const addr = tryParseAddress(`2001:db8:f100:${(i % 65536).toString(16)}::${(k + 1).toString(16)}`)!.text;
      ag.reporter.report({ jail: 'flood', addr, time: fl0, host: ag.host, line: `Failed password for root from ${addr} port 22 ssh2` });
    }
  }
  let counted = 0;
  const floodDeadline = Date.now() + 120_000;
  while (counted < total && Date.now() < floodDeadline) {
    await sleep(50);
    counted = Number((await admin.hget(keys.stats, 'flood:failed')) ?? 0) - failedBefore;
  }
  const floodSec = (Date.now() - fl0) / 1000;
  const floodRate = Math.round(counted / floodSec);
  const floodRedisUs = (((await redisCpu(admin)) - fcpu0) / Math.max(1, counted)) * 1e6;

  // Resync: Redis stops (its AOF keeps the bans and the stream) and comes back on the same port.
  // With replicas the agents read there and a primary restart does not concern their reads: the
  // replica the first share of them reads is killed instead, and the time is until every agent
  // that read it has moved to its next source and resynced there.
  await sleep(1500);
  const killAt = Date.now();
  let downAt = killAt;
  let readyAt = NaN;
  const movers = REPLICAS > 0 ? agents.filter((_a, i) => i % REPLICAS === 0) : agents;
  if (REPLICAS > 0) {
    await replicas[0]!.kill('SIGKILL');
    downAt = Date.now();
    readyAt = downAt;
  } else {
    await redis.kill();
    downAt = Date.now();
    await redis.restart();
    // When the server itself was ready, from its log (the harness' own PING may wait in the backlog).
    const readyLines = readFileSync(join(redis.dir, 'redis.log'), 'utf8').split('\n').filter((l) => l.includes('Ready to accept connections'));
    readyAt = Date.parse(/\d+ \w+ \d{4} [\d:.]+/.exec(readyLines[readyLines.length - 1] ?? '')?.[0] ?? '');
  }
  const backAt = Date.now();
  let resynced = 0;
  let allAt = 0;
  const resyncDeadline = Date.now() + 120_000;
  while (Date.now() < resyncDeadline) {
    resynced = movers.filter((a) => a.follower.lastAppliedAt > killAt).length;
    if (resynced === movers.length) {
      allAt = Date.now();
      break;
    }
    await sleep(20);
  }
  const resyncMs = Date.now() - backAt;
  const resyncFromKill = Date.now() - killAt;
  const resyncFromReady = allAt > 0 && !Number.isNaN(readyAt) ? allAt - readyAt : -1;
  const resyncLoad = loadavg();

  const result = {
    agents: n, share, replicas: REPLICAS, signed: SIGNED ? 'on' : 'off', trials: TRIALS,
    firstP50: pct(firsts, 50), simUsPerAgentDecision: +simUsPerAgentDecision.toFixed(1),
    p50: pct(fromDecision, 50), p99: pct(fromDecision, 99), max: fromDecision[fromDecision.length - 1]!,
    reportP50: pct(fromReport, 50), reportP99: pct(fromReport, 99), trialLoad: load0,
    redisCpuPerDecisionMs: +(cpuPerDecision * 1000).toFixed(2), replicaCpuPerDecisionMs: repCpu.join('/'), redisIdlePct: +(idleRate * 100).toFixed(1),
    coordCpuPerDecisionMs: +(coordCpu * 1000).toFixed(2), coordIdlePct: +(coordIdleRate * 100).toFixed(1),
    redisBytesPerAgent: Math.round(memPerAgent), simRssKbPerAgent: Math.round(simRssPerAgent / 1024), redisClients: clients,
    floodFailures: total, floodCounted: counted, floodPerSec: floodRate, floodRedisUsPerFailure: +floodRedisUs.toFixed(1), floodLoad,
    resyncWhat: REPLICAS > 0 ? `${movers.length} readers of a killed replica` : 'primary restarted',
    resyncMs: resynced === movers.length ? resyncMs : `${resynced}/${movers.length} in ${resyncMs}`, resyncFromKillMs: resyncFromKill, resyncFromReadyMs: resyncFromReady, stopMs: downAt - killAt, restartMs: backAt - downAt, resyncLoad,
    startMs,
  };
  process.stderr.write(`${JSON.stringify(result)}\n`);
  // What the coordinators complained about (quota cuts, refused reports) explains a slow phase.
  for (const c of coords) for (const l of c.lines.filter((x) => Number(x.level) >= 40).slice(0, 5)) process.stderr.write(`coordinator: ${JSON.stringify(l).slice(0, 300)}\n`);

  for (const a of agents) a.heartbeat.stop();
  await Promise.all(agents.map((a) => a.follower.stop()));
  for (const c of commandConns) c.disconnect();
  await Promise.all(coords.map((c) => c.stop()));
  admin.disconnect();
  for (const r of replicas) await r.stop();
  await redis.stop();
  return result;
}

const rows: Array<Record<string, string | number>> = [];
for (const n of sizes.length ? sizes : [50, 1000]) {
  for (const r of REPLICA_SETS) {
    REPLICAS = r;
    rows.push(await run(n));
  }
}
console.log(`\nfleet simulator, ${new Date().toISOString()}, loadavg now ${loadavg()} (each row: load at its trials)`);
console.log('agents  share  replicas  signed  decision->all applied p50/p99/max ms  report->all p50/p99  Redis CPU/decision ms  Redis B/agent  failures/s  resync s (from kill)  load');
for (const r of rows) {
  console.log(`${String(r.agents).padStart(6)}  ${String(r.share).padStart(5)}  ${String(r.replicas).padStart(8)}  ${String(r.signed).padStart(6)}  ${`${r.p50}/${r.p99}/${r.max}`.padStart(35)}  ${`${r.reportP50}/${r.reportP99}`.padStart(19)}  ${String(r.redisCpuPerDecisionMs).padStart(21)}  ${String(r.redisBytesPerAgent).padStart(13)}  ${String(r.floodPerSec).padStart(10)}  ${`${r.resyncMs} (${r.resyncFromKillMs})`.padStart(20)}  ${r.trialLoad}`);
}
process.exit(0);
