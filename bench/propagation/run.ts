/**
 * Ban propagation: the time from a failure line appended to one agent's log until every agent has
 * applied the ban. maxretry = 1, so each appended line is one ban decision.
 *
 * Default mode, real processes on loopback: one redis-server, one coordinator, N agents with
 * dry-run backends (each logs `dry-run ban` with a millisecond timestamp).
 *
 * `--firewall nftables` (root): every agent runs in its own network namespace with the real
 * nftables backend, Redis and the coordinator in one more, all on one bridge. A ban counts as
 * applied on a host when its agent logs `ban applied`, which it does only after the kernel
 * confirmed the batch; after the trials every host's set is listed with nft and must hold every
 * trial's address (the cross-check). The same fleet layout with dry-run agents runs first, as the
 * floor, so both rows come from one run.
 *
 *   node dist/bench/propagation/run.js [agents...]      default: 3 50
 *   node dist/bench/propagation/run.js --firewall nftables 10 50
 *   TRIALS=100 GAP_MS=100 node dist/bench/propagation/run.js 3
 * In the loopback mode each size runs twice, side by side: every daemon logged in as Redis' default
 * user ("acl off", the one shared login of before), and as its role's ACL user ("acl on", what
 * fleetban does). "acl on" also signs: the coordinator signs every ban and every agent verifies it;
 * "acl off" agents apply unsigned decisions (allow_unsigned). The namespace mode runs its own
 * redis-server with the default user only (acl off).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { nftJailId } from '../../agent/firewall/nftables.js';
import { createFleet, netnsAvailable, type Fleet } from '../../test/helpers/netns.js';
import { startRedis, randomCluster } from '../../test/helpers/redis-server.js';
import { startDaemon, writeConfig, sshdFailure, type Daemon } from '../../test/helpers/spawn.js';
import { signingConfig, unsignedConfig } from '../../test/helpers/keys.js';

const fwAt = process.argv.indexOf('--firewall');
const firewall = fwAt === -1 ? undefined : process.argv[fwAt + 1];
if (firewall !== undefined && firewall !== 'nftables') throw new Error(`--firewall takes 'nftables', got '${firewall}'`);
const sizes = process.argv.slice(2).filter((a, i, all) => all[i - 1] !== '--firewall').map(Number).filter((n) => n > 0);
const trials = Number(process.env.TRIALS ?? 100);
const GAP_MS = Number(process.env.GAP_MS ?? 100);
const REDIS_ADDR = '198.51.100.2';
const REDIS_PORT = 16379;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface Result { mode: string; acl: boolean; agents: number; trials: number; p50: number; p99: number; max: number; decidedP50: number; decidedP99: number; check: string }

/** Where Redis runs and how a daemon of host `name` is started. */
interface Layout {
  readonly url: string;
  /** argv prefix to run a daemon as host `name` (empty: this namespace). */
  prefix(name: string): string[];
  stop(): Promise<void>;
}

async function loopbackLayout(acl: boolean): Promise<Layout> {
  const redis = await startRedis();
  // With the default user's credentials in the URL, the harness gives the daemons no ACL users.
  return { url: acl ? redis.url : redis.adminUrl, prefix: () => [], stop: () => redis.stop() };
}

/** Redis and the coordinator in namespace `r`, agent i in namespace `a<i>`, one bridge. */
async function netnsLayout(agentCount: number, work: string): Promise<Layout & { fleet: Fleet }> {
  const avail = netnsAvailable();
  if (!avail.ok) throw new Error(`--firewall nftables: ${avail.reason}`);
  const hosts = [{ name: 'r', addrs: [`${REDIS_ADDR}/24`] }];
  for (let i = 0; i < agentCount; i++) hosts.push({ name: `a${i}`, addrs: [`198.51.100.${10 + i}/24`] });
  const fleet = await createFleet(hosts);
  const redis: ChildProcess = spawn('ip', ['netns', 'exec', fleet.host('r').ns, 'redis-server', '--bind', REDIS_ADDR, '--port', String(REDIS_PORT),
    // Reachable only inside this run's namespaces; protected mode would refuse the other hosts.
    '--protected-mode', 'no', '--save', '', '--dir', work], { stdio: 'ignore' });
  // A crashed run must not leave it behind, holding a deleted namespace alive.
  process.on('exit', () => redis.kill('SIGKILL'));
  for (let i = 0; i < 100 && !(await fleet.tcpConnects('r', REDIS_ADDR, REDIS_PORT, 200)); i++) await new Promise((r) => setTimeout(r, 50));
  return {
    fleet,
    url: `redis://${REDIS_ADDR}:${REDIS_PORT}`,
    prefix: (name) => fleet.prefix(name === 'coord' ? 'r' : name),
    async stop() {
      redis.kill('SIGTERM');
      await fleet.destroy();
    },
  };
}

/**
 * Which of the trial addresses host `name`'s kernel set holds, read with `nft -j list set`.
 * @returns the addresses missing from that host's set
 */
async function missingInKernel(fleet: Fleet, name: string, addrs: readonly string[]): Promise<string[]> {
  const r = await execa('ip', ['netns', 'exec', fleet.host(name).ns, 'nft', '-j', 'list', 'set', 'inet', 'fleetban', `${nftJailId('sshd')}_s6`], { reject: false });
  if (r.exitCode !== 0) return [...addrs];
  const held = new Set<string>();
  const doc = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  for (const item of doc.nftables) {
    for (const e of item.set?.elem ?? []) {
      const val = typeof e === 'string' ? e : (e as { elem?: { val?: unknown } }).elem?.val;
      if (typeof val === 'string') held.add(val);
    }
  }
  return addrs.filter((a) => !held.has(a));
}

async function run(agentCount: number, banaction: 'dry-run' | 'nftables', inNamespaces: boolean, acl = false): Promise<Result> {
  const cluster = randomCluster();
  const work = mkdtempSync(join(tmpdir(), 'fleetban-bench-'));
  const layout = inNamespaces ? await netnsLayout(agentCount, work) : await loopbackLayout(acl);
  const config = (host: string, log: string) => writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${layout.url}\n[agent]\nhost = ${host}\nbanaction = ${banaction}\nstate_dir = ${join(work, host)}\nheartbeat = 5s\n[coordinator]\nconsumer = ${host}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${log}\nmaxretry = 1\nbantime = 1h\n`,
    'fleetban.local': acl ? signingConfig() : unsignedConfig(),
  });
  const coordinator = startDaemon(['--config', config('coord', join(work, 'none.log')), 'coordinator'], {}, layout.prefix('coord'));
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
    agents.push(startDaemon(['--config', config(`a${i}`, log), 'agent'], {}, layout.prefix(`a${i}`)));
  }
  await Promise.all(agents.map((a) => a.waitFor((l) => l.msg === 'agent started', 120_000)));
  // Warm-up, not measured: one ban reported by every host, applied everywhere. A host's first
  // report waits until the coordinators have read the host registry again (at most 5 s after the
  // host registered), which is start-up, not propagation: without this the first trial on each
  // host carried up to 5 s, and with trials spread over the hosts those were the p99.
  const applied = banaction === 'dry-run' ? 'dry-run ban' : 'ban applied';
  const warmups = logs.map((_, i) => `2001:db8:ffff:${agentCount.toString(16)}::${(i + 1).toString(16)}`);
  const warmed = agents.flatMap((a) => warmups.map((w) => a.waitFor((l) => (l.msg === applied || l.event === applied) && l.addr === w, 60_000)));
  logs.forEach((log, i) => appendFileSync(log, sshdFailure(warmups[i]!, 'bench')));
  await Promise.all(warmed);

  const latencies: number[] = [];
  const addrs: string[] = [];
  // Split of the total: line appended -> coordinator decided (agent tail, report, count).
  const decideLatencies: number[] = [];
  for (let t = 0; t < trials; t++) {
    // Documentation range 2001:db8::/32 gives every trial a fresh attacker.
    const addr = `2001:db8:${(agentCount).toString(16)}::${(t + 1).toString(16)}`;
    addrs.push(addr);
    // dry-run logs when it would apply; a real agent logs `ban applied` once the kernel took it.
    const isBan = (l: Record<string, unknown>) => (l.msg === applied || l.event === applied) && l.addr === addr;
    const waits = agents.map((a) => a.waitFor(isBan, 30_000));
    const decided = coordinator.waitFor((l) => l.event === 'ban decided' && l.addr === addr, 30_000);
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
  let check = '-';
  if (banaction === 'nftables' && 'fleet' in layout) {
    const missing = await Promise.all(agents.map((_a, i) => missingInKernel(layout.fleet as Fleet, `a${i}`, addrs)));
    const bad = missing.filter((m) => m.length > 0).length;
    check = `${agentCount - bad}/${agentCount} kernels hold all ${addrs.length}`;
    if (bad > 0) console.error(`cross-check failed: ${bad} hosts miss elements, e.g. ${missing.find((m) => m.length)!.slice(0, 3).join(', ')}`);
  }
  await Promise.all([...agents, coordinator].map((d) => d.stop()));
  await layout.stop();
  latencies.sort((a, b) => a - b);
  decideLatencies.sort((a, b) => a - b);
  return { mode: inNamespaces ? `netns ${banaction}` : 'loopback dry-run', acl, check, agents: agentCount, trials, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1]!,
    decidedP50: percentile(decideLatencies, 50), decidedP99: percentile(decideLatencies, 99) };
}

const results: Result[] = [];
const pad = (n: number, w: number) => String(n).padStart(w);
const row = (r: Result) => `${r.mode.padEnd(17)}  ${r.acl ? 'on ' : 'off'}  ${pad(r.agents, 6)}  ${pad(r.trials, 6)}  ${pad(r.p50, 15)}  ${pad(r.p99, 3)}  ${pad(r.max, 3)}   ${pad(r.decidedP50, 11)}  ${pad(r.decidedP99, 3)}  ${r.check}`;
const loadavg = async () => (await execa('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
const measure = async (...args: Parameters<typeof run>) => {
  const r = await run(...args);
  results.push(r);
  // Each row as soon as it is measured, with the load it was measured under (this VM is shared).
  process.stderr.write(`${row(r)}  (loadavg ${await loadavg()})\n`);
};
for (const n of sizes.length ? sizes : [3, 50]) {
  if (firewall) {
    // Floor first: the same namespaces and bridge, agents that only log.
    await measure(n, 'dry-run', true);
    await measure(n, 'nftables', true);
  } else {
    for (const acl of [false, true]) await measure(n, 'dry-run', false, acl);
  }
}
console.log(`\nban propagation: failure line appended -> ban applied by every agent (ms); loadavg ${await loadavg()}`);
console.log('mode               acl  agents  trials  all-applied p50  p99  max   decided p50  p99  cross-check');
for (const r of results) console.log(row(r));
