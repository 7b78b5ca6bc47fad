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

/**
 * A signature as it travels in a decision or a ban record. `proof` is present when one signature
 * covers a batch of decisions (see {@link signDecisions}): the path from this decision to the
 * signed root of the batch's hash tree.
 */
export interface Signature {
  readonly kid: string;
  readonly sig: string;
  readonly proof?: string;
}

/** Domain of a signed batch root, distinct from a single decision's payload (which is JSON). */
const ROOT_DOMAIN = Buffer.from('fleetban-decision-batch/1\n', 'utf8');
/** Hash-tree node tags (as in RFC 6962), so that a leaf can never pass for an inner node. */
const LEAF_TAG = Buffer.from([0]);
const NODE_TAG = Buffer.from([1]);
/** One step of a proof: a side byte (1: the sibling is on the left) and the sibling's SHA-256. */
export const PROOF_STEP_BYTES = 33;
/** Decisions under one batch signature at most: a proof is then at most 8 steps (352 base64 characters). */
export const MAX_BATCH = 256;
/** Steps a proof may have at most when read back (a larger tree was not made by fleetban). */
export const MAX_PROOF_STEPS = 16;
/** A well-formed proof as it travels: up to MAX_PROOF_STEPS steps, each 44 base64 characters (33 bytes). */
export const PROOF_RE = new RegExp(`^(?:[A-Za-z0-9+/]{44}){0,${MAX_PROOF_STEPS}}$`);

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

function leafHash(payload: Buffer): Buffer {
  return createHash('sha256').update(LEAF_TAG).update(payload).digest();
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256').update(NODE_TAG).update(left).update(right).digest();
}

/**
 * Sign many decisions at once: one Ed25519 signature over the root of a hash tree of their
 * payloads, and for each decision the path to that root. A coordinator whose counting call bans
 * hundreds of addresses signs once, not hundreds of times (a signature costs ~40 µs here, a
 * SHA-256 of a payload about 1 µs), and an agent checks the root once per batch (verification
 * costs three times signing). What each signature vouches for is unchanged: every leaf is a
 * whole decision's payload, so a decision cut from its batch still verifies alone, exactly.
 * Batches larger than {@link MAX_BATCH} are cut into several trees; one decision is signed alone.
 */
export function signDecisions(key: SigningKey, cluster: string, ds: readonly Decision[]): Signature[] {
  const out: Signature[] = [];
  for (let start = 0; start < ds.length; start += MAX_BATCH) {
    const batch = ds.slice(start, start + MAX_BATCH);
    if (batch.length === 1) {
      out.push(signDecision(key, cluster, batch[0]!));
      continue;
    }
    let level = batch.map((d) => leafHash(decisionPayload(cluster, d)));
    const steps: Buffer[][] = batch.map(() => []);
    const position = batch.map((_, i) => i);
    while (level.length > 1) {
      const next: Buffer[] = [];
      for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? nodeHash(level[i]!, level[i + 1]!) : level[i]!);
      for (let j = 0; j < batch.length; j++) {
        const p = position[j]!;
        const sibling = level[p ^ 1];
        // The last node of an odd level has no sibling: it moves up unchanged, with no step.
        if (sibling) steps[j]!.push(Buffer.concat([Buffer.from([p & 1]), sibling]));
        position[j] = p >> 1;
      }
      level = next;
    }
    const sig = sign(null, Buffer.concat([ROOT_DOMAIN, level[0]!]), key.key).toString('base64');
    for (const s of steps) out.push({ kid: key.kid, sig, proof: Buffer.concat(s).toString('base64') });
  }
  return out;
}

/** Batch roots whose signature already verified, per trusted key (a batch is checked once, not per decision). */
const verifiedRoots = new WeakMap<KeyObject, Set<string>>();
const VERIFIED_ROOTS_KEPT = 1024;

function checkBatchSignature(key: KeyObject, payload: Buffer, sig: Buffer, proof: string): boolean {
  // Bounded and whole steps only: the text decides the length (33 bytes per 44 characters).
  if (!PROOF_RE.test(proof)) return false;
  const path = Buffer.from(proof, 'base64');
  let h = leafHash(payload);
  for (let o = 0; o < path.length; o += PROOF_STEP_BYTES) {
    const side = path[o];
    const sibling = path.subarray(o + 1, o + PROOF_STEP_BYTES);
    if (side === 1) h = nodeHash(sibling, h);
    else if (side === 0) h = nodeHash(h, sibling);
    else return false;
  }
  const memo = `${sig.toString('base64')}|${h.toString('base64')}`;
  let seen = verifiedRoots.get(key);
  if (seen?.has(memo)) return true;
  if (!verify(null, Buffer.concat([ROOT_DOMAIN, h]), key, sig)) return false;
  if (!seen || seen.size >= VERIFIED_ROOTS_KEPT) verifiedRoots.set(key, (seen = new Set()));
  seen.add(memo);
  return true;
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
  if (s.proof !== undefined) return checkBatchSignature(key, decisionPayload(cluster, d), sig, s.proof) ? undefined : 'bad signature';
  return verify(null, decisionPayload(cluster, d), key, sig) ? undefined : 'bad signature';
}
