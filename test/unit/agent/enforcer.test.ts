import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Enforcer } from '../../../agent/enforcer.js';
import { DryRunBackend } from '../../../agent/firewall/dry-run.js';
import type { JailRule } from '../../../agent/firewall/backend.js';
import type { BanRecord, Decision } from '../../../common/protocol/messages.js';

/**
 * agent/enforcer.ts on the dry-run backend: which bans the host holds after decisions, snapshots,
 * replays and repairs. The backend's list() and its log lines are what a real kernel would hold.
 */
function setup(rules: JailRule[] = [{ jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] }]) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const backend = new DryRunBackend({ logger });
  const enforcer = new Enforcer(backend, rules, logger);
  const held = async () => (await backend.list()).map((b) => `${b.jail} ${b.addr}`).sort();
  return { backend, enforcer, lines, held };
}
const t = () => Date.now();
const ban = (jail: string, addr: string, over: Partial<Extract<Decision, { op: 'ban' }>> = {}): Decision =>
  ({ op: 'ban', jail, addr, since: t() - 1000, until: t() + 3_600_000, reason: 'r', origin: 'h1', ...over });
const record = (jail: string, addr: string, over: Partial<BanRecord> = {}): BanRecord =>
  ({ jail, addr, since: t() - 1000, until: t() + 3_600_000, reason: 'r', origin: 'h1', failures: 5, ...over });

test('a batch is one commit: bans applied, an expired one skipped, unban and flush lift what they cover', async () => {
  const { enforcer, lines, held } = setup([{ jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] }, { jail: 'nginx', ports: 'all', protocols: 'all' }]);
  await enforcer.init();
  await enforcer.apply([
    ban('sshd', '198.51.100.1'), ban('sshd', '198.51.100.2'), ban('nginx', '198.51.100.1'), ban('nginx', '2001:db8::7'),
    ban('sshd', '198.51.100.3', { until: t() - 1 }), ban('sshd', '203.0.113.0/24', { until: -1 }),
  ]);
  assert.deepEqual(await held(), ['nginx 198.51.100.1', 'nginx 2001:db8::7', 'sshd 198.51.100.1', 'sshd 198.51.100.2', 'sshd 203.0.113.0/24']);
  assert.equal(enforcer.applied, 5);
  assert.equal(enforcer.size, 5);
  await enforcer.apply([{ op: 'unban', jail: '*', addr: '198.51.100.1', origin: 'cli:t', at: t() }]);
  assert.deepEqual(await held(), ['nginx 2001:db8::7', 'sshd 198.51.100.2', 'sshd 203.0.113.0/24'], "jail '*' lifts the address in every jail");
  await enforcer.apply([{ op: 'flush', jail: 'sshd', origin: 'cli:t', at: t() }]);
  assert.deepEqual(await held(), ['nginx 2001:db8::7']);
  assert.equal(lines.filter((l) => l.msg === 'dry-run unban').length, 4);
});

test('a replayed ban that an unban already lifted is not applied again; a newer ban of the address is', async () => {
  const { enforcer, lines, held } = setup();
  await enforcer.init();
  const old = ban('sshd', '198.51.100.9', { since: t() - 60_000 });
  await enforcer.apply([old]);
  await enforcer.apply([{ op: 'unban', jail: 'sshd', addr: '198.51.100.9', origin: 'cli:t', at: t() - 30_000 }]);
  assert.deepEqual(await held(), []);
  await enforcer.apply([old]);
  assert.deepEqual(await held(), [], 'the replay stays lifted');
  assert.equal(enforcer.stale, 1);
  assert.ok(lines.some((l) => l.msg === 'ban not applied: an unban or flush this host applied already lifted it (a replay)'));
  await enforcer.apply([ban('sshd', '198.51.100.9', { since: t() })]);
  assert.deepEqual(await held(), ['sshd 198.51.100.9'], 'a ban decided after the unban applies');
  // An unban lifts only bans that started no later than it.
  await enforcer.apply([{ op: 'unban', jail: 'sshd', addr: '198.51.100.9', origin: 'cli:t', at: t() - 10_000 }]);
  assert.deepEqual(await held(), ['sshd 198.51.100.9']);
});

test('a ban in a jail this host does not configure is enforced on all ports, with a warning', async () => {
  const { enforcer, lines, held } = setup();
  await enforcer.init();
  await enforcer.apply([ban('postfix', '192.0.2.55')]);
  assert.deepEqual(await held(), ['postfix 192.0.2.55']);
  assert.ok(lines.some((l) => l.msg === 'ban in a jail this host does not configure; enforcing it on all ports' && l.jail === 'postfix'));
  const inits = lines.filter((l) => l.msg === 'dry-run init');
  assert.deepEqual(inits.at(-1)!.jails, ['sshd', 'postfix'], 'the backend got a rule for it before the element');
});

test('replaceAll: the snapshot is what the host holds, plus held bans it lacks, minus what the lifts cover', async () => {
  const { enforcer, lines, held } = setup();
  await enforcer.init();
  await enforcer.apply([ban('sshd', '198.51.100.20'), ban('sshd', '198.51.100.21')]);
  const kept = await enforcer.replaceAll(
    [record('sshd', '198.51.100.30'), record('sshd', '198.51.100.31', { until: t() - 1 }), record('sshd', '198.51.100.32')],
    [{ op: 'unban', jail: 'sshd', addr: '198.51.100.21', origin: 'cli:t', at: t() }, { op: 'unban', jail: 'sshd', addr: '198.51.100.32', origin: 'cli:t', at: t() }],
  );
  assert.equal(kept, 1, '.20 is held under a valid decision and no unban lifted it');
  assert.deepEqual(await held(), ['sshd 198.51.100.20', 'sshd 198.51.100.30'], 'expired .31 and lifted .21/.32 are not held');
  assert.ok(lines.some((l) => l.msg === 'bans this host holds under a valid decision are missing from the snapshot; kept until a signed unban or their expiry' && l.kept === 1));
  assert.deepEqual(lines.filter((l) => l.msg === 'dry-run sync').map((l) => l.count), [2], 'one sync, not one change per ban');
});

test('reconcile restores what vanished from the firewall and removes what should not be there', async () => {
  const { backend, enforcer, lines, held } = setup();
  await enforcer.init();
  await enforcer.apply([ban('sshd', '198.51.100.40'), ban('sshd', '198.51.100.41')]);
  assert.equal(await enforcer.reconcile(), 0, 'nothing to repair');
  // Someone else changes the firewall: one ban gone, one foreign element added.
  backend.delete('sshd', '198.51.100.40');
  backend.add({ jail: 'sshd', addr: '192.0.2.99', family: 4, until: -1 });
  await backend.commit();
  assert.equal(await enforcer.reconcile(), 2);
  assert.deepEqual(await held(), ['sshd 198.51.100.40', 'sshd 198.51.100.41']);
  assert.ok(lines.some((l) => l.msg === 'firewall differs from the cluster bans; repairing' && l.missing === 1 && l.extra === 1));
  assert.equal(await enforcer.reconcile(), 0);
});

test('a reload that drops a jail keeps its rule while the jail still holds bans', async () => {
  const { enforcer, lines } = setup([{ jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] }, { jail: 'old', ports: 'all', protocols: 'all' }]);
  await enforcer.init();
  await enforcer.apply([ban('old', '198.51.100.50')]);
  await enforcer.setRules([{ jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] }, { jail: 'new', ports: 'all', protocols: 'all' }]);
  assert.deepEqual(lines.filter((l) => l.msg === 'dry-run init').at(-1)!.jails, ['sshd', 'new', 'old']);
  assert.deepEqual((await enforcer.bans()).map((b) => b.addr), ['198.51.100.50']);
});
