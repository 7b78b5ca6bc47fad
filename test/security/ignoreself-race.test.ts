import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, randomCluster, provisionIdentities } from '../helpers/redis-server.js';
import { startDaemon, writeConfig } from '../helpers/spawn.js';
import { testProcesses, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { encodeReport } from '../../common/protocol/messages.js';
import { hostAddresses } from '../../agent/heartbeat.js';

/**
 * ignoreself without the race: a fleet member whose address fails logins against another member
 * right after it started is never banned. Before, the coordinator decided with the fleet
 * addresses it had read up to 5 s earlier, and banned a member that had just started.
 * Host "x" is a real agent (its addresses are this machine's); host "y" reports through its own
 * identity, standing in for its agent, the moment x's first heartbeat exists.
 */
const { work, daemons, servers } = testProcesses('ignoreself');

test('a fleet member failing logins right after its start is never banned; others are', { timeout: 60_000 }, async () => {
  const member = hostAddresses()[0];
  assert.ok(member, 'this machine has a non-loopback address for the agent to claim');
  const redis = await startRedis();
  servers.push(redis);
  const admin = redis.client();
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const jail = `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${join(work, 'none.log')}\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n`;
  const conf = (host: string) => writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = ${host}\nbanaction = dry-run\nstate_dir = ${join(work, host)}\nheartbeat = 1s\n[coordinator]\nconsumer = ${host}\n`,
    'jail.conf': jail,
  });
  const coordinator = startDaemon(['--config', conf('c'), 'coordinator']);
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  const ids = provisionIdentities(redis.port, cluster, ['y']);
  const y = new Redis(redis.url, { username: ids.agents.get('y')!.username, password: ids.agents.get('y')!.password });
  let n = 0;
  const fail = (addr: string) => y.xadd(keys.host('y').failures, '*', ...encodeReport('y', Date.now(), [0, 1, 2].map(() => ({
    eid: `r${n++}`, jail: 'sshd', addr, time: Date.now(), line: 'Failed password',
  }))));
  try {
    // Control: the same failures of an address no member claims ban it.
    await fail('203.0.113.9');
    await waitUntil(async () => (await admin.hexists(keys.bans, 'sshd|203.0.113.9')) === 1, 10_000, 'an outsider banned');

    const xDir = conf('x');
    const agent = startDaemon(['--config', xDir, 'agent']);
    daemons.push(agent);
    // The moment x's first heartbeat is in Redis, its address fails logins on y.
    await waitUntil(async () => (await admin.exists(keys.host('x').heartbeat)) === 1, 15_000, "x's first heartbeat", 2);
    await fail(member);
    const spared = await coordinator.waitFor((l) => l.msg === 'failures of fleet members counted but not banned (ignoreself)'
      || (l.msg === 'failure from a whitelisted address not counted' && l.addr === member), 10_000, 'the member spared');
    // Almost always the counting script (the coordinator's cached fleet is refreshed every 5 s).
    console.log(`spared by: ${spared.msg}`);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await admin.hexists(keys.bans, `sshd|${member}`), 0, `fleet member ${member} is not banned`);
    assert.equal(coordinator.count((l) => l.msg === 'ban decided' && l.addr === member), 0);
    // And it stays protected while it lives: more failures later are not a ban either.
    await fail(member);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await admin.hexists(keys.bans, `sshd|${member}`), 0);
  } finally {
    y.disconnect();
  }
});
