import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { JailConfig } from '../common/config/jails.js';
import { PERMANENT } from '../common/config/time-spec.js';
import { banTimeTable } from '../common/policy/ban-time.js';
import { Whitelist, type FleetAddresses } from '../common/policy/whitelist.js';
import type { ScriptPolicy } from '../common/scripts/index.js';

/** Everything the coordinator decides a jail's failures by. */
export interface JailPolicy {
  readonly script: ScriptPolicy;
  readonly whitelist: Whitelist;
  /** IPv6 failures count per network of this length; 128 means per address. */
  readonly ipv6prefix: number;
}

/** The policy of every jail plus a short digest, to tell whether coordinators agree. */
export interface ClusterPolicy {
  readonly jails: Map<string, JailPolicy>;
  /** Policies of the ban-counting (recidive) jails, passed to every counting call. */
  readonly recidives: ScriptPolicy[];
  readonly digest: string;
}

/**
 * Build the policy from validated jails: ban durations precomputed per earlier-ban count,
 * whitelists loaded (host names resolved, files read).
 */
export async function loadPolicy(jails: readonly JailConfig[], fleet: FleetAddresses, log: Logger): Promise<ClusterPolicy> {
  const map = new Map<string, JailPolicy>();
  for (const j of jails) {
    const script: ScriptPolicy = {
      jail: j.name,
      findtimeMs: Math.round(j.findtime * 1000),
      maxretry: j.maxretry,
      minhosts: j.minhosts,
      overalljails: j.banTime.overalljails,
      rndtimeMs: Math.round(j.banTime.rndtime * 1000),
      countsBans: j.countsBans,
      ignoreself: j.ignoreself,
      durationsMs: j.bantime === PERMANENT ? [-1] : banTimeTable(j.banTime),
    };
    const whitelist = await Whitelist.load({ jail: j.name, ignoreip: j.ignoreip, ignoreself: j.ignoreself, ignorecommand: j.ignorecommand }, fleet, log);
    map.set(j.name, { script, whitelist, ipv6prefix: j.ipv6prefix });
  }
  const digest = createHash('sha256')
    .update(JSON.stringify([...map.values()].map((p) => [p.script, p.whitelist.spec, p.ipv6prefix])))
    .digest('hex')
    .slice(0, 12);
  return { jails: map, recidives: [...map.values()].filter((p) => p.script.countsBans).map((p) => p.script), digest };
}
