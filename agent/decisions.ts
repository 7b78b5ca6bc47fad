import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterKeys } from '../common/protocol/keys.js';
import { compareStreamIds, decodeDecision, type Decision } from '../common/protocol/messages.js';
import { ClusterScripts } from '../common/scripts/index.js';
import type { Enforcer } from './enforcer.js';

/** How long an acknowledgement waits; `fleetban ban --wait` returns this much later at most. */
const ACK_DELAY_MS = 100;

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

/**
 * Follows the decisions stream and applies it. On start and after every reconnect it loads the
 * snapshot of active bans with the stream id that matches it, so no decision is missed even if
 * the stream was trimmed while the agent was away.
 */
export class DecisionFollower {
  private running = false;
  private loop: Promise<void> | undefined;
  private resync = true;
  /** Id of the newest decision applied (or of the snapshot), reported in heartbeats and acks. */
  lastId = '0-0';
  lastAppliedAt = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  private readonly scripts: ClusterScripts;
  private readonly synced: Promise<void>;
  private markSynced!: () => void;

  /**
   * @param redis a connection for this follower alone (it blocks in XREAD)
   * @param other a second connection, used to resync at once when `redis` reconnects
   * @param ack records the id of the newest decision applied (the agent's acknowledgement)
   */
  constructor(
    private readonly redis: Redis,
    other: Redis,
    private readonly keys: ClusterKeys,
    private readonly ack: (lastId: string) => void,
    private readonly enforcer: Enforcer,
    private readonly log: Logger,
  ) {
    this.scripts = new ClusterScripts(redis, keys);
    const otherScripts = new ClusterScripts(other, keys);
    this.synced = new Promise((r) => (this.markSynced = r));
    // After any reconnect the stream may have moved on or been trimmed: start again from a snapshot,
    // now, not after the read ioredis resends on the reconnected connection returns.
    let first = true;
    redis.on('ready', () => {
      if (!first && this.running) {
        this.resyncFrom(otherScripts).catch((err: Error) => {
          this.log.warn({ err: err.message }, 'resync after reconnect failed; retrying on the next read');
          this.resync = true;
        });
      }
      first = false;
    });
  }

  /** Start following; resolves after the first snapshot has been applied. */
  async start(): Promise<void> {
    this.running = true;
    this.loop = this.run();
    await this.synced;
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.redis.disconnect();
    // ioredis does not fail a read it is holding for a reconnect when disconnect() is called while
    // Redis is gone, so the loop may never see it: do not wait for it longer than a moment.
    await Promise.race([this.loop, new Promise((r) => setTimeout(r, 2000).unref())]);
  }

  /**
   * Acknowledge the newest applied decision a moment later, on the other connection: the write,
   * its reply and the wake-up it costs stay out of the moment every agent of the fleet is applying
   * the same decision (with many agents per CPU that queue is the propagation time), and a burst of
   * decisions costs one acknowledgement.
   */
  private scheduleAck(): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      this.ack(this.lastId);
    }, ACK_DELAY_MS);
  }

  /**
   * Load the snapshot and make the firewall match it. Runs on the blocking connection at start and
   * after errors, and on the other connection right after a reconnect, while the blocking
   * connection may still be waiting in a read that ioredis resent; one at a time.
   */
  private resyncFrom(scripts: ClusterScripts): Promise<void> {
    this.resyncing ??= (async () => {
      try {
        const snap = await scripts.snapshot();
        for (const d of snap.damaged) this.log.warn({ entry: d }, 'damaged ban record skipped');
        await this.enforcer.replaceAll(snap.bans);
        this.lastId = snap.lastId;
        this.lastAppliedAt = Date.now();
        this.scheduleAck();
        this.markSynced();
      } finally {
        this.resyncing = undefined;
      }
    })();
    return this.resyncing;
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (this.running) {
      try {
        await this.resyncing;
        if (this.resync) {
          this.resync = false;
          await this.resyncFrom(this.scripts);
        }
        const reply = (await this.redis.xread('COUNT', 5000, 'BLOCK', 5000, 'STREAMS', this.keys.decisions, this.lastId)) as StreamReply;
        await this.resyncing;
        // A snapshot taken while this read waited already covers the entries up to its id.
        const entries = (reply?.[0]?.[1] ?? []).filter(([id]) => compareStreamIds(id, this.lastId) > 0);
        if (entries.length === 0) continue;
        const decisions: Decision[] = [];
        for (const [id, fields] of entries) {
          const d = decodeDecision(fields);
          if (d.ok) decisions.push(d.value);
          else this.log.warn({ id, reason: d.reason }, 'malformed decision skipped');
        }
        await this.enforcer.apply(decisions);
        const newest = entries[entries.length - 1]![0];
        // A resync after a reconnect may have run meanwhile and moved past these already.
        if (compareStreamIds(newest, this.lastId) > 0) this.lastId = newest;
        this.lastAppliedAt = Date.now();
        this.scheduleAck();
        for (const d of decisions) {
          // fail2ban's wording, so its readers (and people) recognise the lines; `event` stays machine-stable.
          if (d.op === 'ban') this.log.info({ event: 'ban applied', jail: d.jail, addr: d.addr, until: d.until, origin: d.origin }, `[${d.jail}] Ban ${d.addr}`);
          else if (d.op === 'unban') this.log.info({ event: 'unban applied', jail: d.jail, addr: d.addr, origin: d.origin }, `[${d.jail}] Unban ${d.addr}`);
          else this.log.info({ event: 'flush applied', jail: d.jail, origin: d.origin }, `[${d.jail}] Unban all (flush)`);
        }
        backoff = 100;
      } catch (err) {
        if (!this.running) break;
        // A firewall failure or a lost connection: keep what the kernel has, resync from a snapshot.
        this.log.error({ err: (err as Error).message }, 'applying decisions failed; will resync');
        this.resync = true;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }
}
