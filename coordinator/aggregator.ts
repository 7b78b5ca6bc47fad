import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { COORDINATOR_GROUP, banId, hostOfKey, type ClusterKeys } from '../common/protocol/keys.js';
import { decodeReport } from '../common/protocol/messages.js';
import { ClusterScripts, COUNT_RESULT, type CountedFailure, type DecisionSigner, type ScriptPolicy, type StreamAcks } from '../common/scripts/index.js';
import { containingNetwork, parseBanTarget } from '../common/address.js';
import { now } from '../common/clock.js';
import { RateLimitedWarner } from '../common/log-limit.js';
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
  /** Every entry whose failures are in `counted`, and entries with nothing to count, by stream. */
  readonly acks: StreamAcks;
}

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

/** One report read from a host's failure stream; `host` comes from the stream's key. */
export interface StreamEntry {
  readonly stream: string;
  readonly host: string;
  readonly id: string;
  readonly fields: string[];
}

interface HostStream {
  readonly host: string;
  readonly key: string;
  /** '>' once this consumer's own pending entries there are read, else the position reached in them. */
  cursor: string;
}

/** Entries read per stream at least, however many hosts are busy. */
const MIN_PER_STREAM = 2;

/** One read asks for at most this many batches of entries over all the streams it reads. */
const READ_ENTRIES_FACTOR = 4;

/** Reports a host's stream holds at most (about: MAXLEN ~) unless `[coordinator] host_quota` says otherwise. */
export const DEFAULT_HOST_QUOTA = 10_000;

/** Bytes a host's stream holds at most unless `[coordinator] host_quota_mb` says otherwise. */
export const DEFAULT_HOST_QUOTA_BYTES = 64 * 1024 * 1024;

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

/** What an {@link Aggregator} needs; the optional ones default to the shipped configuration's values. */
export interface AggregatorOptions {
  /** A connection for this aggregator alone: it blocks in XREADGROUP. */
  readonly redis: Redis;
  /** A second connection, for the counting script and claims while a read blocks. */
  readonly writer: Redis;
  readonly keys: ClusterKeys;
  /** This coordinator's name in the consumer group (`[coordinator] consumer`). */
  readonly consumer: string;
  /** The jails' policy; replaced on reload with {@link Aggregator.setPolicy}. */
  readonly policy: ClusterPolicy;
  readonly log: Logger;
  /** Stream entries (reports of up to 100 failures) per read, capped at 2000 (`[coordinator] batch`); default 1000. */
  readonly batch?: number;
  /** Pending entries idle this long (their coordinator died) are claimed (`claim_idle`); default 30 s. */
  readonly claimIdleMs?: number;
  /** Approximate cap of the decisions stream (`stream_maxlen`); default 100,000. */
  readonly decisionsMaxlen?: number;
  /** Milliseconds now; the coordinator passes Redis' clock so every decision uses one clock. */
  readonly clock?: () => number;
  /** How long bans stay in each address' history (`dbpurgeage`); default the scripts' own (1 day). */
  readonly historyRetentionMs?: number;
  /** After a call that banned, wait briefly (200 ms) for one replica to have it (Sentinel deployments), default false. */
  readonly waitForReplica?: boolean;
  /** Reports one host's stream holds at most; its oldest are dropped past it (`host_quota`). */
  readonly hostQuota?: number;
  /** Bytes one host's stream holds at most; likewise (`host_quota_mb`). */
  readonly hostQuotaBytes?: number;
  /** Signs the bans this coordinator decides; without it they go out unsigned. */
  readonly signer?: DecisionSigner;
}

/**
 * Reads failures from the stream through the coordinators' consumer group and counts them with
 * the recordFailures script. Several coordinators share the stream; each entry goes to one of them,
 * and an entry is acknowledged in the same atomic step that counts it.
 */
export class Aggregator {
  private running = false;
  private loop: Promise<void> | undefined;
  /** Signing and publishing of parked bans, in order, behind counting. */
  private publishing: Promise<void> = Promise.resolve();
  private readonly warnedJails = new Set<string>();
  private readonly batch: number;
  /** Counters for logs and tests. */
  readonly stats = { read: 0, counted: 0, malformed: 0, unknownJail: 0, ignored: 0, bans: 0, fleetMember: 0, overQuota: 0 };
  private readonly streams = new Map<string, HostStream>();
  /** Streams that had entries in the last read: the per-stream COUNT is the batch shared among them. */
  private busyStreams = 1;
  private readonly warnedIgnored = new Map<string, number>();
  /** Anyone who can write the stream can write junk at full speed: its warnings are rate-limited. */
  private readonly warner: RateLimitedWarner;
  /** Notifications' matched lines and metrics (coordinator/operations.ts). */
  observer: CountObserver | undefined;

  private readonly redis: Redis;
  private readonly writer: Redis;
  private readonly keys: ClusterKeys;
  private readonly consumer: string;
  private policy: ClusterPolicy;
  private readonly log: Logger;
  private readonly claimIdleMs: number;
  private readonly clock: () => number;
  private readonly waitForReplica: boolean;
  private readonly hostQuota: number;
  private readonly hostQuotaBytes: number;

  /** @param o connections, identity, policy and limits; see {@link AggregatorOptions} */
  constructor(o: AggregatorOptions) {
    this.redis = o.redis;
    this.writer = o.writer;
    this.keys = o.keys;
    this.consumer = o.consumer;
    this.policy = o.policy;
    this.log = o.log;
    this.claimIdleMs = o.claimIdleMs ?? 30_000;
    this.clock = o.clock ?? now;
    this.waitForReplica = o.waitForReplica ?? false;
    this.hostQuota = o.hostQuota ?? DEFAULT_HOST_QUOTA;
    this.hostQuotaBytes = o.hostQuotaBytes ?? DEFAULT_HOST_QUOTA_BYTES;
    this.batch = Math.min(o.batch ?? 1000, MAX_BATCH);
    this.warner = new RateLimitedWarner(o.log);
    this.scripts = new ClusterScripts(o.writer, o.keys, o.decisionsMaxlen ?? 100_000, o.historyRetentionMs, o.signer);
  }

  private readonly scripts: ClusterScripts;

  /** Replace the policy (reload); the next batch is counted by the new one. */
  setPolicy(policy: ClusterPolicy): void {
    this.policy = policy;
    this.warnedJails.clear();
  }

  /**
   * Follow these hosts' failure streams from now on (the registry, refreshed by the caller):
   * the group is created on each new stream from its start, so a backlog is processed, and this
   * consumer first re-reads its own pending entries there. A host no longer listed is not read.
   */
  async setHosts(hosts: readonly string[]): Promise<void> {
    const wanted = new Set(hosts);
    for (const [host] of this.streams) if (!wanted.has(host)) this.streams.delete(host);
    const added = hosts.filter((h) => !this.streams.has(h));
    if (added.length === 0) return;
    await this.createGroups(added);
    for (const host of added) this.streams.set(host, { host, key: this.keys.host(host).failures, cursor: '0' });
  }

  /** The hosts whose streams are read. */
  get hosts(): string[] {
    return [...this.streams.keys()];
  }

  private async createGroups(hosts: readonly string[]): Promise<void> {
    const p = this.writer.pipeline();
    for (const h of hosts) p.xgroup('CREATE', this.keys.host(h).failures, COORDINATOR_GROUP, '0', 'MKSTREAM');
    for (const [err] of (await p.exec()) ?? []) {
      if (err && !String(err.message).includes('BUSYGROUP')) throw err;
    }
  }

  /** Start reading. */
  async start(): Promise<void> {
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

  /**
   * New entries of every followed stream in one blocking XREADGROUP (it takes any number of
   * streams). COUNT applies per stream, which is what keeps hosts apart: a host flooding its
   * stream gets the same share of a read as any other busy host. The reply stays bounded: the
   * batch is shared among the streams busy in the last read, and no read asks for more than
   * READ_ENTRIES_FACTOR batches over all streams (a backlog in every stream at once).
   */
  private async readNew(): Promise<StreamEntry[]> {
    const live = [...this.streams.values()].filter((s) => s.cursor === '>');
    if (live.length === 0) {
      await new Promise((r) => setTimeout(r, 200));
      return [];
    }
    const count = this.perStream(Math.ceil(this.batch / this.busyStreams), live.length);
    const reply = (await this.redis.xreadgroup(
      'GROUP', COORDINATOR_GROUP, this.consumer, 'COUNT', count, 'BLOCK', 1000, 'STREAMS', ...live.map((s) => s.key), ...live.map(() => '>'),
    )) as StreamReply;
    const entries = this.flatten(reply);
    this.busyStreams = Math.max(1, reply?.length ?? 0);
    return entries;
  }

  /** This consumer's own pending entries (left by its previous run) of streams just followed. */
  private async readPending(): Promise<StreamEntry[]> {
    const scan = [...this.streams.values()].filter((s) => s.cursor !== '>');
    const reply = (await this.redis.xreadgroup(
      'GROUP', COORDINATOR_GROUP, this.consumer, 'COUNT', this.perStream(this.batch, scan.length), 'STREAMS', ...scan.map((s) => s.key), ...scan.map((s) => s.cursor),
    )) as StreamReply;
    const byKey = new Map((reply ?? []).map(([key, list]) => [key, list]));
    for (const s of scan) {
      const list = byKey.get(s.key) ?? [];
      s.cursor = list.length === 0 ? '>' : list[list.length - 1]![0];
    }
    return this.flatten(reply);
  }

  /** Entries per stream for a read of `streams` streams: `wanted`, within the bounds above. */
  private perStream(wanted: number, streams: number): number {
    return Math.max(MIN_PER_STREAM, Math.min(wanted, Math.ceil((READ_ENTRIES_FACTOR * this.batch) / Math.max(1, streams))));
  }

  private flatten(reply: StreamReply): StreamEntry[] {
    const out: StreamEntry[] = [];
    for (const [key, list] of reply ?? []) {
      const host = hostOfKey(this.keys, key);
      if (!host) continue;
      for (const [id, fields] of list) if (fields) out.push({ stream: key, host, id, fields });
    }
    return out;
  }

  private async run(): Promise<void> {
    let lastClaim = 0;
    let lastTrim = now();
    // Once every stream is past its own pending entries, the next read is already on its way
    // while a batch is being counted (on the other connection): Redis never waits for this process
    // to decode, and this process never waits for a round trip to get its next batch.
    let ahead: Promise<StreamEntry[]> | undefined;
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
          await this.trimCounted().catch((err: Error) => this.log.warn({ err: err.message }, 'trimming counted reports from the streams failed; retrying in a second'));
        }
        let entries: StreamEntry[];
        if (ahead) {
          entries = await ahead;
          ahead = undefined;
        } else if ([...this.streams.values()].some((s) => s.cursor !== '>')) {
          // Re-reading pending entries by position: the previous batch must be settled first.
          await counting;
          entries = await this.readPending();
        } else {
          entries = await this.readNew();
        }
        if (this.running && [...this.streams.values()].every((s) => s.cursor === '>')) ahead = this.readNew();
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
        const message = (err as Error).message;
        // A stream (and its group) deleted under us, e.g. a host forgotten: make the groups again.
        if (message.includes('NOGROUP')) await this.createGroups(this.hosts).catch(() => undefined);
        this.log.error({ err: message }, 'reading failures failed; retrying');
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    // Entries a last read-ahead took stay pending and are claimed by another coordinator, or
    // re-read by this consumer name when it starts again.
    await ahead?.catch(() => undefined);
    await counting;
    await this.publishing;
  }

  /** Take over entries another coordinator read but never acknowledged (it crashed). */
  private async claimAbandoned(): Promise<void> {
    for (const s of [...this.streams.values()]) {
      let start = '0-0';
      for (let rounds = 0; rounds < 100; rounds++) {
        const [next, entries] = (await this.writer.xautoclaim(
          s.key, COORDINATOR_GROUP, this.consumer, this.claimIdleMs, start, 'COUNT', this.batch,
        )) as [string, Array<[string, string[]] | null>];
        const live = entries.filter((e): e is [string, string[]] => e !== null && Array.isArray(e[1]));
        if (live.length > 0) {
          this.log.warn({ host: s.host, count: live.length }, 'claimed failures abandoned by another coordinator');
          await this.process(live.map(([id, fields]) => ({ stream: s.key, host: s.host, id, fields })));
        }
        if (next === '0-0') break;
        start = next;
      }
    }
  }

  /**
   * Drop the reports every coordinator is done with, so that each stream holds the backlog and
   * not a history of what was counted (MAXLEN alone kept the newest `stream_maxlen` entries,
   * counted or not: hundreds of MB under a flood). Entries are delivered in order, so everything
   * before the oldest pending entry (or, with none pending, up to the last delivered one) was
   * acknowledged. `~` lets Redis drop whole nodes only, which is cheap.
   *
   * Then each host's quota: a stream longer than `hostQuota` reports loses its oldest ones. Only
   * coordinators trim (agents may not), and a host that reports faster than the cluster counts
   * loses its own reports, never another host's, while Redis' memory stays bounded.
   */
  private async trimCounted(): Promise<void> {
    const streams = [...this.streams.values()];
    if (streams.length === 0) return;
    const summary = this.writer.pipeline();
    for (const s of streams) summary.xpending(s.key, COORDINATOR_GROUP);
    const pending = (await summary.exec()) ?? [];
    const floors = new Map<HostStream, string>();
    const idle: HostStream[] = [];
    streams.forEach((s, i) => {
      const [err, reply] = pending[i] ?? [new Error('no reply'), null];
      if (err) return;
      const [count, oldest] = reply as [number, string | null];
      if (Number(count) > 0 && oldest) floors.set(s, oldest);
      else idle.push(s);
    });
    if (idle.length > 0) {
      const info = this.writer.pipeline();
      for (const s of idle) info.xinfo('GROUPS', s.key);
      const replies = (await info.exec()) ?? [];
      idle.forEach((s, i) => {
        const [err, groups] = replies[i] ?? [new Error('no reply'), null];
        if (err) return;
        const group = (groups as unknown[][]).find((g) => g[g.indexOf('name') + 1] === COORDINATOR_GROUP);
        if (group) floors.set(s, String(group[group.indexOf('last-delivered-id') + 1]));
      });
    }
    const trim = this.writer.pipeline();
    for (const s of streams) {
      const floor = floors.get(s);
      if (floor && floor !== '0-0') trim.xtrim(s.key, 'MINID', '~', floor);
    }
    await trim.exec();
    // The quota in bytes as well as in reports: a report may be up to the server's
    // proto-max-bulk-len, so a count alone does not bound memory. MEMORY USAGE samples a few
    // entries (cheap); an over-quota stream is cut, exactly, to the share of it that fits.
    const measure = this.writer.pipeline();
    for (const s of streams) {
      measure.xlen(s.key);
      measure.memory('USAGE', s.key, 'SAMPLES', 16);
    }
    const sizes = (await measure.exec()) ?? [];
    const cut = this.writer.pipeline();
    const cutting: Array<{ s: HostStream; len: number; keep: number }> = [];
    streams.forEach((s, i) => {
      const len = Number(sizes[2 * i]?.[1] ?? 0);
      const bytes = Number(sizes[2 * i + 1]?.[1] ?? 0);
      let keep = Math.min(len, this.hostQuota);
      if (bytes > this.hostQuotaBytes && len > 0) keep = Math.min(keep, Math.floor((len * this.hostQuotaBytes) / bytes));
      if (keep < len) {
        cut.xtrim(s.key, 'MAXLEN', keep);
        cutting.push({ s, len, keep });
      }
    });
    if (cutting.length === 0) return;
    const results = (await cut.exec()) ?? [];
    cutting.forEach(({ s, keep }, i) => {
      const [err, dropped] = results[i] ?? [null, 0];
      if (err || Number(dropped) === 0) return;
      this.stats.overQuota += Number(dropped);
      this.log.warn({ host: s.host, dropped: Number(dropped), kept: keep, quota: this.hostQuota, quotaBytes: this.hostQuotaBytes },
        "host's failure stream over its quota; its oldest uncounted reports dropped");
    });
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
  async process(entries: StreamEntry[]): Promise<void> {
    for (const chunk of await this.prepare(entries)) await this.count(chunk);
    await this.publishing;
  }

  /**
   * Decode and filter a batch (this process' share of the work), cut into script calls of at most
   * MAX_FAILURES_PER_CALL failures at entry boundaries.
   */
  private async prepare(entries: StreamEntry[]): Promise<Prepared[]> {
    const calls: Prepared[] = [];
    let counted: CountedFailure[] = [];
    let acks = new Map<string, string[]>();
    let jails = new Set<string>();
    const ack = (stream: string, id: string) => {
      const list = acks.get(stream);
      if (list) list.push(id);
      else acks.set(stream, [id]);
    };
    const cut = () => {
      if (acks.size > 0) calls.push({ policies: this.scriptPolicies(jails), counted, acks: [...acks] });
      counted = [];
      acks = new Map();
      jails = new Set();
    };
    const decoded = entries.map((e) => ({ ...e, d: decodeReport(e.fields, e.host) }));
    await this.prefetchIgnoreCommands(decoded.flatMap(({ d }) => (d.ok ? d.value.failures : [])));
    for (const { stream, host, id, d } of decoded) {
      this.stats.read++;
      if (!d.ok) {
        this.stats.malformed++;
        this.warner.warn('malformed report', { id, host, reason: d.reason }, 'malformed failure report skipped');
        ack(stream, id);
        continue;
      }
      const report = d.value;
      for (const r of report.rejected) {
        this.stats.malformed++;
        this.warner.warn('malformed failure', { id, index: r.index, host: report.host, reason: r.reason }, 'malformed failure skipped');
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
      ack(stream, id);
    }
    cut();
    return calls;
  }

  /** Run the batch's ignorecommands at once (with a cap), not one failure after another. */
  private async prefetchIgnoreCommands(failures: ReadonlyArray<{ jail: string; addr: string }>): Promise<void> {
    const byJail = new Map<string, string[]>();
    for (const f of failures) {
      if (!this.policy.jails.get(f.jail)?.whitelist.hasCommand) continue;
      let list = byJail.get(f.jail);
      if (!list) byJail.set(f.jail, (list = []));
      list.push(f.addr);
    }
    await Promise.all([...byJail].map(([jail, addrs]) => this.policy.jails.get(jail)!.whitelist.prefetch(addrs)));
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
    if (result.parkedUnder) {
      // With signing on, the script parked its bans unsigned (Lua cannot sign): sign and publish
      // them now. If this fails or this process dies here, a coordinator's sweep publishes them.
      // Signing does not hold up counting: the next call is sent first (setImmediate), so Redis
      // runs it while this process signs.
      const ids = result.bans.map((b) => banId(b.jail, b.addr));
      const parkedUnder = result.parkedUnder;
      this.publishing = this.publishing
        .then(() => new Promise((resolve) => setImmediate(resolve)))
        .then(() => this.scripts.publishParked({ ids, parkedUnder }))
        .then(() => undefined, (err: Error) => this.log.warn({ err: err.message, bans: ids.length }, 'publishing signed bans failed; the sweep retries'));
    }
    this.stats.counted += counted.length;
    const members = result.results.filter((r) => r === COUNT_RESULT.fleetMember).length;
    if (members > 0) {
      this.stats.fleetMember += members;
      this.log.info({ failures: members }, 'failures of fleet members counted but not banned (ignoreself)');
    }
    for (const ban of result.bans) {
      this.stats.bans++;
      this.log.info({ event: 'ban decided', jail: ban.jail, addr: ban.addr, until: ban.until === -1 ? 'permanent' : new Date(ban.until).toISOString() }, `[${ban.jail}] Ban ${ban.addr} (cluster decision)`);
    }
  }
}
