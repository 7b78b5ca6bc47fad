import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, runCli, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { testProcesses, hostConfig, isBan, stat, waitUntil, failuresInStream, pendingReports } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';

/**
 * No coordinator running: agents keep enforcing (a manual ban still reaches them) and keep
 * reporting into the stream. When a coordinator starts, it processes the backlog from the start
 * of the stream, in order, and the bans it implies follow.
 */
const { work, daemons, servers } = testProcesses('nocoord');

test('agents without a coordinator keep enforcing and reporting; a late coordinator works off the backlog', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  servers.push(redis);
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const logs = { h1: join(work, 'h1.log'), h2: join(work, 'h2.log') };
  const agents: Record<string, Daemon> = {};
  for (const h of ['h1', 'h2'] as const) {
    writeFileSync(logs[h], '');
    agents[h] = startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: h, work, logpath: logs[h] }), 'agent']);
    daemons.push(agents[h]);
  }
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start')));
  const client = redis.client();

  const manual = '203.0.113.9';
  const coordDir = hostConfig({ cluster, url: redis.url, host: 'coord', work });
  const r = await runCli(['--config', coordDir, 'ban', manual]);
  assert.equal(r.code, 0, r.stderr);
  await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(manual), 10_000, 'manual ban without a coordinator')));

  const attacker = '198.51.100.51';
  let lines = 0;
  for (let i = 0; i < 40; i++) {
    appendFileSync(logs.h1, sshdFailure(`198.51.100.${100 + i}`, 'h1'));
    lines++;
  }
  for (let i = 0; i < 3; i++) appendFileSync(logs.h1, sshdFailure(attacker, 'h1'));
  for (let i = 0; i < 2; i++) appendFileSync(logs.h2, sshdFailure(attacker, 'h2'));
  lines += 5;
  await waitUntil(async () => (await failuresInStream(client, keys)) === lines, 10_000, `${lines} failures in the stream`);
  // Nobody counts them yet.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await stat(client, keys, 'sshd:failed'), 0);
  for (const a of Object.values(agents)) assert.equal(a.count(isBan(attacker)), 0);

  const coordinator = startDaemon(['--config', coordDir, 'coordinator']);
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(attacker), 10_000, 'ban from the backlog')));
  await waitUntil(async () => (await stat(client, keys, 'sshd:failed')) === lines, 10_000, 'the whole backlog counted');
  assert.equal(await pendingReports(client, keys), 0, 'every backlog entry acknowledged');
  // Agents may apply the decision before the coordinator's own log line reaches this process.
  const banLine = await coordinator.waitFor((l) => l.event === 'ban decided' && l.addr === attacker, 5000, 'ban decided');
  assert.equal(banLine.jail, 'sshd', 'the coordinator decided the ban');
});
