import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTimeSpec, formatDuration, PERMANENT } from '../../common/config/time-spec.js';
import { parseBanTarget, tryParseAddress, AddressMatcher, containingNetwork } from '../../common/address.js';
import { clusterKeys, banId } from '../../common/protocol/keys.js';
import { encodeFailure, decodeFailure, decodeDecision, encodeDecision, LIMITS } from '../../common/protocol/messages.js';
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
});

test('every key of a cluster shares one hash tag', () => {
  const k = clusterKeys('prod');
  const keys = [k.failures, k.decisions, k.bans, k.banExpiry, k.hosts, k.stats, k.failureWindow('sshd', '2001:db8::1'), k.failing('sshd')];
  for (const key of keys) assert.match(key, /^fb:\{prod\}:/);
  assert.equal(new Set(keys).size, keys.length);
  assert.equal(banId('sshd', '192.0.2.1'), 'sshd|192.0.2.1');
});

test('stream messages round-trip; malformed ones are refused with a reason', () => {
  const e = { jail: 'sshd', addr: '198.51.100.7', eid: '3f2a9c-1b', time: 1764151200000, sent: 1764151200100, host: 'web1', line: 'Failed password' };
  assert.deepEqual(decodeFailure(encodeFailure(e)), { ok: true, value: e });
  const long = decodeFailure(encodeFailure({ ...e, line: 'x'.repeat(5000) }));
  assert.ok(long.ok && long.value.line.length === LIMITS.lineChars);
  const bad = (fields: string[]) => {
    const d = decodeFailure(fields);
    assert.equal(d.ok, false);
    return d.ok ? '' : d.reason;
  };
  assert.match(bad(['v', '1', 'jail', 'sshd', 'addr', '198.51.100.7 ; rm -rf', 'time', '1', 'host', 'h']), /invalid addr/);
  assert.match(bad(['v', '2', 'jail', 'sshd']), /protocol version 2/);
  assert.match(bad(['jail', 'sshd']), /no protocol version/);
  assert.match(bad(['v', '1', 'jail', '../etc', 'addr', '198.51.100.7', 'time', '1', 'host', 'h']), /invalid jail/);
  assert.match(bad(['v', '1', 'jail', 'sshd', 'addr', '198.51.100.7', 'time', '1', 'sent', '1', 'host', 'h']), /invalid eid: missing/);
  assert.match(bad(['v', '1', 'jail', 'sshd', 'addr', '198.51.100.7', 'eid', 'a b', 'time', '1', 'host', 'h']), /invalid eid/);
  assert.match(bad(['v', '1', 'jail', 'sshd', 'addr', '198.51.100.7', 'eid', 'a', 'time', 'soon', 'host', 'h']), /invalid time/);
  assert.match(bad(['v', '1', 'x', 'y'.repeat(9000)]), /over the 8192 byte limit/);
  assert.match(bad(['v']), /odd number/);
  const ban = { op: 'ban' as const, jail: 'sshd', addr: '203.0.113.0/24', since: 1, until: -1, reason: 'r', origin: 'h' };
  assert.deepEqual(decodeDecision(encodeDecision(ban)), { ok: true, value: ban });
  assert.equal(decodeDecision(['v', '1', 'op', 'ban', 'jail', 'sshd', 'addr', '203.0.113.9/24', 'since', '1', 'until', '-1']).ok, false);
  assert.equal(decodeDecision(['v', '1', 'op', 'explode', 'jail', 'sshd', 'addr', '192.0.2.1']).ok, false);
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
