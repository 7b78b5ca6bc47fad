/**
 * Plain iptables backend for hosts without nftables or ipset, laid out the way fail2ban's
 * iptables-multiport action does it: a chain `f2b-<jail>` per jail holding one `-s ADDR -j DROP`
 * rule per ban, entered for the jail's ports and protocols. The jumps live in a dispatch chain of
 * ours (`fleetban`, jumped to from the top of INPUT) so that re-running init with changed ports
 * rewrites them without touching INPUT or the bans.
 *
 * Batches go through `iptables-restore --noflush` / `ip6tables-restore --noflush`, one process per
 * family per commit. iptables has no timeouts, so this backend deletes expired bans itself on a
 * timer, and it keeps a ledger of the rules it wrote: deleting a rule that is not there would fail
 * the whole restore, so a delete is only written for a rule the ledger holds.
 */
import { now as clockNow } from '../../common/clock.js';
import { FirewallError, InvalidInputError } from '../../common/errors.js';
import { componentLogger, type Logger } from '../../common/log.js';
import type { FirewallBackend, FirewallBan, JailRule } from './backend.js';
import { BanLedger } from './ban-ledger.js';
import { CommandRunner } from './command-runner.js';
import { iptablesMatches } from './iptables-matches.js';
import { banKey, banTarget, boundedName, checkBan, validateJailRules, type CheckedBan } from './jail-rules.js';
import { DEFAULT_MAX_BANS } from './nftables.js';
import { outlasts, PendingChanges, type PendingChange } from './pending-changes.js';

/** Options of {@link IptablesBackend}. */
export interface IptablesOptions {
  /** argv run before every command, e.g. `['ip','netns','exec',ns]`. */
  readonly commandPrefix?: readonly string[];
  /** Per-host cap on ban rules across all jails; default {@link DEFAULT_MAX_BANS}. */
  readonly maxBans?: number;
  /** Prefix of per-jail chain names (28 characters at most in all); default `f2b-`. */
  readonly namePrefix?: string;
  /** Name of the dispatch chain; default `fleetban`. */
  readonly chain?: string;
  /** How often expired bans are removed, ms; default 1000. */
  readonly expireIntervalMs?: number;
  readonly logger?: Logger;
}

const NAME_PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,9}$/;
const CHAIN = /^[A-Za-z][A-Za-z0-9_-]{0,27}$/;
const FAMILIES = [4, 6] as const;

/** iptables implementation of {@link FirewallBackend}; see the module comment. */
export class IptablesBackend implements FirewallBackend {
  readonly name = 'iptables';
  private readonly run: CommandRunner;
  private readonly log: Logger;
  private readonly prefix: string;
  private readonly chain: string;
  private readonly expireIntervalMs: number;
  private readonly pending = new PendingChanges();
  /** Exactly the ban rules in our jail chains (plus their expiry), as this process wrote or read them. */
  private readonly ledger: BanLedger;
  private jails = new Map<string, { rule: JailRule; chain: string }>();
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** @param options see {@link IptablesOptions} */
  constructor(options: IptablesOptions = {}) {
    this.log = options.logger ?? componentLogger('firewall.iptables');
    this.run = new CommandRunner(options.commandPrefix ?? [], this.log);
    this.prefix = options.namePrefix ?? 'f2b-';
    if (!NAME_PREFIX.test(this.prefix)) throw new InvalidInputError(`iptables chain prefix '${this.prefix}' must match ${NAME_PREFIX}`);
    this.chain = options.chain ?? 'fleetban';
    if (!CHAIN.test(this.chain)) throw new InvalidInputError(`iptables chain '${this.chain}' must match ${CHAIN}`);
    this.ledger = new BanLedger(options.maxBans ?? DEFAULT_MAX_BANS, this.log);
    this.expireIntervalMs = options.expireIntervalMs ?? 1000;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  async init(jails: readonly JailRule[]): Promise<void> {
    const checked = validateJailRules(jails);
    return this.serialize(async () => {
      const next = new Map<string, { rule: JailRule; chain: string }>();
      for (const [name, rule] of checked) next.set(name, { rule, chain: boundedName(this.prefix, name, 28) });
      await this.setup(next);
      if (!this.timer) {
        this.timer = setInterval(() => void this.expire().catch((err: unknown) => this.log.error({ err }, 'removing expired bans failed')), this.expireIntervalMs);
        this.timer.unref();
      }
    });
  }

  /**
   * Create missing jail chains (existing ones keep their bans), rebuild the dispatch chain, make
   * INPUT jump to it, delete chains of jails no longer configured, and reload the ledger from
   * what the kernel really holds.
   */
  private async setup(jails: Map<string, { rule: JailRule; chain: string }>): Promise<void> {
    const previousUntil = new Map<string, number>();
    for (const k of this.ledger.keys()) previousUntil.set(k, this.ledger.get(k)!);
    this.ledger.clear();
    for (const family of FAMILIES) {
      const state = await this.save(family);
      const lines = ['*filter'];
      for (const j of jails.values()) if (!state.chains.has(j.chain)) lines.push(`:${j.chain} - [0:0]`);
      lines.push(`:${this.chain} - [0:0]`); // --noflush empties only this declared chain
      for (const j of jails.values()) {
        for (const m of iptablesMatches(j.rule)) lines.push(['-A', this.chain, ...m, '-j', j.chain].join(' '));
      }
      // Chains the old dispatch chain jumped to but no configured jail owns any more.
      const stale = [...state.dispatchTargets].filter((c) => ![...jails.values()].some((j) => j.chain === c) && state.chains.has(c));
      for (const c of stale) lines.push(`-F ${c}`, `-X ${c}`);
      lines.push('COMMIT');
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      await this.run.run(`${restore} (setup)`, [restore, '-w', '--noflush'], lines.join('\n') + '\n');
      const tool = family === 4 ? 'iptables' : 'ip6tables';
      const has = await this.run.run(`${tool} check jump`, [tool, '-w', '-C', 'INPUT', '-j', this.chain], undefined, { allowFail: true });
      if (has.exitCode !== 0) await this.run.run(`${tool} insert jump`, [tool, '-w', '-I', 'INPUT', '1', '-j', this.chain]);
      const byChain = new Map([...jails.values()].map((j) => [j.chain, j.rule.jail]));
      for (const [chain, addrs] of state.bans) {
        const jail = byChain.get(chain);
        if (!jail) continue;
        for (const addr of addrs) {
          const key = banKey(jail, addr);
          this.ledger.set(key, previousUntil.get(key) ?? -1);
        }
      }
    }
    this.jails = jails;
  }

  /** Parse `iptables-save -t filter`: our chains, where the dispatch chain jumps, ban rules per chain. */
  private async save(family: 4 | 6): Promise<{ chains: Set<string>; dispatchTargets: Set<string>; bans: Map<string, string[]> }> {
    const tool = family === 4 ? 'iptables-save' : 'ip6tables-save';
    const { stdout } = await this.run.run(tool, [tool, '-t', 'filter']);
    const chains = new Set<string>();
    const dispatchTargets = new Set<string>();
    const bans = new Map<string, string[]>();
    for (const line of stdout.split('\n')) {
      if (line.startsWith(':')) {
        chains.add(line.slice(1).split(' ')[0]!);
        continue;
      }
      if (!line.startsWith('-A ')) continue;
      const parts = line.split(' ');
      const chain = parts[1]!;
      if (chain === this.chain) {
        const j = parts.indexOf('-j');
        if (j !== -1 && parts[j + 1]) dispatchTargets.add(parts[j + 1]!);
        continue;
      }
      // Our ban rules have exactly this shape; anything else in the chain is not ours to count.
      const m = /^-A (\S+) -s (\S+) -j DROP$/.exec(line);
      if (!m) continue;
      const addr = banTarget(m[2]!).text;
      let arr = bans.get(m[1]!);
      if (!arr) bans.set(m[1]!, (arr = []));
      arr.push(addr);
    }
    return { chains, dispatchTargets, bans };
  }

  add(ban: FirewallBan): void {
    const c = this.check(ban);
    this.pending.add({ jail: c.jail, addr: c.target.text, family: c.target.family, until: c.until });
  }

  delete(jail: string, addr: string): void {
    const text = banTarget(addr).text;
    if (this.jails.has(jail)) this.pending.delete(jail, text);
  }

  private check(ban: FirewallBan): CheckedBan {
    if (!this.jails.has(ban.jail)) {
      throw new InvalidInputError(`jail '${ban.jail}' is not set up in the iptables backend (known: ${[...this.jails.keys()].join(', ') || 'none'})`);
    }
    return checkBan(ban);
  }

  commit(): Promise<void> {
    return this.serialize(async () => {
      const changes = this.pending.take();
      if (changes.length === 0) return;
      try {
        await this.withRepair('iptables commit', () => this.buildCommit(changes));
      } catch (err) {
        this.pending.restore(changes);
        throw err;
      }
    });
  }

  /** Rules to add and delete per family; an already present ban only gets its expiry updated. */
  private buildCommit(changes: readonly PendingChange[]): Batches {
    const nowMs = clockNow();
    const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
    const after: Array<() => void> = [];
    let freed = 0;
    for (const c of changes) {
      if (c.kind !== 'delete') continue;
      const j = this.jails.get(c.jail);
      const key = banKey(c.jail, c.addr);
      if (!j || this.ledger.get(key) === undefined) continue;
      const t = banTarget(c.addr);
      lines[t.family].push(`-D ${j.chain} -s ${t.text} -j DROP`);
      if (this.ledger.has(key, nowMs)) freed++;
      after.push(() => this.ledger.delete(key));
    }
    let room = this.ledger.room(nowMs) + freed;
    let refused = 0;
    for (const c of changes) {
      if (c.kind !== 'add') continue;
      const { ban } = c;
      const j = this.jails.get(ban.jail);
      if (!j || (ban.until !== -1 && ban.until <= nowMs)) continue;
      const key = banKey(ban.jail, ban.addr);
      if (this.ledger.get(key) !== undefined) {
        // The rule is there (maybe expired but not yet swept): only the expiry changes.
        after.push(() => this.ledger.set(key, ban.until));
        continue;
      }
      if (room <= 0) {
        refused++;
        continue;
      }
      room--;
      lines[ban.family].push(`-A ${j.chain} -s ${ban.addr} -j DROP`);
      after.push(() => this.ledger.set(key, ban.until));
    }
    this.ledger.warnCap(refused, nowMs);
    return { lines, flush: false, onSuccess: () => after.forEach((f) => f()) };
  }

  sync(bans: readonly FirewallBan[]): Promise<void> {
    return this.serialize(() => this.withRepair('iptables sync', () => this.buildSync(bans)));
  }

  private buildSync(bans: readonly FirewallBan[]): Batches {
    const nowMs = clockNow();
    const wanted = new Map<string, CheckedBan>();
    const rejected: string[] = [];
    for (const b of bans) {
      let c: CheckedBan;
      try {
        c = this.check(b);
      } catch (err) {
        rejected.push(`${b.jail} ${b.addr}: ${(err as Error).message}`);
        continue;
      }
      if (c.until !== -1 && c.until <= nowMs) continue;
      const key = banKey(c.jail, c.target.text);
      const prev = wanted.get(key);
      if (!prev || outlasts(c.until, prev.until)) wanted.set(key, c);
    }
    if (rejected.length) this.log.warn({ rejected: rejected.length, examples: rejected.slice(0, 5) }, 'sync skipped invalid bans');
    let list = [...wanted.entries()];
    if (list.length > this.ledger.maxBans) {
      this.ledger.warnCap(list.length - this.ledger.maxBans, nowMs);
      list = list.slice(0, this.ledger.maxBans);
    }
    const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
    for (const [, c] of list) lines[c.target.family].push(`-A ${this.jails.get(c.jail)!.chain} -s ${c.target.text} -j DROP`);
    return {
      lines,
      flush: true,
      onSuccess: () => {
        this.ledger.clear();
        for (const [key, c] of list) this.ledger.set(key, c.until);
      },
    };
  }

  private restoreText(b: Batches, family: 4 | 6): string | undefined {
    if (!b.flush && b.lines[family].length === 0) return undefined;
    // Declaring a chain under --noflush empties it, which is what a sync wants and a commit must not do.
    const head = b.flush ? [...this.jails.values()].map((j) => `:${j.chain} - [0:0]`) : [];
    return ['*filter', ...head, ...b.lines[family], 'COMMIT', ''].join('\n');
  }

  /** Apply both families' batches; on failure resynchronise with the kernel, rebuild, retry once. */
  private async withRepair(operation: string, build: () => Batches): Promise<void> {
    const first = build();
    const failed: string[] = [];
    const done = new Set<4 | 6>();
    for (const family of FAMILIES) {
      const text = this.restoreText(first, family);
      if (!text) continue;
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      const r = await this.run.run(operation, [restore, '-w', '--noflush'], text, { allowFail: true });
      if (r.exitCode === 0) done.add(family);
      else failed.push(r.stderr.trim());
    }
    if (failed.length === 0) return first.onSuccess();
    this.log.warn({ operation, stderr: failed.join('\n').slice(0, 500) }, 'iptables batch failed; re-reading the chains and retrying once');
    try {
      // A family that did apply is now in the kernel; setup reads it back into the ledger.
      await this.setup(this.jails);
    } catch (err) {
      throw new FirewallError(operation, `${failed.join('\n')}\nrepair failed too: ${(err as Error).message}`, { cause: err });
    }
    const second = build();
    for (const family of FAMILIES) {
      const text = this.restoreText(second, family);
      if (!text) continue;
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      await this.run.run(operation, [restore, '-w', '--noflush'], text);
    }
    second.onSuccess();
  }

  /** Delete the rules of bans whose time is up, one restore per family. */
  private expire(): Promise<void> {
    return this.serialize(async () => {
      const nowMs = clockNow();
      const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
      const keys: string[] = [];
      for (const key of this.ledger.keys()) {
        const until = this.ledger.get(key)!;
        if (until === -1 || until > nowMs) continue;
        const [jail, addr] = key.split('\u0000') as [string, string];
        const j = this.jails.get(jail);
        if (!j) continue;
        lines[addr.includes(':') ? 6 : 4].push(`-D ${j.chain} -s ${addr} -j DROP`);
        keys.push(key);
      }
      if (keys.length === 0) return;
      await this.withRepair('iptables expire', () => ({
        lines,
        flush: false,
        onSuccess: () => keys.forEach((k) => this.ledger.delete(k)),
      }));
    });
  }

  list(): Promise<FirewallBan[]> {
    return this.serialize(async () => {
      const byChain = new Map([...this.jails.values()].map((j) => [j.chain, j.rule.jail]));
      const out: FirewallBan[] = [];
      const nowMs = clockNow();
      for (const family of FAMILIES) {
        const state = await this.save(family);
        for (const [chain, addrs] of state.bans) {
          const jail = byChain.get(chain);
          if (!jail) continue;
          for (const addr of addrs) {
            const until = this.ledger.get(banKey(jail, addr)) ?? -1;
            // Expired but not yet swept: the rule still drops, yet the ban is over.
            if (until !== -1 && until <= nowMs) continue;
            out.push({ jail, addr, family, until });
          }
        }
      }
      return out;
    });
  }

  shutdown(options: { cleanup?: boolean } = {}): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.serialize(async () => {
      if (this.pending.size > 0) this.log.warn({ pending: this.pending.size }, 'shutdown with uncommitted firewall changes');
      if (!options.cleanup) return;
      for (const family of FAMILIES) {
        const tool = family === 4 ? 'iptables' : 'ip6tables';
        for (let i = 0; i < 16; i++) {
          const r = await this.run.run(`${tool} cleanup`, [tool, '-w', '-D', 'INPUT', '-j', this.chain], undefined, { allowFail: true });
          if (r.exitCode !== 0) break;
        }
        const state = await this.save(family);
        const chains = [this.chain, ...[...this.jails.values()].map((j) => j.chain), ...state.dispatchTargets];
        for (const c of new Set(chains)) {
          if (!state.chains.has(c)) continue;
          await this.run.run(`${tool} cleanup`, [tool, '-w', '-F', c], undefined, { allowFail: true });
        }
        for (const c of new Set(chains)) {
          if (!state.chains.has(c)) continue;
          await this.run.run(`${tool} cleanup`, [tool, '-w', '-X', c], undefined, { allowFail: true });
        }
      }
      this.ledger.clear();
    });
  }
}

interface Batches {
  readonly lines: Record<4 | 6, string[]>;
  /** Empty the jail chains first (sync). */
  readonly flush: boolean;
  readonly onSuccess: () => void;
}
