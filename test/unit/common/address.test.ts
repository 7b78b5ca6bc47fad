import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBanTarget, tryParseAddress, AddressMatcher, containingNetwork, canonicalWords, isCanonicalAddress } from '../../../common/address.js';

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
