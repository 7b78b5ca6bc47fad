import type { Logger } from 'pino';
import type { FirewallBackend, FirewallBan, JailRule } from './firewall/backend.js';
import type { BanRecord, Decision } from '../common/protocol/messages.js';
import { banId } from '../common/protocol/keys.js';
import { parseBanTarget } from '../common/address.js';
import { now } from '../common/clock.js';

/**
 * The bans this host should hold, and the one place that changes the firewall. Decisions arrive in
 * batches; each batch becomes one backend commit. A ban in a jail this host has no rule for is
 * still enforced, on every port: a cluster ban must drop the attacker everywhere, and a host that
 * does not know the jail's ports errs on the side of blocking.
 */
export class Enforcer {
  private readonly desired = new Map<string, FirewallBan>();
  private readonly rules = new Map<string, JailRule>();
  /** Bans applied since start, for heartbeats. */
  applied = 0;
  /** Bans the backend refused (per-host cap reached, unusable address), for heartbeats. */
  refused = 0;
  /** Backend calls run one at a time: add/delete buffers are shared by apply and reconcile. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backend: FirewallBackend,
    rules: readonly JailRule[],
    private readonly log: Logger,
  ) {
    for (const r of rules) this.rules.set(r.jail, r);
  }

  get backendName(): string {
    return this.backend.name;
  }

  /** Number of bans this host should hold now. */
  get size(): number {
    return this.desired.size;
  }

  /** @returns the bans this host should hold (copy) */
  bans(): FirewallBan[] {
    return [...this.desired.values()];
  }

  async init(): Promise<void> {
    await this.backend.init([...this.rules.values()]);
  }

  /**
   * Take the jail rules of a reloaded configuration. A jail that is gone but still holds bans keeps
   * its rule until those bans end: a reload must not lift a ban the cluster still holds.
   */
  setRules(rules: readonly JailRule[]): Promise<void> {
    return this.serialize(async () => {
      const next = new Map<string, JailRule>();
      for (const r of rules) next.set(r.jail, r);
      for (const ban of this.desired.values()) {
        const kept = this.rules.get(ban.jail);
        if (!next.has(ban.jail) && kept) next.set(ban.jail, kept);
      }
      this.rules.clear();
      for (const [jail, r] of next) this.rules.set(jail, r);
      await this.backend.init([...this.rules.values()]);
    });
  }

  /** Replace everything with a snapshot of the cluster's active bans (start-up and reconnect). */
  replaceAll(records: readonly BanRecord[]): Promise<void> {
    return this.serialize(() => this.doReplaceAll(records));
  }

  private async doReplaceAll(records: readonly BanRecord[]): Promise<void> {
    this.desired.clear();
    const t = now();
    for (const r of records) {
      if (r.until !== -1 && r.until <= t) continue;
      const ban = toFirewallBan(r.jail, r.addr, r.until);
      if (ban) this.desired.set(banId(r.jail, r.addr), ban);
    }
    await this.ensureRules(this.desired.values());
    await this.backend.sync([...this.desired.values()]);
    this.applied += this.desired.size;
    this.log.info({ bans: this.desired.size }, 'active bans loaded');
  }

  /** Apply a batch of decisions as one firewall commit. */
  apply(decisions: readonly Decision[]): Promise<void> {
    return this.serialize(() => this.doApply(decisions));
  }

  private async doApply(decisions: readonly Decision[]): Promise<void> {
    const adds: FirewallBan[] = [];
    for (const d of decisions) {
      if (d.op === 'ban') {
        if (d.until !== -1 && d.until <= now()) continue;
        const ban = toFirewallBan(d.jail, d.addr, d.until);
        if (!ban) continue;
        // Rules must exist before elements that use them; init() is idempotent and keeps elements.
        await this.ensureRules([ban]);
        try {
          this.backend.add(ban);
        } catch (err) {
          // One refused ban (over the host's cap, an address the backend cannot hold) must not
          // block the rest of the batch.
          this.refused++;
          this.log.warn({ jail: d.jail, addr: d.addr, refusedTotal: this.refused, err: (err as Error).message }, 'ban refused by the firewall backend');
          continue;
        }
        this.desired.set(banId(d.jail, d.addr), ban);
        adds.push(ban);
      } else if (d.op === 'unban') {
        this.desired.delete(banId(d.jail, d.addr));
        this.backend.delete(d.jail, d.addr);
      } else {
        for (const [id, ban] of this.desired) {
          if (d.jail === '*' || ban.jail === d.jail) {
            this.desired.delete(id);
            this.backend.delete(ban.jail, ban.addr);
          }
        }
      }
    }
    await this.backend.commit();
    this.applied += adds.length;
  }

  /**
   * Compare the kernel with the bans this host should hold and repair any difference (someone
   * flushed the ruleset, a firewall restarted).
   * @returns number of bans that had to be restored or removed
   */
  reconcile(): Promise<number> {
    return this.serialize(() => this.doReconcile());
  }

  private async doReconcile(): Promise<number> {
    // init() is idempotent and recreates tables, chains, rules and sets someone removed (nft flush
    // ruleset, iptables -F, a firewall restart) while keeping the elements that are still there.
    await this.backend.init([...this.rules.values()]);
    const t = now();
    for (const [id, ban] of this.desired) if (ban.until !== -1 && ban.until <= t) this.desired.delete(id);
    const actual = new Set((await this.backend.list()).map((b) => banId(b.jail, b.addr)));
    let missing = 0;
    for (const id of this.desired.keys()) if (!actual.has(id)) missing++;
    const extra = [...actual].filter((id) => !this.desired.has(id)).length;
    if (missing + extra > 0) {
      this.log.warn({ missing, extra }, 'firewall differs from the cluster bans; repairing');
      await this.backend.sync([...this.desired.values()]);
    }
    return missing + extra;
  }

  shutdown(cleanup: boolean): Promise<void> {
    return this.serialize(() => this.backend.shutdown({ cleanup }));
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async ensureRules(bans: Iterable<FirewallBan>): Promise<void> {
    let added = false;
    for (const b of bans) {
      if (this.rules.has(b.jail)) continue;
      this.rules.set(b.jail, { jail: b.jail, ports: 'all', protocols: 'all' });
      this.log.warn({ jail: b.jail }, 'ban in a jail this host does not configure; enforcing it on all ports');
      added = true;
    }
    if (added) await this.backend.init([...this.rules.values()]);
  }
}

function toFirewallBan(jail: string, addr: string, until: number): FirewallBan | undefined {
  try {
    return { jail, addr, family: parseBanTarget(addr).family, until };
  } catch {
    return undefined;
  }
}
