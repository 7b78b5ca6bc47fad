import { SerialQueue } from '../../common/serial-queue.js';
import { componentLogger, type Logger } from '../../common/log.js';
import { InvalidInputError } from '../../common/errors.js';
import type { FirewallBackend, FirewallBan, JailRule } from './backend.js';
import { BanLedger, DEFAULT_MAX_BANS } from './ban-ledger.js';
import { CommandRunner } from './command-runner.js';
import { CommandSession, type SessionProtocol } from './command-session.js';
import { banKey, banTarget, checkBan, type CheckedBan } from './jail-rules.js';
import { PendingChanges, type PendingChange } from './pending-changes.js';
import { BatchRefusedError } from './repair-and-retry.js';

/** Options every {@link KernelBackend} takes. */
export interface KernelBackendOptions {
  /** argv run before every command, e.g. `['ip','netns','exec',ns]` to act inside a namespace. */
  readonly commandPrefix?: readonly string[];
  /** Per-host cap on banned elements across all jails; default {@link DEFAULT_MAX_BANS}. */
  readonly maxBans?: number;
  /** Logger; default `componentLogger('firewall.<backend name>')`. */
  readonly logger?: Logger;
  /**
   * Write commit batches to one long-lived tool process instead of starting one per batch
   * (nftables, ipset, iptables); default true. False keeps the one-shot path only.
   */
  readonly persistent?: boolean;
  /** A session batch unanswered for this long means the process hangs (it is replaced); default 10,000 ms. */
  readonly sessionTimeoutMs?: number;
}

/**
 * Most batch attempts spent finding the refused changes of one failed commit; what is still
 * untested after that goes back into the buffer and the commit fails as before.
 */
const ISOLATION_ATTEMPTS = 64;

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
  private readonly queue = new SerialQueue();
  private expiryTimer: NodeJS.Timeout | undefined;
  private readonly openSessions: CommandSession[] = [];
  private readonly persistent: boolean;
  private readonly sessionTimeoutMs: number | undefined;
  /**
   * Longest kernel timeout this backend writes, ms; a longer ban gets this timeout (nftables) or
   * is lifted by the backend itself (ipset beyond its limit, iptables). Infinity: no limit.
   */
  readonly maxTimeoutMs: number = Infinity;
  kernelRefused = 0;

  /**
   * @param options see {@link KernelBackendOptions}
   * @param component logger component used when no logger is given (`firewall.nftables`)
   * @param kernelExpires false for backends whose expired rules are removed by their own sweeper
   */
  protected constructor(options: KernelBackendOptions, component: string, kernelExpires = true) {
    this.log = options.logger ?? componentLogger(component);
    this.run = new CommandRunner(options.commandPrefix ?? [], this.log);
    this.ledger = new BanLedger(options.maxBans ?? DEFAULT_MAX_BANS, this.log, kernelExpires);
    this.persistent = options.persistent ?? true;
    this.sessionTimeoutMs = options.sessionTimeoutMs;
  }

  /**
   * A long-lived process for commit batches, closed by shutdown(); undefined when the backend was
   * built with `persistent: false`.
   * @param tool the binary (`nft`)
   * @param protocol how it is driven, one of SESSION_PROTOCOLS
   */
  protected openSession(tool: string, protocol: SessionProtocol): CommandSession | undefined {
    if (!this.persistent) return undefined;
    const s = new CommandSession({ prefix: this.run.commandPrefix, tool, protocol, log: this.log, timeoutMs: this.sessionTimeoutMs });
    this.openSessions.push(s);
    return s;
  }

  abstract init(jails: readonly JailRule[]): Promise<void>;

  /** Start the sessions (from init()), so the first ban finds its process running. */
  protected async warmSessions(): Promise<void> {
    for (const s of this.openSessions) {
      const why = await s.warm();
      if (why !== undefined) this.log.warn({ reason: why }, 'firewall session did not start; batches use one-shot processes until it does');
    }
  }
  abstract sync(bans: readonly FirewallBan[]): Promise<void>;
  abstract list(): Promise<FirewallBan[]>;

  /**
   * Apply one commit's changes; when this throws, they go back into the buffer, except that after
   * a BatchRefusedError the changes the kernel refuses on their own are found and dropped.
   * @param repair false: one attempt, no repair (while finding refused changes)
   */
  protected abstract applyChanges(changes: readonly PendingChange[], repair?: boolean): Promise<void>;

  /** Remove everything this backend created on the host (shutdown with cleanup). */
  protected abstract cleanup(): Promise<void>;

  private ledgerSeeded = false;

  /**
   * At the first init only: after an agent restart the kernel still holds the previous run's
   * bans; the ledger takes them in, so they count toward the cap and list() knows them.
   * @param read the backend's reading of its elements from the kernel
   */
  protected async seedLedger(read: () => Promise<readonly FirewallBan[]>): Promise<void> {
    if (this.ledgerSeeded) return;
    this.ledger.replaceAll((await read()).map((b) => [banKey(b.jail, b.addr), b.until] as const));
    this.ledgerSeeded = true;
  }

  /** A sync made the ledger the kernel's content: no seeding needed any more. */
  protected markLedgerSeeded(): void {
    this.ledgerSeeded = true;
  }

  /** Run `fn` after every operation queued before it, whether those failed or not. */
  protected serialize<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
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
        if (!(err instanceof BatchRefusedError)) {
          this.pending.restore(changes);
          throw err;
        }
        await this.dropRefused(changes, err);
      }
    });
  }

  /**
   * The tool refused a batch even after the repair. Put back in the buffer, a change the kernel
   * will never take (a timeout beyond its range, say) would fail every later batch too, so halve
   * the batch until each part applies or is one change the kernel refuses on its own: those are
   * dropped and logged, the rest is applied. Bounded by {@link ISOLATION_ATTEMPTS}; past that,
   * what is untested goes back into the buffer and the commit fails.
   * @throws BatchRefusedError when the attempts ran out
   */
  private async dropRefused(changes: readonly PendingChange[], first: BatchRefusedError): Promise<void> {
    const todo: PendingChange[][] = changes.length > 1 ? halves(changes) : [];
    const dropped: Array<{ change: PendingChange; stderr: string }> = changes.length === 1 ? [{ change: changes[0]!, stderr: first.stderr }] : [];
    let attempts = 0;
    while (todo.length > 0) {
      if (attempts++ >= ISOLATION_ATTEMPTS) {
        this.pending.restore(todo.flat());
        this.logDropped(dropped);
        throw first;
      }
      const part = todo.shift()!;
      try {
        await this.applyChanges(part, false);
      } catch (err) {
        if (!(err instanceof BatchRefusedError)) {
          this.pending.restore([...part, ...todo.flat()]);
          this.logDropped(dropped);
          throw err;
        }
        if (part.length === 1) dropped.push({ change: part[0]!, stderr: err.stderr });
        else todo.unshift(...halves(part));
      }
    }
    this.logDropped(dropped);
  }

  private logDropped(dropped: ReadonlyArray<{ change: PendingChange; stderr: string }>): void {
    this.kernelRefused += dropped.filter((d) => d.change.kind === 'add').length;
    for (const { change, stderr } of dropped.slice(0, 20)) {
      const what = change.kind === 'add' ? { jail: change.ban.jail, addr: change.ban.addr, until: change.ban.until } : { jail: change.jail, addr: change.addr };
      this.log.error({ change: change.kind, ...what, stderr: stderr.slice(0, 500) }, 'the kernel refused this firewall change; dropped, not retried');
    }
    if (dropped.length > 20) this.log.error({ dropped: dropped.length }, 'more refused firewall changes dropped');
  }

  shutdown(options: { cleanup?: boolean } = {}): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
    return this.serialize(async () => {
      if (this.pending.size > 0) this.log.warn({ pending: this.pending.size }, 'shutdown with uncommitted firewall changes');
      await Promise.all(this.openSessions.map((s) => s.close()));
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

function halves<T>(items: readonly T[]): T[][] {
  const mid = Math.ceil(items.length / 2);
  return [items.slice(0, mid), items.slice(mid)];
}
