import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, sshdFailure } from '../helpers/spawn.js';
import { testProcesses, hostConfig, stat, waitUntil, streamLength } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';

/**
 * A flood of distinct attacker addresses (2001:db8::/32), each failing once, through a real agent
 * (log file -> filter -> reporter) and a real coordinator. Redis memory is bounded by the windows:
 * every window key carries a TTL of at most findtime and the memory comes back once they expire;
 * agent and coordinator RSS stay flat; nothing crashes. The figures are printed as diagnostics.
 *
 * `npm test` runs 50,000 addresses; FLEETBAN_FLOOD_COUNT=1000000 runs the full million
 * (a minute or two on a 2-core machine; see docs/reliability.md).
 */
const COUNT = Number(process.env.FLEETBAN_FLOOD_COUNT ?? 50_000);
// Long enough that no failure waits in the stream past its window on a loaded machine (it would
// then rightly not be counted), short enough to watch the windows expire within the test.
const FINDTIME_S = 45;
const CHUNK = 10_000;
const { work, daemons, servers } = testProcesses('flood');

/** @returns the n-th flood address, canonical (RFC 5952) as the agent reports it */
function floodAddr(n: number): string {
  return `2001:db8:${(1 + (n >>> 16)).toString(16)}:${(n & 0xffff).toString(16)}:1::1`;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

test(`${COUNT} distinct attackers once each: memory bounded by the windows, daemons flat`, { timeout: 120_000 + COUNT / 2 }, async (t) => {
  const redis = await startRedis();
  servers.push(redis);
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const log = join(work, 'flood.log');
  writeFileSync(log, '');
  const common = { cluster, url: redis.url, work, maxretry: 3, findtime: `${FINDTIME_S}s` };
  const coordinator = startDaemon(['--config', hostConfig({ ...common, host: 'coord' }), 'coordinator']);
  const agent = startDaemon(['--config', hostConfig({ ...common, host: 'h1', logpath: log }), 'agent']);
  daemons.push(coordinator, agent);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
  const client = redis.client();
  const memory = async () => Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
  const base = await memory();
  const baseKeys = await client.dbsize();

  const rss: Array<{ written: number; agent: number; coordinator: number }> = [];
  const started = Date.now();
  const line = sshdFailure('2001:db8::1', 'h1');
  const prefix = line.slice(0, line.indexOf('Failed password'));
  for (let written = 0; written < COUNT;) {
    const n = Math.min(CHUNK, COUNT - written);
    let text = '';
    for (let i = 0; i < n; i++) text += `${prefix}Failed password for root from ${floodAddr(written + i)} port 4242 ssh2\n`;
    appendFileSync(log, text);
    written += n;
    // Bounded: the writer stays at most one chunk ahead of what Redis has counted.
    await waitUntil(async () => (await stat(client, keys, 'sshd:failed')) >= written - CHUNK, 60_000, 'the pipeline to keep up', 50)
      .catch(async (err: Error) => {
        throw new Error(`${err.message}: written ${written}, stream ${await streamLength(client, keys)}, counted ${await stat(client, keys, 'sshd:failed')}, stats ${JSON.stringify(await client.hgetall(keys.stats))}\nagent: ${agent.lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}\ncoordinator: ${coordinator.lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
      });
    if (written % (COUNT / 4) < CHUNK) rss.push({ written, agent: rssKiB(agent.proc.pid!), coordinator: rssKiB(coordinator.proc.pid!) });
  }
  await waitUntil(async () => (await stat(client, keys, 'sshd:failed')) === COUNT, 60_000, `${COUNT} failures counted`, 100);
  const seconds = (Date.now() - started) / 1000;
  rss.push({ written: COUNT, agent: rssKiB(agent.proc.pid!), coordinator: rssKiB(coordinator.proc.pid!) });

  // The windows are fields of one hash per jail, which carries a TTL no longer than findtime.
  const windows = await client.hlen(keys.failureWindows('sshd'));
  assert.ok(windows > 0, 'windows exist while the flood is in its window');
  const ttl = await client.pttl(keys.failureWindows('sshd'));
  assert.ok(ttl > 0 && ttl <= FINDTIME_S * 1000, `the windows hash has TTL ${ttl} ms`);
  // Counted reports are trimmed from the stream: it holds a backlog, not a history.
  await waitUntil(async () => (await streamLength(client, keys)) <= 100, 5000, 'counted reports trimmed from the stream');
  // Measured once the stream is trimmed: what remains is the windows and the failing set.
  const peak = await memory();

  // After findtime every window is gone, and the memory with it.
  await waitUntil(async () => (await client.exists(keys.failureWindows('sshd'), keys.failing('sshd'))) === 0 && (await client.dbsize()) <= baseKeys + 8,
    (FINDTIME_S + 60) * 1000, 'windows to expire', 500);
  const expired = await memory();
  const perAddress = (peak - expired) / COUNT;
  
  t.diagnostic(`${COUNT} failures in ${seconds.toFixed(1)} s (${Math.round(COUNT / seconds)}/s through agent, stream, coordinator)`);
  t.diagnostic(`Redis used_memory: base ${base}, peak ${peak} (${windows} windows), after expiry ${expired}; ${perAddress.toFixed(0)} B per tracked address`);
  t.diagnostic(`RSS KiB (written: agent/coordinator): ${rss.map((r) => `${r.written}: ${r.agent}/${r.coordinator}`).join(', ')}`);

  assert.ok(perAddress > 0 && perAddress < 1024, `windows cost ${perAddress} B per address`);
  // Bounded: what grows with the number of addresses lives in Redis, not in the daemons. V8 lets
  // its heap grow before collecting under a burst, so the bound is generous (see docs/reliability.md).
  for (const r of rss) {
    assert.ok(r.agent < 400 * 1024, `agent RSS ${r.agent} KiB after ${r.written}`);
    assert.ok(r.coordinator < 400 * 1024, `coordinator RSS ${r.coordinator} KiB after ${r.written}`);
  }
  assert.equal(agent.proc.exitCode, null, 'agent alive');
  assert.equal(coordinator.proc.exitCode, null, 'coordinator alive');
  assert.equal(await stat(client, keys, 'sshd:banned'), 0);
});
