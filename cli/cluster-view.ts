import { AddressMatcher } from '../common/address.js';
import { loadJails, type LoadedJails } from '../common/config/jails.js';
import { configDir } from '../common/config/fleetban-config.js';
import { decodeBan, MANUAL_JAIL, type BanRecord } from '../common/protocol/messages.js';
import type { CoordinatorRegistration } from '../coordinator/main.js';
import { CliError, type CliContext, type GlobalOptions } from './context.js';
import { ALIVE_MS } from './wait.js';

/** The cluster's active bans (records that do not decode are skipped), oldest first. */
export async function activeBans(ctx: CliContext): Promise<BanRecord[]> {
  const all = await ctx.redis.hgetall(ctx.keys.bans);
  const out: BanRecord[] = [];
  for (const json of Object.values(all)) {
    const d = decodeBan(json);
    if (d.ok) out.push(d.value);
  }
  return out.sort((a, b) => a.since - b.since || a.addr.localeCompare(b.addr));
}

/**
 * This host's jail files, or nothing when they are absent or broken: the CLI must work on a host
 * (an admin's workstation) that has no jails, showing what the cluster knows instead.
 */
export function localJails(opts: GlobalOptions): LoadedJails | undefined {
  try {
    return loadJails(configDir(opts.config));
  } catch {
    return undefined;
  }
}

/** Jails the live coordinators run (from their registrations). */
export async function runningJails(ctx: CliContext): Promise<string[]> {
  const out = new Set<string>();
  for (const json of Object.values(await ctx.redis.hgetall(ctx.keys.coordinators))) {
    try {
      const c = JSON.parse(json) as Partial<CoordinatorRegistration>;
      if (typeof c.seenAt === 'number' && Date.now() - c.seenAt <= ALIVE_MS && Array.isArray(c.jails)) {
        for (const j of c.jails) if (typeof j === 'string') out.add(j);
      }
    } catch {
      // a malformed registration names no jail
    }
  }
  return [...out];
}

/**
 * Refuse a `--jail` that names no jail: a typo (`shd`) would otherwise ban on every port and stay
 * in `status` for ever. Known: `manual`, this host's enabled jails, the live coordinators' jails,
 * and (`withBans`, for unban) any jail that holds a ban.
 * @throws CliError listing the known jails
 */
export async function requireKnownJail(ctx: CliContext, opts: GlobalOptions, jail: string, withBans = false): Promise<void> {
  const known = new Set([MANUAL_JAIL, ...(localJails(opts)?.jails.map((j) => j.name) ?? []), ...(await runningJails(ctx))]);
  if (withBans) for (const b of await activeBans(ctx)) known.add(b.jail);
  if (!known.has(jail)) throw new CliError(`no jail '${jail}' is configured (known: ${[...known].sort().join(', ')})`);
}

/**
 * @param bans active bans
 * @param addr canonical address or network
 * @returns the bans whose address or network contains `addr` (its own ban included)
 */
export function coveringBans(bans: readonly BanRecord[], addr: string): BanRecord[] {
  return bans.filter((b) => b.addr === addr || (b.addr.includes('/') && new AddressMatcher([b.addr]).contains(addr)));
}
