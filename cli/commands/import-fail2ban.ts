import type { Command } from 'commander';
import { execa } from 'execa';
import { accessSync, constants } from 'node:fs';
import { parseBanTarget } from '../../common/address.js';
import { configDir } from '../../common/config/fleetban-config.js';
import { readFail2banSettings } from '../../common/config/fail2ban-settings.js';
import { JAIL_NAME_RE, LIMITS, MANUAL_JAIL, IMPORTED_REASON } from '../../common/protocol/messages.js';
import { ClusterScripts } from '../../common/scripts/index.js';
import { cliSigner, decisionTime } from '../signing.js';
import { now } from '../../common/clock.js';
import { CliError, withContext, formatTime, type GlobalOptions } from '../context.js';
import { localJails, runningJails } from '../cluster-view.js';

/** Where Debian's fail2ban keeps its database (fail2ban.conf `dbfile`). */
export const FAIL2BAN_DB = '/var/lib/fail2ban/fail2ban.sqlite3';

/** Most bans one import reads; a fail2ban host holds far fewer, and the bound keeps memory bounded. */
const MAX_ROWS = 1_000_000;

/** One active fail2ban ban, validated. */
export interface Fail2banBan {
  readonly addr: string;
  readonly jail: string;
  /** Epoch ms of the ban, and its end (-1: permanent). */
  readonly since: number;
  readonly until: number;
  readonly bancount: number;
}

/**
 * Read the active bans of a fail2ban database with the sqlite3 CLI (Debian package sqlite3), read
 * only, as fail2ban itself selects them for restoring on start: from `bips` (fail2ban 0.11+, one
 * row per address and jail), or from `bans` for older databases; not yet expired, or permanent.
 * @param db path of the sqlite3 file
 * @param at the time that decides what is still active, epoch ms
 * @returns the bans, and the rows refused (with why)
 * @throws CliError when sqlite3 is missing or the file is not a fail2ban database
 */
export async function readFail2banBans(db: string, at: number): Promise<{ bans: Fail2banBan[]; refused: string[] }> {
  try {
    accessSync(db, constants.R_OK);
  } catch (err) {
    throw new CliError(`cannot read fail2ban database ${db}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const query = async (sql: string): Promise<Array<Record<string, unknown>>> => {
    let r;
    try {
      // -init /dev/null: no ~/.sqliterc may change the output format. The SQL holds only numbers we made.
      r = await execa('sqlite3', ['-init', '/dev/null', '-readonly', '-json', db, sql], { reject: false, timeout: 60_000, maxBuffer: 512 * 1024 * 1024 });
    } catch (err) {
      throw new CliError(`cannot run sqlite3 (apt-get install sqlite3): ${(err as Error).message}`);
    }
    if ((r as { code?: string }).code === 'ENOENT') throw new CliError('the sqlite3 command is missing: apt-get install sqlite3');
    if (r.exitCode !== 0) throw new CliError(`sqlite3 ${db}: ${String(r.stderr).trim().split('\n').pop()}`);
    const out = String(r.stdout).trim();
    if (out === '') return [];
    try {
      return JSON.parse(out) as Array<Record<string, unknown>>;
    } catch {
      throw new CliError(`sqlite3 ${db}: output is not JSON (sqlite3 older than 3.33?)`);
    }
  };
  const tables = new Set((await query("SELECT name FROM sqlite_master WHERE type = 'table'")).map((t) => String(t.name)));
  if (!tables.has('bans')) throw new CliError(`${db} is not a fail2ban database (it has no bans table)`);
  const seconds = Math.floor(at / 1000);
  const source = tables.has('bips') ? 'bips' : 'bans';
  const rows = await query(
    `SELECT ip, jail, max(timeofban) AS timeofban, bantime, bancount FROM ${source} ` +
    `WHERE (timeofban + bantime > ${seconds} OR bantime <= -1) GROUP BY ip, jail ORDER BY timeofban LIMIT ${MAX_ROWS}`);
  const bans: Fail2banBan[] = [];
  const refused: string[] = [];
  for (const row of rows) {
    const ip = String(row.ip ?? '').slice(0, 100);
    const jail = String(row.jail ?? '').slice(0, 100);
    const timeofban = Number(row.timeofban);
    const bantime = Number(row.bantime);
    let addr: string;
    try {
      addr = parseBanTarget(ip).text;
    } catch (err) {
      refused.push(`'${ip}' in jail ${jail}: ${(err as Error).message}`);
      continue;
    }
    if (!JAIL_NAME_RE.test(jail)) {
      refused.push(`${addr}: jail name '${jail}' is not one fleetban accepts`);
      continue;
    }
    if (!Number.isFinite(timeofban) || !Number.isFinite(bantime)) {
      refused.push(`${addr} in jail ${jail}: timeofban/bantime are not numbers`);
      continue;
    }
    bans.push({ addr, jail, since: timeofban * 1000, until: bantime <= -1 ? -1 : (timeofban + bantime) * 1000, bancount: Number(row.bancount) || 1 });
  }
  return { bans, refused };
}

export function registerImportCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command('import-fail2ban')
    .description("publish the active bans of a fail2ban database to the cluster, with their jail and remaining time")
    .option('--db <path>', `fail2ban's sqlite3 database (default: dbfile of the configuration's fail2ban.conf, else ${FAIL2BAN_DB})`)
    .option('--dry-run', 'only show what would be published (reads the jails from this host\'s configuration, not from the cluster)')
    .option('--signing-key <file>', 'private key that signs the bans (default: $FLEETBAN_SIGNING_KEY or [cli] signing_key)')
    .action(async (o: { db?: string; dryRun?: boolean; signingKey?: string }) => {
      const g = globals();
      const dir = configDir(g.config);
      const db = o.db ?? readFail2banSettings(dir).dbfile ?? FAIL2BAN_DB;
      const t = now();
      const { bans, refused } = await readFail2banBans(db, t);
      for (const r of refused) process.stderr.write(`fleetban: warning: skipped ${r}\n`);
      const local = localJails(g)?.jails.map((j) => j.name) ?? [];
      const publish = async (known: Set<string>, ban?: (b: Fail2banBan) => Promise<void>) => {
        const done: Fail2banBan[] = [];
        const unknown = new Map<string, number>();
        for (const b of bans) {
          // A ban in a jail the cluster does not run would be enforced on no port: say so instead.
          if (!known.has(b.jail)) {
            unknown.set(b.jail, (unknown.get(b.jail) ?? 0) + 1);
            continue;
          }
          if (ban) await ban(b);
          done.push(b);
        }
        const perJail = new Map<string, number>();
        for (const b of done) perJail.set(b.jail, (perJail.get(b.jail) ?? 0) + 1);
        if (g.json) {
          console.log(JSON.stringify({ db, dryRun: Boolean(o.dryRun), imported: done.map((b) => ({ addr: b.addr, jail: b.jail, until: b.until === -1 ? null : formatTime(b.until) })),
            skippedJails: Object.fromEntries(unknown), refused }));
          return;
        }
        for (const b of done) console.log(`${o.dryRun ? 'would ban' : 'banned'} ${b.addr} in jail ${b.jail} ${b.until === -1 ? 'permanently' : `until ${formatTime(b.until)}`}`);
        const summary = [...perJail].map(([j, n]) => `${j}: ${n}`).join(', ');
        console.log(`${o.dryRun ? 'would import' : 'imported'} ${done.length} active ban${done.length === 1 ? '' : 's'} from ${db}${summary ? ` (${summary})` : ''}`);
        if (unknown.size > 0) {
          console.log(`skipped bans of jails this cluster does not run: ${[...unknown].map(([j, n]) => `${j} (${n})`).join(', ')}; enable those jails and import again`);
        }
      };
      if (o.dryRun) {
        await publish(new Set([MANUAL_JAIL, ...local]));
        return;
      }
      await withContext(g, async (ctx) => {
        const known = new Set([MANUAL_JAIL, ...local, ...(await runningJails(ctx))]);
        // Signed like every manual ban: agents apply nothing unsigned.
        const scripts = new ClusterScripts(ctx.redis, ctx.keys, ctx.config.coordinator.streamMaxlen, ctx.config.coordinator.dbpurgeage * 1000,
          cliSigner(ctx, o.signingKey));
        await publish(known, async (b) => {
          const reason = `${IMPORTED_REASON} (ban ${b.bancount})`.slice(0, LIMITS.reasonChars);
          await scripts.ban({ jail: b.jail, addr: b.addr, now: await decisionTime(ctx.redis), until: b.until, reason, origin: ctx.origin });
        });
      });
    });
}
