import type { Command } from 'commander';
import { parseBanTarget } from '../../common/address.js';
import { Whitelist, FleetAddressSet } from '../../common/policy/whitelist.js';
import { componentLogger } from '../../common/log.js';
import { parseTimeSpec, formatDuration, PERMANENT } from '../../common/config/time-spec.js';
import { JAIL_DEFAULTS } from '../../common/config/jails.js';
import { JAIL_NAME_RE, LIMITS, MANUAL_JAIL, MAX_BAN_MS } from '../../common/protocol/messages.js';
import { liveFleetAddresses, readFleet } from '../../common/hosts.js';
import { cliSigner, decisionTime } from '../signing.js';
import { ClusterScripts } from '../../common/scripts/index.js';
import { CliError, withContext, formatTime, type GlobalOptions } from '../context.js';
import { waitForAgents, type WaitResult } from '../wait.js';
import { activeBans, coveringBans, localJails, requireKnownJail } from '../cluster-view.js';

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
    .description('ban addresses or CIDR networks on every host of the cluster')
    .argument('<addr...>', 'IPv4/IPv6 addresses or networks, e.g. 198.51.100.7 203.0.113.0/24')
    .option('--jail <jail>', 'a configured jail to ban in (its ports are blocked), or manual (all ports)', MANUAL_JAIL)
    .option('--bantime <time>', "ban duration: 600, 10m, 1h, 1d, or -1 for permanent (default: the jail's bantime)")
    .option('--reason <text>', 'reason shown by `fleetban banned`', 'manual ban')
    .option('--force', 'ban even when the address is whitelisted (ignoreip, ignoreself, ignorecommand)')
    .option('--wait', 'return only when every live agent has applied the bans')
    .option('--wait-timeout <seconds>', 'with --wait: give up after this long, naming the hosts still pending', '10')
    .option('--signing-key <file>', 'private key that signs the bans (default: $FLEETBAN_SIGNING_KEY or [cli] signing_key)')
    .action(async (addrs: string[], o: { jail: string; bantime?: string; reason: string; force?: boolean; wait?: boolean; waitTimeout: string; signingKey?: string }) => {
      const g = globals();
      const list = [...new Set(targets(addrs))];
      const jail = checkJail(o.jail);
      const loaded = localJails(g);
      const jc = loaded?.jails.find((j) => j.name === jail);
      let seconds: number;
      try {
        seconds = parseTimeSpec(o.bantime ?? (jc ? String(jc.bantime) : JAIL_DEFAULTS.bantime));
      } catch (err) {
        throw new CliError(`invalid --bantime: ${(err as Error).message}`);
      }
      if (seconds === 0) throw new CliError('invalid --bantime: must be positive, or -1 for permanent');
      if (seconds > MAX_BAN_MS / 1000) {
        // nft refuses timeouts over ~213,503 days; a ban longer than every firewall takes is cut.
        process.stderr.write(`fleetban: --bantime ${o.bantime ?? seconds} is longer than ${formatDuration(MAX_BAN_MS / 1000)}, the longest ban; banning for that long\n`);
        seconds = MAX_BAN_MS / 1000;
      }
      const timeoutMs = o.wait ? waitMs(o.waitTimeout) : 0;
      await withContext(g, async (ctx) => {
        await requireKnownJail(ctx, g, jail);
        if (!o.force) {
          // The same whitelist the coordinator applies: ignoreip, ignoreself (the fleet's own
          // addresses, from heartbeats) and ignorecommand; a jail no file defines (manual) gets
          // [DEFAULT]'s, so the shipped ignoreip protects 127.0.0.1/8 from a manual ban too.
          const base = jc ?? loaded?.defaults ?? { ignoreip: [], ignoreself: true, ignorecommand: undefined };
          const spec = { jail, ignoreip: base.ignoreip, ignoreself: base.ignoreself, ignorecommand: base.ignorecommand };
          const fleet = new FleetAddressSet();
          fleet.update(liveFleetAddresses(await readFleet(ctx.redis, ctx.keys)));
          const silent = componentLogger('cli');
          silent.level = 'silent';
          const whitelist = await Whitelist.load(spec, fleet, silent);
          for (const target of list) {
            const reason = await whitelist.check(target);
            if (reason) {
              const why = reason === 'ignoreself' ? 'it is an address of a fleet member (ignoreself)' : `jail [${jail}] whitelists it (${reason})`;
              throw new CliError(`refusing to ban ${target}: ${why}; use --force to ban it anyway${list.length > 1 ? ' (nothing was banned)' : ''}`);
            }
          }
        }
        const scripts = new ClusterScripts(ctx.redis, ctx.keys, ctx.config.coordinator.streamMaxlen, ctx.config.coordinator.dbpurgeage * 1000,
          cliSigner(ctx, o.signingKey));
        const done: Array<{ addr: string; until: number; isNew: boolean; decisionId: string }> = [];
        for (const target of list) {
          const t = await decisionTime(ctx.redis);
          const until = seconds === PERMANENT ? -1 : t + Math.round(seconds * 1000);
          const { isNew, decisionId } = await scripts.ban({ jail, addr: target, now: t, until, reason: o.reason.slice(0, LIMITS.reasonChars), origin: ctx.origin });
          done.push({ addr: target, until, isNew, decisionId });
        }
        // Agents apply decisions in stream order: the last one applied means all were.
        const waited = o.wait ? await waitForAgents(ctx, done[done.length - 1]!.decisionId, timeoutMs) : undefined;
        for (const d of done) {
          if (g.json) {
            console.log(JSON.stringify({ addr: d.addr, jail, until: d.until === -1 ? null : new Date(d.until).toISOString(), new: d.isNew, decision: d.decisionId, ...waited }));
          } else {
            console.log(`${d.isNew ? 'banned' : 'ban renewed:'} ${d.addr} in jail ${jail} ${d.until === -1 ? 'permanently' : `for ${formatDuration(seconds)} (until ${formatTime(d.until)})`}`);
          }
        }
        if (waited && !g.json) reportWait(waited);
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
    .option('--signing-key <file>', 'private key that signs the unban (default: $FLEETBAN_SIGNING_KEY or [cli] signing_key)')
    .action(async (addrs: string[], o: { all?: boolean; jail?: string; wait?: boolean; waitTimeout: string; signingKey?: string }) => {
      const g = globals();
      if (o.all && addrs.length > 0) throw new CliError('give addresses or --all, not both');
      if (!o.all && addrs.length === 0) throw new CliError('give at least one address, or --all');
      const jail = o.jail ? checkJail(o.jail) : '*';
      const list = targets(addrs);
      await withContext(g, async (ctx) => {
        if (jail !== '*') await requireKnownJail(ctx, g, jail, true);
        const scripts = new ClusterScripts(ctx.redis, ctx.keys, ctx.config.coordinator.streamMaxlen, undefined, cliSigner(ctx, o.signingKey));
        const at = await decisionTime(ctx.redis);
        if (o.all) {
          const { count, decisionId } = await scripts.flush(jail, ctx.origin, at);
          const waited = o.wait ? await waitForAgents(ctx, decisionId, waitMs(o.waitTimeout)) : undefined;
          if (g.json) console.log(JSON.stringify({ lifted: count, jail: jail === '*' ? null : jail, decision: decisionId, ...waited }));
          else {
            console.log(`lifted ${count} ban${count === 1 ? '' : 's'}${jail === '*' ? '' : ` in jail ${jail}`}`);
            if (waited) reportWait(waited);
          }
          if (waited && waited.pending.length > 0) throw pendingError(waited);
          return;
        }
        const { lifted, decisionId } = await scripts.unban(ctx.origin, list.map((a) => [jail, a] as const), at);
        const missing = list.filter((a) => !lifted.some((l) => l.addr === a));
        // An address may stay blocked by a network ban that covers it: say which, rather than "unbanned".
        const remaining = await activeBans(ctx);
        const covered = list.map((addr) => ({ addr, by: coveringBans(remaining, addr).filter((b) => jail === '*' || b.jail === jail) }))
          .filter((c) => c.by.length > 0);
        const waited = o.wait && decisionId ? await waitForAgents(ctx, decisionId, waitMs(o.waitTimeout)) : undefined;
        if (g.json) {
          console.log(JSON.stringify({ lifted, notBanned: missing, stillCovered: covered.map((c) => ({ addr: c.addr, by: c.by.map((b) => ({ addr: b.addr, jail: b.jail })) })),
            decision: decisionId || null, ...waited }));
        } else {
          for (const l of lifted) console.log(`unbanned ${l.addr} in jail ${l.jail}`);
          for (const a of missing) {
            if (!covered.some((c) => c.addr === a)) console.error(`${a} was not banned${jail === '*' ? '' : ` in jail ${jail}`} (the unban went out anyway, for any agent that still holds it)`);
          }
          for (const c of covered) {
            console.error(`${c.addr} is still banned: covered by ${c.by.map((b) => `${b.addr} in jail ${b.jail}`).join(', ')} (unban ${c.by[0]!.addr} to lift it)`);
          }
          if (waited) reportWait(waited);
        }
        if (lifted.length === 0 && covered.length > 0) {
          throw new CliError(`nothing was unbanned: ${covered.map((c) => `${c.addr} is covered by ${c.by.map((b) => b.addr).join(', ')}`).join('; ')}`, 1);
        }
        if (lifted.length === 0) throw new CliError('nothing was unbanned', 1);
        if (waited && waited.pending.length > 0) throw pendingError(waited);
      });
    });
}
