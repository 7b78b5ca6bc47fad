import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { startRedis, randomCluster, type TestRedis } from '../../helpers/redis-server.js';
import { clusterKeys, COORDINATOR_GROUP, type ClusterKeys } from '../../../common/protocol/keys.js';
import { decodeDecision, encodeReport } from '../../../common/protocol/messages.js';
import { loadJails } from '../../../common/config/jails.js';
import { FleetAddressSet } from '../../../common/policy/whitelist.js';
import { loadPolicy } from '../../../coordinator/policy.js';
import { Aggregator } from '../../../coordinator/aggregator.js';

/**
 * coordinator/aggregator.ts against a real redis-server: reports from several hosts' streams are
 * counted into bans and acknowledged; whitelisted, unknown-jail and malformed input is skipped and
 * acknowledged; IPv6 counts per prefix; a dead coordinator's pending entries are claimed.
 */
let server: TestRedis;
before(async () => {
  server = await startRedis();
});
const running: Aggregator[] = [];
// A failed assertion leaves its aggregator reading: stop every one, or the file never ends.
after(async () => {
  await Promise.all(running.map((a) => a.stop()));
  await server.stop();
});

const JAILS = '[sshd]\nenabled = true\nlogpath = LOG\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\nignoreip = 192.0.2.250\n'
  + '[v6net]\nenabled = true\nfilter = sshd\nlogpath = LOG\nmaxretry = 2\nipv6prefix = 64\n';

async function policy() {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-agg-'));
  writeFileSync(join(dir, 'auth.log'), '');
  writeFileSync(join(dir, 'jail.conf'), JAILS.replaceAll('LOG', join(dir, 'auth.log')));
  return loadPolicy(loadJails(dir).jails, new FleetAddressSet(), pino({ level: 'silent' }));
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let seq = 0;
function report(admin: Redis, keys: ClusterKeys, host: string, failures: Array<[jail: string, addr: string]>) {
  const t = Date.now();
  return admin.xadd(keys.host(host).failures, '*', ...encodeReport(host, t, failures.map(([jail, addr]) => ({ jail, addr, eid: `e${++seq}`, time: t, line: `from ${addr}` }))));
}

async function setup(hosts: string[], claimIdleMs = 30_000) {
  const keys = clusterKeys(randomCluster());
  const admin = server.client();
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const aggregator = new Aggregator({ redis: server.client(), writer: server.client(), keys, consumer: 'c1', policy: await policy(), log, claimIdleMs });
  await aggregator.setHosts(hosts);
  running.push(aggregator);
  const pending = async () => {
    let n = 0;
    for (const h of hosts) n += Number(((await admin.xpending(keys.host(h).failures, COORDINATOR_GROUP)) as [number])[0]);
    return n;
  };
  const bans = async () => (await admin.hkeys(keys.bans)).sort();
  return { keys, admin, lines, aggregator, pending, bans };
}

test('failures from several hosts add up to a ban; every entry is acknowledged', async () => {
  const { keys, admin, aggregator, pending, bans } = await setup(['h1', 'h2']);
  await aggregator.start();
  await report(admin, keys, 'h1', [['sshd', '198.51.100.7'], ['sshd', '198.51.100.8'], ['sshd', '198.51.100.7']]);
  await report(admin, keys, 'h2', [['sshd', '198.51.100.7']]);
  await until('the ban', async () => (await bans()).length > 0);
  assert.deepEqual(await bans(), ['sshd|198.51.100.7'], '.8 failed once only');
  const decisions = (await admin.xrange(keys.decisions, '-', '+')).map(([, f]) => decodeDecision(f));
  assert.deepEqual(decisions.map((d) => (d.ok && d.value.op === 'ban' ? `${d.value.addr} ${d.value.origin}` : 'other')), ['198.51.100.7 h2'], 'origin: the host whose failure banned');
  await until('acknowledged', async () => (await pending()) === 0);
  assert.equal(aggregator.stats.read, 2);
  assert.equal(aggregator.stats.bans, 1);
});

test('whitelisted, unknown-jail and malformed input is skipped, logged and acknowledged, and bans nobody', async () => {
  const { keys, admin, lines, aggregator, pending, bans } = await setup(['h1']);
  await aggregator.start();
  await report(admin, keys, 'h1', [['sshd', '192.0.2.250'], ['sshd', '192.0.2.250'], ['sshd', '192.0.2.250'], ['nosuch', '198.51.100.20'], ['nosuch', '198.51.100.20']]);
  await admin.xadd(keys.host('h1').failures, '*', 'garbage', 'yes');
  await until('all read', () => aggregator.stats.read === 2);
  await until('acknowledged', async () => (await pending()) === 0);
  assert.deepEqual(await bans(), []);
  assert.equal(aggregator.stats.ignored, 3);
  assert.equal(aggregator.stats.unknownJail, 2);
  assert.equal(aggregator.stats.malformed, 1);
  assert.equal(lines.filter((l) => l.msg === 'failure from a whitelisted address not counted' && l.addr === '192.0.2.250').length, 1, 'logged once, not per failure');
  assert.equal(lines.filter((l) => l.msg === "failure for a jail this coordinator does not have; not counted").length, 1);
  assert.ok(lines.some((l) => l.msg === 'malformed failure report skipped'));
});

test('with ipv6prefix = 64 two addresses of one network ban the network', async () => {
  const { keys, admin, aggregator, bans } = await setup(['h1']);
  await aggregator.start();
  await report(admin, keys, 'h1', [['v6net', '2001:db8:5:6::1'], ['v6net', '2001:db8:5:6:ffff::2']]);
  await until('the ban', async () => (await bans()).length > 0);
  assert.deepEqual(await bans(), ['v6net|2001:db8:5:6::/64']);
});

test("entries a dead coordinator read and never acknowledged are claimed after claim_idle and counted", async () => {
  const { keys, admin, lines, aggregator, pending, bans } = await setup(['h1'], 300);
  await report(admin, keys, 'h1', [['sshd', '203.0.113.5'], ['sshd', '203.0.113.5'], ['sshd', '203.0.113.5']]);
  // Another coordinator reads the entry and dies before counting it.
  await admin.xreadgroup('GROUP', COORDINATOR_GROUP, 'dead', 'COUNT', 10, 'STREAMS', keys.host('h1').failures, '>');
  assert.equal(await pending(), 1);
  await aggregator.start();
  await until('claimed and counted', async () => (await bans()).length > 0, 10_000);
  assert.deepEqual(await bans(), ['sshd|203.0.113.5']);
  assert.ok(lines.some((l) => l.msg === 'claimed failures abandoned by another coordinator' && l.count === 1));
  await until('acknowledged', async () => (await pending()) === 0);
});
