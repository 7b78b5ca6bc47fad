import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import type { BanRecord, Decision } from './messages.js';

/**
 * Ed25519 signatures over decisions (ban, unban, flush) and ban records. Whoever can write to
 * Redis can write a decision; only a holder of a trusted private key (a coordinator, an admin)
 * can write one an agent applies.
 *
 * What is signed binds a decision to its meaning so that a replay does no more than the original
 * did: a ban carries its start and expiry (a replayed ban ends when the original ended), an unban
 * and a flush carry the moment they were decided (`at`) and lift only bans that started at or
 * before it, never a later one. The cluster name is signed too, so a decision of one cluster is
 * worthless in another that trusts the same key. A ban record in the bans hash carries the
 * signature of its ban decision: the fields are the same.
 */

/** Domain of the signed text, so a signature made for anything else can never pass for a decision. */
const DOMAIN = 'fleetban-decision/1';

/** A private key that signs, with the id agents find its public half by. */
export interface SigningKey {
  readonly kid: string;
  readonly key: KeyObject;
}

/** The public keys an agent accepts, by key id. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/** A signature as it travels in a decision or a ban record. */
export interface Signature {
  readonly kid: string;
  readonly sig: string;
}

/**
 * The id of a public key: the first 16 hex digits of the SHA-256 of its SPKI (DER) encoding,
 * so `openssl pkey -pubin -outform DER | sha256sum` shows it too.
 */
export function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

/** What the signature of a decision covers, as bytes. */
export function decisionPayload(cluster: string, d: Decision): Buffer {
  let fields: unknown[];
  switch (d.op) {
    case 'ban':
      fields = [DOMAIN, cluster, 'ban', d.jail, d.addr, d.since, d.until, d.reason, d.origin];
      break;
    case 'unban':
      fields = [DOMAIN, cluster, 'unban', d.jail, d.addr, d.at ?? null, d.origin];
      break;
    case 'flush':
      fields = [DOMAIN, cluster, 'flush', d.jail, d.at ?? null, d.origin];
      break;
  }
  return Buffer.from(JSON.stringify(fields), 'utf8');
}

/** The ban decision a ban record stands for (the same fields, so the same signature). */
export function recordAsDecision(r: BanRecord): Decision {
  return { op: 'ban', jail: r.jail, addr: r.addr, since: r.since, until: r.until, reason: r.reason, origin: r.origin };
}

/** @returns the signature of a decision, to travel with it */
export function signDecision(key: SigningKey, cluster: string, d: Decision): Signature {
  return { kid: key.kid, sig: sign(null, decisionPayload(cluster, d), key.key).toString('base64') };
}

/**
 * Check a decision's signature.
 * @returns undefined when a trusted key signed exactly this decision, else why not
 */
export function checkSignature(trusted: TrustedKeys, cluster: string, d: Decision, s: Partial<Signature>): string | undefined {
  if (!s.sig || !s.kid) return 'unsigned';
  const key = trusted.get(s.kid);
  if (!key) return `signed by key ${s.kid.slice(0, 16)}, which is not trusted`;
  const sig = Buffer.from(s.sig, 'base64');
  if (sig.length !== 64) return 'malformed signature';
  return verify(null, decisionPayload(cluster, d), key, sig) ? undefined : 'bad signature';
}
