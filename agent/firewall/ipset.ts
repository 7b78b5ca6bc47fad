/**
 * ipset + iptables backend, for hosts whose firewall is managed with iptables. Per jail and family
 * one `hash:net` set with kernel timeouts (hash:net holds single addresses and networks of any
 * length, overlapping ones included, each with its own timeout); one chain of ours, jumped to from
 * the top of INPUT, holds one `-m set --match-set` rule per jail, protocol and multiport group.
 * Commits go to one long-lived `ipset -exist -` process; syncs (and large batches) as one
 * `ipset restore -exist` each.
 *
 * ipset refuses timeouts above 2,147,483 s (about 24.8 days). A longer ban is stored without a
 * timeout and this backend deletes it itself when it is due (checked once a minute).
 */
import { now as clockNow } from '../../common/clock.js';
import { InvalidInputError } from '../../common/errors.js';
import type { FirewallBan, JailRule } from './backend.js';
import { CapBudget } from './cap-budget.js';
import { InputJump } from './input-jump.js';
import { iptablesMatches, iptablesVerdicts } from './iptables-matches.js';
import { banKey, banTarget, boundedName, splitBanKey, validateJailRules } from './jail-rules.js';
import { KernelBackend, type KernelBackendOptions } from './kernel-backend.js';
import type { PendingChange } from './pending-changes.js';
import { prepareSync } from './prepare-sync.js';
import { SESSION_PROTOCOLS, type CommandSession } from './command-session.js';
import { applyOnStdin, applyWithRepair, type ScriptBatch } from './repair-and-retry.js';

/** Options of {@link IpsetBackend}. */
export interface IpsetOptions extends KernelBackendOptions {
  /** `maxelem` of each set; default maxBans (one jail may hold the whole cap). */
  readonly maxelem?: number;
  /** Prefix of set names (ipset names stop at 31 characters); default `fb-`. */
  readonly namePrefix?: string;
  /** Name of our iptables chain; default `fleetban`. */
  readonly chain?: string;
  /** How often overlong bans (beyond ipset's timeout limit) are checked for expiry, ms; default 60,000. */
  readonly expireIntervalMs?: number;
}

/** Longest timeout ipset accepts, seconds. */
export const IPSET_MAX_TIMEOUT_S = 2_147_483;

const NAME_PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,9}$/;

interface JailSets {
  readonly rule: JailRule;
  readonly v4: string;
  readonly v6: string;
}

/** ipset implementation of {@link FirewallBackend}; see the module comment. */
export class IpsetBackend extends KernelBackend<JailSets> {
  readonly name = 'ipset';
  private readonly prefix: string;
  private readonly jump: InputJump;
  private readonly maxelem: number;
  private readonly expireIntervalMs: number;
  /** Bans stored without a kernel timeout because they outlast ipset's limit: key to expiry. */
  private readonly overlong = new Map<string, number>();
  /**
   * `ipset -exist -` for commit batches. Only commits: interactive ipset goes on after a failed
   * line, harmless for adds and deletes (the retry repeats them idempotently) but not for a
   * sync, whose `swap` would then put a half-filled set in place; `ipset restore` stops first.
   */
  private readonly session: CommandSession | undefined;

  /** @param options see {@link IpsetOptions} */
  constructor(options: IpsetOptions = {}) {
    super(options, 'firewall.ipset');
    this.prefix = options.namePrefix ?? 'fb-';
    if (!NAME_PREFIX.test(this.prefix)) throw new InvalidInputError(`ipset name prefix '${this.prefix}' must match ${NAME_PREFIX}`);
    this.jump = new InputJump(this.run, options.chain ?? 'fleetban');
    this.maxelem = options.maxelem ?? this.ledger.maxBans;
    if (!Number.isInteger(this.maxelem) || this.maxelem < 1) throw new InvalidInputError(`ipset maxelem must be a positive integer, got ${this.maxelem}`);
    this.expireIntervalMs = options.expireIntervalMs ?? 60_000;
    this.session = this.openSession('ipset', SESSION_PROTOCOLS.ipset);
  }

  private setsFor(rule: JailRule): JailSets {
    // 26 leaves room for the "-4"/"-6" suffix and the "t" of the sync scratch set.
    const base = boundedName(this.prefix, rule.jail, 28);
    return { rule, v4: `${base}-4`, v6: `${base}-6` };
  }

  async init(jails: readonly JailRule[]): Promise<void> {
    const checked = validateJailRules(jails);
    return this.serialize(async () => {
      const next = new Map<string, JailSets>();
      for (const [name, rule] of checked) next.set(name, this.setsFor(rule));
      await this.setup(next);
      await this.seedLedger(() => this.readBans());
      this.startExpiry(this.expireIntervalMs, () => this.expireOverlong(), 'expiring overlong bans failed');
      await this.warmSessions();
    });
  }

  /** Create the sets, rebuild our chain's rules, make sure INPUT jumps to it, drop stale sets. */
  private async setup(jails: Map<string, JailSets>): Promise<void> {
    const create: string[] = [];
    for (const s of jails.values()) {
      create.push(`create ${s.v4} hash:net family inet timeout 0 maxelem ${this.maxelem}`);
      create.push(`create ${s.v6} hash:net family inet6 timeout 0 maxelem ${this.maxelem}`);
    }
    if (create.length) await this.run.run('ipset create', ['ipset', 'restore', '-exist'], create.join('\n') + '\n');
    for (const family of [4, 6] as const) {
      const lines = ['*filter', `:${this.jump.chain} - [0:0]`]; // with --noflush this (re)creates and empties only our chain
      for (const s of jails.values()) {
        for (const m of iptablesMatches(s.rule)) {
          for (const r of iptablesVerdicts(s.rule, family, [...m, '-m', 'set', '--match-set', family === 4 ? s.v4 : s.v6, 'src'])) lines.push(['-A', this.jump.chain, ...r].join(' '));
        }
      }
      lines.push('COMMIT');
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      await this.run.run(`${restore} (rules)`, [restore, '-w', '--noflush'], lines.join('\n') + '\n');
      await this.jump.ensure(family);
    }
    const keep = new Set([...jails.values()].flatMap((s) => [s.v4, s.v6]));
    const names = (await this.run.run('ipset list names', ['ipset', 'list', '-n'])).stdout.split('\n').map((l) => l.trim());
    const stale = names.filter((n) => n.startsWith(this.prefix) && !keep.has(n));
    if (stale.length) {
      await this.run.run('ipset destroy stale', ['ipset', 'restore', '-exist'], stale.map((n) => `destroy ${n}`).join('\n') + '\n', { allowFail: true });
      this.ledger.forgetJails((jail) => this.jails.has(jail) && !jails.has(jail));
    }
    this.jails = jails;
  }

  private setOf(jail: string, family: 4 | 6): string | undefined {
    const s = this.jails.get(jail);
    return s && (family === 4 ? s.v4 : s.v6);
  }

  /** `timeout N` for a ban, or `timeout 0` (none) when it outlasts ipset's limit or is permanent. */
  private timeoutOf(until: number, nowMs: number): { text: string; overlong: boolean } {
    if (until === -1) return { text: 'timeout 0', overlong: false };
    const s = Math.ceil((until - nowMs) / 1000);
    if (s > IPSET_MAX_TIMEOUT_S) return { text: 'timeout 0', overlong: true };
    return { text: `timeout ${s}`, overlong: false };
  }

  protected applyChanges(changes: readonly PendingChange[], repair = true): Promise<void> {
    return this.withRepair('ipset commit', () => this.buildCommit(changes), this.session, repair);
  }

  /** With `-exist`, `add` of a present entry updates its timeout and `del` of a missing one is quiet. */
  private buildCommit(changes: readonly PendingChange[]): ScriptBatch {
    const nowMs = clockNow();
    const dels: string[] = [];
    const adds: string[] = [];
    const after: Array<() => void> = [];
    let freed = 0;
    for (const c of changes) {
      if (c.kind !== 'delete') continue;
      const t = banTarget(c.addr);
      const set = this.setOf(c.jail, t.family);
      if (!set) continue;
      dels.push(`del ${set} ${t.text}`);
      const key = banKey(c.jail, c.addr);
      if (this.ledger.has(key, nowMs)) freed++;
      after.push(() => {
        this.ledger.delete(key);
        this.overlong.delete(key);
      });
    }
    const budget = new CapBudget(this.ledger, nowMs, freed);
    for (const c of changes) {
      if (c.kind !== 'add') continue;
      const { ban } = c;
      const set = this.setOf(ban.jail, ban.family);
      if (!set) continue;
      if (ban.until !== -1 && ban.until <= nowMs) continue;
      const key = banKey(ban.jail, ban.addr);
      if (!this.ledger.has(key, nowMs) && !budget.take()) continue;
      const timeout = this.timeoutOf(ban.until, nowMs);
      adds.push(`add ${set} ${ban.addr} ${timeout.text}`);
      after.push(() => {
        this.ledger.set(key, ban.until);
        if (timeout.overlong) this.overlong.set(key, ban.until);
        else this.overlong.delete(key);
      });
    }
    budget.finish();
    const lines = [...dels, ...adds];
    return { script: lines.length ? lines.join('\n') + '\n' : '', onSuccess: () => after.forEach((f) => f()) };
  }

  sync(bans: readonly FirewallBan[]): Promise<void> {
    return this.serialize(() => this.withRepair('ipset sync', () => this.buildSync(bans)));
  }

  /**
   * Fill a scratch set per real set and swap them: each set changes content in one step, so a
   * sync never leaves a window with the host unprotected.
   */
  private buildSync(bans: readonly FirewallBan[]): ScriptBatch {
    const nowMs = clockNow();
    const list = prepareSync(bans, { check: (b) => this.check(b), now: nowMs, log: this.log, ledger: this.ledger });
    const lines: string[] = [];
    const bySet = new Map<string, string[]>();
    for (const s of this.jails.values()) {
      for (const [set, fam] of [[s.v4, 'inet'], [s.v6, 'inet6']] as const) {
        lines.push(`create ${set}t hash:net family ${fam} timeout 0 maxelem ${this.maxelem}`, `flush ${set}t`);
        bySet.set(set, []);
      }
    }
    const overlong = new Map<string, number>();
    for (const [key, c] of list) {
      const set = this.setOf(c.jail, c.target.family)!;
      const timeout = this.timeoutOf(c.until, nowMs);
      if (timeout.overlong) overlong.set(key, c.until);
      bySet.get(set)!.push(`add ${set}t ${c.target.text} ${timeout.text}`);
    }
    for (const [set, adds] of bySet) lines.push(...adds, `swap ${set}t ${set}`, `destroy ${set}t`);
    return {
      script: lines.join('\n') + '\n',
      onSuccess: () => {
        this.ledger.replaceAll(list.map(([key, c]) => [key, c.until] as const));
        this.markLedgerSeeded();
        this.overlong.clear();
        for (const [k, u] of overlong) this.overlong.set(k, u);
      },
    };
  }

  /**
   * Apply a batch with `ipset restore`, or through the session when one is given; on failure
   * repair sets, rules and jump, and retry once (unless repair is false).
   */
  private withRepair(operation: string, build: () => ScriptBatch, session?: CommandSession, repair = true): Promise<void> {
    return applyWithRepair(operation, build, {
      log: this.log,
      warning: 'ipset batch failed; repairing sets and rules and retrying once',
      apply: applyOnStdin(this.run, ['ipset', 'restore', '-exist'], session),
      repair: () => this.setup(this.jails),
    }, repair);
  }

  /** Delete bans that were stored without a timeout because they outlast ipset's limit, once due. */
  private expireOverlong(): Promise<void> {
    return this.serialize(async () => {
      const nowMs = clockNow();
      const due: string[] = [];
      const keys: string[] = [];
      for (const [key, until] of this.overlong) {
        if (until > nowMs) continue;
        const { jail, addr } = splitBanKey(key);
        const set = this.setOf(jail, addr.includes(':') ? 6 : 4);
        if (set) due.push(`del ${set} ${addr}`);
        keys.push(key);
      }
      if (!keys.length) return;
      if (due.length) await this.run.run('ipset expire', ['ipset', 'restore', '-exist'], due.join('\n') + '\n');
      for (const k of keys) {
        this.overlong.delete(k);
        this.ledger.delete(k);
      }
    });
  }

  list(): Promise<FirewallBan[]> {
    return this.serialize(() => this.readBans());
  }

  private async readBans(): Promise<FirewallBan[]> {
    const owner = new Map<string, { jail: string; family: 4 | 6 }>();
    for (const [jail, s] of this.jails) {
      owner.set(s.v4, { jail, family: 4 });
      owner.set(s.v6, { jail, family: 6 });
    }
    const nowMs = clockNow();
    const out: FirewallBan[] = [];
    const { stdout } = await this.run.run('ipset save', ['ipset', 'save']);
    for (const line of stdout.split('\n')) {
      if (!line.startsWith('add ')) continue;
      const parts = line.split(' ');
      const o = owner.get(parts[1] ?? '');
      if (!o || !parts[2]) continue;
      const addr = banTarget(parts[2]).text;
      const ti = parts.indexOf('timeout');
      const secs = ti === -1 ? 0 : Number(parts[ti + 1]);
      const key = banKey(o.jail, addr);
      const until = secs > 0 ? nowMs + secs * 1000 : (this.overlong.get(key) ?? -1);
      out.push({ jail: o.jail, addr, family: o.family, until });
    }
    return out;
  }

  protected async cleanup(): Promise<void> {
    for (const family of [4, 6] as const) {
      const tool = family === 4 ? 'iptables' : 'ip6tables';
      // Each step may find its object already gone; what matters is that nothing of ours remains.
      await this.jump.remove(family);
      await this.run.run(`${tool} cleanup`, [tool, '-w', '-F', this.jump.chain], undefined, { allowFail: true });
      await this.run.run(`${tool} cleanup`, [tool, '-w', '-X', this.jump.chain], undefined, { allowFail: true });
    }
    const names = (await this.run.run('ipset list names', ['ipset', 'list', '-n'])).stdout.split('\n').map((l) => l.trim());
    const ours = names.filter((n) => n.startsWith(this.prefix));
    if (ours.length) await this.run.run('ipset cleanup', ['ipset', 'restore', '-exist'], ours.map((n) => `destroy ${n}`).join('\n') + '\n');
    this.ledger.clear();
    this.overlong.clear();
  }
}
