import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, sshdFailure } from '../helpers/spawn.js';
import { testProcesses, hostConfig, isBan, isUnban, stat, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys, banId } from '../../common/protocol/keys.js';

/**
 * Redis with AOF (appendfsync everysec) is restarted in the middle of an attack. Active bans and
 * failure counts survive, the coordinator and agents reconnect by themselves and say so, a failure
 * seen while Redis was down is delivered afterwards, and a ban decided after the restart — which
 * needs the counts from before it — reaches every agent. Nobody lifts the ban made before.
 */
const { work, daemons, servers } = testProcesses('restart');

test('Redis restarted mid-attack: bans and counts survive, daemons reconnect, the next ban reaches everyone', { timeout: 90_000 }, async () => {
  const redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'everysec']);
  servers.push(redis);
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const logs = { h1: join(work, 'h1.log'), h2: join(work, 'h2.log') };
  for (const f of Object.values(logs)) writeFileSync(f, '');
  const coordinator = startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: 'coord', work }), 'coordinator']);
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  const agents = {
    h1: startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: 'h1', work, logpath: logs.h1 }), 'agent']),
    h2: startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: 'h2', work, logpath: logs.h2 }), 'agent']),
  };
  daemons.push(agents.h1, agents.h2);
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start')));
  const client = redis.client();
  client.on('error', () => undefined); // refused while Redis is down: expected

  const before = '198.51.100.21';
  const during = '198.51.100.22';
  for (let i = 0; i < 5; i++) appendFileSync(logs.h1, sshdFailure(before, 'h1'));
  await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(before), 10_000, 'ban before the restart')));
  appendFileSync(logs.h1, sshdFailure(during, 'h1') + sshdFailure(during, 'h1'));
  appendFileSync(logs.h2, sshdFailure(during, 'h2'));
  await waitUntil(async () => (await stat(client, keys, 'sshd:failed')) === 8, 10_000, '8 failures counted');

  await redis.kill();
  // Seen while Redis is away: the agent keeps it (spooled) and delivers it after the restart.
  appendFileSync(logs.h2, sshdFailure(during, 'h2'));
  await agents.h2.waitFor((l) => l.msg === 'Redis unreachable; spooling failures to disk', 10_000, 'h2 spooling');
  await new Promise((r) => setTimeout(r, 1000));
  await redis.restart();

  for (const d of [coordinator, ...Object.values(agents)]) {
    await d.waitFor((l) => l.msg === 'Redis connection restored', 20_000, 'reconnect log');
  }
  assert.ok(await client.hexists(keys.bans, banId('sshd', before)), 'the ban made before the restart is still in Redis');
  await waitUntil(async () => (await stat(client, keys, 'sshd:failed')) === 9, 15_000, 'the failure seen during the outage to be counted');
  assert.equal(await stat(client, keys, 'sshd:banned'), 1);

  // The fifth failure of `during`: a ban only if the three counted before the restart survived.
  appendFileSync(logs.h1, sshdFailure(during, 'h1'));
  await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(during), 15_000, 'ban after the restart')));
  for (const [name, a] of Object.entries(agents)) {
    assert.equal(a.count(isUnban(before)), 0, `${name} must keep the ban made before the restart`);
    const syncs = a.lines.filter((l) => l.msg === 'dry-run sync');
    assert.ok(syncs.length >= 2, `${name} re-synchronised after reconnecting`);
    assert.ok(Number(syncs[syncs.length - 1]!.count) >= 1, `${name}'s resync still holds the earlier ban`);
  }
});
