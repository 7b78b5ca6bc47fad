import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Redis } from 'ioredis';
import { randomCluster } from '../helpers/redis-server.js';
import { startSentinels } from '../helpers/sentinel.js';
import { startDaemon, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { testProcesses, hostConfig, isBan, isUnban, stat, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys, banId } from '../../common/protocol/keys.js';

/**
 * A real Sentinel set-up on loopback (primary, replica, three redis-sentinel processes) selected
 * by a sentinel:// URL. Two coordinators and two agents run through two failovers during an
 * attack: first `SENTINEL FAILOVER` (the old primary is demoted while still running), then a
 * SIGKILL of the new primary. Each time the blocking reads (agents' XREAD, coordinators'
 * XREADGROUP) must be abandoned and issued again on the new primary, bans decided before stay in
 * Redis and on every agent, and a ban decided after reaches every agent.
 */
const sentinelBin = spawnSync('sh', ['-c', 'command -v redis-sentinel'], { encoding: 'utf8' }).status === 0 || existsSync('/usr/bin/redis-sentinel');
const skip = sentinelBin ? false : 'needs redis-sentinel (scripts/setup.sh --test installs it)';
if (skip && process.env.CI) throw new Error(`CI must run the Sentinel test: ${skip}`);

const { work, daemons, servers } = testProcesses('sentinel-test');

/** The fleetban connections the primary on `port` serves, by name, with their last command. */
async function fleetbanClients(node: Redis): Promise<Array<{ name: string; cmd: string; user: string }>> {
  const text = (await node.client('LIST')) as string;
  return text.split('\n').filter(Boolean).map((line) => {
    const f = Object.fromEntries(line.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    return { name: f.name ?? '', cmd: f.cmd ?? '', user: f.user ?? '' };
  }).filter((c) => c.name.startsWith('fleetban-'));
}

test('Sentinel failovers during an attack: daemons follow the primary, no ban lost', { skip, timeout: 120_000 }, async () => {
  const cluster = randomCluster();
  const s = await startSentinels(cluster, ['h1', 'h2']);
  servers.push(s);
  const keys = clusterKeys(cluster);
  const logs = { h1: join(work, 'h1.log'), h2: join(work, 'h2.log') };
  for (const f of Object.values(logs)) writeFileSync(f, '');
  const coordinators = ['c1', 'c2'].map((host) => startDaemon(['--config', hostConfig({ cluster, url: s.url, host, work, claimIdle: '2s', identities: { coordinator: s.roles(host).coordinator } }), 'coordinator']));
  daemons.push(...coordinators);
  await Promise.all(coordinators.map((c) => c.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start')));
  const agents = {
    h1: startDaemon(['--config', hostConfig({ cluster, url: s.url, host: 'h1', work, logpath: logs.h1, identities: { agent: s.roles('h1').agent } }), 'agent']),
    h2: startDaemon(['--config', hostConfig({ cluster, url: s.url, host: 'h2', work, logpath: logs.h2, identities: { agent: s.roles('h2').agent } }), 'agent']),
  };
  daemons.push(agents.h1, agents.h2);
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start')));

  const attackers = ['198.51.100.31', '198.51.100.32', '198.51.100.33'];
  const failures = async (addr: string, n: number, host: 'h1' | 'h2') => {
    for (let i = 0; i < n; i++) appendFileSync(logs[host], sshdFailure(addr, host));
  };
  const restoredSince = (d: Daemon, from: number, purpose: string, port: number) => () =>
    d.lines.slice(from).some((l) => l.msg === 'Redis connection restored' && l.purpose === purpose && String(l.server).endsWith(`:${port}`));

  // Ban 1 before any failover.
  const first = await s.primaryPort();
  // Every daemon logs in to the data nodes as its role's ACL user, never as the default user.
  await failures(attackers[0]!, 5, 'h1');
  await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(attackers[0]!), 10_000, 'ban before failover')));

  let primary = first;
  let banned = 1;
  for (const [round, how] of [[1, 'SENTINEL FAILOVER'], [2, 'SIGKILL of the primary']] as const) {
    const addr = attackers[round]!;
    // Half of the attack before the failover, half after: the ban needs both halves.
    await failures(addr, 2, 'h1');
    const node = s.node(primary);
    await waitUntil(async () => (await stat(node, keys, 'sshd:failed')) === 5 * round + 2, 10_000, `round ${round}: 2 failures counted`);
    // Asynchronous replication: wait until the replica has everything so far (see docs/reliability.md).
    await s.waitForReplica();
    assert.equal(await node.call('WAIT', '1', '5000'), 1, 'replica acknowledged the writes');
    const marks = [...coordinators, ...Object.values(agents)].map((d) => d.lines.length);
    const old = primary;
    if (how === 'SENTINEL FAILOVER') {
      primary = await s.failover();
    } else {
      await s.killNode(old);
      primary = await s.waitForNewPrimary(old);
    }
    assert.notEqual(primary, old, `${how}: a new primary`);

    // Every blocking reader is re-issued on the new primary.
    const all = [...coordinators, ...Object.values(agents)];
    for (const [i, d] of all.entries()) {
      const purpose = i < coordinators.length ? 'coordinator-reader' : 'agent-decisions';
      await waitUntil(restoredSince(d, marks[i]!, purpose, primary), 30_000, `${how}: ${purpose} reconnected to :${primary}`);
    }
    const newNode = s.node(primary);
    await waitUntil(async () => {
      const clients = await fleetbanClients(newNode);
      return clients.filter((c) => c.name === 'fleetban-agent-decisions' && c.cmd === 'xread').length === 2
        && clients.filter((c) => c.name === 'fleetban-coordinator-reader' && c.cmd === 'xreadgroup').length === 2;
    }, 15_000, `${how}: both agents blocked in XREAD and both coordinators in XREADGROUP on the new primary`);

    await failures(addr, 3, 'h2');
    await Promise.all(Object.values(agents).map((a) => a.waitFor(isBan(addr), 20_000, `${how}: ban after failover`)));
    banned++;
    assert.equal(await stat(newNode, keys, 'sshd:banned'), banned, `${how}: bans counted on the new primary`);
    for (const a of attackers.slice(0, round + 1)) {
      assert.ok(await newNode.hexists(keys.bans, banId('sshd', a)), `${how}: ban of ${a} present on the new primary`);
    }
    for (const [name, a] of Object.entries(agents)) {
      for (const b of attackers) assert.equal(a.count(isUnban(b)), 0, `${how}: ${name} never lifted ${b}`);
    }
  }
  for (const d of daemons) assert.equal(d.proc.exitCode, null, 'every daemon survived both failovers');
  // Every daemon logged in to the data nodes as its role's ACL user, never as the default user.
  const logins = await fleetbanClients(s.node(primary));
  assert.ok(logins.length >= 4, `daemons connected: ${logins.length}`);
  for (const c of logins) assert.match(c.user, /^fleetban-(agent-h[12]|coordinator)$/, `${c.name} logs in as ${c.user}`);
});
