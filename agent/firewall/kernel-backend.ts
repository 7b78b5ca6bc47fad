import { componentLogger, type Logger } from '../../common/log.js';
import { InvalidInputError } from '../../common/errors.js';
import type { FirewallBackend, FirewallBan, JailRule } from './backend.js';
import { BanLedger, DEFAULT_MAX_BANS } from './ban-ledger.js';
import { CommandRunner } from './command-runner.js';
import { banTarget, checkBan, type CheckedBan } from './jail-rules.js';
import { PendingChanges, type PendingChange } from './pending-changes.js';

/** Options every {@link KernelBackend} takes. */
export interface KernelBackendOptions {
  /** argv run before every command, e.g. `['ip','netns','exec',ns]` to act inside a namespace. */
  readonly commandPrefix?: readonly string[];
  /** Per-host cap on banned elements across all jails; default {@link DEFAULT_MAX_BANS}. */
  readonly maxBans?: number;
  /** Logger; default `componentLogger('firewall.<backend name>')`. */
  readonly logger?: Logger;
}

/**
 * What the backends that change the host's firewall share (nftables, ipset, iptables, shorewall);
 * each subclass keeps its own command syntax. Operations that touch the kernel run one at a time,
 * in call order, because each one builds its batch from what the previous one left; add() and
 * delete() only buffer checked changes; a commit that fails puts its changes back so the next
 * commit retries them.
 * @typeParam J what the backend keeps per configured jail (its rule, set or chain names)
 */
export abstract class KernelBackend<J> implements FirewallBackend {
  abstract readonly name: string;
  protected readonly log: Logger;
  protected readonly run: CommandRunner;
  /** What this backend believes the kernel holds; it enforces the per-host cap. */
  protected readonly ledger: BanLedger;
  protected readonly pending = new PendingChanges();
  /** Configured jails by name; set by init(). */
  protected jails = new Map<string, J>();
  private queue: Promise<unknown> = Promise.resolve();
  private expiryTimer: NodeJS.Timeout | undefined;

  /**
   * @param options see {@link KernelBackendOptions}
   * @param component logger component used when no logger is given (`firewall.nftables`)
   * @param kernelExpires false for backends whose expired rules are removed by their own sweeper
   */
  protected constructor(options: KernelBackendOptions, component: string, kernelExpires = true) {
    this.log = options.logger ?? componentLogger(component);
    this.run = new CommandRunner(options.commandPrefix ?? [], this.log);
    this.ledger = new BanLedger(options.maxBans ?? DEFAULT_MAX_BANS, this.log, kernelExpires);
  }

  abstract init(jails: readonly JailRule[]): Promise<void>;
  abstract sync(bans: readonly FirewallBan[]): Promise<void>;
  abstract list(): Promise<FirewallBan[]>;

  /** Apply one commit's changes; when this throws, they go back into the buffer. */
  protected abstract applyChanges(changes: readonly PendingChange[]): Promise<void>;

  /** Remove everything this backend created on the host (shutdown with cleanup). */
  protected abstract cleanup(): Promise<void>;

  /** Run `fn` after every operation queued before it, whether those failed or not. */
  protected serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  add(ban: FirewallBan): void {
    const c = this.check(ban);
    this.pending.add({ jail: c.jail, addr: c.target.text, family: c.target.family, until: c.until });
  }

  delete(jail: string, addr: string): void {
    const text = banTarget(addr).text;
    // A jail this host does not run holds nothing to unban.
    if (this.jails.has(jail)) this.pending.delete(jail, text);
  }

  /**
   * @param ban a ban handed to add() or sync()
   * @returns the ban with its address in canonical form
   * @throws InvalidInputError for a jail init() did not set up, or an unusable address or expiry
   */
  protected check(ban: FirewallBan): CheckedBan {
    if (!this.jails.has(ban.jail)) {
      throw new InvalidInputError(`jail '${ban.jail}' is not set up in the ${this.name} backend (known: ${[...this.jails.keys()].join(', ') || 'none'})`);
    }
    return checkBan(ban);
  }

  commit(): Promise<void> {
    return this.serialize(async () => {
      const changes = this.pending.take();
      if (changes.length === 0) return;
      try {
        await this.applyChanges(changes);
      } catch (err) {
        this.pending.restore(changes);
        throw err;
      }
    });
  }

  shutdown(options: { cleanup?: boolean } = {}): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
    return this.serialize(async () => {
      if (this.pending.size > 0) this.log.warn({ pending: this.pending.size }, 'shutdown with uncommitted firewall changes');
      if (options.cleanup) await this.cleanup();
    });
  }

  /**
   * Start the timer of a backend that lifts bans itself (the kernel object has no timeout); a
   * second call, from a repeated init(), keeps the running timer. The timer does not keep the
   * process alive, and shutdown() stops it.
   * @param intervalMs how often `expire` runs
   * @param expire the sweep; it should serialize itself
   * @param failure message logged with the error when a sweep fails
   */
  protected startExpiry(intervalMs: number, expire: () => Promise<void>, failure: string): void {
    if (this.expiryTimer) return;
    this.expiryTimer = setInterval(() => void expire().catch((err: unknown) => this.log.error({ err }, failure)), intervalMs);
    this.expiryTimer.unref();
  }
}
