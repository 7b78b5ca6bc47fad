import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { checkSignature, keyId, MAX_BATCH, signDecision, signDecisions, type SigningKey } from '../../../../common/protocol/signing.js';
import { decodeBan, decodeDecision, encodeBan, encodeDecision, type Decision } from '../../../../common/protocol/messages.js';

function keyPair(): { signing: SigningKey; trusted: Map<string, import('node:crypto').KeyObject> } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const kid = keyId(publicKey);
  return { signing: { kid, key: privateKey }, trusted: new Map([[kid, publicKey]]) };
}

function bans(n: number): Decision[] {
  return Array.from({ length: n }, (_, i) => ({ op: 'ban', jail: 'sshd', addr: `198.51.100.${i % 250}`, since: 1_700_000_000_000 + i, until: 1_700_000_600_000 + i, reason: '4 failures in 600s', origin: `web${i}` }));
}

test('one signature covers a batch: every decision of it verifies alone, through the stream and the bans hash encodings', () => {
  const { signing, trusted } = keyPair();
  // Odd sizes leave a node without a sibling at some level; over MAX_BATCH the batch is cut into trees.
  for (const n of [2, 3, 7, 64, 255, MAX_BATCH + 3]) {
    const ds = bans(n);
    const sigs = signDecisions(signing, 'prod', ds);
    assert.equal(sigs.length, n);
    assert.ok(new Set(sigs.map((s) => s.sig)).size <= Math.ceil(n / MAX_BATCH) + 1, `${n}: one signature per tree`);
    ds.forEach((d, i) => {
      const wire = decodeDecision(encodeDecision({ ...d, ...sigs[i]! }));
      assert.ok(wire.ok, `${n}/${i}: ${!wire.ok && wire.reason}`);
      assert.equal(checkSignature(trusted, 'prod', wire.value, wire.value), undefined, `${n}/${i}`);
      if (d.op !== 'ban') return;
      const record = decodeBan(encodeBan({ jail: d.jail, addr: d.addr, since: d.since, until: d.until, reason: d.reason, origin: d.origin, failures: 4, ...sigs[i]! }));
      assert.ok(record.ok && record.value.proof === sigs[i]!.proof);
    });
  }
});

test('a batch signature vouches for exactly its decisions: a changed field, a swapped proof, a damaged proof or another cluster fail', () => {
  const { signing, trusted } = keyPair();
  const ds = bans(5);
  const sigs = signDecisions(signing, 'prod', ds);
  const first = ds[0]! as Extract<Decision, { op: 'ban' }>;
  assert.equal(checkSignature(trusted, 'prod', { ...first, addr: '203.0.113.9' }, sigs[0]!), 'bad signature');
  assert.equal(checkSignature(trusted, 'prod', { ...first, until: -1 }, sigs[0]!), 'bad signature');
  assert.equal(checkSignature(trusted, 'staging', first, sigs[0]!), 'bad signature');
  // Another decision's path (same root, same signature) does not lead this decision to the root.
  assert.equal(checkSignature(trusted, 'prod', first, sigs[1]!), 'bad signature');
  const damaged = Buffer.from(sigs[0]!.proof!, 'base64');
  damaged[5]! ^= 1;
  assert.equal(checkSignature(trusted, 'prod', first, { ...sigs[0]!, proof: damaged.toString('base64') }), 'bad signature');
  assert.equal(checkSignature(trusted, 'prod', first, { ...sigs[0]!, proof: '' }), 'bad signature', 'a batch signature without its path');
  // A proof that is not one fleetban writes is kept as damaged on decoding (never dropped into a single signature).
  const wire = decodeDecision(encodeDecision({ ...first, ...sigs[0]!, proof: 'not-base64!' }));
  assert.ok(wire.ok);
  assert.equal(checkSignature(trusted, 'prod', wire.value, wire.value), 'bad signature');
  // A single signature stays as it was: no proof, and it still verifies.
  const single = signDecision(signing, 'prod', first);
  assert.equal(single.proof, undefined);
  assert.equal(checkSignature(trusted, 'prod', first, single), undefined);
  assert.deepEqual(signDecisions(signing, 'prod', [first]).map((s) => s.proof), [undefined]);
});

test('a batch signed by an untrusted key is refused even after the same root verified under a trusted one', () => {
  const a = keyPair();
  const b = keyPair();
  const ds = bans(4);
  const good = signDecisions(a.signing, 'prod', ds);
  assert.equal(checkSignature(a.trusted, 'prod', ds[0]!, good[0]!), undefined);
  const forged = signDecisions(b.signing, 'prod', ds);
  assert.match(checkSignature(a.trusted, 'prod', ds[0]!, forged[0]!)!, /not trusted/);
  // Claiming the trusted key's id with the other key's signature over the same root.
  assert.equal(checkSignature(a.trusted, 'prod', ds[1]!, { ...forged[1]!, kid: a.signing.kid }), 'bad signature');
});
