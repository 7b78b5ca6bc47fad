import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, randomCluster, provisionIdentities, type TestRedis, type TestIdentity } from '../helpers/redis-server.js';
import { startDaemon, runCli, writeConfig, type Daemon } from '../helpers/spawn.js';
import { testProcesses, waitUntil, stat } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { encodeReport, type ReportedFailure } from '../../common/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../common/protocol/version.js';

/**
 * One agent host is compromised: the attacker holds its real Redis identity (the ACL user
 * `fleetban-agent-web1` with its password, exactly as `fleetban acl` makes it) and tries, one
 * test each, what a host could do to the fleet before per-role identities. Every attempt is
 * refused by Redis or has no effect; honest hosts' failures still ban.
 */
const { work, daemons, servers } = testProcesses('compromised');
let redis: TestRedis;
let admin: Redis;
let evil: Redis;
let honest: Record<'web2' | 'web3', Redis>;
let coordinator: Daemon;
let cliDir: string;
const cluster = randomCluster();
const keys = clusterKeys(cluster);
const QUOTA_MB = 16;

function login(id: TestIdentity): Redis {
  const c = new Redis(redis.url, { username: id.username, password: id.password, maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  return c;
}

let eids = 0;
/** Report failures into `host`'s stream as that host's agent does, with a chosen `host` field. */
async function report(client: Redis, stream: string, claimedHost: string, jail: string, addrs: string[]): Promise<void> {
  const failures: ReportedFailure[] = addrs.map((addr) => ({ eid: `t${eids++}`, jail, addr, time: Date.now(), line: 'Failed password' }));
  await client.xadd(stream, '*', ...encodeReport(claimedHost, Date.now(), failures));
}

async function refused(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, /NOPERM/, `${what} must be refused by the ACL`);
}

const banned = async (jail: string, addr: string) => (await admin.hexists(keys.bans, `${jail}|${addr}`)) === 1;

before(async () => {
  redis = await startRedis();
  servers.push(redis);
  admin = redis.client();
  const ids = provisionIdentities(redis.port, cluster, ['web1', 'web2', 'web3']);
  evil = login(ids.agents.get('web1')!);
  honest = { web2: login(ids.agents.get('web2')!), web3: login(ids.agents.get('web3')!) };
  const jails = [
    // Three distinct hosts must report an address before it is banned.
    '[multi]', 'enabled = true', 'filter = sshd', 'port = ssh', `logpath = ${join(work, 'none.log')}`, 'maxretry = 3', 'minhosts = 3', 'findtime = 10m', 'bantime = 1h',
    '[sshd]', 'enabled = true', 'filter = sshd', 'port = ssh', `logpath = ${join(work, 'none.log')}`, 'maxretry = 3', 'findtime = 10m', 'bantime = 1h',
  ].join('\n') + '\n';
  const dir = writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = coord\nstate_dir = ${join(work, 'coord')}\n`
      + `[coordinator]\nconsumer = coord\nhost_quota = 2000\nhost_quota_mb = ${QUOTA_MB}\n`,
    'jail.conf': jails,
  });
  coordinator = startDaemon(['--config', dir, 'coordinator']);
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  cliDir = writeConfig({ 'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = workstation\n`, 'jail.conf': jails });
});

after(async () => {
  for (const c of [evil, honest.web2, honest.web3]) c?.disconnect();
});

test('what an agent needs still works with its identity: its own stream, heartbeat and ack, decisions, the snapshot', async () => {
  const own = keys.host('web1');
  assert.ok(await evil.xadd(own.failures, '*', 'v', String(PROTOCOL_VERSION), 'x', 'y'));
  assert.equal(await evil.set(own.ack, '0-0'), 'OK');
  assert.equal(await evil.sismember(keys.registry, 'web1'), 1);
  await evil.xread('COUNT', 1, 'STREAMS', keys.decisions, '0-0');
  const snap = await evil.multi().xrevrange(keys.decisions, '+', '-', 'COUNT', 1).hgetall(keys.bans).exec();
  assert.ok(snap && snap.every(([err]) => err === null), 'the snapshot transaction of reads is allowed');
});

test('forged host names: reports into other hosts\' streams are refused, a forged host field counts as the real host, minhosts is not met', async () => {
  const target = '203.0.113.10';
  for (const other of ['web2', 'web7']) await refused(report(evil, keys.host(other).failures, other, 'multi', [target]), `XADD to ${other}'s stream`);
  const before = await stat(admin, keys, 'multi:failed');
  // Three reports claiming to come from three hosts, all in web1's own stream.
  for (const claimed of ['web7', 'web8', 'web9']) await report(evil, keys.host('web1').failures, claimed, 'multi', [target, target]);
  await waitUntil(async () => (await stat(admin, keys, 'multi:failed')) >= before + 6, 10_000, 'the forged reports counted');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await banned('multi', target), false, 'one host claiming to be three does not meet minhosts = 3');
  const hosts = await admin.hkeys(`${keys.windowHostsPrefix}multi|${target}`);
  assert.deepEqual(hosts, ['web1'], 'the failures are attributed to the host whose stream they came from');
  // Honest failures still ban: two more real hosts make three.
  await report(honest.web2, keys.host('web2').failures, 'web2', 'multi', [target]);
  await report(honest.web3, keys.host('web3').failures, 'web3', 'multi', [target]);
  await waitUntil(() => banned('multi', target), 10_000, 'three distinct hosts ban');
});

test('heartbeats: none for another or a made-up host, no registration; its own invalid ones break nothing', async () => {
  const hb = (over: Record<string, unknown>) => JSON.stringify({ v: PROTOCOL_VERSION, host: 'web1', addrs: ['192.0.2.201'], version: 'x', backend: 'dry-run',
    jails: [], pid: 1, startedAt: Date.now(), seenAt: Date.now(), bansApplied: 0, lastDecision: '0-0', ...over });
  await refused(evil.set(keys.host('web2').heartbeat, hb({ host: 'web2', addrs: ['203.0.113.20'] })), "writing web2's heartbeat");
  await refused(evil.set(keys.host('fake').heartbeat, hb({ host: 'fake', addrs: ['203.0.113.20'] })), 'a heartbeat of a made-up host');
  await refused(evil.sadd(keys.registry, 'fake'), 'registering a made-up host');
  await refused(evil.srem(keys.registry, 'web2'), 'unregistering another host');
  await refused(evil.hset(`${keys.prefix}:hosts`, 'fake', hb({ host: 'fake' })), 'writing the old shared hosts hash');
  for (const bad of [{ addrs: [1] }, { seenAt: 1e300 }, { addrs: ['203.0.113.21; reboot'] }, { addrs: Array.from({ length: 65 }, (_, i) => `198.51.100.${i + 1}`) }]) {
    assert.equal(await evil.set(keys.host('web1').heartbeat, hb(bad)), 'OK');
    const hosts = await runCli(['--config', cliDir, '--json', 'hosts']);
    assert.equal(hosts.code, 0, `fleetban hosts with ${JSON.stringify(bad).slice(0, 60)}: ${hosts.stderr}`);
    assert.ok(!(JSON.parse(hosts.stdout) as Array<{ host: string }>).some((h) => h.host === 'web1'), 'the invalid heartbeat is not shown');
    assert.match(hosts.stderr, /web1: invalid heartbeat ignored/);
    const ban = await runCli(['--config', cliDir, 'ban', '203.0.113.22', '--jail', 'sshd', '--bantime', '1m']);
    assert.equal(ban.code, 0, `fleetban ban with ${JSON.stringify(bad).slice(0, 60)}: ${ban.stderr}`);
  }
  // The coordinator read those heartbeats too (fleet refresh, ignoreself) and keeps counting.
  const target = '203.0.113.23';
  await report(honest.web2, keys.host('web2').failures, 'web2', 'sshd', [target, target, target]);
  await waitUntil(() => banned('sshd', target), 10_000, 'bans still decided');
  assert.equal(coordinator.proc.exitCode, null);
});

test('streams: no host trims, deletes or overwrites another host\'s reports (XADD MAXLEN 0, XTRIM, XDEL), nor its own', async () => {
  const theirs = keys.host('web2').failures;
  await refused(evil.xadd(theirs, 'MAXLEN', '0', '*', 'v', String(PROTOCOL_VERSION)), "XADD MAXLEN 0 on web2's stream");
  await refused(evil.xtrim(theirs, 'MAXLEN', 0), "XTRIM of web2's stream");
  await refused(evil.xdel(theirs, '0-1'), "XDEL in web2's stream");
  await refused(evil.xtrim(keys.host('web1').failures, 'MAXLEN', 0), 'XTRIM of its own stream (only coordinators trim)');
  await refused(evil.call('XGROUP', 'DESTROY', theirs, 'coordinators'), "destroying web2's consumer group");
  await refused(evil.call('XGROUP', 'SETID', keys.host('web1').failures, 'coordinators', '$'), 'skipping its own backlog past the coordinators');
  await refused(evil.call('XREADGROUP', 'GROUP', 'coordinators', 'evil', 'STREAMS', theirs, '>'), "stealing web2's entries through the group");
  // web2's reports are still counted.
  const target = '203.0.113.30';
  await report(honest.web2, theirs, 'web2', 'sshd', [target, target, target]);
  await waitUntil(() => banned('sshd', target), 10_000, "web2's failures ban");
});

test('scripts: EVAL "while true do end" and every other script command are refused; Redis keeps answering', async () => {
  await refused(evil.eval('while true do end', 0), 'EVAL while-true');
  await refused(evil.call('EVAL_RO', 'return 1', '0'), 'EVAL_RO');
  await refused(evil.call('EVALSHA', 'a'.repeat(40), '0'), 'EVALSHA');
  await refused(evil.call('EVALSHA_RO', 'a'.repeat(40), '0'), 'EVALSHA_RO');
  await refused(evil.call('SCRIPT', 'LOAD', 'return 1'), 'SCRIPT LOAD');
  await refused(evil.call('SCRIPT', 'FLUSH'), 'SCRIPT FLUSH');
  await refused(evil.call('FUNCTION', 'LOAD', "#!lua name=x\nredis.register_function('x', function() while true do end end)"), 'FUNCTION LOAD');
  await refused(evil.call('FCALL', 'x', '0'), 'FCALL');
  const t = Date.now();
  assert.equal(await admin.ping(), 'PONG');
  assert.ok(Date.now() - t < 1000, 'Redis is not busy');
});

test('administration: DEL, FLUSHALL, FLUSHDB, CONFIG, KEYS, ACL, DEBUG, SHUTDOWN, CLIENT KILL are refused', async () => {
  await refused(evil.del(keys.bans), 'DEL of the bans');
  await refused(evil.del(keys.host('web1').heartbeat), 'DEL even of its own keys');
  await refused(evil.unlink(keys.decisions), 'UNLINK');
  await refused(evil.flushall(), 'FLUSHALL');
  await refused(evil.flushdb(), 'FLUSHDB');
  await refused(evil.config('SET', 'proto-max-bulk-len', '1gb'), 'CONFIG SET');
  await refused(evil.config('GET', 'requirepass'), 'CONFIG GET');
  await refused(evil.keys('*'), 'KEYS');
  await refused(evil.call('ACL', 'SETUSER', 'fleetban-agent-web1', '+@all'), 'ACL SETUSER');
  // DEBUG is off in the server's own settings too (enable-debug-command): refused either way.
  await assert.rejects(evil.call('DEBUG', 'SLEEP', '10'), /NOPERM|not allowed/, 'DEBUG');
  await refused(evil.call('SHUTDOWN', 'NOSAVE'), 'SHUTDOWN');
  await refused(evil.call('CLIENT', 'KILL', 'TYPE', 'normal'), 'CLIENT KILL');
  await refused(evil.call('SWAPDB', '0', '1'), 'SWAPDB');
  assert.ok((await admin.hlen(keys.bans)) > 0, 'the bans are still there');
});

test('decisions and bans: no write to decisions, bans, windows, stats, expiry, coordinators or the control channel; no new keys', async () => {
  const v = String(PROTOCOL_VERSION);
  const fields = ['v', v, 'op', 'ban', 'jail', 'manual', 'origin', 'cli:root', 'addr', '0.0.0.0/1', 'since', '1', 'until', '-1', 'reason', 'x'];
  const before = await admin.xlen(keys.decisions);
  await refused(evil.xadd(keys.decisions, '*', ...fields), 'XADD of a ban of 0.0.0.0/1');
  await refused(evil.xadd(keys.decisions, '*', 'v', v, 'op', 'flush', 'jail', '*', 'origin', 'cli:root'), 'XADD of a flush');
  await refused(evil.hset(keys.bans, 'manual|0.0.0.0/1', '{"garbage":1}'), 'HSET of a ban record');
  await refused(evil.hdel(keys.bans, 'sshd|203.0.113.30'), 'HDEL of a ban record');
  await refused(evil.zadd(keys.banExpiry, 1, 'sshd|203.0.113.30'), 'ZADD to the expiry set');
  await refused(evil.hset(keys.failureWindows('sshd'), '203.0.113.31', '1,e,web2;'), 'HSET of a failure window');
  await refused(evil.hset(keys.stats, 'sshd:failed', '0'), 'HSET of the stats');
  await refused(evil.hset(keys.coordinators, 'coord', '{}'), 'HSET of a coordinator registration');
  await refused(evil.set(keys.host('web2').ack, '99999999999999-0'), "a fake acknowledgement for web2");
  await refused(evil.publish(keys.control, 'reload'), 'PUBLISH on the control channel');
  await refused(evil.set(`${keys.hostPrefix}web1:junk`, 'x'), 'a new key under its own prefix');
  await refused(evil.set(`${keys.prefix}:other`, 'x'), 'a new key of the cluster');
  await refused(evil.set('unrelated', 'x'), 'a key of another application');
  assert.equal(await admin.xlen(keys.decisions), before, 'nothing reached the decisions stream');
  assert.equal(await admin.hexists(keys.bans, 'sshd|203.0.113.30'), 1, 'the ban is intact');
});

test('flooding its own stream at full speed: other hosts\' bans still work, Redis memory stays bounded', { timeout: 90_000 }, async () => {
  const info = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
  const base = await info();
  const own = keys.host('web1').failures;
  let written = 0;
  let peak = base;
  let flooding = true;
  const floodStart = Date.now();
  const junk = 'x'.repeat(200 * 1024);
  // Valid reports (counting work) and 200 KB garbage entries (memory), as fast as one client goes.
  const flood = (async () => {
    const client = evil.duplicate();
    client.on('error', () => undefined);
    let n = 0;
    while (flooding) {
      const p = client.pipeline();
      for (let i = 0; i < 20; i++) {
        if (i % 2 === 0) {
          const failures: ReportedFailure[] = Array.from({ length: 100 }, () => ({ eid: `f${n++}`, jail: 'sshd', addr: `2001:db8:f:${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}::1`, time: Date.now(), line: 'x' }));
          p.xadd(own, '*', ...encodeReport('web1', Date.now(), failures));
        } else {
          p.xadd(own, '*', 'v', String(PROTOCOL_VERSION), 'junk', junk);
          written += junk.length;
        }
      }
      await p.exec();
    }
    client.disconnect();
  })();
  const sampler = setInterval(() => void info().then((m) => (peak = Math.max(peak, m))), 100);
  try {
    await new Promise((r) => setTimeout(r, 1500));
    // An honest host's attacker is banned while the flood goes on.
    const target = '203.0.113.40';
    const asked = Date.now();
    await report(honest.web3, keys.host('web3').failures, 'web3', 'sshd', [target, target, target]);
    await waitUntil(() => banned('sshd', target), 10_000, 'an honest ban during the flood');
    const banMs = Date.now() - asked;
    // Long enough to pass the quota several times over, however slow this machine is right now (bounded).
    const until = Date.now() + 20_000;
    await new Promise((r) => setTimeout(r, 5000));
    while (written < 6 * QUOTA_MB * 1024 * 1024 && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    flooding = false;
    await flood;
    const perSecond = written / ((Date.now() - floodStart) / 1000);
    clearInterval(sampler);
    peak = Math.max(peak, await info());
    const mb = (b: number) => (b / 1024 / 1024).toFixed(1);
    console.log(`flood: ${mb(written)} MB of garbage written by one host (${mb(perSecond)} MB/s); Redis used_memory base ${mb(base)} MB, peak ${mb(peak)} MB (quota ${QUOTA_MB} MB); honest ban in ${banMs} ms`);
    // Bounded by the quota plus what one host writes between two trims (about a second; three
    // allowed for a loaded machine), not by what it wrote.
    const bound = QUOTA_MB * 1024 * 1024 + 3 * perSecond;
    assert.ok(written > bound, `the flood wrote ${mb(written)} MB, more than the bound ${mb(bound)} MB`);
    assert.ok(peak - base < bound, `peak growth ${mb(peak - base)} MB, bound ${mb(bound)} MB, ${mb(written)} MB written`);
    await waitUntil(async () => (await admin.memory('USAGE', own, 'SAMPLES', 0).then(Number)) <= (QUOTA_MB + 2) * 1024 * 1024, 10_000, 'the stream trimmed to its quota');
    assert.ok(coordinator.count((l) => l.msg === "host's failure stream over its quota; its oldest uncounted reports dropped" && l.host === 'web1') > 0);
    assert.equal(coordinator.count((l) => l.msg === "host's failure stream over its quota; its oldest uncounted reports dropped" && l.host !== 'web1'), 0, 'no other host lost reports');
  } finally {
    flooding = false;
    clearInterval(sampler);
    await flood.catch(() => undefined);
  }
});

test('the reader identity reads and writes nothing', async () => {
  const ids = provisionIdentities(redis.port, cluster, []);
  const reader = login(ids.reader);
  try {
    assert.ok((await reader.hlen(keys.bans)) > 0);
    await refused(reader.hset(keys.bans, 'x|192.0.2.1', '{}'), 'a reader writing a ban');
    await refused(reader.xadd(keys.decisions, '*', 'op', 'flush'), 'a reader writing a decision');
    await refused(reader.publish(keys.control, 'reload'), 'a reader publishing');
    await refused(reader.eval('return 1', 0), 'a reader running a script');
  } finally {
    reader.disconnect();
  }
});
