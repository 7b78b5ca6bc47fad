import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, randomCluster, SHIPPED_REDIS_CONF, freePort } from '../helpers/redis-server.js';
import { runCli, writeConfig } from '../helpers/spawn.js';
import { testProcesses } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';

/** `fleetban acl` prints the users in ACL-file syntax, keeps their passwords, and applies them. */
const { work, servers } = testProcesses('acl');

test('fleetban acl prints one user per role and host, with passwords made once (0600) and kept', async () => {
  const pw = join(work, 'secrets');
  const first = await runCli(['acl', '--hosts', 'web1,web2', '--cluster', 'prod', '--password-dir', pw]);
  assert.equal(first.code, 0, first.stderr);
  const lines = first.stdout.trim().split('\n');
  assert.deepEqual(lines.map((l) => l.split(' ')[1]), ['fleetban-coordinator', 'fleetban-admin', 'fleetban-reader', 'fleetban-agent-web1', 'fleetban-agent-web2']);
  for (const l of lines) assert.match(l, /^user \S+ on #[0-9a-f]{64} resetkeys resetchannels -@all /);
  const agent = lines[3]!;
  assert.match(agent, / ~fb:\{prod\}:host:web1:failures ~fb:\{prod\}:host:web1:hb ~fb:\{prod\}:host:web1:ack /);
  assert.doesNotMatch(agent, /\+eval|\+@scripting|\+del|\+xtrim|\+xdel|\+@all|web2/);
  assert.match(first.stderr, /created 5 password files/);
  const file = join(pw, 'fleetban-agent-web1.password');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(pw).mode & 0o777, 0o700);
  const again = await runCli(['acl', '--hosts', 'web1,web2', '--cluster', 'prod', '--password-dir', pw]);
  assert.equal(again.stdout, first.stdout, 'the same passwords the second time');
  assert.equal(again.stderr, '');
  const bad = await runCli(['acl', '--hosts', 'web1,../x', '--cluster', 'prod', '--password-dir', pw]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid host name '\.\.\/x'/);
});

test('the printed file loads in redis-server, and so does the shipped reference (which lets nobody in)', async () => {
  const pw = join(work, 'secrets2');
  const out = await runCli(['acl', '--hosts', 'web1', '--cluster', 'default', '--password-dir', pw]);
  for (const [name, acl] of [['generated', out.stdout], ['shipped', readFileSync('deploy/redis/fleetban-acl.conf', 'utf8')]] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'fleetban-aclfile-'));
    writeFileSync(join(dir, 'users.acl'), acl);
    const port = await freePort();
    // --test-memory would be nicer; a server that starts and answers proves the file is valid.
    const conf = join(dir, 'redis.conf');
    writeFileSync(conf, `include ${SHIPPED_REDIS_CONF}\nport ${port}\nbind 127.0.0.1\ndir ${dir}\nappendonly no\naclfile ${join(dir, 'users.acl')}\ndaemonize yes\npidfile ${join(dir, 'redis.pid')}\nlogfile ${join(dir, 'redis.log')}\n`);
    execFileSync('redis-server', [conf]);
    // A daemonized server answers a moment after redis-server returns: retry the first connection.
    let c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    for (let attempt = 0; ; attempt++) {
      c.on('error', () => undefined);
      try {
        await c.connect();
        break;
      } catch (err) {
        c.disconnect();
        if (attempt > 100) throw err;
        await new Promise((r) => setTimeout(r, 50));
        c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      }
    }
    try {
      const users = (await c.call('ACL', 'USERS')) as string[];
      assert.ok(users.includes('fleetban-agent-web1'), `${name}: users loaded`);
      if (name === 'shipped') {
        // Off and without a password: AUTH fails whatever the password.
        await assert.rejects(c.call('AUTH', 'fleetban-agent-web1', 'x'), /WRONGPASS/, 'a shipped user cannot log in');
      }
      await c.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
    } finally {
      c.disconnect();
    }
  }
});

test('fleetban acl --apply creates the users on a running server and registers the hosts', async () => {
  const redis = await startRedis();
  servers.push(redis);
  const cluster = randomCluster();
  // Applying needs a login allowed to run ACL: here Redis' default user, in the URL.
  const dir = writeConfig({ 'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.adminUrl}\n` });
  const pw = join(work, 'secrets3');
  const applied = await runCli(['--config', dir, 'acl', '--hosts', 'a1,a2', '--password-dir', pw, '--apply']);
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, /applied 5 ACL users for cluster \S+ \(2 hosts registered\)/);
  const admin = redis.client();
  assert.deepEqual((await admin.smembers(clusterKeys(cluster).registry)).sort(), ['a1', 'a2']);
  const a1 = new Redis(redis.url, { username: 'fleetban-agent-a1', password: readFileSync(join(pw, 'fleetban-agent-a1.password'), 'utf8').trim(), maxRetriesPerRequest: 0 });
  try {
    assert.ok(await a1.xadd(clusterKeys(cluster).host('a1').failures, '*', 'v', '0'));
    await assert.rejects(a1.xadd(clusterKeys(cluster).host('a2').failures, '*', 'v', '0'), /NOPERM/);
  } finally {
    a1.disconnect();
  }
  // Without the right to run ACL, a clear one-line refusal.
  const coordDir = writeConfig({ 'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = a1\n` });
  const refused = await runCli(['--config', coordDir, 'acl', '--hosts', 'a3', '--password-dir', pw, '--apply']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /^fleetban: ACL SETUSER fleetban-coordinator refused: NOPERM/m);
});
