import { now as clockNow } from '../../common/clock.js';
import { componentLogger, type Logger } from '../../common/log.js';
import type { FirewallBackend, FirewallBan, JailRule } from './backend.js';
import { banKey, banTarget, checkBan, validateJailRules, type CheckedBan } from './jail-rules.js';
import { InvalidInputError } from '../../common/errors.js';
import { PendingChanges } from './pending-changes.js';
import { prepareSync } from './prepare-sync.js';

/** Options of {@link DryRunBackend}. */
export interface DryRunOptions {
  /** Logger; default `componentLogger('firewall.dry-run')`. End-to-end tests wait for its lines. */
  readonly logger?: Logger;
}

/**
 * A backend that changes nothing on the host: each change becomes one info line, and the bans are
 * kept in memory so list() answers like a real backend. The log lines are an interface: end-to-end
 * tests wait for `{ action: 'ban'|'unban', jail, addr, until }` with message `dry-run ban` /
 * `dry-run unban`, and `{ action: 'sync', count }` with `dry-run sync`.
 */
export class DryRunBackend implements FirewallBackend {
  readonly name = 'dry-run';
  readonly maxTimeoutMs = Infinity;
  readonly kernelRefused = 0;
  private readonly log: Logger;
  private readonly pending = new PendingChanges();
  private readonly bans = new Map<string, FirewallBan>();
  /** Jails init() set up: like a kernel backend, only their bans are taken (the conformance suite holds it to that). */
  private jails = new Set<string>();

  /** @param options see {@link DryRunOptions} */
  constructor(options: DryRunOptions = {}) {
    this.log = options.logger ?? componentLogger('firewall.dry-run');
  }

  async init(jails: readonly JailRule[]): Promise<void> {
    const checked = validateJailRules(jails);
    this.jails = new Set(checked.keys());
    for (const [key, b] of this.bans) if (!this.jails.has(b.jail)) this.bans.delete(key);
    this.log.info({ action: 'init', jails: [...checked.keys()] }, 'dry-run init');
  }

  add(ban: FirewallBan): void {
    const c = this.check(ban);
    this.pending.add({ jail: c.jail, addr: c.target.text, family: c.target.family, until: c.until });
  }

  delete(jail: string, addr: string): void {
    this.pending.delete(jail, banTarget(addr).text);
  }

  async commit(): Promise<void> {
    const nowMs = clockNow();
    for (const c of this.pending.take()) {
      if (c.kind === 'delete') {
        // Logged even when not held here: after a restart the memory is empty, yet a real backend
        // would still issue the delete, and that is what this backend reports.
        this.bans.delete(banKey(c.jail, c.addr));
        this.log.info({ action: 'unban', jail: c.jail, addr: c.addr }, 'dry-run unban');
        continue;
      }
      const { ban } = c;
      if (ban.until !== -1 && ban.until <= nowMs) continue;
      this.bans.set(banKey(ban.jail, ban.addr), ban);
      this.log.info({ action: 'ban', jail: ban.jail, addr: ban.addr, until: ban.until }, 'dry-run ban');
    }
  }

  async sync(bans: readonly FirewallBan[]): Promise<void> {
    this.bans.clear();
    for (const [key, c] of prepareSync(bans, { check: (b) => this.check(b), now: clockNow(), log: this.log, rejectedLog: 'each' })) {
      this.bans.set(key, { jail: c.jail, addr: c.target.text, family: c.target.family, until: c.until });
    }
    this.log.info({ action: 'sync', count: this.bans.size }, 'dry-run sync');
  }

  private check(ban: FirewallBan): CheckedBan {
    if (!this.jails.has(ban.jail)) {
      throw new InvalidInputError(`jail '${ban.jail}' is not set up in the dry-run backend (known: ${[...this.jails].join(', ') || 'none'})`);
    }
    return checkBan(ban);
  }

  async list(): Promise<FirewallBan[]> {
    const nowMs = clockNow();
    return [...this.bans.values()].filter((b) => b.until === -1 || b.until > nowMs);
  }

  async shutdown(options: { cleanup?: boolean } = {}): Promise<void> {
    if (options.cleanup) this.bans.clear();
  }
}
