import type { Command } from 'commander';
import { parseBanTarget } from '../../common/address.js';
import { decodeCoordinatorRegistration, type CoordinatorRegistration } from '../../common/protocol/messages.js';
import { redisTime } from '../../common/hosts.js';
import { CliError, withContext, printTable, formatTime, type GlobalOptions } from '../context.js';
import { ALIVE_MS } from '../wait.js';


export function registerPolicyCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('history')
    .description("an address' ban history across the cluster (kept for [coordinator] dbpurgeage)")
    .argument('<addr>', 'address or network')
    .action(async (input: string) => {
      const g = globals();
      let addr: string;
      try {
        addr = parseBanTarget(input).text;
      } catch (err) {
        throw new CliError(`invalid address '${input}': ${(err as Error).message}`);
      }
      await withContext(g, async (ctx) => {
        const flat = await ctx.redis.zrange(ctx.keys.history(addr), 0, -1);
        const entries = flat.map((member) => {
          const [jail, since, until, origin, ...reason] = member.split('|');
          return { jail: jail!, since: Number(since), until: Number(until), origin: origin ?? '', reason: reason.join('|') };
        });
        if (g.json) {
          console.log(JSON.stringify(entries.map((e) => ({ ...e, since: formatTime(e.since), until: e.until === -1 ? null : formatTime(e.until) }))));
          return;
        }
        if (entries.length === 0) {
          console.log(`no bans of ${addr} in the history`);
          return;
        }
        printTable(['BANNED AT', 'JAIL', 'UNTIL', 'ORIGIN', 'REASON'],
          entries.map((e) => [formatTime(e.since), e.jail, e.until === -1 ? 'permanent' : formatTime(e.until), e.origin, e.reason]));
      });
    });

  program
    .command('reload')
    .description('make every running coordinator re-read its jails and apply the new policy (agents keep running)')
    .option('--timeout <seconds>', 'how long to wait for the coordinators to confirm', '10')
    .action(async (o: { timeout: string }) => {
      const g = globals();
      const timeoutMs = Number(o.timeout) * 1000;
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new CliError(`invalid --timeout '${o.timeout}'`);
      await withContext(g, async (ctx) => {
        // Coordinators stamp their registrations with Redis' clock; so is everything compared here.
        const read = async (): Promise<CoordinatorRegistration[]> => {
          const [all, t] = await Promise.all([ctx.redis.hgetall(ctx.keys.coordinators), redisTime(ctx.redis)]);
          return Object.values(all)
            .map((json) => decodeCoordinatorRegistration(json))
            .flatMap((d) => (d.ok && Math.abs(t - d.value.seenAt) <= ALIVE_MS ? [d.value] : []));
        };
        const before = await read();
        if (before.length === 0) throw new CliError('no coordinator is running in this cluster');
        const asked = await redisTime(ctx.redis);
        await ctx.redis.publish(ctx.keys.control, 'reload');
        let after = before;
        const started = Date.now();
        while (Date.now() - started < timeoutMs) {
          after = await read();
          if (before.every((b) => after.some((a) => a.consumer === b.consumer && a.reloadedAt >= asked))) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const rows = before.map((b) => {
          const a = after.find((x) => x.consumer === b.consumer);
          const state = !a || a.reloadedAt < asked ? 'no answer' : a.reloadError ? `failed: ${a.reloadError}` : 'reloaded';
          return { consumer: b.consumer, host: b.host, state, policy: a?.policy ?? b.policy, jails: a?.jails ?? b.jails };
        });
        const digests = new Set(rows.map((r) => r.policy));
        if (g.json) console.log(JSON.stringify({ coordinators: rows, agree: digests.size === 1 }));
        else {
          printTable(['COORDINATOR', 'HOST', 'RESULT', 'POLICY', 'JAILS'], rows.map((r) => [r.consumer, r.host, r.state, r.policy, r.jails.join(',')]));
          if (digests.size > 1) console.log('warning: coordinators run different policies; their jail files differ');
        }
        const bad = rows.filter((r) => r.state !== 'reloaded');
        if (bad.length > 0) throw new CliError(`${bad.length} coordinator${bad.length === 1 ? '' : 's'} did not reload: ${bad.map((r) => `${r.consumer} (${r.state})`).join(', ')}`);
      });
    });
}
