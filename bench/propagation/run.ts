/**
 * Ban propagation: the time from a failure line appended to one agent's log until every agent has
 * applied the ban. Real processes on loopback: one redis-server, one coordinator, N agents with
 * dry-run backends (each logs `dry-run ban` with a millisecond timestamp). maxretry = 1, so each
 * appended line is one ban decision.
 *
 *   node dist/bench/propagation/run.js [agents...]      default: 3 50
 *   TRIALS=100 GAP_MS=100 node dist/bench/propagation/run.js 3
 * Each size runs twice, side by side: every daemon logged in as Redis' default user ("acl off",
 * the one shared login of before), and as its role's ACL user ("acl on", what fleetban does).
 */
import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, randomCluster } from '../../test/helpers/redis-server.js';
import { startDaemon, writeConfig, sshdFailure, type Daemon } from '../../test/helpers/spawn.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const trials = Number(process.env.TRIALS ?? 100);
const GAP_MS = Number(process.env.GAP_MS ?? 100);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface Result { acl: boolean; agents: number; trials: number; p50: number; p99: number; max: number; decidedP50: number; decidedP99: number }

async function run(agentCount: number, acl: boolean): Promise<Result> {
  const redis = await startRedis();
  const cluster = randomCluster();
  const work = mkdtempSync(join(tmpdir(), 'fleetban-bench-'));
  // With the default user's credentials in the URL, the harness gives the daemons no ACL users.
  const url = acl ? redis.url : redis.adminUrl;
  const config = (host: string, log: string) => writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${url}\n[agent]\nhost = ${host}\nbanaction = dry-run\nstate_dir = ${join(work, host)}\nheartbeat = 5s\n[coordinator]\nconsumer = ${host}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${log}\nmaxretry = 1\nbantime = 1h\n`,
  });
  const coordinator = startDaemon(['--config', config('coord', join(work, 'none.log')), 'coordinator']);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 30_000);
  const agents: Daemon[] = [];
  const logs: string[] = [];
  for (let i = 0; i < agentCount; i++) {
    // One directory per agent, as on real hosts: agents watch their log's directory, and a shared
    // one would wake all of them for every line any of them gets.
    mkdirSync(join(work, `a${i}`));
    const log = join(work, `a${i}`, 'auth.log');
    writeFileSync(log, '');
    logs.push(log);
    agents.push(startDaemon(['--config', config(`a${i}`, log), 'agent']));
  }
  await Promise.all(agents.map((a) => a.waitFor((l) => l.msg === 'agent started', 120_000)));

  const latencies: number[] = [];
  // Split of the total: line appended -> coordinator decided (agent tail, report, count).
  const decideLatencies: number[] = [];
  for (let t = 0; t < trials; t++) {
    // Documentation range 2001:db8::/32 gives every trial a fresh attacker.
    const addr = `2001:db8:${(agentCount).toString(16)}::${(t + 1).toString(16)}`;
    const isBan = (l: Record<string, unknown>) => l.msg === 'dry-run ban' && l.addr === addr;
    const waits = agents.map((a) => a.waitFor(isBan, 30_000));
    const decided = coordinator.waitFor((l) => l.msg === 'ban decided' && l.addr === addr, 30_000);
    // Let the previous ban's aftermath (acks, log writes in 50 processes) settle: each trial
    // measures one ban on a quiet fleet, not a queue behind the last one.
    await new Promise((r) => setTimeout(r, GAP_MS));
    const start = Date.now();
    appendFileSync(logs[t % agentCount]!, sshdFailure(addr, 'bench'));
    const lines = await Promise.all(waits);
    const last = Math.max(...lines.map((l) => Date.parse(String(l.time))));
    latencies.push(last - start);
    decideLatencies.push(Date.parse(String((await decided).time)) - start);
  }
  await Promise.all([...agents, coordinator].map((d) => d.stop()));
  await redis.stop();
  latencies.sort((a, b) => a - b);
  decideLatencies.sort((a, b) => a - b);
  return { acl, agents: agentCount, trials, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1]!,
    decidedP50: percentile(decideLatencies, 50), decidedP99: percentile(decideLatencies, 99) };
}

const results = [];
for (const n of sizes.length ? sizes : [3, 50]) for (const acl of [false, true]) results.push(await run(n, acl));
console.log('\nban propagation: failure line appended -> ban applied by every agent (ms)');
console.log('acl  agents  trials  all-applied p50  p99  max   decided p50  p99');
const pad = (n: number, w: number) => String(n).padStart(w);
for (const r of results) console.log(`${r.acl ? 'on ' : 'off'}  ${pad(r.agents, 6)}  ${pad(r.trials, 6)}  ${pad(r.p50, 15)}  ${pad(r.p99, 3)}  ${pad(r.max, 3)}   ${pad(r.decidedP50, 11)}  ${pad(r.decidedP99, 3)}`);
