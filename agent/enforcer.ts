import { SerialQueue } from '../common/serial-queue.js';
import type { Logger } from 'pino';
import type { FirewallBackend, FirewallBan, JailRule } from './firewall/backend.js';
import { boundedUntil, type BanRecord, type Decision } from '../common/protocol/messages.js';
import { banId } from '../common/protocol/keys.js';
import { parseBanTarget } from '../common/address.js';
import { now } from '../common/clock.js';

/** Lifted bans remembered (see Enforcer.lifted); the oldest are forgotten beyond this. */
const MAX_LIFTED = 100_000;

/**
 * The bans this host should hold, and the one place that changes the firewall. Decisions arrive in
 * batches; each batch becomes one backend commit. A ban in a jail this host has no rule for is
 * still enforced, on every port: a cluster ban must drop the attacker everywhere, and a host that
 * does not know the jail's ports errs on the side of blocking.
 */
export class Enforcer {
  private readonly desired = new Map<string, FirewallBan>();
  /** When each held ban started (its `since`): an unban or flush lifts only bans that started no later than it. */
  private readonly since = new Map<string, number>();
  /**
   * `jail|addr` -> the newest `at` of an unban that lifted it, and jail (or `*`) -> the newest
   * flush: a ban that started no later is over, so a replay of its (validly signed) decision is
   * not applied again on this host.
   */
  private readonly lifted = new Map<string, number>();
  private readonly flushed = new Map<string, number>();
  /** Bans not applied because an unban or flush this host saw had already lifted them (replays). */
  stale = 0;
  private readonly rules = new Map<string, JailRule>();
  /** Bans applied since start, for heartbeats. */
  applied = 0;
  /** Bans the backend refused (per-host cap reached, unusable address), for heartbeats. */
  refused = 0;

  /** Every ban this host refused: by the backend at add time, and by the kernel at commit. */
  get refusedTotal(): number {
    return this.refused + this.backend.kernelRefused;
  }
  /** Backend calls run one at a time: add/delete buffers are shared by apply and reconcile. */
  private readonly queue = new SerialQueue();

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

  /**
   * Make this host hold the cluster's active bans (start-up and reconnect): the snapshot's bans,
   * and those it already holds under a valid decision that the snapshot lacks, unless one of
   * `lifts` (the unbans and flushes published since the last decision applied) lifted them. A ban
   * record deleted in Redis therefore lifts nothing: only a signed unban or flush, or the ban's
   * own expiry, does.
   * @param records the snapshot's bans, already checked (signature, self-guard)
   * @param lifts unbans and flushes read from the stream between the last decision applied and the snapshot
   * @returns how many held bans were kept although the snapshot lacks them
   */
  replaceAll(records: readonly BanRecord[], lifts: readonly Decision[] = []): Promise<number> {
    return this.serialize(() => this.doReplaceAll(records, lifts));
  }

  private async doReplaceAll(records: readonly BanRecord[], lifts: readonly Decision[]): Promise<number> {
    for (const d of lifts) if (d.op !== 'ban') this.lift(d, false);
    const t = now();
    const held = new Map([...this.desired].filter(([, b]) => b.until === -1 || b.until > t));
    const heldSince = new Map(this.since);
    this.desired.clear();
    this.since.clear();
    for (const r of records) {
      if (r.until !== -1 && r.until <= t) continue;
      if (this.isLifted(r.jail, r.addr, r.since)) continue;
      const ban = toFirewallBan(r.jail, r.addr, boundedUntil(r.until, r.since));
      if (!ban) continue;
      this.desired.set(banId(r.jail, r.addr), ban);
      this.since.set(banId(r.jail, r.addr), r.since);
    }
    let kept = 0;
    for (const [id, ban] of held) {
      if (this.desired.has(id)) continue;
      this.desired.set(id, ban);
      this.since.set(id, heldSince.get(id) ?? 0);
      kept++;
    }
    if (kept > 0) this.log.warn({ kept }, 'bans this host holds under a valid decision are missing from the snapshot; kept until a signed unban or their expiry');
    await this.ensureRules(this.desired.values());
    await this.backend.sync([...this.desired.values()]);
    this.applied += this.desired.size - kept;
    this.log.info({ bans: this.desired.size }, 'active bans loaded');
    return kept;
  }

  private isLifted(jail: string, addr: string, since: number): boolean {
    const at = Math.max(this.lifted.get(banId(jail, addr)) ?? -Infinity, this.lifted.get(banId('*', addr)) ?? -Infinity,
      this.flushed.get(jail) ?? -Infinity, this.flushed.get('*') ?? -Infinity);
    return since <= at;
  }

  /**
   * Lift what an unban or flush covers: held bans of its jail (or every jail for `*`) that started
   * no later than its `at` (all of them for a decision without `at`, from an older release).
   * @param buffer also buffer the deletions in the backend (false while a resync rebuilds the set)
   */
  private lift(d: Decision & { op: 'unban' | 'flush' }, buffer: boolean): void {
    const at = d.at ?? Infinity;
    if (d.at !== undefined) {
      const map = d.op === 'unban' ? this.lifted : this.flushed;
      const key = d.op === 'unban' ? banId(d.jail, d.addr) : d.jail;
      if (!(at <= (map.get(key) ?? -Infinity))) {
        map.delete(key);
        map.set(key, at);
        if (map.size > MAX_LIFTED) map.delete(map.keys().next().value!);
      }
    }
    for (const [id, ban] of this.desired) {
      const covered = d.op === 'unban' ? ban.addr === d.addr && (d.jail === '*' || ban.jail === d.jail) : d.jail === '*' || ban.jail === d.jail;
      if (!covered || (this.since.get(id) ?? 0) > at) continue;
      this.desired.delete(id);
      this.since.delete(id);
      if (buffer) this.backend.delete(ban.jail, ban.addr);
    }
  }

  /** Told after each batch is applied, with how long it took from apply() (queue included), seconds (metrics). */
  onApplied: ((decisions: readonly Decision[], seconds: number) => void) | undefined;

  /** Apply a batch of decisions as one firewall commit. */
  apply(decisions: readonly Decision[]): Promise<void> {
    const started = performance.now();
    return this.serialize(() => this.doApply(decisions)).then(() => this.onApplied?.(decisions, (performance.now() - started) / 1000));
  }

  private async doApply(decisions: readonly Decision[]): Promise<void> {
    const adds: FirewallBan[] = [];
    for (const d of decisions) {
      if (d.op === 'ban') {
        if (d.until !== -1 && d.until <= now()) continue;
        if (this.isLifted(d.jail, d.addr, d.since)) {
          this.stale++;
          this.log.warn({ jail: d.jail, addr: d.addr, since: d.since }, 'ban not applied: an unban or flush this host applied already lifted it (a replay)');
          continue;
        }
        const ban = toFirewallBan(d.jail, d.addr, boundedUntil(d.until, d.since));
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
        this.since.set(banId(d.jail, d.addr), d.since);
        adds.push(ban);
      } else {
        this.lift(d, true);
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
    for (const [id, ban] of this.desired) {
      if (ban.until !== -1 && ban.until <= t) {
        this.desired.delete(id);
        this.since.delete(id);
      }
    }
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
    return this.queue.run(fn);
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
