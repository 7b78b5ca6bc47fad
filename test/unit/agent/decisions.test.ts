import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { startRedis, randomCluster, type TestRedis } from '../../helpers/redis-server.js';
import { clusterKeys } from '../../../common/protocol/keys.js';
import { ClusterScripts } from '../../../common/scripts/index.js';
import { PROTOCOL_VERSION } from '../../../common/protocol/version.js';
import { compareStreamIds } from '../../../common/protocol/messages.js';
import { DecisionFollower } from '../../../agent/decisions.js';
import { Enforcer } from '../../../agent/enforcer.js';
import { DryRunBackend } from '../../../agent/firewall/dry-run.js';

/**
 * agent/decisions.ts against a real redis-server, applying to the dry-run backend: the snapshot at
 * start, decisions as they are published, the acknowledgement, malformed entries, and the resync
 * after a reconnect (a deleted ban record lifts nothing, an unban does).
 */
let server: TestRedis;
before(async () => {
  server = await startRedis();
});
after(async () => server.stop());

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function setup() {
  const keys = clusterKeys(randomCluster());
  const admin = server.client();
  const scripts = new ClusterScripts(admin, keys);
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const backend = new DryRunBackend({ logger });
  const enforcer = new Enforcer(backend, [{ jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] }], logger);
  const acks: string[] = [];
  const blocking: Redis = server.client();
  const follower = new DecisionFollower({ redis: blocking, other: server.client(), keys, enforcer, log: logger, ack: (id) => acks.push(id) });
  const held = async () => (await backend.list()).map((b) => `${b.jail} ${b.addr}`).sort();
  const banNow = (addr: string) => scripts.ban({ jail: 'sshd', addr, now: Date.now(), until: Date.now() + 3_600_000, reason: 'r', origin: 'cli:t' });
  return { keys, admin, scripts, lines, enforcer, follower, acks, blocking, held, banNow };
}

test('start applies the snapshot; later decisions are applied as published and acknowledged by id', async () => {
  const { scripts, enforcer, follower, acks, held, banNow, lines } = setup();
  await banNow('198.51.100.1');
  await enforcer.init();
  await follower.start();
  assert.deepEqual(await held(), ['sshd 198.51.100.1'], 'the ban made before the agent started');
  const second = await banNow('198.51.100.2');
  await until('the new ban applied', async () => (await held()).includes('sshd 198.51.100.2'));
  assert.ok(lines.some((l) => l.event === 'ban applied' && l.addr === '198.51.100.2'));
  const lifted = await scripts.unban('cli:t', [['sshd', '198.51.100.1']]);
  await until('the unban applied', async () => !(await held()).includes('sshd 198.51.100.1'));
  assert.deepEqual(await held(), ['sshd 198.51.100.2']);
  await until('acknowledged', () => acks.at(-1) === lifted.decisionId);
  assert.equal(follower.lastId, lifted.decisionId);
  for (let i = 1; i < acks.length; i++) assert.ok(compareStreamIds(acks[i]!, acks[i - 1]!) >= 0, 'acknowledgements only move forward');
  assert.ok(compareStreamIds(second.decisionId, lifted.decisionId) < 0);
  await follower.stop();
});

test('a malformed decision is skipped with a warning; the good one after it is applied', async () => {
  const { keys, admin, enforcer, follower, held, banNow, lines } = setup();
  await enforcer.init();
  await follower.start();
  await admin.xadd(keys.decisions, '*', 'v', String(PROTOCOL_VERSION), 'op', 'ban', 'jail', 'sshd', 'addr', '198.51.100.7; flush ruleset', 'since', '1', 'until', '-1');
  await banNow('198.51.100.8');
  await until('the good ban applied', async () => (await held()).includes('sshd 198.51.100.8'));
  assert.deepEqual(await held(), ['sshd 198.51.100.8']);
  assert.ok(lines.some((l) => l.msg === 'malformed decision skipped'));
  await follower.stop();
});

test('after a reconnect the follower resyncs: a deleted ban record lifts nothing, an unban published meanwhile does', async () => {
  const { keys, admin, scripts, enforcer, follower, blocking, held, banNow, lines } = setup();
  await banNow('198.51.100.20');
  await banNow('198.51.100.21');
  await enforcer.init();
  await follower.start();
  assert.deepEqual(await held(), ['sshd 198.51.100.20', 'sshd 198.51.100.21']);
  const syncs = () => lines.filter((l) => l.msg === 'active bans loaded').length;
  const before = syncs();
  // Someone with write access deletes a record; an admin unbans the other address.
  await admin.hdel(keys.bans, 'sshd|198.51.100.20');
  await scripts.unban('cli:t', [['sshd', '198.51.100.21']]);
  blocking.disconnect(true);
  await until('resynced after the reconnect', () => syncs() > before);
  await until('the unban applied', async () => !(await held()).includes('sshd 198.51.100.21'));
  assert.deepEqual(await held(), ['sshd 198.51.100.20'], 'the ban whose record was deleted is still enforced');
  assert.ok(lines.some((l) => String(l.msg).startsWith('bans this host holds under a valid decision are missing from the snapshot') && l.kept === 1));
  await follower.stop();
});
