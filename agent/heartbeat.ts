import { networkInterfaces } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterKeys } from '../common/protocol/keys.js';
import { HEARTBEAT_TTL_MS, LIMITS, type Heartbeat } from '../common/protocol/messages.js';
import { PROTOCOL_VERSION } from '../common/protocol/version.js';
import { isCanonicalAddress, tryParseAddress } from '../common/address.js';
import { redisTime } from '../common/hosts.js';

/** This host's non-loopback addresses in canonical form (at most what a heartbeat may carry), so the fleet knows its own members. */
export function hostAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      const text = isCanonicalAddress(a.address) ? a.address : tryParseAddress(a.address)?.text;
      if (text && isCanonicalAddress(text)) out.add(text);
    }
  }
  return [...out].slice(0, LIMITS.heartbeatAddrs);
}

/**
 * Registers the agent and refreshes its heartbeat key on a timer. The entry carries what
 * `fleetban hosts` shows: liveness (seenAt, on Redis' clock), backend, bans applied and the last
 * decision applied. The key expires (HEARTBEAT_TTL_MS) unless refreshed.
 *
 * The first heartbeat waits until the host is in the cluster's registry: the coordinators find a
 * host's heartbeat, and so its addresses for ignoreself, through the registry, so a host is
 * protected from its first heartbeat on. With an ACL, admins (`fleetban acl --apply`) or
 * coordinators (from the agent users) register hosts; without one, the agent registers itself.
 */
export class HeartbeatSender {
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private registered = false;
  private warnedUnregistered = false;

  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly intervalMs: number,
    private readonly state: () => Omit<Heartbeat, 'v' | 'seenAt' | 'startedAt' | 'pid'>,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Write the heartbeat now (once registered). */
  async beat(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    const state = this.state();
    try {
      if (!this.registered) this.registered = await this.register(state.host);
      if (!this.registered) return;
      const seenAt = await redisTime(this.redis);
      if (this.startedAt === 0) this.startedAt = seenAt;
      const hb: Heartbeat = { v: PROTOCOL_VERSION, ...state, pid: process.pid, startedAt: this.startedAt, seenAt };
      await this.redis.set(this.keys.host(state.host).heartbeat, JSON.stringify(hb), 'PX', HEARTBEAT_TTL_MS);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'heartbeat failed');
    }
  }

  private async register(host: string): Promise<boolean> {
    if ((await this.redis.sismember(this.keys.registry, host)) === 1) return true;
    // Allowed only where agents are trusted with the registry (no ACL); refused (NOPERM) otherwise.
    const added = await this.redis.sadd(this.keys.registry, host).then(() => true, () => false);
    if (added) return true;
    if (!this.warnedUnregistered) {
      this.warnedUnregistered = true;
      this.log.warn({ host }, 'this host is not registered in the cluster yet (fleetban acl --apply, or a coordinator registers it from its ACL user); heartbeats start once it is');
    }
    return false;
  }
}
