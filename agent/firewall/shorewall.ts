/**
 * Shorewall backend: bans go through Shorewall's dynamic blacklist (`shorewall drop ADDR…`,
 * `shorewall allow ADDR…`; `shorewall6` for IPv6), so hosts whose firewall Shorewall owns keep a
 * ruleset Shorewall knows about and that survives `shorewall restart`.
 *
 * The dynamic blacklist is one list per host, without ports and without timeouts, which shapes
 * this backend:
 * - a ban drops all traffic from the address, whatever the jail's ports (a warning at init says so);
 * - an address stays dropped while any jail bans it, and is allowed again when the last one ends;
 * - expiry is done here, on a timer, from a ledger of (jail, address, until);
 * - list() reports the blacklisted addresses this process knows the jails of.
 */
import { now as clockNow } from '../../common/clock.js';
import { FirewallError, InvalidInputError } from '../../common/errors.js';
import { componentLogger, type Logger } from '../../common/log.js';
import type { FirewallBackend, FirewallBan, JailRule } from './backend.js';
import { BanLedger } from './ban-ledger.js';
import { CommandRunner } from './command-runner.js';
import { banKey, banTarget, checkBan, validateJailRules, type CheckedBan } from './jail-rules.js';
import { DEFAULT_MAX_BANS } from './nftables.js';
import { outlasts, PendingChanges, type PendingChange } from './pending-changes.js';

/** Options of {@link ShorewallBackend}. */
export interface ShorewallOptions {
  /** argv run before every command, e.g. `['ip','netns','exec',ns]`. */
  readonly commandPrefix?: readonly string[];
  /** Per-host cap on (jail, address) bans; default {@link DEFAULT_MAX_BANS}. */
  readonly maxBans?: number;
  /** How often expired bans are lifted, ms; default 1000. */
  readonly expireIntervalMs?: number;
  readonly logger?: Logger;
}

/** Addresses per `shorewall drop/allow` process, well under the kernel's argv limits. */
const ARGS_PER_CALL = 500;

/** Shorewall implementation of {@link FirewallBackend}; see the module comment. */
export class ShorewallBackend implements FirewallBackend {
  readonly name = 'shorewall';
  private readonly run: CommandRunner;
  private readonly log: Logger;
  private readonly expireIntervalMs: number;
  private readonly pending = new PendingChanges();
  private readonly ledger: BanLedger;
  private jails = new Map<string, JailRule>();
  private ipv6 = false;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** @param options see {@link ShorewallOptions} */
  constructor(options: ShorewallOptions = {}) {
    this.log = options.logger ?? componentLogger('firewall.shorewall');
    this.run = new CommandRunner(options.commandPrefix ?? [], this.log);
    this.ledger = new BanLedger(options.maxBans ?? DEFAULT_MAX_BANS, this.log);
    this.expireIntervalMs = options.expireIntervalMs ?? 1000;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
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
      const scoped = [...checked.values()].filter((j) => j.ports !== 'all' || j.protocols !== 'all').map((j) => j.jail);
      if (scoped.length) {
        this.log.warn({ jails: scoped }, "shorewall's dynamic blacklist has no ports: these jails' bans drop all traffic from the address");
      }
      for (const k of [...this.ledger.keys()]) if (!checked.has(k.split('\u0000')[0]!)) this.ledger.delete(k);
      this.jails = checked;
      if (!this.timer) {
        this.timer = setInterval(() => void this.expire().catch((err: unknown) => this.log.error({ err }, 'lifting expired bans failed')), this.expireIntervalMs);
        this.timer.unref();
      }
    });
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
      throw new InvalidInputError(`jail '${ban.jail}' is not set up in the shorewall backend (known: ${[...this.jails.keys()].join(', ') || 'none'})`);
    }
    const c = checkBan(ban);
    if (c.target.family === 6 && !this.ipv6) throw new InvalidInputError(`cannot ban ${c.target.text}: Shorewall6 is not running on this host`);
    return c;
  }

  /** Addresses any jail of the ledger still bans. */
  private addressesHeld(): Set<string> {
    const held = new Set<string>();
    for (const k of this.ledger.keys()) held.add(k.slice(k.indexOf('\u0000') + 1));
    return held;
  }

  commit(): Promise<void> {
    return this.serialize(async () => {
      const changes = this.pending.take();
      if (changes.length === 0) return;
      try {
        await this.apply(changes);
      } catch (err) {
        this.pending.restore(changes);
        throw err;
      }
    });
  }

  private async apply(changes: readonly PendingChange[]): Promise<void> {
    const nowMs = clockNow();
    const before = this.addressesHeld();
    const next = new Map<string, number>();
    for (const k of this.ledger.keys()) next.set(k, this.ledger.get(k)!);
    let room = this.ledger.room(nowMs);
    for (const c of changes) {
      if (c.kind === 'delete' && next.delete(banKey(c.jail, c.addr))) room++;
    }
    let refused = 0;
    for (const c of changes) {
      if (c.kind !== 'add' || !this.jails.has(c.ban.jail)) continue;
      if (c.ban.until !== -1 && c.ban.until <= nowMs) continue;
      const key = banKey(c.ban.jail, c.ban.addr);
      if (!next.has(key)) {
        if (room <= 0) {
          refused++;
          continue;
        }
        room--;
      }
      next.set(key, c.ban.until);
    }
    this.ledger.warnCap(refused, nowMs);
    const after = new Set([...next.keys()].map((k) => k.slice(k.indexOf('\u0000') + 1)));
    const drop = [...after].filter((a) => !before.has(a));
    const allow = [...before].filter((a) => !after.has(a));
    await this.blacklist('allow', allow);
    await this.blacklist('drop', drop);
    this.ledger.clear();
    for (const [k, u] of next) this.ledger.set(k, u);
  }

  /** One `shorewall[6] drop|allow a b c…` per family and chunk. */
  private async blacklist(verb: 'drop' | 'allow', addrs: readonly string[]): Promise<void> {
    for (const family of [4, 6] as const) {
      const tool = family === 4 ? 'shorewall' : 'shorewall6';
      const mine = addrs.filter((a) => (a.includes(':') ? 6 : 4) === family);
      for (let i = 0; i < mine.length; i += ARGS_PER_CALL) {
        await this.run.run(`${tool} ${verb}`, [tool, verb, ...mine.slice(i, i + ARGS_PER_CALL)]);
      }
    }
  }

  /** Make the blacklist hold exactly these addresses: drop what is missing, allow what is extra. */
  sync(bans: readonly FirewallBan[]): Promise<void> {
    return this.serialize(async () => {
      const nowMs = clockNow();
      const wanted = new Map<string, CheckedBan>();
      for (const b of bans) {
        let c: CheckedBan;
        try {
          c = this.check(b);
        } catch (err) {
          this.log.warn({ jail: b.jail, addr: b.addr, err: (err as Error).message }, 'sync skipped an invalid ban');
          continue;
        }
        if (c.until !== -1 && c.until <= nowMs) continue;
        const key = banKey(c.jail, c.target.text);
        const prev = wanted.get(key);
        if (!prev || outlasts(c.until, prev.until)) wanted.set(key, c);
      }
      let list = [...wanted.entries()];
      if (list.length > this.ledger.maxBans) {
        this.ledger.warnCap(list.length - this.ledger.maxBans, nowMs);
        list = list.slice(0, this.ledger.maxBans);
      }
      const target = new Set(list.map(([, c]) => c.target.text));
      const current = new Set(await this.readBlacklist());
      await this.blacklist('allow', [...current].filter((a) => !target.has(a)));
      await this.blacklist('drop', [...target].filter((a) => !current.has(a)));
      this.ledger.clear();
      for (const [k, c] of list) this.ledger.set(k, c.until);
    });
  }

  /** Addresses in the dynamic blacklist, from `shorewall show dynamic` (and shorewall6 when running). */
  private async readBlacklist(): Promise<string[]> {
    const out: string[] = [];
    for (const tool of this.ipv6 ? ['shorewall', 'shorewall6'] : ['shorewall']) {
      const { stdout } = await this.run.run(`${tool} show dynamic`, [tool, 'show', 'dynamic']);
      for (const line of stdout.split('\n')) {
        // pkts bytes target prot opt in out source destination
        const f = line.trim().split(/\s+/);
        if (f.length < 9 || !/^\d+[KMGT]?$/.test(f[0]!) || !/^(DROP|REJECT|reject|logdrop|logreject)$/.test(f[2]!)) continue;
        try {
          out.push(banTarget(f[7]!).text);
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
          const i = k.indexOf('\u0000');
          due.push({ kind: 'delete', jail: k.slice(0, i), addr: k.slice(i + 1) });
        }
      }
      if (due.length) await this.apply(due);
    });
  }

  list(): Promise<FirewallBan[]> {
    return this.serialize(async () => {
      const present = new Set(await this.readBlacklist());
      const nowMs = clockNow();
      const out: FirewallBan[] = [];
      for (const k of this.ledger.keys()) {
        const i = k.indexOf('\u0000');
        const addr = k.slice(i + 1);
        const until = this.ledger.get(k)!;
        if (!present.has(addr) || (until !== -1 && until <= nowMs)) continue;
        out.push({ jail: k.slice(0, i), addr, family: addr.includes(':') ? 6 : 4, until });
      }
      return out;
    });
  }

  /** With cleanup, allow every address this backend dropped; Shorewall's own ruleset stays. */
  shutdown(options: { cleanup?: boolean } = {}): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.serialize(async () => {
      if (this.pending.size > 0) this.log.warn({ pending: this.pending.size }, 'shutdown with uncommitted firewall changes');
      if (!options.cleanup) return;
      await this.blacklist('allow', [...this.addressesHeld()]);
      this.ledger.clear();
    });
  }
}
