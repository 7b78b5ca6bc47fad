/**
 * ipset + iptables backend, for hosts whose firewall is managed with iptables. Per jail and family
 * one `hash:net` set with kernel timeouts (hash:net holds single addresses and networks of any
 * length, overlapping ones included, each with its own timeout); one chain of ours, jumped to from
 * the top of INPUT, holds one `-m set --match-set` rule per jail, protocol and multiport group.
 * Changes go to the kernel as one `ipset restore -exist` per batch.
 *
 * ipset refuses timeouts above 2,147,483 s (about 24.8 days). A longer ban is stored without a
 * timeout and this backend deletes it itself when it is due (checked once a minute).
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

/** Options of {@link IpsetBackend}. */
export interface IpsetOptions {
  /** argv run before every command, e.g. `['ip','netns','exec',ns]`. */
  readonly commandPrefix?: readonly string[];
  /** Per-host cap on banned entries across all jails; default {@link DEFAULT_MAX_BANS}. */
  readonly maxBans?: number;
  /** `maxelem` of each set; default maxBans (one jail may hold the whole cap). */
  readonly maxelem?: number;
  /** Prefix of set names (ipset names stop at 31 characters); default `fb-`. */
  readonly namePrefix?: string;
  /** Name of our iptables chain; default `fleetban`. */
  readonly chain?: string;
  /** How often overlong bans (beyond ipset's timeout limit) are checked for expiry, ms; default 60,000. */
  readonly expireIntervalMs?: number;
  readonly logger?: Logger;
}

/** Longest timeout ipset accepts, seconds. */
export const IPSET_MAX_TIMEOUT_S = 2_147_483;

const NAME_PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,9}$/;
const CHAIN = /^[A-Za-z][A-Za-z0-9_-]{0,27}$/;

interface JailSets {
  readonly rule: JailRule;
  readonly v4: string;
  readonly v6: string;
}

/** ipset implementation of {@link FirewallBackend}; see the module comment. */
export class IpsetBackend implements FirewallBackend {
  readonly name = 'ipset';
  private readonly run: CommandRunner;
  private readonly log: Logger;
  private readonly prefix: string;
  private readonly chain: string;
  private readonly maxelem: number;
  private readonly expireIntervalMs: number;
  private readonly pending = new PendingChanges();
  private readonly ledger: BanLedger;
  /** Bans stored without a kernel timeout because they outlast ipset's limit: key to expiry. */
  private readonly overlong = new Map<string, number>();
  private jails = new Map<string, JailSets>();
  private ledgerSeeded = false;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** @param options see {@link IpsetOptions} */
  constructor(options: IpsetOptions = {}) {
    this.log = options.logger ?? componentLogger('firewall.ipset');
    this.run = new CommandRunner(options.commandPrefix ?? [], this.log);
    this.prefix = options.namePrefix ?? 'fb-';
    if (!NAME_PREFIX.test(this.prefix)) throw new InvalidInputError(`ipset name prefix '${this.prefix}' must match ${NAME_PREFIX}`);
    this.chain = options.chain ?? 'fleetban';
    if (!CHAIN.test(this.chain)) throw new InvalidInputError(`iptables chain '${this.chain}' must match ${CHAIN}`);
    this.ledger = new BanLedger(options.maxBans ?? DEFAULT_MAX_BANS, this.log);
    this.maxelem = options.maxelem ?? this.ledger.maxBans;
    if (!Number.isInteger(this.maxelem) || this.maxelem < 1) throw new InvalidInputError(`ipset maxelem must be a positive integer, got ${this.maxelem}`);
    this.expireIntervalMs = options.expireIntervalMs ?? 60_000;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
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
      if (!this.ledgerSeeded) {
        for (const b of await this.readBans()) this.ledger.set(banKey(b.jail, b.addr), b.until);
        this.ledgerSeeded = true;
      }
      if (!this.timer) {
        this.timer = setInterval(() => void this.expireOverlong().catch((err: unknown) => this.log.error({ err }, 'expiring overlong bans failed')), this.expireIntervalMs);
        this.timer.unref();
      }
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
      const lines = ['*filter', `:${this.chain} - [0:0]`]; // with --noflush this (re)creates and empties only our chain
      for (const s of jails.values()) {
        for (const m of iptablesMatches(s.rule)) {
          lines.push(['-A', this.chain, ...m, '-m', 'set', '--match-set', family === 4 ? s.v4 : s.v6, 'src', '-j', 'DROP'].join(' '));
        }
      }
      lines.push('COMMIT');
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      await this.run.run(`${restore} (rules)`, [restore, '-w', '--noflush'], lines.join('\n') + '\n');
      const tool = family === 4 ? 'iptables' : 'ip6tables';
      const has = await this.run.run(`${tool} check jump`, [tool, '-w', '-C', 'INPUT', '-j', this.chain], undefined, { allowFail: true });
      if (has.exitCode !== 0) await this.run.run(`${tool} insert jump`, [tool, '-w', '-I', 'INPUT', '1', '-j', this.chain]);
    }
    const keep = new Set([...jails.values()].flatMap((s) => [s.v4, s.v6]));
    const names = (await this.run.run('ipset list names', ['ipset', 'list', '-n'])).stdout.split('\n').map((l) => l.trim());
    const stale = names.filter((n) => n.startsWith(this.prefix) && !keep.has(n));
    if (stale.length) {
      await this.run.run('ipset destroy stale', ['ipset', 'restore', '-exist'], stale.map((n) => `destroy ${n}`).join('\n') + '\n', { allowFail: true });
      for (const [jail] of this.jails) {
        if (jails.has(jail)) continue;
        for (const k of [...this.ledger.keys()]) if (k.startsWith(`${jail}\u0000`)) this.ledger.delete(k);
      }
    }
    this.jails = jails;
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
      throw new InvalidInputError(`jail '${ban.jail}' is not set up in the ipset backend (known: ${[...this.jails.keys()].join(', ') || 'none'})`);
    }
    return checkBan(ban);
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

  commit(): Promise<void> {
    return this.serialize(async () => {
      const changes = this.pending.take();
      if (changes.length === 0) return;
      try {
        await this.withRepair('ipset commit', () => this.buildCommit(changes));
      } catch (err) {
        this.pending.restore(changes);
        throw err;
      }
    });
  }

  /** With `-exist`, `add` of a present entry updates its timeout and `del` of a missing one is quiet. */
  private buildCommit(changes: readonly PendingChange[]): Batch {
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
    let room = this.ledger.room(nowMs) + freed;
    let refused = 0;
    for (const c of changes) {
      if (c.kind !== 'add') continue;
      const { ban } = c;
      const set = this.setOf(ban.jail, ban.family);
      if (!set) continue;
      if (ban.until !== -1 && ban.until <= nowMs) continue;
      const key = banKey(ban.jail, ban.addr);
      if (!this.ledger.has(key, nowMs)) {
        if (room <= 0) {
          refused++;
          continue;
        }
        room--;
      }
      const timeout = this.timeoutOf(ban.until, nowMs);
      adds.push(`add ${set} ${ban.addr} ${timeout.text}`);
      after.push(() => {
        this.ledger.set(key, ban.until);
        if (timeout.overlong) this.overlong.set(key, ban.until);
        else this.overlong.delete(key);
      });
    }
    this.ledger.warnCap(refused, nowMs);
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
  private buildSync(bans: readonly FirewallBan[]): Batch {
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
        this.ledger.clear();
        for (const [key, c] of list) this.ledger.set(key, c.until);
        this.ledgerSeeded = true;
        this.overlong.clear();
        for (const [k, u] of overlong) this.overlong.set(k, u);
      },
    };
  }

  /** Apply a batch; on failure repair sets, rules and jump, and apply a freshly built batch once more. */
  private async withRepair(operation: string, build: () => Batch): Promise<void> {
    const first = build();
    if (!first.script) return first.onSuccess();
    const r = await this.run.run(operation, ['ipset', 'restore', '-exist'], first.script, { allowFail: true });
    if (r.exitCode === 0) return first.onSuccess();
    this.log.warn({ operation, stderr: r.stderr.trim().slice(0, 500) }, 'ipset batch failed; repairing sets and rules and retrying once');
    try {
      await this.setup(this.jails);
    } catch (err) {
      throw new FirewallError(operation, `${r.stderr.trim()}\nrepair failed too: ${(err as Error).message}`, { cause: err });
    }
    const second = build();
    if (second.script) await this.run.run(operation, ['ipset', 'restore', '-exist'], second.script);
    second.onSuccess();
  }

  /** Delete bans that were stored without a timeout because they outlast ipset's limit, once due. */
  private expireOverlong(): Promise<void> {
    return this.serialize(async () => {
      const nowMs = clockNow();
      const due: string[] = [];
      const keys: string[] = [];
      for (const [key, until] of this.overlong) {
        if (until > nowMs) continue;
        const [jail, addr] = key.split('\u0000') as [string, string];
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

  shutdown(options: { cleanup?: boolean } = {}): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.serialize(async () => {
      if (this.pending.size > 0) this.log.warn({ pending: this.pending.size }, 'shutdown with uncommitted firewall changes');
      if (!options.cleanup) return;
      for (const tool of ['iptables', 'ip6tables']) {
        // Each step may find its object already gone; what matters is that nothing of ours remains.
        for (let i = 0; i < 16; i++) {
          const r = await this.run.run(`${tool} cleanup`, [tool, '-w', '-D', 'INPUT', '-j', this.chain], undefined, { allowFail: true });
          if (r.exitCode !== 0) break;
        }
        await this.run.run(`${tool} cleanup`, [tool, '-w', '-F', this.chain], undefined, { allowFail: true });
        await this.run.run(`${tool} cleanup`, [tool, '-w', '-X', this.chain], undefined, { allowFail: true });
      }
      const names = (await this.run.run('ipset list names', ['ipset', 'list', '-n'])).stdout.split('\n').map((l) => l.trim());
      const ours = names.filter((n) => n.startsWith(this.prefix));
      if (ours.length) await this.run.run('ipset cleanup', ['ipset', 'restore', '-exist'], ours.map((n) => `destroy ${n}`).join('\n') + '\n');
      this.ledger.clear();
      this.overlong.clear();
    });
  }
}

interface Batch {
  readonly script: string;
  readonly onSuccess: () => void;
}
