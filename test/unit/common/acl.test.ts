import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeCoordinatorRegistration, decodeHeartbeat, LIMITS } from '../../../common/protocol/messages.js';
import { clusterKeys, hostOfKey } from '../../../common/protocol/keys.js';
import { loadFleetbanConfig, roleRedis } from '../../../common/config/fleetban-config.js';
import { ConfigError } from '../../../common/errors.js';
import { isAlive } from '../../../common/hosts.js';
import { clusterAclUsers } from '../../../common/acl.js';

const T = 1_764_151_200_000;
const beat = (over: Record<string, unknown> = {}) => JSON.stringify({ v: 3, host: 'web1', addrs: ['192.0.2.5', '2001:db8::5'], version: '0.1.0', backend: 'nftables',
  jails: ['sshd'], pid: 42, startedAt: T, seenAt: T, bansApplied: 3, bansHeld: 2, lastDecision: '1764151200000-0', ...over });

test('heartbeats: a valid one decodes; every field a compromised host could abuse is checked', () => {
  const ok = decodeHeartbeat(beat(), 'web1');
  assert.ok(ok.ok);
  assert.deepEqual(ok.value.addrs, ['192.0.2.5', '2001:db8::5']);
  const reason = (json: string, host = 'web1') => {
    const d = decodeHeartbeat(json, host);
    assert.equal(d.ok, false, json.slice(0, 80));
    return d.ok ? '' : d.reason;
  };
  assert.match(reason(beat(), 'web2'), /invalid host/, "a heartbeat in another host's key");
  assert.match(reason(beat({ addrs: [1] })), /invalid addrs/);
  assert.match(reason(beat({ addrs: ['192.0.2.5/0'] })), /invalid addrs/);
  assert.match(reason(beat({ addrs: ['::FFFF:192.0.2.5'] })), /invalid addrs/);
  assert.match(reason(beat({ addrs: 'x' })), /at most 64/);
  assert.match(reason(beat({ addrs: Array.from({ length: LIMITS.heartbeatAddrs + 1 }, (_, i) => `198.51.100.${i + 1}`) })), /at most 64/);
  assert.match(reason(beat({ seenAt: 1e300 })), /invalid seenAt/);
  assert.match(reason(beat({ seenAt: -1 })), /invalid seenAt/);
  assert.match(reason(beat({ startedAt: 'yesterday' })), /invalid startedAt/);
  assert.match(reason(beat({ pid: 1.5 })), /invalid pid/);
  assert.match(reason(beat({ bansHeld: -3 })), /invalid bansHeld/);
  assert.match(reason(beat({ lastDecision: '../x' })), /invalid lastDecision/);
  assert.match(reason(beat({ jails: ['a b'] })), /invalid jails/);
  assert.match(reason('[1]'), /not an object/);
  assert.match(reason('{'), /not JSON/);
  assert.match(reason(beat({ version: 'x'.repeat(LIMITS.heartbeatBytes) })), /byte limit/);
  const long = decodeHeartbeat(beat({ version: 'v'.repeat(1000) }), 'web1');
  assert.ok(long.ok && long.value.version.length === LIMITS.labelChars, 'free text is cut');
});

test('liveness is measured on Redis\' clock, and a heartbeat from the future keeps nobody alive', () => {
  const hb = decodeHeartbeat(beat(), 'web1');
  assert.ok(hb.ok);
  assert.equal(isAlive(hb.value, T + 14_000), true);
  assert.equal(isAlive(hb.value, T + 16_000), false);
  assert.equal(isAlive({ ...hb.value, seenAt: T + 3_600_000 }, T), false);
});

test('coordinator registrations decode with bounds', () => {
  const reg = { consumer: 'c1', host: 'h', pid: 1, seenAt: T, policy: 'abc', jails: ['sshd'], reloadedAt: T };
  assert.ok(decodeCoordinatorRegistration(JSON.stringify(reg)).ok);
  assert.equal(decodeCoordinatorRegistration(JSON.stringify({ ...reg, seenAt: 1e300 })).ok, false);
  assert.equal(decodeCoordinatorRegistration(JSON.stringify({ ...reg, jails: [1] })).ok, false);
  assert.equal(decodeCoordinatorRegistration('nope').ok, false);
});

test('per-host keys name their host; nothing else does', () => {
  const k = clusterKeys('prod');
  assert.equal(hostOfKey(k, k.host('web1.example').failures), 'web1.example');
  assert.equal(hostOfKey(k, k.decisions), undefined);
  assert.equal(hostOfKey(clusterKeys('other'), k.host('web1').failures), undefined);
});

test('ACL users: an agent may write exactly its own three keys and run no script', () => {
  const users = clusterAclUsers('prod', ['web1']);
  const agent = users.find((u) => u.name === 'fleetban-agent-web1')!;
  const own = agent.rules.filter((r) => r.startsWith('~'));
  assert.deepEqual(own, ['~fb:{prod}:host:web1:failures', '~fb:{prod}:host:web1:hb', '~fb:{prod}:host:web1:ack']);
  assert.deepEqual(agent.rules.filter((r) => r.startsWith('%R~')), ['%R~fb:{prod}:decisions', '%R~fb:{prod}:bans', '%R~fb:{prod}:registry']);
  for (const forbidden of ['+eval', '+evalsha', '+@scripting', '+del', '+xtrim', '+xdel', '+@all', '+@write', '+publish']) {
    assert.ok(!agent.rules.includes(forbidden), forbidden);
  }
  assert.equal(agent.rules[2], '-@all', 'starts from nothing');
});

test('per-role logins: a role section overrides [redis] for that role only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-roles-'));
  writeFileSync(join(dir, 'agent.pw'), 'agent-secret\n');
  writeFileSync(join(dir, 'shared.pw'), 'shared\n');
  writeFileSync(join(dir, 'fleetban.conf'), `[redis]\nurl = redis://127.0.0.1:7000\nusername = shared\npassword_file = ${join(dir, 'shared.pw')}\n`
    + `[agent]\nhost = web1\nredis_username = fleetban-agent-web1\nredis_password_file = ${join(dir, 'agent.pw')}\n[cli]\nredis_username = fleetban-reader\n`);
  const config = loadFleetbanConfig(dir);
  assert.deepEqual([roleRedis(config, 'agent').username, roleRedis(config, 'agent').password], ['fleetban-agent-web1', 'agent-secret']);
  assert.deepEqual([roleRedis(config, 'coordinator').username, roleRedis(config, 'coordinator').password], ['shared', 'shared']);
  assert.deepEqual([roleRedis(config, 'cli').username, roleRedis(config, 'cli').password], ['fleetban-reader', 'shared']);
  assert.equal(roleRedis(config, 'agent').url, 'redis://127.0.0.1:7000');
  writeFileSync(join(dir, 'fleetban.conf'), `[coordinator]\nredis_password_file = ${join(dir, 'missing.pw')}\n`);
  assert.throws(() => roleRedis(loadFleetbanConfig(dir), 'coordinator'), /fleetban\.conf:2, key 'redis_password_file': cannot read/);
});

test('each role reads only its own secret: an agent and a coordinator on one host, each unit holding only its credential', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-roles-'));
  writeFileSync(join(dir, 'agent.pw'), 'agent-secret\n');
  writeFileSync(join(dir, 'coordinator.pw'), 'coordinator-secret\n', { mode: 0o600 });
  // What the agent unit sees: the coordinator's credential directory does not exist in it.
  const conf = (coordinatorFile: string, cliFile: string): void => writeFileSync(join(dir, 'fleetban.conf'),
    `[redis]\nurl = redis://127.0.0.1:7000\n[agent]\nhost = web1\nredis_username = fleetban-agent-web1\nredis_password_file = ${join(dir, 'agent.pw')}\n`
    + `[coordinator]\nredis_username = fleetban-coordinator\nredis_password_file = ${coordinatorFile}\n`
    + `[cli]\nredis_username = fleetban-admin\nredis_password_file = ${cliFile}\n`);
  conf('/run/credentials/fleetban-coordinator.service/redis-password', join(dir, 'admin-missing.pw'));
  const config = loadFleetbanConfig(dir);
  assert.deepEqual([roleRedis(config, 'agent').username, roleRedis(config, 'agent').password], ['fleetban-agent-web1', 'agent-secret']);
  assert.throws(() => roleRedis(config, 'coordinator'), (e: unknown) => e instanceof ConfigError && e.line === 9 && e.key === 'redis_password_file'
    && /fleetban\.conf:9, key 'redis_password_file': cannot read \/run\/credentials\/fleetban-coordinator\.service\/redis-password: .*no such file/i.test(e.message));
  assert.throws(() => roleRedis(config, 'cli'), /fleetban\.conf:12, key 'redis_password_file': cannot read .*admin-missing\.pw/);
  // The other way round: a coordinator's file there, the agent's a directory (unreadable as a secret).
  writeFileSync(join(dir, 'fleetban.conf'), `[agent]\nredis_password_file = ${dir}\n[coordinator]\nredis_password_file = ${join(dir, 'coordinator.pw')}\n`);
  const c2 = loadFleetbanConfig(dir);
  assert.equal(roleRedis(c2, 'coordinator').password, 'coordinator-secret');
  assert.throws(() => roleRedis(c2, 'agent'), /fleetban\.conf:2, key 'redis_password_file': cannot read .*not a regular file \(a directory\)/);
  // A role without a file of its own falls back to [redis] password_file, and only it reads that.
  writeFileSync(join(dir, 'fleetban.conf'), `[redis]\npassword_file = ${join(dir, 'gone.pw')}\n[agent]\nredis_password_file = ${join(dir, 'agent.pw')}\n`);
  const c3 = loadFleetbanConfig(dir);
  assert.equal(roleRedis(c3, 'agent').password, 'agent-secret');
  assert.throws(() => roleRedis(c3, 'coordinator'), /fleetban\.conf:2, key 'password_file': cannot read/);
  // The sentinels' password is read only when the URL goes through sentinels, by the role connecting.
  writeFileSync(join(dir, 'fleetban.conf'), `[redis]\nurl = redis://127.0.0.1:7000\nsentinel_password_file = ${join(dir, 'gone.pw')}\n`);
  assert.equal(roleRedis(loadFleetbanConfig(dir), 'agent').sentinelPassword, undefined);
  writeFileSync(join(dir, 'fleetban.conf'), `[redis]\nurl = sentinel://127.0.0.1:26379/mymaster\nsentinel_password_file = ${join(dir, 'gone.pw')}\n`);
  const c4 = loadFleetbanConfig(dir);
  assert.throws(() => roleRedis(c4, 'agent'), /fleetban\.conf:3, key 'sentinel_password_file': cannot read/);
  writeFileSync(join(dir, 'gone.pw'), 'sentinel-secret\n');
  assert.equal(roleRedis(c4, 'cli').sentinelPassword, 'sentinel-secret');
  rmSync(dir, { recursive: true, force: true });
});
