import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTimeSpec, formatDuration, PERMANENT } from '../../common/config/time-spec.js';
import { parseBanTarget, tryParseAddress, AddressMatcher, containingNetwork, canonicalWords, isCanonicalAddress } from '../../common/address.js';
import { clusterKeys, banId } from '../../common/protocol/keys.js';
import { encodeReport, decodeReport, splitIntoReports, decodeDecision, encodeDecision, LIMITS } from '../../common/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../common/protocol/version.js';
import { parsePorts, parseProtocols } from '../../common/config/ports.js';
import { parseActions } from '../../common/config/actions.js';

test('fail2ban time syntax', () => {
  assert.equal(parseTimeSpec('600'), 600);
  assert.equal(parseTimeSpec('10m'), 600);
  assert.equal(parseTimeSpec('1h'), 3600);
  assert.equal(parseTimeSpec('1d'), 86400);
  assert.equal(parseTimeSpec('1w'), 604800);
  assert.equal(parseTimeSpec('1h 30m'), 5400);
  assert.equal(parseTimeSpec('1d12h'), 129600);
  assert.equal(parseTimeSpec('2 hours'), 7200);
  assert.equal(parseTimeSpec('-1'), PERMANENT);
  assert.throws(() => parseTimeSpec('soon'), /not a time value/);
  assert.throws(() => parseTimeSpec('5 parsecs'), /unknown time unit 'parsecs'/);
  assert.equal(formatDuration(3600 + 61), '1h1m1s');
  assert.equal(formatDuration(-1), 'permanent');
});

test('addresses: canonical form, CIDR, refusals with a reason', () => {
  assert.equal(parseBanTarget('198.51.100.7').text, '198.51.100.7');
  assert.equal(parseBanTarget('2001:DB8:0:0::1').text, '2001:db8::1');
  assert.equal(parseBanTarget('::ffff:192.0.2.1').text, '192.0.2.1');
  assert.deepEqual(parseBanTarget('203.0.113.0/24'), { text: '203.0.113.0/24', family: 4, prefix: 24 });
  assert.equal(parseBanTarget('2001:db8:1::/48').text, '2001:db8:1::/48');
  assert.equal(parseBanTarget('192.0.2.5/32').text, '192.0.2.5');
  assert.throws(() => parseBanTarget('203.0.113.9/24'), /host bits set; the network is 203\.0\.113\.0\/24/);
  assert.throws(() => parseBanTarget('256.1.1.1'), /not a valid IPv4 address/);
  assert.throws(() => parseBanTarget('1.2.3'), /not a valid/);
  assert.throws(() => parseBanTarget('0x7f.1'), /not a valid/);
  assert.throws(() => parseBanTarget('example.com'), /not a valid IP address/);
  assert.throws(() => parseBanTarget('0.0.0.0/0'), /would ban every address/);
  assert.throws(() => parseBanTarget('192.0.2.0/33'), /more than 32/);
  assert.equal(tryParseAddress('fe80::1%eth0'), undefined);
  assert.equal(containingNetwork(parseBanTarget('2001:db8:1:2:3:4:5:6'), 64).text, '2001:db8:1:2::/64');
});

test('ignoreip matching accepts loose networks like 127.0.0.1/8', () => {
  const m = new AddressMatcher(['127.0.0.1/8', '::1', '198.51.100.0/24']);
  assert.equal(m.contains('127.9.9.9'), true);
  assert.equal(m.contains('::1'), true);
  assert.equal(m.contains('198.51.100.200'), true);
  assert.equal(m.contains('198.51.101.1'), false);
  assert.equal(m.contains('2001:db8::1'), false);
  assert.equal(m.contains('198.51.100.0/25'), true);
  assert.equal(m.contains('198.51.0.0/16'), false);
  // IPv6 networks whose prefix ends inside a 32-bit word, in the middle of one, and at its edge.
  const v6 = new AddressMatcher(['2001:db8:1::/48', '2001:db8:ff00::/40', '2001:db8:0:1::/64', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:fff0/124']);
  assert.equal(v6.contains('2001:db8:1:2::5'), true);
  assert.equal(v6.contains('2001:db8:2::1'), false);
  assert.equal(v6.contains('2001:db8:ffab::1'), true);
  assert.equal(v6.contains('2001:db8:feff::1'), false);
  assert.equal(v6.contains('2001:db8:0:1:ffff::'), true);
  assert.equal(v6.contains('2001:db8:0:2::1'), false);
  assert.equal(v6.contains('2001:db8:aaaa:bbbb:cccc:dddd:eeee:fffe'), true);
  assert.equal(v6.contains('2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffef'), false);
  assert.equal(v6.contains('2001:DB8:1::5'), true, 'a non-canonical spelling is parsed the slow way');
  assert.equal(v6.contains('192.0.2.1'), false, 'families never mix');
});

test('the fast canonical-address check agrees with ipaddr.js on every spelling', () => {
  // Deterministic pseudo-random hextets with many zero runs: the cases where canonical form is subtle.
  let seed = 20261126;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const spellings = (groups: number[]): string[] => {
    const full = groups.map((g) => g.toString(16));
    const out = [full.join(':'), groups.map((g) => g.toString(16).padStart(4, '0')).join(':'), full.join(':').toUpperCase()];
    // Every possible '::' placement, canonical or not.
    for (let i = 0; i < 8; i++) {
      for (let j = i + 1; j <= 8; j++) {
        if (groups.slice(i, j).every((g) => g === 0)) out.push(`${full.slice(0, i).join(':')}::${full.slice(j).join(':')}`);
      }
    }
    return out;
  };
  let canonical = 0;
  let fast = 0;
  for (let n = 0; n < 3000; n++) {
    const groups = Array.from({ length: 8 }, () => (rand(3) === 0 ? [0, 1, 0xffff, 0xdb8, 0x2001, 0xabc][rand(6)]! : rand(3) === 0 ? 0 : rand(65536)));
    if (rand(10) === 0) groups.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
    for (const text of spellings(groups)) {
      const expected = tryParseAddress(text)?.text === text;
      assert.equal(isCanonicalAddress(text), expected, text);
      const words = canonicalWords(text);
      if (expected) canonical++;
      if (words) {
        fast++;
        assert.ok(expected, `${text} taken as canonical by the fast path only`);
        assert.deepEqual(words, [0, 2, 4, 6].map((i) => ((groups[i]! << 16) | groups[i + 1]!) >>> 0), text);
      }
    }
  }
  assert.ok(fast > canonical * 0.8, `the fast path decides most canonical addresses (${fast} of ${canonical})`);
  for (const text of ['192.0.2.1', '0.0.0.0', '255.255.255.255', '198.51.100.7']) assert.ok(canonicalWords(text), text);
  for (const text of ['192.0.2.01', '256.0.0.1', '192.0.2', '1.2.3.4.5', '::ffff:192.0.2.1', '::ffff:c000:201', 'fe80::1%eth0', '2001:db8::1/64', '']) {
    assert.equal(canonicalWords(text), undefined, text);
    assert.equal(isCanonicalAddress(text), tryParseAddress(text)?.text === text, text);
  }
  assert.deepEqual(canonicalWords('203.0.113.9'), [(203 << 24 >>> 0) + (113 << 8) + 9]);
});

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

test('ports, protocols and actions', () => {
  assert.deepEqual(parsePorts('ssh'), [[22, 22]]);
  assert.deepEqual(parsePorts('http,https, 8080'), [[80, 80], [443, 443], [8080, 8080]]);
  assert.deepEqual(parsePorts('1000:2000'), [[1000, 2000]]);
  assert.deepEqual(parsePorts('ftp-data'), [[20, 20]]);
  assert.equal(parsePorts('0:65535'), 'all');
  assert.throws(() => parsePorts('70000'), /above 65535/);
  assert.deepEqual(parseProtocols('tcp'), ['tcp']);
  assert.equal(parseProtocols('all'), 'all');
  assert.throws(() => parseProtocols('icmp'), /not tcp, udp, sctp or all/);
  const acts = parseActions('iptables-multiport[name=SSH, port="ssh,2222", protocol=tcp]\n  sendmail-whois[dest=a@b.c]\nshorewall');
  assert.deepEqual(acts.map((a) => a.name), ['iptables-multiport', 'sendmail-whois', 'shorewall']);
  assert.equal(acts[0]!.params.get('port'), 'ssh,2222');
  assert.throws(() => parseActions('iptables[name'), /cannot parse action|has no '='/);
});
