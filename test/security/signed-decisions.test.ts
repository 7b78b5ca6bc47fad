import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, randomCluster, provisionIdentities, type TestRedis } from '../helpers/redis-server.js';
import { startDaemon, runCli, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { hostConfig, testProcesses, isBan, isUnban, waitUntil } from '../helpers/cluster-procs.js';
import { otherKeys, testKeys } from '../helpers/keys.js';
import { clusterKeys, banId } from '../../common/protocol/keys.js';
import { encodeBan, encodeDecision, decodeBan, decodeDecision, FOREVER, MAX_BAN_MS, type Decision } from '../../common/protocol/messages.js';
import { checkSignature, recordAsDecision, signDecision } from '../../common/protocol/signing.js';
import { loadSigningKey, loadTrustedKeys } from '../../common/config/keys.js';
import { ClusterScripts } from '../../common/scripts/index.js';

/**
 * Someone holding a valid Redis password (here the default user, which can do anything an admin
 * identity can) but no signing key writes decisions and ban records: no agent applies them.
 * Decisions signed by an untrusted key, or altered after signing, are refused too; a replayed
 * ban does nothing after its unban; the self-guard refuses networks no host should ever drop,
 * even when a trusted key signed them. Real redis-server, coordinator and agents as processes,
 * dry-run firewalls.
 */
const t = testProcesses('security-signed');
const cluster = randomCluster();
const keys = clusterKeys(cluster);
const hosts = ['h1', 'h2'];
const logs = Object.fromEntries(hosts.map((h) => [h, join(t.work, `${h}.log`)]));
const dirs: Record<string, string> = {};
const agents: Record<string, Daemon> = {};
let redis: TestRedis;
/** Redis' default user: can do anything (deleting records, cutting connections). */
let admin: Redis;
/** The cluster's real fleetban-admin identity, as `fleetban ban` logs in. */
let asAdmin: Redis;
/** Scripts signing with the trusted test key, as an admin would (logged in as fleetban-admin). */
let signed: ClusterScripts;
const trustedKey = () => loadSigningKey(testKeys().keyFile);

function startAgent(h: string): Daemon {
  const d = startDaemon(['--config', dirs[h]!, 'agent']);
  t.daemons.push(d);
  agents[h] = d;
  return d;
}

before(async () => {
  redis = await startRedis();
  t.servers.push(redis);
  admin = redis.client();
  const key = trustedKey();
  for (const h of [...hosts, 'h3']) {
    writeFileSync(logs[h] ?? join(t.work, `${h}.log`), '');
    dirs[h] = hostConfig({ cluster, url: redis.url, host: h, work: t.work, logpath: logs[h] ?? join(t.work, `${h}.log`), maxretry: 3,
      agent: 'never_ban = 203.0.113.128/25' });
  }
  dirs.coord = hostConfig({ cluster, url: redis.url, host: 'coord', work: t.work, maxretry: 3 });
  const ids = provisionIdentities(redis.port, cluster, []);
  asAdmin = new Redis({ host: '127.0.0.1', port: redis.port, username: ids.admin.username, password: ids.admin.password });
  t.servers.unshift({ stop: async () => asAdmin.disconnect() });
  signed = new ClusterScripts(asAdmin, keys, 100_000, undefined, (d) => signDecision(key, cluster, d));
  const coordinator = startDaemon(['--config', dirs.coord, 'coordinator']);
  t.daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  for (const h of hosts) startAgent(h);
  await Promise.all(hosts.map((h) => agents[h]!.waitFor((l) => l.msg === 'agent started', 15_000, `${h} start`)));
});

/** Append a decision to the stream with the admin's valid Redis credential (but no signing key). */
async function xadd(d: Decision): Promise<string> {
  return (await asAdmin.xadd(keys.decisions, '*', ...encodeDecision(d)))!;
}

const refusedLine = (addr: string) => (l: Record<string, unknown>) => l.msg === 'decision refused: not signed by a trusted key' && l.addr === addr;

/** A signed ban both agents applied (so later tests can try to lift it). */
async function bannedEverywhere(addr: string): Promise<void> {
  await signed.ban({ jail: 'sshd', addr, now: Date.now(), until: Date.now() + 3_600_000, reason: 'test', origin: 'cli:test' });
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan(addr), 10_000, `${h} applies the signed ban of ${addr}`)));
}

/** A signed marker ban both agents applied: everything written before it has been read. */
async function allRead(marker: string): Promise<void> {
  await bannedEverywhere(marker);
}

test('honest failures still ban: the coordinator signs what its counting script decided', async () => {
  const attacker = '198.51.100.10';
  appendFileSync(logs.h1!, sshdFailure(attacker, 'h1').repeat(3));
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan(attacker), 15_000, `${h} applies the counted ban`)));
  const record = decodeBan((await admin.hget(keys.bans, banId('sshd', attacker)))!);
  assert.ok(record.ok && record.value.sig && record.value.kid === testKeys().kid, 'the ban record carries the coordinator\'s signature');
  assert.equal(await admin.hlen(keys.unsignedBans), 0, 'nothing is left parked');
});

test('bans decided in one counting call share one signature (a hash tree): each decision and record still verifies alone', async () => {
  const attackers = ['198.51.100.11', '198.51.100.12', '198.51.100.13', '198.51.100.14', '198.51.100.15'];
  // One write: one report, one counting call, five bans.
  appendFileSync(logs.h1!, attackers.map((a) => sshdFailure(a, 'h1').repeat(3)).join(''));
  await Promise.all(hosts.flatMap((h) => attackers.map((a) => agents[h]!.waitFor(isBan(a), 15_000, `${h} applies the batch-signed ban of ${a}`))));
  const stored = await Promise.all(attackers.map(async (a) => decodeBan((await admin.hget(keys.bans, banId('sshd', a)))!)));
  const trusted = loadTrustedKeys([testKeys().pubFile]).keys;
  const sigs = new Set<string>();
  for (const r of stored) {
    assert.ok(r.ok && r.value.proof, 'the record carries its path to the batch root');
    sigs.add(r.value.sig!);
    assert.equal(checkSignature(trusted, cluster, recordAsDecision(r.value), r.value), undefined);
  }
  assert.equal(sigs.size, 1, 'one signature for the whole call');
  const [a, b] = stored as Array<Extract<(typeof stored)[number], { ok: true }>>;
  assert.equal(checkSignature(trusted, cluster, recordAsDecision(a!.value), { ...a!.value, proof: b!.value.proof }), 'bad signature', 'another ban\'s path does not fit');
  const entries = (await admin.xrevrange(keys.decisions, '+', '-', 'COUNT', 50)).map(([, f]) => decodeDecision(f)).filter((d) => d.ok && d.value.op === 'ban' && attackers.includes(d.value.addr));
  assert.equal(entries.length, attackers.length);
  for (const d of entries) assert.ok(d.ok && d.value.proof && d.value.sig === [...sigs][0]);
});

test('a decision written with a valid admin Redis credential but without a signing key is not applied by any agent', async () => {
  const now = Date.now();
  await xadd({ op: 'ban', jail: 'manual', addr: '198.51.100.20', since: now, until: FOREVER, reason: 'forged', origin: 'cli:root' });
  // The CLI itself, run without any signing key, is refused the same way.
  const noKey = runCli(['--config', dirs.coord!, 'ban', '198.51.100.21'], { FLEETBAN_SIGNING_KEY: '/nonexistent' });
  assert.notEqual((await noKey).code, 0, 'a key that does not load is an error, not an unsigned ban');
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(refusedLine('198.51.100.20'), 10_000, `${h} refuses the unsigned ban`)));
  await allRead('198.51.100.29');
  for (const h of hosts) assert.equal(agents[h]!.count(isBan('198.51.100.20')), 0, `${h} did not apply the unsigned ban`);
  // The refusals are counted and shown in `fleetban hosts`.
  await waitUntil(async () => {
    const out = await runCli(['--config', dirs.coord!, '--json', 'hosts']);
    const rows = JSON.parse(out.stdout) as Array<{ host: string; decisionsRefused: number }>;
    return hosts.every((h) => (rows.find((r) => r.host === h)?.decisionsRefused ?? 0) >= 1);
  }, 10_000, 'refusals counted in fleetban hosts');
  const table = await runCli(['--config', dirs.coord!, 'hosts']);
  assert.match(table.stdout, /UNTRUSTED/);
});

test('forged and badly signed bans, unbans and flushes are refused', async () => {
  const victim = '198.51.100.30';
  await bannedEverywhere(victim);
  const stranger = loadSigningKey(otherKeys('stranger').keyFile);
  const now = Date.now();
  // Signed by a key no agent trusts.
  const untrusted: Decision = { op: 'ban', jail: 'sshd', addr: '198.51.100.31', since: now, until: now + 60_000, reason: 'x', origin: 'coord' };
  await xadd({ ...untrusted, ...signDecision(stranger, cluster, untrusted) });
  // A real signature, with the address changed afterwards.
  const real: Decision = { op: 'ban', jail: 'sshd', addr: '198.51.100.32', since: now, until: now + 60_000, reason: 'x', origin: 'coord' };
  await xadd({ ...real, ...signDecision(trustedKey(), cluster, real), addr: '198.51.100.33' });
  // A real signature made for another cluster.
  await xadd({ ...real, addr: '198.51.100.34', ...signDecision(trustedKey(), 'elsewhere', { ...real, addr: '198.51.100.34' }) });
  // Attempts to lift the victim's ban: unsigned unban, unban signed by a stranger, unsigned flushes.
  await xadd({ op: 'unban', jail: 'sshd', addr: victim, origin: 'cli:root', at: now + 1000 });
  const unban: Decision = { op: 'unban', jail: '*', addr: victim, origin: 'cli:root', at: now + 1000 };
  await xadd({ ...unban, ...signDecision(stranger, cluster, unban) });
  await xadd({ op: 'flush', jail: '*', origin: 'cli:root', at: now + 1000 });
  await xadd({ op: 'flush', jail: 'sshd', origin: 'cli:root' });
  await allRead('198.51.100.39');
  for (const h of hosts) {
    for (const a of ['198.51.100.31', '198.51.100.32', '198.51.100.33', '198.51.100.34']) assert.equal(agents[h]!.count(isBan(a)), 0, `${h} did not apply the ban of ${a}`);
    assert.equal(agents[h]!.count(isUnban(victim)), 0, `${h} still holds ${victim}`);
    assert.equal(agents[h]!.count((l) => l.msg === 'flush applied'), 0, `${h} applied no flush`);
    const reasons = agents[h]!.lines.filter((l) => l.msg === 'decision refused: not signed by a trusted key').map((l) => String(l.reason));
    assert.ok(reasons.some((r) => /not trusted/.test(r)) && reasons.some((r) => r === 'bad signature') && reasons.some((r) => r === 'unsigned'), `${h} logged each reason: ${reasons.join('; ')}`);
  }
});

test('forged, unsigned and deleted ban records change nothing: snapshots are verified, held bans stay', async () => {
  const held = '198.51.100.40';
  await bannedEverywhere(held);
  const now = Date.now() - 120_000;
  // A forged record, and a legit record altered; then the held ban's record is deleted.
  await admin.hset(keys.bans, banId('sshd', '198.51.100.41'), encodeBan({ jail: 'sshd', addr: '198.51.100.41', since: now, until: FOREVER, reason: 'forged', origin: 'coord', failures: 9 }));
  const r = decodeBan((await admin.hget(keys.bans, banId('sshd', held)))!);
  assert.ok(r.ok);
  await admin.hset(keys.bans, banId('sshd', '198.51.100.42'), encodeBan({ ...r.value, addr: '198.51.100.42' }));
  await admin.hdel(keys.bans, banId('sshd', held));
  // Make h1 resync from a snapshot (its connections are cut), and start h3, which holds nothing yet.
  for (const line of (await admin.client('LIST') as string).split('\n')) {
    const id = /id=(\d+) .*name=fleetban-agent-decisions/.exec(line);
    if (id) await admin.client('KILL', 'ID', id[1]!);
  }
  const h3 = startAgent('h3');
  await h3.waitFor((l) => l.msg === 'agent started', 15_000, 'h3 start');
  await agents.h1!.waitFor((l) => l.msg === 'bans this host holds under a valid decision are missing from the snapshot; kept until a signed unban or their expiry', 15_000, 'h1 keeps the held ban');
  for (const h of ['h1', 'h3']) {
    await agents[h]!.waitFor((l) => l.msg === 'ban record in the snapshot refused: not signed by a trusted key' && l.addr === '198.51.100.41', 10_000, `${h} refuses the forged record`);
    await agents[h]!.waitFor((l) => l.msg === 'ban record in the snapshot refused: not signed by a trusted key' && l.addr === '198.51.100.42' && l.reason === 'bad signature', 10_000, `${h} refuses the altered record`);
  }
  assert.equal(agents.h1!.count(isUnban(held)), 0, 'h1 did not lift the ban whose record was deleted');
  // A signed unban still lifts it.
  await signed.unban('cli:test', [['*', held]], Date.now());
  await agents.h1!.waitFor(isUnban(held), 10_000, 'h1 applies the signed unban');
});

test('a replayed ban does nothing after its unban; a replayed unban does not lift a later ban', async () => {
  const addr = '198.51.100.50';
  await bannedEverywhere(addr);
  const banFields = ((await admin.xrevrange(keys.decisions, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>)[0]![1];
  await signed.unban('cli:test', [['sshd', addr]], Date.now());
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isUnban(addr), 10_000, `${h} unbans`)));
  const unbanFields = ((await admin.xrevrange(keys.decisions, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>)[0]![1];
  await admin.xadd(keys.decisions, '*', ...banFields);
  await Promise.all(hosts.map((h) => agents[h]!.waitFor((l) => l.msg === 'ban not applied: an unban or flush this host applied already lifted it (a replay)' && l.addr === addr, 10_000, `${h} ignores the replay`)));
  for (const h of hosts) assert.equal(agents[h]!.count(isBan(addr)), 1, `${h} applied the ban once`);
  // A new ban, then the old unban replayed: the new ban started after the unban, so it stays.
  await new Promise((r) => setTimeout(r, 5));
  await bannedEverywhere('198.51.100.51');
  await signed.ban({ jail: 'sshd', addr, now: Date.now(), until: Date.now() + 3_600_000, reason: 'again', origin: 'cli:test' });
  await Promise.all(hosts.map((h) => waitUntil(() => agents[h]!.count(isBan(addr)) === 2, 10_000, `${h} applies the new ban`)));
  await admin.xadd(keys.decisions, '*', ...unbanFields);
  await allRead('198.51.100.59');
  for (const h of hosts) assert.equal(agents[h]!.count(isUnban(addr)), 1, `${h} kept the new ban`);
});

test('the self-guard refuses a signed ban of 0.0.0.0/1, ::/1, a never_ban network or the host itself', async () => {
  const wide = ['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1', '203.0.113.0/24', '203.0.113.200', '127.0.0.1', '198.50.0.0/15'];
  for (const addr of wide) await signed.ban({ jail: 'manual', addr, now: Date.now(), until: FOREVER, reason: 'signed but wrong', origin: 'cli:root' });
  await allRead('198.51.100.69');
  for (const h of hosts) {
    const refused = agents[h]!.lines.filter((l) => l.msg === 'ban refused by this host\'s self-guard').map((l) => String(l.addr));
    assert.deepEqual(refused.sort(), [...wide].sort(), `${h} refused every one of them`);
    for (const a of wide) assert.equal(agents[h]!.count(isBan(a)), 0, `${h} did not apply ${a}`);
  }
  await waitUntil(async () => {
    const hb = JSON.parse((await admin.get(keys.host('h1').heartbeat)) ?? '{}') as { guardRefused?: number };
    return (hb.guardRefused ?? 0) >= wide.length;
  }, 10_000, 'guard refusals counted in the heartbeat');
});

test('--bantime 1000y is cut to the longest ban every firewall accepts, and agents keep working', async () => {
  const out = await runCli(['--config', dirs.coord!, 'ban', '198.51.100.80', '--bantime', '1000y']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /longer than/);
  const r = decodeBan((await admin.hget(keys.bans, banId('manual', '198.51.100.80')))!);
  assert.ok(r.ok);
  assert.equal(r.value.until - r.value.since, MAX_BAN_MS);
  // Escalation and the script cap too: a ban written with a 1000-year expiry is cut by the script.
  await signed.ban({ jail: 'manual', addr: '198.51.100.81', now: Date.now(), until: Date.now() + 1000 * 365 * 86_400_000, reason: 'long', origin: 'cli:test' });
  const r2 = decodeBan((await admin.hget(keys.bans, banId('manual', '198.51.100.81')))!);
  assert.ok(r2.ok && r2.value.until - r2.value.since === MAX_BAN_MS);
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan('198.51.100.81'), 10_000, `${h} applies the capped ban`)));
  await allRead('198.51.100.89');
});

test('a ban the counting script parked unsigned (its coordinator died before signing) is signed and published by a coordinator', async () => {
  const addr = '198.51.100.90';
  const key = trustedKey();
  // The counting step alone, as a coordinator that dies right after it leaves things.
  const counting = new ClusterScripts(admin, keys, 100_000, undefined, (d) => signDecision(key, cluster, d));
  const now = Date.now();
  const res = await counting.recordFailures(now, [{ jail: 'sshd', findtimeMs: 600_000, maxretry: 1, minhosts: 1, overalljails: false, rndtimeMs: 0, countsBans: false, durationsMs: [3_600_000] }],
    [{ eid: 'parked-1', jail: 'sshd', addr, time: now, host: 'h1' }]);
  assert.equal(res.bans.length, 1);
  assert.deepEqual(Object.values(await admin.hgetall(keys.unsignedBans)), [banId('sshd', addr)], 'parked, not published');
  await Promise.all(hosts.map((h) => agents[h]!.waitFor(isBan(addr), 30_000, `${h} applies the ban the running coordinator published`)));
  assert.equal(await admin.hlen(keys.unsignedBans), 0);
});
