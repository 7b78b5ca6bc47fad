import type { Command } from 'commander';
import type { JailConfig } from '../../common/config/jails.js';
import { type BanRecord, type Heartbeat } from '../../common/protocol/messages.js';
import { parseBanTarget } from '../../common/address.js';
import { isAlive, readFleet, redisTime } from '../../common/hosts.js';
import { activeBans, coveringBans, localJails, runningJails } from '../cluster-view.js';
import { CliError, withContext, printTable, formatTime, type GlobalOptions } from '../context.js';
import { latestId } from '../wait.js';


/** Milliseconds encoded in a stream id. */
function idTime(id: string): number {
  return Number(id.split('-')[0]);
}

export function registerStatusCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('status')
    .description('jails and their counters, like fail2ban-client status')
    .argument('[jail]', 'one jail in detail')
    .action(async (jail: string | undefined) => {
      const g = globals();
      const configured: JailConfig[] = localJails(g)?.jails ?? [];
      await withContext(g, async (ctx) => {
        const stats = await ctx.redis.hgetall(ctx.keys.stats);
        // Windows are kept on Redis' clock (the coordinators'), not this host's.
        const t = await redisTime(ctx.redis);
        const bans = await activeBans(ctx);
        // This host's jails and the ones the live coordinators run (the CLI may run elsewhere).
        const names = new Set([...configured.map((j) => j.name), ...(await runningJails(ctx))]);
        for (const b of bans) names.add(b.jail);
        for (const k of Object.keys(stats)) names.add(k.slice(0, k.lastIndexOf(':')));
        if (jail !== undefined && !names.has(jail)) throw new CliError(`no jail '${jail}' (known: ${[...names].sort().join(', ') || 'none'})`);
        const detail = async (name: string) => {
          const findtime = configured.find((j) => j.name === name)?.findtime;
          const failing = findtime
            ? await ctx.redis.zcount(ctx.keys.failing(name), `(${t - findtime * 1000}`, '+inf')
            : await ctx.redis.zcard(ctx.keys.failing(name));
          const banned = bans.filter((b) => b.jail === name).map((b) => b.addr);
          return {
            jail: name,
            currentlyFailed: failing,
            totalFailed: Number(stats[`${name}:failed`] ?? 0),
            currentlyBanned: banned.length,
            totalBanned: Number(stats[`${name}:banned`] ?? 0),
            bannedList: banned,
          };
        };
        if (jail === undefined) {
          const list = [...names].sort();
          if (g.json) {
            console.log(JSON.stringify({ cluster: ctx.config.cluster, jails: await Promise.all(list.map(detail)) }));
            return;
          }
          console.log(`Status (cluster ${ctx.config.cluster})`);
          console.log(`|- Number of jail:\t${list.length}`);
          console.log(`\`- Jail list:\t${list.join(', ')}`);
          return;
        }
        const d = await detail(jail);
        if (g.json) {
          console.log(JSON.stringify(d));
          return;
        }
        console.log(`Status for the jail: ${jail}`);
        console.log('|- Filter');
        console.log(`|  |- Currently failed:\t${d.currentlyFailed}`);
        console.log(`|  \`- Total failed:\t${d.totalFailed}`);
        console.log('`- Actions');
        console.log(`   |- Currently banned:\t${d.currentlyBanned}`);
        console.log(`   |- Total banned:\t${d.totalBanned}`);
        console.log(`   \`- Banned IP list:\t${d.bannedList.join(' ')}`);
      });
    });

  program
    .command('banned')
    .description('every active ban in the cluster; with addresses: whether each is banned, and by which ban (a covering network included)')
    .argument('[addr...]', 'addresses or networks to look up')
    .option('--jail <jail>', 'only this jail')
    .action(async (inputs: string[], o: { jail?: string }) => {
      const g = globals();
      const wanted = inputs.map((input) => {
        try {
          return parseBanTarget(input).text;
        } catch (err) {
          throw new CliError(`invalid address '${input}': ${(err as Error).message}`);
        }
      });
      await withContext(g, async (ctx) => {
        const bans = (await activeBans(ctx)).filter((b) => !o.jail || b.jail === o.jail);
        const show = (b: BanRecord) => ({ ...b, since: formatTime(b.since), until: b.until === -1 ? null : formatTime(b.until) });
        if (wanted.length > 0) {
          const answers = wanted.map((addr) => ({ addr, bans: coveringBans(bans, addr) }));
          if (g.json) {
            console.log(JSON.stringify(answers.map((a) => ({ addr: a.addr, banned: a.bans.length > 0, bans: a.bans.map(show) }))));
            return;
          }
          for (const a of answers) {
            if (a.bans.length === 0) console.log(`${a.addr} is not banned${o.jail ? ` in jail ${o.jail}` : ''}`);
            for (const b of a.bans) {
              const by = b.addr === a.addr ? '' : ` by ${b.addr}`;
              console.log(`${a.addr} is banned${by} in jail ${b.jail} ${b.until === -1 ? 'permanently' : `until ${formatTime(b.until)}`} (origin ${b.origin}${b.reason ? `, ${b.reason}` : ''})`);
            }
          }
          return;
        }
        if (g.json) {
          console.log(JSON.stringify(bans.map(show)));
          return;
        }
        if (bans.length === 0) {
          console.log('no active bans');
          return;
        }
        printTable(
          ['ADDRESS', 'JAIL', 'SINCE', 'UNTIL', 'ORIGIN', 'REASON'],
          bans.map((b) => [b.addr, b.jail, formatTime(b.since), b.until === -1 ? 'permanent' : formatTime(b.until), b.origin, b.reason]),
        );
      });
    });

  program
    .command('hosts')
    .description('agents of the cluster: alive, last seen, backend, bans applied, decision lag')
    .option('--forget <host>', 'remove a host that is gone for good from the list (refused while it is alive)')
    .action(async (o: { forget?: string }) => {
      const g = globals();
      await withContext(g, async (ctx) => {
        const view = await readFleet(ctx.redis, ctx.keys);
        if (o.forget !== undefined) {
          const name = o.forget;
          if (!view.registered.includes(name)) throw new CliError(`no host '${name}' is registered`);
          const hb = view.heartbeats.get(name);
          if (hb && isAlive(hb, view.now)) {
            throw new CliError(`host '${name}' is alive (seen ${formatTime(hb.seenAt)}): stop its agent first, or it registers again within seconds`);
          }
          // Its heartbeat, acknowledgement and report stream go with it: a host gone for good reports nothing more.
          await ctx.redis.multi().srem(ctx.keys.registry, name).del(...Object.values(ctx.keys.host(name))).exec();
          if (g.json) console.log(JSON.stringify({ forgotten: name }));
          else console.log(`forgot host ${name}`);
          return;
        }
        const newest = (await ctx.redis.xrevrange(ctx.keys.decisions, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
        const rows: Array<Heartbeat & { alive: boolean; behind: number; lagMs: number }> = [];
        for (const bad of view.invalid) console.error(`warning: ${bad.host}: invalid heartbeat ignored (${bad.reason})`);
        for (const beat of view.heartbeats.values()) {
          // The acknowledgement is newer than the heartbeat's copy whenever decisions arrived since.
          const hb = { ...beat, lastDecision: latestId(view.acks.get(beat.host), beat.lastDecision) };
          // Decisions the host has not applied yet (counted up to 1000) and how far behind in time.
          const pending = hb.lastDecision === newest ? 0 : (await ctx.redis.xrange(ctx.keys.decisions, `(${hb.lastDecision}`, '+', 'COUNT', 1000)).length;
          rows.push({ ...hb, alive: isAlive(hb, view.now), behind: pending, lagMs: pending === 0 ? 0 : Math.max(0, idTime(newest) - idTime(hb.lastDecision)) });
        }
        rows.sort((a, b) => a.host.localeCompare(b.host));
        if (g.json) {
          console.log(JSON.stringify(rows.map((r) => ({ host: r.host, alive: r.alive, lastSeen: formatTime(r.seenAt), backend: r.backend, version: r.version,
            addrs: r.addrs, bansApplied: r.bansApplied, bansHeld: r.bansHeld ?? null, bansRefused: r.bansRefused ?? 0,
            decisionsRefused: num(r.decisionsRefused), guardRefused: num(r.guardRefused), lastDecision: r.lastDecision, decisionsBehind: r.behind, lagMs: r.lagMs }))));
          return;
        }
        if (rows.length === 0) {
          console.log('no agents have registered');
          return;
        }
        printTable(
          ['HOST', 'ALIVE', 'LAST SEEN', 'BACKEND', 'HELD', 'APPLIED', 'REFUSED', 'UNTRUSTED', 'GUARDED', 'LAST DECISION', 'BEHIND'],
          rows.map((r) => [r.host, r.alive ? 'yes' : 'NO', formatTime(r.seenAt), r.backend, String(r.bansHeld ?? '-'), String(r.bansApplied),
            String(r.bansRefused ?? 0), String(num(r.decisionsRefused)), String(num(r.guardRefused)), r.lastDecision,
            r.behind === 0 ? 'up to date' : `${r.behind >= 1000 ? '1000+' : r.behind} (${(r.lagMs / 1000).toFixed(1)}s)`]),
        );
      });
    });
}

/** A counter from a heartbeat (written by any host, so checked): 0 unless a sane whole number. */
function num(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0;
}
