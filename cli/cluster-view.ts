import { AddressMatcher } from '../common/address.js';
import { loadJails, type LoadedJails } from '../common/config/jails.js';
import { configDir } from '../common/config/fleetban-config.js';
import { decodeBan, decodeCoordinatorRegistration, MANUAL_JAIL, type BanRecord, type CoordinatorRegistration } from '../common/protocol/messages.js';
import { redisTime } from '../common/hosts.js';
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

/** The coordinators' registrations that decode, with whether each is alive on Redis' clock. */
export async function coordinators(ctx: CliContext): Promise<Array<CoordinatorRegistration & { alive: boolean }>> {
  const [all, t] = await Promise.all([ctx.redis.hgetall(ctx.keys.coordinators), redisTime(ctx.redis)]);
  return Object.values(all).map((json) => decodeCoordinatorRegistration(json))
    .flatMap((d) => (d.ok ? [{ ...d.value, alive: Math.abs(t - d.value.seenAt) <= ALIVE_MS }] : []));
}

/** Jails the live coordinators run (from their registrations). */
export async function runningJails(ctx: CliContext): Promise<string[]> {
  return [...new Set((await coordinators(ctx)).filter((c) => c.alive).flatMap((c) => c.jails))];
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
