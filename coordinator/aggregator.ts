import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { COORDINATOR_GROUP, type ClusterKeys } from '../common/protocol/keys.js';
import { decodeReport } from '../common/protocol/messages.js';
import { ClusterScripts, type CountedFailure, type ScriptPolicy } from '../common/scripts/index.js';
import { containingNetwork, parseBanTarget } from '../common/address.js';
import { now } from '../common/clock.js';
import type { ClusterPolicy } from './policy.js';
import type { CountObserver } from './count-observer.js';

/**
 * A failure's time on Redis' clock. Hosts' clocks may be minutes apart, so the host's own time is
 * never compared with anyone else's: the failure's age is measured on the host's clock (`sent -
 * time`) and subtracted from the moment Redis received it (the stream id's milliseconds).
 * @param id stream entry id, `<ms>-<seq>`
 * @param time failure time on the host clock
 * @param sent report time on the host clock
 */
export function failureTime(id: string, time: number, sent: number): number {
  const received = Number(id.slice(0, id.indexOf('-')));
  return received - Math.max(0, sent - time);
}

/** Stream entries decoded and filtered, ready for one call of the counting script. */
interface Prepared {
  readonly policies: ScriptPolicy[];
  readonly counted: CountedFailure[];
  /** Every entry whose failures are in `counted`, and entries with nothing to count. */
  readonly acks: string[];
}

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

/** How often counted reports are trimmed from the stream. */
const TRIM_INTERVAL_MS = 1000;

/** How long stop() waits for the read and count in flight. */
const STOP_GRACE_MS = 3000;

/** The upper bound Lua's unpack() handles comfortably for one XACK. */
const MAX_BATCH = 2000;

/**
 * Failures per call of the counting script at most (an entry is never split across calls, since
 * it is acknowledged with its failures): Redis runs nothing else during a call, so a call of
 * ~2,000 failures (~13 ms of Redis at ~6.5 µs each) bounds the latency it adds to every other client.
 */
const MAX_FAILURES_PER_CALL = 2000;

/**
 * Reads failures from the stream through the coordinators' consumer group and counts them with
 * the recordFailures script. Several coordinators share the stream; each entry goes to one of them,
 * and an entry is acknowledged in the same atomic step that counts it.
 */
export class Aggregator {
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly warnedJails = new Set<string>();
  private readonly batch: number;
  /** Counters for logs and tests. */
  readonly stats = { read: 0, counted: 0, malformed: 0, unknownJail: 0, ignored: 0, bans: 0 };
  private readonly warnedIgnored = new Map<string, number>();
  /** Notifications' matched lines and metrics (coordinator/operations.ts). */
  observer: CountObserver | undefined;

  /**
   * @param redis a connection for this aggregator alone (it blocks in XREADGROUP)
   * @param writer a second connection, for the counting script and claims while a read blocks
   * @param keys cluster keys
   * @param consumer this coordinator's name in the group
   * @param policy the jails' policy; replaced on reload
   * @param log logger
   * @param batch stream entries (reports of up to 100 failures) per read
   * @param claimIdleMs pending entries idle this long (their coordinator died) are claimed
   */
  constructor(
    private readonly redis: Redis,
    private readonly writer: Redis,
    private readonly keys: ClusterKeys,
    private readonly consumer: string,
    private policy: ClusterPolicy,
    private readonly log: Logger,
    batch = 1000,
    private readonly claimIdleMs = 30_000,
    decisionsMaxlen = 100_000,
    private readonly clock: () => number = now,
    historyRetentionMs?: number,
    private readonly waitForReplica = false,
  ) {
    this.batch = Math.min(batch, MAX_BATCH);
    this.scripts = new ClusterScripts(writer, keys, decisionsMaxlen, historyRetentionMs);
  }

  private readonly scripts: ClusterScripts;

  /** Replace the policy (reload); the next batch is counted by the new one. */
  setPolicy(policy: ClusterPolicy): void {
    this.policy = policy;
    this.warnedJails.clear();
  }

  /** Create the group if needed (from the start of the stream, so a backlog is processed) and start reading. */
  async start(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.keys.failures, COORDINATOR_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    // The blocking read returns within its 1 s timeout while Redis is there. With Redis gone a read
    // or a count would wait for it for ever: give up after a grace period. Nothing is lost, since
    // unacknowledged entries stay pending and another coordinator claims them.
    await Promise.race([this.loop, new Promise((r) => setTimeout(r, STOP_GRACE_MS).unref())]);
  }

  private read(cursor: string): Promise<Array<[string, string[]]>> {
    return (this.redis.xreadgroup(
      'GROUP', COORDINATOR_GROUP, this.consumer, 'COUNT', this.batch, 'BLOCK', 1000, 'STREAMS', this.keys.failures, cursor,
    ) as Promise<StreamReply>).then((reply) => reply?.[0]?.[1] ?? []);
  }

  private async run(): Promise<void> {
    // First our own pending entries (left by a previous run of this consumer), then new ones.
    let cursor = '0';
    let lastClaim = 0;
    let lastTrim = now();
    // In '>' mode the next read is already on its way while a batch is being counted (on the other
    // connection): Redis never waits for this process to decode, and this process never waits for
    // a round trip to get its next batch.
    let ahead: Promise<Array<[string, string[]]>> | undefined;
    // Likewise the counting script of one batch runs in Redis while this process decodes the next:
    // batches are still counted one after another, in stream order.
    let counting: Promise<void> = Promise.resolve();
    while (this.running) {
      try {
        if (now() - lastClaim > this.claimIdleMs / 2) {
          lastClaim = now();
          await this.claimAbandoned();
        }
        if (now() - lastTrim > TRIM_INTERVAL_MS) {
          lastTrim = now();
          // Trimming is housekeeping: a failure here must not look like a failed read.
          await this.trimCounted().catch((err: Error) => this.log.warn({ err: err.message }, 'trimming counted reports from the stream failed; retrying in a second'));
        }
        const entries = await (ahead ?? this.read(cursor));
        ahead = undefined;
        if (cursor === '0') {
          if (entries.length === 0) cursor = '>';
          else cursor = entries[entries.length - 1]![0];
        }
        if (cursor === '>' && this.running) ahead = this.read('>');
        if (entries.length > 0) {
          const prepared = await this.prepare(entries);
          await counting;
          counting = (async () => {
            for (const chunk of prepared) await this.count(chunk);
          })().catch((err: Error) => {
            // The entries stay pending; XAUTOCLAIM hands them to a coordinator after claim_idle.
            this.log.error({ err: err.message, entries: entries.length }, 'counting failures failed; they stay pending');
          });
        }
      } catch (err) {
        ahead = undefined;
        if (!this.running) break;
        this.log.error({ err: (err as Error).message }, 'reading failures failed; retrying');
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    // Entries a last read-ahead took stay pending and are claimed by another coordinator, or
    // re-read by this consumer name when it starts again.
    await ahead?.catch(() => undefined);
    await counting;
  }

  /** Take over entries another coordinator read but never acknowledged (it crashed). */
  private async claimAbandoned(): Promise<void> {
    let start = '0-0';
    for (let rounds = 0; rounds < 100; rounds++) {
      const [next, entries] = (await this.writer.xautoclaim(
        this.keys.failures, COORDINATOR_GROUP, this.consumer, this.claimIdleMs, start, 'COUNT', this.batch,
      )) as [string, Array<[string, string[]] | null>];
      const live = entries.filter((e): e is [string, string[]] => e !== null);
      if (live.length > 0) {
        this.log.warn({ count: live.length }, 'claimed failures abandoned by another coordinator');
        await this.process(live);
      }
      if (next === '0-0') break;
      start = next;
    }
  }

  /**
   * Drop the reports every coordinator is done with, so that the stream holds the backlog and not
   * a history of what was counted (MAXLEN alone kept the newest `stream_maxlen` entries, counted
   * or not: hundreds of MB under a flood). Entries are delivered in order, so everything before
   * the oldest pending entry (or, with none pending, up to the last delivered one) was
   * acknowledged. `~` lets Redis drop whole nodes only, which is cheap.
   */
  private async trimCounted(): Promise<void> {
    const [pending, oldest] = (await this.writer.xpending(this.keys.failures, COORDINATOR_GROUP)) as [number, string | null];
    let floor = Number(pending) > 0 ? oldest : undefined;
    if (!floor) {
      const groups = (await this.writer.xinfo('GROUPS', this.keys.failures)) as unknown[][];
      const group = groups.find((g) => g[g.indexOf('name') + 1] === COORDINATOR_GROUP);
      floor = group ? String(group[group.indexOf('last-delivered-id') + 1]) : undefined;
    }
    if (floor && floor !== '0-0') await this.writer.xtrim(this.keys.failures, 'MINID', '~', floor);
  }

  /** Log a whitelisted address at most once a minute, not once per failure of a flood. */
  private noteIgnored(jail: string, addr: string, reason: string): void {
    const key = `${jail}|${addr}`;
    const t = Date.now();
    if (t - (this.warnedIgnored.get(key) ?? 0) < 60_000) return;
    if (this.warnedIgnored.size > 10_000) this.warnedIgnored.clear();
    this.warnedIgnored.set(key, t);
    this.log.info({ jail, addr, reason }, 'failure from a whitelisted address not counted');
  }

  /** Decode, filter and count one batch of stream entries. */
  async process(entries: Array<[string, string[]]>): Promise<void> {
    for (const chunk of await this.prepare(entries)) await this.count(chunk);
  }

  /**
   * Decode and filter a batch (this process' share of the work), cut into script calls of at most
   * MAX_FAILURES_PER_CALL failures at entry boundaries.
   */
  private async prepare(entries: Array<[string, string[]]>): Promise<Prepared[]> {
    const calls: Prepared[] = [];
    let counted: CountedFailure[] = [];
    let acks: string[] = [];
    let jails = new Set<string>();
    const cut = () => {
      if (acks.length > 0) calls.push({ policies: this.scriptPolicies(jails), counted, acks });
      counted = [];
      acks = [];
      jails = new Set();
    };
    for (const [id, fields] of entries) {
      this.stats.read++;
      const d = decodeReport(fields);
      if (!d.ok) {
        this.stats.malformed++;
        this.log.warn({ id, reason: d.reason }, 'malformed failure report skipped');
        acks.push(id);
        continue;
      }
      const report = d.value;
      for (const r of report.rejected) {
        this.stats.malformed++;
        this.log.warn({ id, index: r.index, host: report.host, reason: r.reason }, 'malformed failure skipped');
      }
      if (counted.length > 0 && counted.length + report.failures.length > MAX_FAILURES_PER_CALL) cut();
      for (const f of report.failures) {
        const policy = this.policy.jails.get(f.jail);
        if (!policy) {
          this.stats.unknownJail++;
          if (!this.warnedJails.has(f.jail)) {
            this.warnedJails.add(f.jail);
            this.log.warn({ jail: f.jail, host: f.host }, 'failure for a jail this coordinator does not have; not counted');
          }
          continue;
        }
        const ignored = policy.whitelist.checkLocal(f.addr) ?? (policy.whitelist.hasCommand ? await policy.whitelist.checkCommand(f.addr) : undefined);
        if (ignored) {
          this.stats.ignored++;
          this.noteIgnored(f.jail, f.addr, ignored);
          continue;
        }
        // Per-prefix counting: every address of an IPv6 network counts toward, and bans, the network.
        const addr = policy.ipv6prefix < 128 && f.addr.includes(':') ? containingNetwork(parseBanTarget(f.addr), policy.ipv6prefix).text : f.addr;
        counted.push({ eid: f.eid, jail: f.jail, addr, time: failureTime(id, f.time, f.sent), host: f.host, line: f.line });
        jails.add(f.jail);
      }
      acks.push(id);
    }
    cut();
    return calls;
  }

  /** The policies a call needs: those of its failures' jails, and every recidive jail. */
  private scriptPolicies(jails: ReadonlySet<string>): ScriptPolicy[] {
    const policies: ScriptPolicy[] = [...this.policy.recidives];
    for (const j of jails) {
      const p = this.policy.jails.get(j)!.script;
      if (!p.countsBans) policies.push(p);
    }
    return policies;
  }

  /** Count a prepared batch with the script (Redis' share of the work). */
  private async count({ policies, counted, acks }: Prepared): Promise<void> {
    this.observer?.before(counted);
    const started = performance.now();
    const result = await this.scripts.recordFailures(this.clock(), policies, counted, acks);
    this.observer?.after(counted, result.bans, (performance.now() - started) / 1000);
    if (result.bans.length > 0 && this.waitForReplica) {
      // Replication is asynchronous: a ban decided just before the primary dies could be missing
      // on the replica Sentinel promotes. Waiting (briefly) for one replica closes most of that window.
      await this.writer.call('WAIT', 1, 200).catch(() => undefined);
    }
    this.stats.counted += counted.length;
    for (const ban of result.bans) {
      this.stats.bans++;
      this.log.info({ event: 'ban decided', jail: ban.jail, addr: ban.addr, until: ban.until === -1 ? 'permanent' : new Date(ban.until).toISOString() }, `[${ban.jail}] Ban ${ban.addr} (cluster decision)`);
    }
  }
}
