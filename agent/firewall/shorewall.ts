/**
 * Shorewall backend: bans go through Shorewall's dynamic blacklist (`shorewall drop ADDR…`, or
 * `shorewall reject ADDR…` for blocktype = reject as fail2ban's shorewall action does, and
 * `shorewall allow ADDR…`; `shorewall6` for IPv6), so hosts whose firewall Shorewall owns keep a
 * ruleset Shorewall knows about and that survives `shorewall restart`. Shorewall's `reject`
 * answers TCP with a reset and other protocols with ICMP unreachable.
 *
 * The dynamic blacklist is one list per host, without ports and without timeouts, which shapes
 * this backend:
 * - a ban drops all traffic from the address, whatever the jail's ports (a warning at init says so);
 * - an address stays blacklisted while any jail bans it, and is allowed again when the last one
 *   ends; it is rejected only while every jail holding it says reject (one silent jail keeps it
 *   silent), and `shorewall reject|drop` replaces the entry when that changes;
 * - expiry is done here, on a timer, from a ledger of (jail, address, until);
 * - list() reports the blacklisted addresses this process knows the jails of;
 * - whether a ban cuts the address' open connections is Shorewall's choice (`BLACKLIST=` in
 *   shorewall.conf): init reads it and warns when they would survive (see ../preflight.ts).
 */
import { now as clockNow } from '../../common/clock.js';
import { FirewallError, InvalidInputError } from '../../common/errors.js';
import type { FirewallBan, JailRule } from './backend.js';
import { CapBudget } from './cap-budget.js';
import { banKey, banTarget, splitBanKey, validateJailRules, type CheckedBan } from './jail-rules.js';
import { KernelBackend, type KernelBackendOptions } from './kernel-backend.js';
import type { PendingChange } from './pending-changes.js';
import { prepareSync } from './prepare-sync.js';
import { SHOREWALL_CONF, shorewallBlacklistWarnings } from '../preflight.js';

/** Options of {@link ShorewallBackend}; the cap (`maxBans`) counts (jail, address) bans. */
export interface ShorewallOptions extends KernelBackendOptions {
  /** How often expired bans are lifted, ms; default 1000. */
  readonly expireIntervalMs?: number;
}

/** How Shorewall refuses a blacklisted address: its `drop` and `reject` commands. */
type Verb = 'drop' | 'reject';

/** Addresses per `shorewall drop/allow` process, well under the kernel's argv limits. */
const ARGS_PER_CALL = 500;

/** Shorewall implementation of {@link FirewallBackend}; see the module comment. */
export class ShorewallBackend extends KernelBackend<JailRule> {
  readonly name = 'shorewall';
  private readonly expireIntervalMs: number;
  private ipv6 = false;
  private blacklistWarnings: string[] = [];

  /** @param options see {@link ShorewallOptions} */
  constructor(options: ShorewallOptions = {}) {
    super(options, 'firewall.shorewall');
    this.expireIntervalMs = options.expireIntervalMs ?? 1000;
  }

  /** Shorewall must be running (it owns the ruleset); Shorewall6 is optional and enables IPv6 bans. */
  async init(jails: readonly JailRule[]): Promise<void> {
    const checked = validateJailRules(jails);
    return this.serialize(async () => {
      const v4 = await this.run.run('shorewall status', ['shorewall', 'status'], undefined, { allowFail: true });
      if (v4.exitCode !== 0) {
        throw new FirewallError('shorewall init', `Shorewall is not running (shorewall status exited ${v4.exitCode}): ${(v4.stdout + v4.stderr).trim().slice(-300)}`);
      }
      const v6 = await this.run.run('shorewall6 status', ['shorewall6', 'status'], undefined, { allowFail: true });
      this.ipv6 = v6.exitCode === 0;
      if (!this.ipv6) this.log.warn('Shorewall6 is not running: IPv6 bans will be refused');
      // Read through the command runner, so that a prefixed backend sees its namespace's files.
      const read = async (file: string): Promise<string | undefined> => {
        const r = await this.run.run(`read ${file}`, ['cat', file], undefined, { allowFail: true });
        return r.exitCode === 0 ? r.stdout : undefined;
      };
      this.blacklistWarnings = await shorewallBlacklistWarnings(read, this.ipv6 ? [4, 6] : [4], SHOREWALL_CONF);
      for (const w of this.blacklistWarnings) this.log.warn(w);
      const scoped = [...checked.values()].filter((j) => j.ports !== 'all' || j.protocols !== 'all').map((j) => j.jail);
      if (scoped.length) {
        this.log.warn({ jails: scoped }, "shorewall's dynamic blacklist has no ports: these jails' bans drop all traffic from the address");
      }
      this.ledger.forgetJails((jail) => !checked.has(jail));
      this.jails = await this.rejectable(checked);
      this.startExpiry(this.expireIntervalMs, () => this.expire(), 'lifting expired bans failed');
    });
  }

  /**
   * `shorewall reject ADDR` jumps to Shorewall's `reject` chain, which Shorewall only builds when
   * its policy or rules REJECT somewhere; without it the command prints an error, exits 0 and
   * blacklists nothing. So a reject jail needs the chain in every family we ban in, or it drops,
   * with a warning saying how to get the chain.
   */
  private async rejectable(jails: Map<string, JailRule>): Promise<Map<string, JailRule>> {
    const rejecting = [...jails.values()].filter((j) => j.blocktype === 'reject' || j.blocktype === 'tcp-reset');
    if (rejecting.length === 0) return jails;
    const missing: string[] = [];
    for (const tool of this.ipv6 ? ['iptables', 'ip6tables'] : ['iptables']) {
      const r = await this.run.run(`${tool} reject chain`, [tool, '-w', '-S', 'reject'], undefined, { allowFail: true });
      if (r.exitCode !== 0 || !/^-N reject$/m.test(r.stdout)) missing.push(tool === 'iptables' ? 'shorewall' : 'shorewall6');
    }
    if (missing.length === 0) return jails;
    this.log.warn({ jails: rejecting.map((j) => j.jail), products: missing },
      `blocktype = reject needs Shorewall's reject chain, which ${missing.join(' and ')} builds only when its policy or rules REJECT (e.g. a last policy line 'all all REJECT'): these jails drop instead`);
    return new Map([...jails].map(([k, j]) => [k, rejecting.includes(j) ? { ...j, blocktype: 'drop' as const } : j]));
  }

  /** What init found wrong with Shorewall's blacklist states (empty: a ban cuts open connections). */
  get openConnectionWarnings(): readonly string[] {
    return this.blacklistWarnings;
  }

  protected override check(ban: FirewallBan): CheckedBan {
    const c = super.check(ban);
    if (c.target.family === 6 && !this.ipv6) throw new InvalidInputError(`cannot ban ${c.target.text}: Shorewall6 is not running on this host`);
    return c;
  }

  /** Addresses any jail of the ledger still bans. */
  private addressesHeld(): Set<string> {
    return new Set(this.verbs(this.ledger.keys()).keys());
  }

  /**
   * The blacklist entry each address needs, from (jail, address) keys: `reject` when every jail
   * holding the address rejects, else `drop`.
   */
  private verbs(keys: Iterable<string>): Map<string, Verb> {
    const out = new Map<string, Verb>();
    for (const k of keys) {
      const { jail, addr } = splitBanKey(k);
      const b = this.jails.get(jail)?.blocktype;
      // Shorewall's reject resets TCP and answers the rest with ICMP: both reject blocktypes.
      const verb: Verb = b === 'reject' || b === 'tcp-reset' ? 'reject' : 'drop';
      out.set(addr, out.get(addr) === 'drop' ? 'drop' : verb);
    }
    return out;
  }

  /** Blacklist each address with its verb, and allow those no longer held. */
  private async apply(before: ReadonlyMap<string, Verb>, after: ReadonlyMap<string, Verb>): Promise<void> {
    await this.blacklist('allow', [...before.keys()].filter((a) => !after.has(a)));
    for (const verb of ['drop', 'reject'] as const) {
      await this.blacklist(verb, [...after].filter(([a, v]) => v === verb && before.get(a) !== verb).map(([a]) => a));
    }
  }

  /** The blacklist is changed only by the difference in addresses held, before and after. */
  protected async applyChanges(changes: readonly PendingChange[]): Promise<void> {
    const nowMs = clockNow();
    const before = this.verbs(this.ledger.keys());
    const next = new Map<string, number>();
    for (const k of this.ledger.keys()) next.set(k, this.ledger.get(k)!);
    let freed = 0;
    for (const c of changes) {
      if (c.kind === 'delete' && next.delete(banKey(c.jail, c.addr))) freed++;
    }
    const budget = new CapBudget(this.ledger, nowMs, freed);
    for (const c of changes) {
      if (c.kind !== 'add' || !this.jails.has(c.ban.jail)) continue;
      if (c.ban.until !== -1 && c.ban.until <= nowMs) continue;
      const key = banKey(c.ban.jail, c.ban.addr);
      if (!next.has(key) && !budget.take()) continue;
      next.set(key, c.ban.until);
    }
    budget.finish();
    await this.apply(before, this.verbs(next.keys()));
    this.ledger.replaceAll(next);
  }

  /** One `shorewall[6] drop|reject|allow a b c…` per family and chunk. */
  private async blacklist(verb: Verb | 'allow', addrs: readonly string[]): Promise<void> {
    for (const family of [4, 6] as const) {
      const tool = family === 4 ? 'shorewall' : 'shorewall6';
      const mine = addrs.filter((a) => (a.includes(':') ? 6 : 4) === family);
      for (let i = 0; i < mine.length; i += ARGS_PER_CALL) {
        await this.run.run(`${tool} ${verb}`, [tool, verb, ...mine.slice(i, i + ARGS_PER_CALL)]);
      }
    }
  }

  /** Make the blacklist hold exactly these addresses, each with its verb; allow what is extra. */
  sync(bans: readonly FirewallBan[]): Promise<void> {
    return this.serialize(async () => {
      const list = prepareSync(bans, { check: (b) => this.check(b), now: clockNow(), log: this.log, ledger: this.ledger, rejectedLog: 'each' });
      await this.apply(await this.readBlacklist(), this.verbs(list.map(([k]) => k)));
      this.ledger.replaceAll(list.map(([k, c]) => [k, c.until] as const));
    });
  }

  /**
   * Addresses in the dynamic blacklist and how each is refused, from `shorewall show dynamic` (and
   * shorewall6 when running); `logdrop`/`logreject` entries someone else made count as drop/reject.
   */
  private async readBlacklist(): Promise<Map<string, Verb>> {
    const out = new Map<string, Verb>();
    for (const tool of this.ipv6 ? ['shorewall', 'shorewall6'] : ['shorewall']) {
      const { stdout } = await this.run.run(`${tool} show dynamic`, [tool, 'show', 'dynamic']);
      for (const line of stdout.split('\n')) {
        // pkts bytes target prot opt in out source destination
        const f = line.trim().split(/\s+/);
        if (f.length < 9 || !/^\d+[KMGT]?$/.test(f[0]!) || !/^(DROP|REJECT|reject|logdrop|logreject)$/.test(f[2]!)) continue;
        try {
          out.set(banTarget(f[7]!).text, /reject/i.test(f[2]!) ? 'reject' : 'drop');
        } catch {
          // not an address column: a header or a rule of another shape
        }
      }
    }
    return out;
  }

  /** Lift bans whose time is up (an address is allowed once no jail holds it). */
  private expire(): Promise<void> {
    return this.serialize(async () => {
      const nowMs = clockNow();
      const due: PendingChange[] = [];
      for (const k of this.ledger.keys()) {
        const u = this.ledger.get(k)!;
        if (u !== -1 && u <= nowMs) {
          due.push({ kind: 'delete', ...splitBanKey(k) });
        }
      }
      if (due.length) await this.applyChanges(due);
    });
  }

  list(): Promise<FirewallBan[]> {
    return this.serialize(async () => {
      const present = await this.readBlacklist();
      const nowMs = clockNow();
      const out: FirewallBan[] = [];
      for (const k of this.ledger.keys()) {
        const { jail, addr } = splitBanKey(k);
        const until = this.ledger.get(k)!;
        if (!present.has(addr) || (until !== -1 && until <= nowMs)) continue;
        out.push({ jail, addr, family: addr.includes(':') ? 6 : 4, until });
      }
      return out;
    });
  }

  /** Allow every address this backend dropped; Shorewall's own ruleset stays. */
  protected async cleanup(): Promise<void> {
    await this.blacklist('allow', [...this.addressesHeld()]);
    this.ledger.clear();
  }
}
