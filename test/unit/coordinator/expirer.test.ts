import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { startRedis, randomCluster, type TestRedis } from '../../helpers/redis-server.js';
import { clusterKeys } from '../../../common/protocol/keys.js';
import { decodeDecision } from '../../../common/protocol/messages.js';
import { ClusterScripts } from '../../../common/scripts/index.js';
import { Expirer } from '../../../coordinator/expirer.js';

/** coordinator/expirer.ts against a real redis-server: what is due is lifted and published, in pages, once. */
let server: TestRedis;
let redis: Redis;
before(async () => {
  server = await startRedis();
  redis = server.client();
});
after(async () => server.stop());

const T0 = Date.parse('2026-11-26T10:00:00Z');
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

async function unbans(keys: ReturnType<typeof clusterKeys>): Promise<string[]> {
  return (await redis.xrange(keys.decisions, '-', '+')).map(([, f]) => decodeDecision(f)).flatMap((d) => {
    assert.ok(d.ok);
    return d.value.op === 'unban' && 'addr' in d.value ? [`${d.value.jail} ${d.value.addr}`] : [];
  });
}

test('a sweep lifts the bans due on the given clock, publishes one unban each, and logs the count', async () => {
  const keys = clusterKeys(randomCluster());
  const scripts = new ClusterScripts(redis, keys);
  const ban = (addr: string, until: number) => scripts.ban({ jail: 'sshd', addr, now: T0, until, reason: 'r', origin: 'cli:t' });
  await ban('198.51.100.1', T0 + 1000);
  await ban('198.51.100.2', T0 + 5000);
  await ban('198.51.100.3', -1);
  let clock = T0 + 999;
  const { logger, lines } = capture();
  const expirer = new Expirer(scripts, 60_000, logger, () => clock);
  assert.equal(await expirer.sweep(), 0, 'nothing is due a millisecond early');
  assert.equal(lines.length, 0, 'an empty sweep logs nothing');
  clock = T0 + 1000;
  assert.equal(await expirer.sweep(), 1);
  assert.deepEqual(await unbans(keys), ['sshd 198.51.100.1']);
  assert.deepEqual(lines.map((l) => [l.msg, l.count]), [['bans expired', 1]]);
  clock = T0 + 10 * 365 * 86_400_000;
  assert.equal(await expirer.sweep(), 1, 'the permanent ban never expires');
  assert.deepEqual((await redis.hkeys(keys.bans)), ['sshd|198.51.100.3']);
  assert.equal(await expirer.sweep(), 0, 'an expired ban is lifted once');
  assert.deepEqual(await unbans(keys), ['sshd 198.51.100.1', 'sshd 198.51.100.2']);
});

test('a mass expiry is taken in pages of 1000 within one sweep; a sweep already running is not doubled', async () => {
  const keys = clusterKeys(randomCluster());
  const scripts = new ClusterScripts(redis, keys);
  for (let i = 0; i < 2500; i++) {
    await scripts.ban({ jail: 'sshd', addr: `2001:db8::${(i + 1).toString(16)}`, now: T0, until: T0 + 1, reason: '', origin: 'cli:t' });
  }
  const { logger } = capture();
  const expirer = new Expirer(scripts, 60_000, logger, () => T0 + 2);
  const [first, second] = await Promise.all([expirer.sweep(), expirer.sweep()]);
  assert.equal(first, 2500, 'every page in one sweep');
  assert.equal(second, 0, 'the overlapping sweep returns at once');
  assert.equal(await redis.hlen(keys.bans), 0);
  assert.equal((await unbans(keys)).length, 2500);
});

test('when Redis fails the sweep warns and returns; the timer sweeps again', async () => {
  const keys = clusterKeys(randomCluster());
  const broken = server.client();
  const scripts = new ClusterScripts(broken, keys);
  await scripts.ban({ jail: 'sshd', addr: '192.0.2.5', now: T0, until: T0 + 1, reason: '', origin: 'cli:t' });
  broken.disconnect();
  const { logger, lines } = capture();
  const expirer = new Expirer(scripts, 50, logger, () => T0 + 2);
  assert.equal(await expirer.sweep(), 0);
  assert.equal(lines[0]!.msg, 'expiring bans failed; will retry');
  // Its timer, once the connection is back, lifts the ban without anyone calling sweep().
  await broken.connect();
  expirer.start();
  const deadline = Date.now() + 5000;
  while ((await redis.hlen(keys.bans)) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expirer.stop();
  assert.equal(await redis.hlen(keys.bans), 0);
  assert.deepEqual(await unbans(keys), ['sshd 192.0.2.5']);
});
