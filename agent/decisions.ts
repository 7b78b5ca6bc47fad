import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterKeys } from '../common/protocol/keys.js';
import { compareStreamIds, decodeDecision, LIMITS, type Decision } from '../common/protocol/messages.js';
import { ClusterScripts } from '../common/scripts/index.js';
import type { Enforcer } from './enforcer.js';
import type { DecisionGate } from './decision-gate.js';
import { RateLimitedWarner } from '../common/log-limit.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How long an acknowledgement waits; `fleetban ban --wait` returns this much later at most. */
const ACK_DELAY_MS = 100;

/**
 * Decision entries per read. Anyone who may write the stream decides how big an entry is (three
 * 50 MB entries took every agent from 67 to 311 MB when it read 5,000 at a time): a small count
 * bounds what one read can hold to this many times the largest entry Redis accepts
 * (`client-query-buffer-limit`, `proto-max-bulk-len` in deploy/redis). A burst of bans is read
 * in several such reads and still applied as one firewall commit.
 */
export const DECISION_READ_COUNT = 4;

/** Decisions applied in one firewall commit at most. */
const APPLY_BATCH = 5000;

/**
 * Text read in one burst above which the memory it held is collected at once. Legit entries are
 * under LIMITS.entryBytes; megabytes of them are someone filling the stream. V8 collects such
 * big strings only under heap pressure, so they piled up read after read (24 entries of 7 MB:
 * +179 MB), though each read holds only DECISION_READ_COUNT of them.
 */
const COLLECT_AFTER_BYTES = 4 * 1024 * 1024;

let collector: (() => void) | undefined;
/** A full garbage collection (node exposes one on request; fleetban needs it only under attack). */
function collectGarbage(): void {
  if (!collector) {
    setFlagsFromString('--expose-gc');
    collector = runInNewContext('gc') as () => void;
  }
  collector();
}

/** Stream entries read at most to catch up on the unbans published while this agent was away. */
const CATCH_UP_MAX = 100_000;

type BufferReply = Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;

/** A stream entry: its id, and its fields as text, or the reason they were not turned into text. */
type Entry = [string, string[] | { oversized: number }];

/**
 * Entries of a read made in Buffer mode: an entry over LIMITS.entryBytes (never written by
 * fleetban) is not turned into strings at all, so its bytes live only as long as the reply.
 */
function entriesOf(reply: BufferReply): Entry[] {
  return (reply?.[0]?.[1] ?? []).map(([id, fields]) => {
    let bytes = 0;
    for (const f of fields) bytes += f.length;
    return [id.toString(), bytes > LIMITS.entryBytes ? { oversized: bytes } : fields.map((f) => f.toString('utf8'))];
  });
}

/** What a {@link DecisionFollower} needs. */
export interface DecisionFollowerOptions {
  /** A connection for this follower alone: it blocks in XREAD. */
  readonly redis: Redis;
  /** A second connection, used to resync at once when `redis` reconnects. */
  readonly other: Redis;
  readonly keys: ClusterKeys;
  /** Records the id of the newest decision applied (the agent's acknowledgement). */
  readonly ack: (lastId: string) => void;
  /** Applies the decisions to this host's firewall. */
  readonly enforcer: Enforcer;
  readonly log: Logger;
  /** Checks signatures and the host's own guards; without one every decision is applied. */
  readonly gate?: DecisionGate;
}

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
  private readonly warner: RateLimitedWarner;
  private readonly readers = new Map<ClusterScripts, Redis>();

  private readonly redis: Redis;
  private readonly keys: ClusterKeys;
  private readonly ack: (lastId: string) => void;
  private readonly enforcer: Enforcer;
  private readonly log: Logger;
  private readonly gate: DecisionGate | undefined;

  /** @param o connections, firewall and trust; see {@link DecisionFollowerOptions} */
  constructor(o: DecisionFollowerOptions) {
    const { redis, other, keys, log } = o;
    this.redis = redis;
    this.keys = keys;
    this.ack = o.ack;
    this.enforcer = o.enforcer;
    this.log = log;
    this.gate = o.gate;
    this.warner = new RateLimitedWarner(log);
    this.scripts = new ClusterScripts(redis, keys);
    const otherScripts = new ClusterScripts(other, keys);
    this.readers.set(this.scripts, redis);
    this.readers.set(otherScripts, other);
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
        for (const d of snap.damaged) this.warner.warn('damaged ban record', { entry: d.slice(0, 200) }, 'damaged ban record skipped');
        const bans = this.gate ? snap.bans.filter((r) => this.gate!.admitRecord(r)) : snap.bans;
        const lifts = await this.catchUp(this.readers.get(scripts)!, snap.lastId);
        await this.enforcer.replaceAll(bans, lifts);
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

  /**
   * The unbans and flushes published between the newest decision applied and a snapshot: the
   * snapshot lacks the bans they lifted, but so it would if someone had merely deleted their
   * records, and the agent keeps a ban it holds until a signed decision lifts it.
   */
  private async catchUp(redis: Redis, until: string): Promise<Decision[]> {
    const lifts: Decision[] = [];
    if (this.lastId === '0-0' || compareStreamIds(until, this.lastId) <= 0) return lifts;
    // XREAD, not XRANGE: it is what an agent's Redis identity may run on the stream.
    let after = this.lastId;
    for (let read = 0; read < CATCH_UP_MAX; read += DECISION_READ_COUNT) {
      const page = entriesOf((await redis.xreadBuffer('COUNT', DECISION_READ_COUNT, 'STREAMS', this.keys.decisions, after)) as BufferReply);
      for (const [id, fields] of page) {
        if (compareStreamIds(id, until) > 0) return lifts;
        if (!Array.isArray(fields)) continue;
        const d = decodeDecision(fields);
        if (d.ok && d.value.op !== 'ban' && (!this.gate || this.gate.admit(d.value, id))) lifts.push(d.value);
      }
      if (page.length < DECISION_READ_COUNT) break;
      after = page[page.length - 1]![0];
    }
    return lifts;
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
        let reply = (await this.redis.xreadBuffer('COUNT', DECISION_READ_COUNT, 'BLOCK', 5000, 'STREAMS', this.keys.decisions, this.lastId)) as BufferReply;
        await this.resyncing;
        // A snapshot taken while this read waited already covers the entries up to its id.
        let entries = entriesOf(reply).filter(([id]) => compareStreamIds(id, this.lastId) > 0);
        if (entries.length === 0) continue;
        const decisions: Decision[] = [];
        let newest = this.lastId;
        // A burst is read in small reads (each entry's text is dropped once decoded) and applied
        // as one firewall commit of up to APPLY_BATCH decisions.
        let bytes = 0;
        for (;;) {
          for (const [id, fields] of entries) {
            if (!Array.isArray(fields)) {
              bytes += fields.oversized;
              this.warner.warn('malformed decision', { id, reason: `entry of ${fields.oversized} bytes is over the ${LIMITS.entryBytes} byte limit` }, 'malformed decision skipped');
              continue;
            }
            const d = decodeDecision(fields);
            if (!d.ok) this.warner.warn('malformed decision', { id, reason: d.reason }, 'malformed decision skipped');
            else if (!this.gate || this.gate.admit(d.value, id)) decisions.push(d.value);
          }
          newest = entries[entries.length - 1]![0];
          if (entries.length < DECISION_READ_COUNT || decisions.length >= APPLY_BATCH) break;
          reply = null;
          entries = [];
          if (bytes > COLLECT_AFTER_BYTES) {
            this.warner.warn('oversized decisions', { bytes }, 'megabytes of decision entries read; collecting the memory they held');
            collectGarbage();
            bytes = 0;
          }
          reply = (await this.redis.xreadBuffer('COUNT', DECISION_READ_COUNT, 'STREAMS', this.keys.decisions, newest)) as BufferReply;
          entries = entriesOf(reply);
          if (entries.length === 0) break;
        }
        reply = null;
        entries = [];
        if (bytes > COLLECT_AFTER_BYTES) collectGarbage();
        await this.enforcer.apply(decisions);
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
