import type { Command } from 'commander';
import { parseBanTarget } from '../../common/address.js';
import { Whitelist, FleetAddressSet } from '../../common/policy/whitelist.js';
import { componentLogger } from '../../common/log.js';
import { parseTimeSpec, formatDuration, PERMANENT } from '../../common/config/time-spec.js';
import { loadJails, JAIL_DEFAULTS, type JailConfig } from '../../common/config/jails.js';
import { configDir } from '../../common/config/fleetban-config.js';
import { JAIL_NAME_RE, LIMITS, MANUAL_JAIL } from '../../common/protocol/messages.js';
import { liveFleetAddresses, readFleet } from '../../common/hosts.js';
import { ClusterScripts } from '../../common/scripts/index.js';
import { now } from '../../common/clock.js';
import { CliError, withContext, formatTime, type GlobalOptions } from '../context.js';
import { waitForAgents, type WaitResult } from '../wait.js';

/** Parse addresses from the command line; the first bad one is refused with its reason. */
function targets(inputs: string[]): string[] {
  return inputs.map((input) => {
    try {
      return parseBanTarget(input).text;
    } catch (err) {
      throw new CliError(`invalid address '${input}': ${(err as Error).message}`);
    }
  });
}

function checkJail(jail: string): string {
  if (!JAIL_NAME_RE.test(jail)) throw new CliError(`invalid jail name '${jail}': letters, digits, '_', '.', '-' only`);
  return jail;
}

/** The jail's configuration when this host has it (for its bantime and whitelist). */
function configuredJail(opts: GlobalOptions, jail: string): JailConfig | undefined {
  try {
    return loadJails(configDir(opts.config)).jails.find((j) => j.name === jail);
  } catch {
    return undefined;
  }
}

function waitMs(text: string): number {
  const s = Number(text);
  if (!Number.isFinite(s) || s <= 0) throw new CliError(`invalid --wait-timeout '${text}': a number of seconds`);
  return s * 1000;
}

function reportWait(w: WaitResult): void {
  if (w.pending.length === 0) console.log(`applied by all ${w.applied.length} live host${w.applied.length === 1 ? '' : 's'}`);
}

function pendingError(w: WaitResult): CliError {
  return new CliError(`timed out: not yet applied by ${w.pending.length} of ${w.pending.length + w.applied.length} live hosts: ${w.pending.join(', ')}`, 2);
}

export function registerBanCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('ban')
    .description('ban an address or CIDR network on every host of the cluster')
    .argument('<addr>', 'IPv4/IPv6 address or network, e.g. 198.51.100.7 or 203.0.113.0/24')
    .option('--jail <jail>', 'jail to ban in (its ports are blocked)', MANUAL_JAIL)
    .option('--bantime <time>', "ban duration: 600, 10m, 1h, 1d, or -1 for permanent (default: the jail's bantime)")
    .option('--reason <text>', 'reason shown by `fleetban banned`', 'manual ban')
    .option('--force', 'ban even when the address is whitelisted (ignoreip, ignoreself, ignorecommand)')
    .option('--wait', 'return only when every live agent has applied the ban')
    .option('--wait-timeout <seconds>', 'with --wait: give up after this long, naming the hosts still pending', '10')
    .action(async (addr: string, o: { jail: string; bantime?: string; reason: string; force?: boolean; wait?: boolean; waitTimeout: string }) => {
      const g = globals();
      const [target] = targets([addr]);
      const jail = checkJail(o.jail);
      const jc = configuredJail(g, jail);
      let seconds: number;
      try {
        seconds = parseTimeSpec(o.bantime ?? (jc ? String(jc.bantime) : JAIL_DEFAULTS.bantime));
      } catch (err) {
        throw new CliError(`invalid --bantime: ${(err as Error).message}`);
      }
      if (seconds === 0) throw new CliError('invalid --bantime: must be positive, or -1 for permanent');
      await withContext(g, async (ctx) => {
        if (!o.force) {
          // The same whitelist the coordinator applies: ignoreip, ignoreself (the fleet's own
          // addresses, from heartbeats) and ignorecommand.
          const spec = jc
            ? { jail, ignoreip: jc.ignoreip, ignoreself: jc.ignoreself, ignorecommand: jc.ignorecommand }
            : { jail, ignoreip: [], ignoreself: true, ignorecommand: undefined };
          const fleet = new FleetAddressSet();
          fleet.update(liveFleetAddresses(await readFleet(ctx.redis, ctx.keys)));
          const silent = componentLogger('cli');
          silent.level = 'silent';
          const reason = await (await Whitelist.load(spec, fleet, silent)).check(target!);
          if (reason) {
            const why = reason === 'ignoreself' ? 'it is an address of a fleet member (ignoreself)' : `jail [${jail}] whitelists it (${reason})`;
            throw new CliError(`refusing to ban ${target}: ${why}; use --force to ban it anyway`);
          }
        }
        const t = now();
        const until = seconds === PERMANENT ? -1 : t + Math.round(seconds * 1000);
        const scripts = new ClusterScripts(ctx.redis, ctx.keys, ctx.config.coordinator.streamMaxlen, ctx.config.coordinator.dbpurgeage * 1000);
        const { isNew, decisionId } = await scripts.ban({ jail, addr: target!, now: t, until, reason: o.reason.slice(0, LIMITS.reasonChars), origin: ctx.origin });
        const waited = o.wait ? await waitForAgents(ctx, decisionId, waitMs(o.waitTimeout)) : undefined;
        if (g.json) {
          console.log(JSON.stringify({ addr: target, jail, until: until === -1 ? null : new Date(until).toISOString(), new: isNew, decision: decisionId, ...waited }));
        } else {
          console.log(`${isNew ? 'banned' : 'ban renewed:'} ${target} in jail ${jail} ${until === -1 ? 'permanently' : `for ${formatDuration(seconds)} (until ${formatTime(until)})`}`);
          if (waited) reportWait(waited);
        }
        if (waited && waited.pending.length > 0) throw pendingError(waited);
      });
    });

  program
    .command('unban')
    .description('lift bans on every host of the cluster')
    .argument('[addr...]', 'addresses or networks to unban')
    .option('--all', 'lift every ban (of --jail, or of all jails)')
    .option('--jail <jail>', 'only in this jail (default: every jail)')
    .option('--wait', 'return only when every live agent has applied the unban')
    .option('--wait-timeout <seconds>', 'with --wait: give up after this long, naming the hosts still pending', '10')
    .action(async (addrs: string[], o: { all?: boolean; jail?: string; wait?: boolean; waitTimeout: string }) => {
      const g = globals();
      if (o.all && addrs.length > 0) throw new CliError('give addresses or --all, not both');
      if (!o.all && addrs.length === 0) throw new CliError('give at least one address, or --all');
      const jail = o.jail ? checkJail(o.jail) : '*';
      const list = targets(addrs);
      await withContext(g, async (ctx) => {
        const scripts = new ClusterScripts(ctx.redis, ctx.keys, ctx.config.coordinator.streamMaxlen);
        if (o.all) {
          const { count, decisionId } = await scripts.flush(jail, ctx.origin);
          const waited = o.wait ? await waitForAgents(ctx, decisionId, waitMs(o.waitTimeout)) : undefined;
          if (g.json) console.log(JSON.stringify({ lifted: count, jail: jail === '*' ? null : jail, decision: decisionId, ...waited }));
          else {
            console.log(`lifted ${count} ban${count === 1 ? '' : 's'}${jail === '*' ? '' : ` in jail ${jail}`}`);
            if (waited) reportWait(waited);
          }
          if (waited && waited.pending.length > 0) throw pendingError(waited);
          return;
        }
        const { lifted, decisionId } = await scripts.unban(ctx.origin, list.map((a) => [jail, a] as const));
        const missing = list.filter((a) => !lifted.some((l) => l.addr === a));
        const waited = o.wait && decisionId ? await waitForAgents(ctx, decisionId, waitMs(o.waitTimeout)) : undefined;
        if (g.json) console.log(JSON.stringify({ lifted, notBanned: missing, decision: decisionId || null, ...waited }));
        else {
          for (const l of lifted) console.log(`unbanned ${l.addr} in jail ${l.jail}`);
          for (const a of missing) console.error(`${a} was not banned${jail === '*' ? '' : ` in jail ${jail}`}`);
          if (waited) reportWait(waited);
        }
        if (lifted.length === 0) throw new CliError('nothing was unbanned', 1);
        if (waited && waited.pending.length > 0) throw pendingError(waited);
      });
    });
}
