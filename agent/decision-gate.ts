import type { Logger } from 'pino';
import { AddressMatcher, parseBanTarget } from '../common/address.js';
import type { BanRecord, Decision } from '../common/protocol/messages.js';
import { checkSignature, recordAsDecision, type TrustedKeys } from '../common/protocol/signing.js';
import { RateLimitedWarner } from '../common/log-limit.js';
import { now } from '../common/clock.js';

/** What an agent accepts: whose signatures, and which bans it never applies. */
export interface GateSettings {
  readonly cluster: string;
  /** Keys whose signatures are accepted; empty with allowUnsigned only. */
  readonly trusted: TrustedKeys;
  /** Apply unsigned decisions too (explicitly insecure set-ups). */
  readonly allowUnsigned: boolean;
  /** This host's own addresses: a ban covering one would cut the host off. */
  readonly ownAddresses: readonly string[];
  /** Networks never banned on this host (`[agent] never_ban`). */
  readonly neverBan: readonly string[];
  readonly minPrefixV4: number;
  readonly minPrefixV6: number;
}

/** Unsigned ban records this young are bans a coordinator is about to sign (see publish-3.lua), not forgeries. */
const PARKED_GRACE_MS = 60_000;

/**
 * The agent's checks before anything reaches the firewall: a decision or snapshot entry must be
 * signed by a trusted key, and a ban must not cover this host's own addresses, a `never_ban`
 * network or a network wider than the minimum prefix, whoever signed it (a stolen or misused
 * key must not cut a host off, nor ban half the internet). Every refusal is logged (at a bounded
 * rate) and counted; the counts travel in heartbeats to `fleetban hosts`.
 */
export class DecisionGate {
  /** Decisions and snapshot entries refused for their signature. */
  refused = 0;
  /** Signed bans refused by the self-guard. */
  guarded = 0;
  private readonly warner: RateLimitedWarner;
  private readonly never: AddressMatcher;
  /** Addresses and networks a ban must not cover (own addresses, loopback, never_ban). */
  private readonly protectedEntries: string[];

  constructor(
    private readonly s: GateSettings,
    private readonly log: Logger,
  ) {
    this.warner = new RateLimitedWarner(log);
    this.never = new AddressMatcher(s.neverBan);
    this.protectedEntries = [...new Set([...s.ownAddresses, '127.0.0.1', '::1', ...s.neverBan].map((a) => parseBanTarget(a).text))];
  }

  /** @returns true when the decision (from the stream, or catch-up) may be applied */
  admit(d: Decision, id: string): boolean {
    const why = this.signatureProblem(d);
    if (why) {
      this.refused++;
      this.warner.warn('refused decision', { id, op: d.op, jail: d.jail, ...('addr' in d ? { addr: d.addr } : {}), origin: d.origin, reason: why, refusedTotal: this.refused },
        'decision refused: not signed by a trusted key');
      return false;
    }
    return d.op !== 'ban' || this.guardAllows(d.jail, d.addr, id);
  }

  /** @returns true when the snapshot's ban record may be applied */
  admitRecord(r: BanRecord): boolean {
    const d = recordAsDecision(r);
    const why = this.signatureProblem({ ...d, ...(r.kid ? { kid: r.kid } : {}), ...(r.sig ? { sig: r.sig } : {}), ...(r.proof !== undefined ? { proof: r.proof } : {}) });
    if (why) {
      if (why === 'unsigned' && Math.abs(now() - r.since) < PARKED_GRACE_MS) {
        this.log.debug({ jail: r.jail, addr: r.addr }, 'ban record not signed yet; its signed decision follows');
        return false;
      }
      this.refused++;
      this.warner.warn('refused ban record', { jail: r.jail, addr: r.addr, origin: r.origin, reason: why, refusedTotal: this.refused },
        'ban record in the snapshot refused: not signed by a trusted key');
      return false;
    }
    return this.guardAllows(r.jail, r.addr, 'snapshot');
  }

  private signatureProblem(d: Decision): string | undefined {
    if (this.s.allowUnsigned && !d.sig) return undefined;
    return checkSignature(this.s.trusted, this.s.cluster, d, d);
  }

  /** The self-guard: whoever signed it, a ban never covers what this host must keep reaching. */
  private guardAllows(jail: string, addr: string, id: string): boolean {
    const why = this.guardProblem(addr);
    if (!why) return true;
    this.guarded++;
    this.warner.warn('guard', { id, jail, addr, reason: why, guardRefusedTotal: this.guarded }, 'ban refused by this host\'s self-guard');
    return false;
  }

  private guardProblem(addr: string): string | undefined {
    const t = parseBanTarget(addr);
    const min = t.family === 4 ? this.s.minPrefixV4 : this.s.minPrefixV6;
    if (t.prefix < min) return `prefix /${t.prefix} is shorter than min_prefix_v${t.family} = ${min}`;
    if (this.never.contains(t.text)) return 'inside a never_ban network';
    const ban = new AddressMatcher([t.text]);
    for (const p of this.protectedEntries) {
      if (ban.contains(p)) return `covers ${p}, ${this.s.neverBan.some((n) => parseBanTarget(n).text === p) ? 'a never_ban network' : 'an address of this host'}`;
    }
    return undefined;
  }
}
