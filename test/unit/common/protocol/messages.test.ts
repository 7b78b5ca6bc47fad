import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterKeys, banId } from '../../../../common/protocol/keys.js';
import { encodeReport, decodeReport, splitIntoReports, decodeDecision, encodeDecision, LIMITS } from '../../../../common/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../../../common/protocol/version.js';

test('every key of a cluster shares one hash tag', () => {
  const k = clusterKeys('prod');
  const keys = [k.host('web1').failures, k.decisions, k.bans, k.banExpiry, k.host('web1').heartbeat, k.host('web1').ack, k.registry, k.stats, k.failureWindows('sshd'), k.failing('sshd')];
  for (const key of keys) assert.match(key, /^fb:\{prod\}:/);
  assert.equal(new Set(keys).size, keys.length);
  assert.equal(banId('sshd', '192.0.2.1'), 'sshd|192.0.2.1');
});

test('stream messages round-trip; malformed ones are refused with a reason', () => {
  const e = { jail: 'sshd', addr: '198.51.100.7', eid: '3f2a9c-1b', time: 1764151200000, line: 'Failed password' };
  const sent = 1764151200100;
  assert.deepEqual(decodeReport(encodeReport('web1', sent, [e]), 'web1'), { ok: true, value: { host: 'web1', sent, failures: [{ ...e, sent, host: 'web1' }], rejected: [] } });
  const long = decodeReport(encodeReport('web1', sent, [{ ...e, line: 'x'.repeat(5000) }]), 'web1');
  assert.ok(long.ok && long.value.failures[0]!.line.length === LIMITS.lineChars);
  const v = String(PROTOCOL_VERSION);
  const envelope = (failures: string) => ['v', v, 'host', 'h', 'sent', '1', 'failures', failures];
  const bad = (fields: string[]) => {
    const d = decodeReport(fields, 'h');
    assert.equal(d.ok, false);
    return d.ok ? '' : d.reason;
  };
  // A damaged envelope rejects the whole entry.
  assert.match(bad(['v', '1', 'host', 'h', 'sent', '1', 'failures', '[]']), new RegExp(`protocol version 1 is not ${v}`));
  assert.match(bad(['host', 'h']), /no protocol version/);
  assert.equal(decodeReport(['v', v, 'host', 'h', 'sent', '1', 'failures', '[]'], '../etc').ok, false);
  assert.match(bad(['v', v, 'host', 'h', 'sent', 'soon', 'failures', '[]']), /invalid sent/);
  assert.match(bad(envelope('[["a","sshd"')), /invalid failures/);
  assert.match(bad(envelope('{"eid":"a"}')), /invalid failures/);
  assert.match(bad(envelope(JSON.stringify(Array.from({ length: LIMITS.reportFailures + 1 }, () => ['a', 'sshd', '192.0.2.1', 1, ''])))), /over the 100 limit/);
  assert.match(bad(['v', v, 'x', 'y'.repeat(LIMITS.reportBytes)]), /byte limit/);
  assert.match(bad(['v']), /odd number/);
  // A damaged failure inside a good envelope is skipped alone, with its reason.
  const rows = [
    ['ok-1', 'sshd', '198.51.100.7', 1, 'good'],
    ['ok-2', 'sshd', '198.51.100.7 ; rm -rf', 1, ''],
    ['ok-3', '../etc', '198.51.100.7', 1, ''],
    ['a b', 'sshd', '198.51.100.7', 1, ''],
    ['ok-5', 'sshd', '198.51.100.7', 'soon', ''],
    ['ok-6', 'sshd', '::ffff:198.51.100.7', 1, ''],
    'not a row',
    ['ok-8', 'sshd', '2001:db8::7', 2, 'also good'],
  ];
  const mixed = decodeReport(envelope(JSON.stringify(rows)), 'h');
  assert.ok(mixed.ok);
  assert.deepEqual(mixed.value.failures.map((f) => f.eid), ['ok-1', 'ok-8']);
  assert.deepEqual(mixed.value.rejected.map((r) => [r.index, r.reason.split(':')[0]]), [
    [1, 'invalid addr'], [2, 'invalid jail'], [3, 'invalid eid'], [4, 'invalid time'], [5, 'invalid addr'], [6, 'not a [eid, jail, addr, time, line] row'],
  ]);
});

test('reports are cut by count, by size and by host', () => {
  const f = (i: number, host = 'h1', line = 'Failed password') => ({ eid: `e-${i}`, jail: 'sshd', addr: '192.0.2.1', time: 1, host, line });
  assert.deepEqual(splitIntoReports(Array.from({ length: 250 }, (_, i) => f(i))).map((r) => r.length), [100, 100, 50]);
  // Lines of control characters grow sixfold in JSON: fewer of them fit in a report.
  const noisy = splitIntoReports(Array.from({ length: 100 }, (_, i) => f(i, 'h1', '\u0001'.repeat(LIMITS.lineChars))));
  assert.ok(noisy.length > 1);
  for (const r of noisy) {
    const fields = encodeReport('h1', 1, r);
    assert.ok(fields.join('').length < LIMITS.reportBytes, 'every report fits the entry limit');
  }
  assert.deepEqual(splitIntoReports([f(1), f(2, 'h2'), f(3, 'h2'), f(4)]).map((r) => r.map((x) => x.host)), [['h1'], ['h2', 'h2'], ['h1']]);
});

test('decisions round-trip; malformed ones are refused', () => {
  const ban = { op: 'ban' as const, jail: 'sshd', addr: '203.0.113.0/24', since: 1, until: -1, reason: 'r', origin: 'h' };
  assert.deepEqual(decodeDecision(encodeDecision(ban)), { ok: true, value: ban });
  assert.equal(decodeDecision(['v', String(PROTOCOL_VERSION), 'op', 'ban', 'jail', 'sshd', 'addr', '203.0.113.9/24', 'since', '1', 'until', '-1']).ok, false);
  assert.equal(decodeDecision(['v', String(PROTOCOL_VERSION), 'op', 'explode', 'jail', 'sshd', 'addr', '192.0.2.1']).ok, false);
});
