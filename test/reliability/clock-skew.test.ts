import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { testProcesses, hostConfig, isBan, stat, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys, banId } from '../../common/protocol/keys.js';
import { readWindow } from '../../common/scripts/index.js';

/**
 * Hosts whose clocks are minutes apart (FLEETBAN_CLOCK_SKEW_MS shifts each process's clock) still
 * count into one window, because a failure is placed by its age on its own host's clock. The
 * coordinator's clock is off too; it decides on Redis' clock. findtime 10m, maxretry 5.
 */
const MIN = 60_000;
const SKEW = { a: -7 * MIN, b: 5 * MIN, c: -12 * MIN, coord: 3 * MIN };
const { work, daemons, servers } = testProcesses('skew');

test('agents minutes apart count into one window; real ages, not host clocks, decide what is too old', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  servers.push(redis);
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const coordinator = startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: 'coord', work }), 'coordinator'],
    { FLEETBAN_CLOCK_SKEW_MS: String(SKEW.coord) });
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  const hosts = ['a', 'b', 'c'] as const;
  const logs = Object.fromEntries(hosts.map((h) => [h, join(work, `${h}.log`)])) as Record<(typeof hosts)[number], string>;
  const agents = Object.fromEntries(hosts.map((h) => {
    writeFileSync(logs[h], '');
    const d = startDaemon(['--config', hostConfig({ cluster, url: redis.url, host: h, work, logpath: logs[h] }), 'agent'],
      { FLEETBAN_CLOCK_SKEW_MS: String(SKEW[h]) });
    daemons.push(d);
    return [h, d];
  })) as Record<(typeof hosts)[number], Daemon>;
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start')));
  const client = redis.client();
  /** A failure line as host h writes it: stamped by h's own clock, `ago` ms before h's now. */
  const fail = (h: (typeof hosts)[number], addr: string, ago = 0) =>
    appendFileSync(logs[h], sshdFailure(addr, h, 'root', new Date(Date.now() + SKEW[h] - ago)));

  // Banned: five fresh failures, written on hosts 12 minutes behind and 5 minutes ahead. Taken
  // at their host clocks they would lie 17 minutes apart, more than findtime.
  const x = '198.51.100.41';
  fail('c', x); fail('c', x);
  fail('b', x); fail('b', x); fail('b', x);
  await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(x), 10_000, 'ban of x')));

  // Not banned: two failures 11 minutes old (on a host 5 minutes ahead, whose stamps look only 6
  // minutes old to a correct clock) and three fresh ones on a host 7 minutes behind.
  const y = '198.51.100.42';
  fail('b', y, 11 * MIN); fail('b', y, 11 * MIN);
  fail('a', y); fail('a', y); fail('a', y);
  await waitUntil(async () => (await stat(client, keys, 'sshd:failed')) >= 8, 10_000, 'eight failures counted');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await stat(client, keys, 'sshd:failed'), 8, 'x: 5, y: only its 3 fresh failures');
  assert.equal(await client.hexists(keys.bans, banId('sshd', y)), 0, 'y is not banned');
  for (const a of Object.values(agents)) assert.equal(a.count(isBan(y)), 0);
  assert.equal((await readWindow(client, keys, 'sshd', y)).length, 3, "y's window holds its three fresh failures");
  assert.equal(await stat(client, keys, 'sshd:banned'), 1);
});
