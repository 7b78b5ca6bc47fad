import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, type Daemon } from '../helpers/spawn.js';
import { testProcesses, hostConfig, xaddFailures, stat, waitUntil, banDecisions, pendingReports, streamLength } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import type { FailureEvent } from '../../common/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../common/protocol/version.js';

/**
 * Three coordinators share a flood of 20,000 failures; one is frozen while it holds entries and
 * then killed with SIGKILL. Its pending entries must be claimed by the others (XAUTOCLAIM after
 * claim_idle) and every failure counted exactly once: the jail's `failed` counter equals the
 * number of valid events, each attacker is banned once, and nothing stays pending.
 */
const ATTACKERS = 10;
const MAXRETRY = 50;
const TOTAL = 20_000;

const { work, daemons, servers } = testProcesses('coordcrash', 'SIGKILL');

/** Attackers send exactly maxretry failures each, so every valid event counts and none arrives after a ban. */
function floodEvents(): Array<Omit<FailureEvent, 'sent'>> {
  const now = Date.now();
  const attackers = Array.from({ length: ATTACKERS }, (_, i) => `198.51.100.${i + 1}`);
  const oneOffs = TOTAL - ATTACKERS * MAXRETRY;
  const events: Array<Omit<FailureEvent, 'sent'>> = [];
  let a = 0;
  for (let i = 0; i < oneOffs; i++) {
    events.push({ jail: 'sshd', addr: `2001:db8:1::${(i + 1).toString(16)}`, eid: `o-${i}`, time: now, host: `h${i % 3}`, line: 'one-off' });
    // Spread the attackers' failures over the whole flood, so they straddle the crash.
    if (i % Math.floor(oneOffs / MAXRETRY) === 0) {
      for (const addr of attackers) if (a < ATTACKERS * MAXRETRY) { events.push({ jail: 'sshd', addr, eid: `a-${a}`, time: now, host: `h${a % 3}`, line: 'attack' }); a++; }
    }
  }
  while (a < ATTACKERS * MAXRETRY) { events.push({ jail: 'sshd', addr: attackers[a % ATTACKERS]!, eid: `a-${a}`, time: now, host: 'h0', line: 'attack' }); a++; }
  return events;
}

async function pendingOf(c: Redis, consumer: string): Promise<number> {
  return pendingReports(c, clusterKeys(cluster), consumer);
}

const cluster = randomCluster();

test('a coordinator killed -9 mid-flood: its entries are claimed, every failure counted exactly once', { timeout: 120_000 }, async () => {
  const redis = await startRedis();
  servers.push(redis);
  const keys = clusterKeys(cluster);
  const names = ['c1', 'c2', 'c3'];
  // The reporting hosts, registered as `fleetban acl --apply` does, before the coordinators start.
  await redis.client().sadd(keys.registry, 'h0', 'h1', 'h2');
  const coords = new Map<string, Daemon>();
  for (const host of names) {
    const dir = hostConfig({ cluster, url: redis.url, host, work, maxretry: MAXRETRY, claimIdle: '2s' });
    const d = startDaemon(['--config', dir, 'coordinator']);
    daemons.push(d);
    coords.set(host, d);
  }
  await Promise.all([...coords.values()].map((d) => d.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start')));

  const events = floodEvents();
  assert.equal(events.length, TOTAL);
  const writer = redis.client();
  // Entries no agent could have written: acknowledged and never counted.
  await writer.sadd(keys.registry, 'x');
  await writer.xadd(keys.host('x').failures, '*', 'v', String(PROTOCOL_VERSION), 'host', 'x', 'sent', '1', 'failures', JSON.stringify([['e-1', 'sshd', 'not-an-address', 1, '']]));
  await writer.xadd(keys.host('x').failures, '*', 'garbage', 'x');

  const half = TOTAL / 2;
  await xaddFailures(writer, keys, events.slice(0, half));

  // Freeze c2 so that it holds unacknowledged entries at the moment it dies: Redis keeps serving
  // its blocked XREADGROUP, so the next entries go to a coordinator that will never count them.
  const victim = coords.get('c2')!;
  let held = 0;
  let next = half;
  for (let attempt = 0; attempt < 10 && held === 0; attempt++) {
    victim.proc.kill('SIGSTOP');
    await xaddFailures(writer, keys, events.slice(next, next + 500));
    next += 500;
    await waitUntil(async () => (held = await pendingOf(writer, 'c2')) > 0, 1000, 'c2 to hold entries').catch(() => undefined);
    if (held === 0) victim.proc.kill('SIGCONT');
  }
  assert.ok(held > 0, 'the frozen coordinator never held entries; cannot test the crash');
  victim.proc.kill('SIGKILL');
  await xaddFailures(writer, keys, events.slice(next));

  await waitUntil(async () => (await stat(writer, keys, 'sshd:failed')) >= TOTAL, 60_000, `sshd:failed to reach ${TOTAL}`, 250);
  await waitUntil(async () => (await pendingReports(writer, keys)) === 0, 10_000, 'no pending entries');
  // Let any late double count show up before judging.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await stat(writer, keys, 'sshd:failed'), TOTAL, 'every valid failure counted exactly once');
  assert.equal(await stat(writer, keys, 'sshd:banned'), ATTACKERS);
  const bans = await banDecisions(writer, keys);
  assert.deepEqual([...bans].sort(), Array.from({ length: ATTACKERS }, (_, i) => `sshd|198.51.100.${i + 1}`).sort(), 'each attacker banned exactly once');
  assert.equal(await writer.hlen(keys.bans), ATTACKERS);

  // Counted reports leave the stream (trimmed behind the group every second): it holds the
  // backlog, not the history. `MINID ~` drops whole stream nodes (at most 100 entries each), so
  // up to one node's worth may remain.
  let added = 0;
  for (const host of await writer.smembers(keys.registry)) {
    const written = await writer.xinfo('STREAM', keys.host(host).failures) as unknown[];
    added += Number(written[written.indexOf('entries-added') + 1]);
  }
  assert.ok(added > 1000, `${added} reports written`);
  const hosts = (await writer.smembers(keys.registry)).length;
  await waitUntil(async () => (await streamLength(writer, keys)) <= 100 * hosts, 10_000, `the ${added} counted reports trimmed from the streams`);
  const claimed = ['c1', 'c3'].flatMap((c) => coords.get(c)!.lines.filter((l) => l.msg === 'claimed failures abandoned by another coordinator'));
  const claimedCount = claimed.reduce((n, l) => n + Number(l.count), 0);
  assert.ok(claimedCount >= held, `survivors claimed ${claimedCount} entries; the dead one held ${held}`);
  for (const c of ['c1', 'c3']) assert.equal(coords.get(c)!.proc.exitCode, null, `${c} still running`);
});
