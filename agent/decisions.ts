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
import type { RedisSettings } from '../common/config/fleetban-config.js';
import { connectRedis } from '../common/redis.js';

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

/** A URL without its password, for logs. */
function redactedUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

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
  /** Replicas to read decisions from (`[agent] decisions_from`); without, the primary (`redis`). */
  readonly sources?: DecisionSources;
}

/**
 * Where an agent reads decisions from when not from the primary (`[agent] decisions_from`): Redis
 * replicas, in order of preference. The primary is always the last resort. A replica that closes
 * its connection, or whose stream is more than `maxLagMs` behind the primary's, is left for the
 * next one; reading resumes there after the newest decision applied, so nothing is missed.
 */
export interface DecisionSources {
  /** Replicas first, the primary last. */
  readonly urls: readonly RedisSettings[];
  /** How far (ms) the stream read may be behind the primary's before the agent moves on; default 2000. */
  readonly maxLagMs?: number;
  readonly log: Logger;
}

/** Thrown into a read waiting on a source the follower just left. */
class SourceSwitched extends Error {}

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
  private readonly synced: Promise<void>;
  private markSynced!: () => void;
  private readonly warner: RateLimitedWarner;
  private readonly readers = new Map<ClusterScripts, Redis>();
  private scripts: ClusterScripts;
  /** Index in sources.urls of the source read now. */
  private sourceAt = 0;
  /** Rejects the read waiting on the source being left. */
  private abandon: ((err: Error) => void) | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private lastSwitch = 0;
  /** Times the follower moved to another source (metrics, tests). */
  switches = 0;

  private redis: Redis;
  private readonly other: Redis;
  private readonly keys: ClusterKeys;
  private readonly ack: (lastId: string) => void;
  private readonly enforcer: Enforcer;
  private readonly log: Logger;
  private readonly gate: DecisionGate | undefined;
  private readonly sources: DecisionSources | undefined;

  /** @param o connections, firewall, trust and decision sources; see {@link DecisionFollowerOptions} */
  constructor(o: DecisionFollowerOptions) {
    const { redis, other, keys, log } = o;
    this.redis = redis;
    this.other = other;
    this.keys = keys;
    this.ack = o.ack;
    this.enforcer = o.enforcer;
    this.log = log;
    this.gate = o.gate;
    this.sources = o.sources;
    this.warner = new RateLimitedWarner(log);
    this.scripts = new ClusterScripts(redis, keys);
    const otherScripts = new ClusterScripts(other, keys);
    this.readers.set(this.scripts, redis);
    this.readers.set(otherScripts, other);
    this.synced = new Promise((r) => (this.markSynced = r));
    // After any reconnect the stream may have moved on or been trimmed: start again from a snapshot,
    // now, not after the read ioredis resends on the reconnected connection returns.
    this.watch(redis, otherScripts);
  }

  private watch(redis: Redis, otherScripts = [...this.readers.keys()].find((s) => this.readers.get(s) === this.other)!): void {
    let first = true;
    redis.on('ready', () => {
      if (!first && this.running && redis === this.redis) {
        this.resyncFrom(otherScripts).catch((err: Error) => {
          this.log.warn({ err: err.message }, 'resync after reconnect failed; retrying on the next read');
          this.resync = true;
        });
      }
      first = false;
    });
    // A replica that goes away is left at once: the next source has the same stream. The primary
    // is never left this way; its reconnects are followed as without replicas.
    if (this.sources) redis.on('close', () => {
      if (redis === this.redis && this.onReplica()) this.moveOn('connection to the replica closed');
    });
  }

  private onReplica(): boolean {
    return this.sources !== undefined && this.sourceAt < this.sources.urls.length - 1;
  }

  /**
   * Read from the next source (after the primary: the first replica again). Reading resumes after
   * lastId there; the resync that follows never steps back to an older snapshot (resyncFrom).
   */
  private moveOn(why: string): void {
    if (!this.sources || !this.running) return;
    // One connection that keeps failing (every source down) must not spin.
    if (Date.now() - this.lastSwitch < 200) return;
    this.lastSwitch = Date.now();
    const old = this.redis;
    const from = redactedUrl(this.sources.urls[this.sourceAt]!.url);
    this.sourceAt = (this.sourceAt + 1) % this.sources.urls.length;
    const next = connectRedis(this.sources.urls[this.sourceAt]!, 'agent-decisions', this.sources.log);
    this.readers.delete(this.scripts);
    this.redis = next;
    this.scripts = new ClusterScripts(next, this.keys);
    this.readers.set(this.scripts, next);
    this.watch(next);
    old.removeAllListeners('close');
    old.disconnect();
    this.switches++;
    this.resync = true;
    this.log.warn({ from, to: redactedUrl(this.sources.urls[this.sourceAt]!.url), reason: why, lastId: this.lastId }, 'decision source changed; resuming after the last decision applied');
    const abandon = this.abandon;
    this.abandon = undefined;
    abandon?.(new SourceSwitched(why));
  }

  /** `op` on the current source, given up (SourceSwitched) when the follower moves to another. */
  private onSource<T>(op: Promise<T>): Promise<T> {
    if (!this.sources) return op;
    return Promise.race([op, new Promise<never>((_, reject) => (this.abandon = reject))]);
  }

  /**
   * Compare with the primary: a decision there older than maxLagMs that this agent has not applied
   * means the replica it reads is behind (its link to the primary is down, or it is overloaded).
   */
  private async checkLag(): Promise<void> {
    if (!this.onReplica() || this.other.status !== 'ready' || this.resync) return;
    const maxLag = this.sources!.maxLagMs ?? 2000;
    const replies = await this.other.multi().time().xread('COUNT', 1, 'STREAMS', this.keys.decisions, this.lastId).exec();
    const [sec, usec] = (replies?.[0]?.[1] ?? []) as [string, string];
    const entries = (replies?.[1]?.[1] as Array<[string, Array<[string, string[]]>]> | null)?.[0]?.[1] ?? [];
    if (!sec || entries.length === 0) return;
    const behind = Number(sec) * 1000 + Math.floor(Number(usec) / 1000) - Number(entries[0]![0].split('-')[0]);
    if (behind > maxLag) this.moveOn(`the replica is ${behind} ms behind the primary`);
  }

  /** Start following; resolves after the first snapshot has been applied. */
  async start(): Promise<void> {
    this.running = true;
    if (this.sources) {
      const every = this.sources.maxLagMs ?? 2000;
      this.lagTimer = setInterval(() => void this.checkLag().catch(() => undefined), every);
      this.lagTimer.unref();
    }
    this.loop = this.run();
    await this.synced;
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.redis.removeAllListeners('close');
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
        // A replica behind what this agent applied (it just moved there) has an older snapshot:
        // replacing the firewall with it would lift newer bans until the replica caught up.
        // Reading after lastId from there delivers them once it has.
        if (this.sources && this.lastId !== '0-0' && compareStreamIds(snap.lastId, this.lastId) < 0) return;
        const lifts = await this.catchUp(this.readers.get(scripts) ?? this.redis, snap.lastId);
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
          await this.onSource(this.resyncFrom(this.scripts));
        }
        let reply = (await this.onSource(this.redis.xreadBuffer('COUNT', DECISION_READ_COUNT, 'BLOCK', 5000, 'STREAMS', this.keys.decisions, this.lastId))) as BufferReply;
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
          reply = (await this.onSource(this.redis.xreadBuffer('COUNT', DECISION_READ_COUNT, 'STREAMS', this.keys.decisions, newest))) as BufferReply;
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
        if (err instanceof SourceSwitched) continue;
        // A firewall failure or a lost connection: keep what the kernel has, resync from a snapshot.
        this.log.error({ err: (err as Error).message }, 'applying decisions failed; will resync');
        this.resync = true;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }
}
