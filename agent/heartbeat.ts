import { networkInterfaces } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterKeys } from '../common/protocol/keys.js';
import type { Heartbeat } from '../common/protocol/messages.js';
import { PROTOCOL_VERSION } from '../common/protocol/version.js';

/** This host's non-loopback addresses, reported so the fleet knows its own members. */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.push(a.address);
  }
  return out;
}

/**
 * Registers the agent and refreshes its entry on a timer. The entry carries what `fleetban hosts`
 * shows: liveness (seenAt), backend, bans applied and the last decision applied.
 */
export class HeartbeatSender {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();

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

  /** Write the heartbeat now. */
  async beat(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    const hb: Heartbeat = { v: PROTOCOL_VERSION, ...this.state(), pid: process.pid, startedAt: this.startedAt, seenAt: Date.now() };
    try {
      await this.redis.hset(this.keys.hosts, hb.host, JSON.stringify(hb));
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'heartbeat failed');
    }
  }
}
