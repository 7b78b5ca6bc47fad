/**
 * The CPU cost of signing and verifying one decision (Ed25519, node:crypto), beside an
 * HMAC-SHA256 of the same bytes measured in the same run (this VM's speed varies by half between
 * minutes; the ratio is the stable figure).
 *
 *   node dist/bench/signing/run.js        N=20000 operations of each kind, best of 5 rounds
 */
import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { checkSignature, decisionPayload, keyId, signDecision } from '../../common/protocol/signing.js';
import type { Decision } from '../../common/protocol/messages.js';

const N = Number(process.env.N ?? 20_000);
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const key = { kid: keyId(publicKey), key: privateKey };
const trusted = new Map([[key.kid, publicKey]]);
const secret = randomBytes(32);
const ban: Decision = { op: 'ban', jail: 'sshd', addr: '2001:db8:1::7', since: 1_764_600_000_000, until: 1_764_603_600_000, reason: '5 failures in 600s', origin: 'web17' };

function perOp(fn: () => void): number {
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e3 / N);
  }
  return best;
}

const sig = signDecision(key, 'prod', ban);
const sign = perOp(() => signDecision(key, 'prod', ban));
const verify = perOp(() => {
  if (checkSignature(trusted, 'prod', ban, sig)) throw new Error('verification failed');
});
const hmac = perOp(() => createHmac('sha256', secret).update(decisionPayload('prod', ban)).digest());
console.log(`per decision, best of 5 rounds of ${N}: Ed25519 sign ${sign.toFixed(1)} µs, verify ${verify.toFixed(1)} µs; HMAC-SHA256 of the same payload ${hmac.toFixed(1)} µs (sign ${(sign / hmac).toFixed(1)}x, verify ${(verify / hmac).toFixed(1)}x)`);
