import type { Redis } from 'ioredis';
import type { ClusterKeys } from '../protocol/keys.js';
import { COORDINATOR_GROUP } from '../protocol/keys.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { ALIVE_MS, LIMITS, decodeBan, type BanRecord } from '../protocol/messages.js';
import { commandName, defineScripts } from './loader.js';

/** A failure handed to the counting script; its time is on the coordinators' (Redis') clock. */
export interface CountedFailure {
  /** The agent's event id: what makes a failure sent twice count once. */
  readonly eid: string;
  readonly jail: string;
  readonly addr: string;
  readonly time: number;
  readonly host: string;
}

/** A jail's counting policy as the script needs it, all times in ms. */
export interface ScriptPolicy {
  readonly jail: string;
  readonly findtimeMs: number;
  readonly maxretry: number;
  readonly minhosts: number;
  readonly overalljails: boolean;
  readonly rndtimeMs: number;
  /** Cluster recidive: counts the bans of other jails. */
  readonly countsBans: boolean;
  /**
   * Never ban an address a live host claims in its heartbeat; checked by the script at the moment
   * it would ban, so a host is protected from its first heartbeat on.
   */
  readonly ignoreself?: boolean;
  /** Ban duration by number of earlier bans (ms, -1 permanent); see banTimeTable. */
  readonly durationsMs: readonly number[];
}

/** Outcome codes of recordFailures, per failure (a positive number is the count in the window). */
export const COUNT_RESULT = { alreadyBanned: -1, tooOld: -2, duplicate: -3, unknownJail: -4, fleetMember: -5 } as const;

/** Stream entries one counting call acknowledges: a host's failure stream and ids in it. */
export type StreamAcks = ReadonlyArray<readonly [stream: string, ids: readonly string[]]>;

/** fail2ban's default dbpurgeage: ban history is kept one day. */
export const DEFAULT_HISTORY_RETENTION_MS = 86_400_000;

export interface RecordResult {
  readonly results: number[];
  readonly bans: Array<{ jail: string; addr: string; until: number }>;
}

export interface Snapshot {
  readonly lastId: string;
  readonly bans: BanRecord[];
  /** Fields of the bans hash that did not decode (logged by the caller, never applied). */
  readonly damaged: string[];
}

/** One failure in a window, as recordFailures keeps it. */
export interface WindowEntry {
  readonly time: number;
  readonly eid: string;
  readonly host: string;
}

/**
 * The failures counted for (jail, addr) and not yet dropped: below maxretry a window may still
 * hold failures older than findtime (recordFailures trims only when the count could ban).
 */
export async function readWindow(redis: Redis, keys: ClusterKeys, jail: string, addr: string): Promise<WindowEntry[]> {
  const packed = await redis.hget(keys.failureWindows(jail), addr);
  if (!packed) return [];
  return packed.split(';').filter(Boolean).map((entry) => {
    const [time = '', eid = '', host = ''] = entry.split(',');
    return { time: Number(time), eid, host };
  });
}

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>;

/**
 * Typed calls of the cluster's Lua scripts. Every script runs atomically in Redis; `now` is always
 * passed in so tests can pin time.
 */
export class ClusterScripts {
  /**
   * @param redis client (scripts are defined on it)
   * @param keys the cluster's key names
   * @param decisionsMaxlen approximate cap of the decisions stream
   * @param historyRetentionMs how long ban history is kept (fail2ban's dbpurgeage)
   */
  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly decisionsMaxlen = 100_000,
    private readonly historyRetentionMs = DEFAULT_HISTORY_RETENTION_MS,
  ) {
    defineScripts(redis);
  }

  private call(name: string): ScriptFn {
    return (this.redis as unknown as Record<string, ScriptFn>)[commandName(name)]!.bind(this.redis);
  }

  /**
   * Count failures, ban by the jails' policies, and XACK the stream entries they came in, in one
   * atomic step.
   * @param policies the policies of the failures' jails and of every ban-counting (recidive) jail
   * @param acks the stream entries (reports) this call settles, by host stream: those of the
   *   failures and those with nothing to count (malformed, whitelisted, unknown jail)
   */
  async recordFailures(now: number, policies: readonly ScriptPolicy[], failures: readonly CountedFailure[], acks: StreamAcks = []): Promise<RecordResult> {
    const k = this.keys;
    const args: Array<string | number> = [
      k.registry, k.bans, k.banExpiry, k.decisions, k.stats, k.failingPrefix,
      COORDINATOR_GROUP, now, k.failureWindowPrefix, this.decisionsMaxlen, PROTOCOL_VERSION, k.historyPrefix,
      this.historyRetentionMs, k.windowHostsPrefix, Math.floor(Math.random() * 2 ** 31), k.hostPrefix, ALIVE_MS,
      LIMITS.heartbeatAddrs, LIMITS.heartbeatBytes, policies.length,
    ];
    for (const p of policies) {
      args.push(p.jail, p.findtimeMs, p.maxretry, p.minhosts, p.overalljails ? 1 : 0, p.rndtimeMs, p.countsBans ? 1 : 0,
        p.ignoreself ? 1 : 0, p.durationsMs.length, ...p.durationsMs);
    }
    // Grouped by jail and address, each window entry pre-formatted: Redis runs one script at a
    // time, so whatever needs no state is done here rather than in Lua (see the script's header).
    const byJail = new Map<string, Map<string, number[]>>();
    failures.forEach((f, i) => {
      let addrs = byJail.get(f.jail);
      if (!addrs) byJail.set(f.jail, (addrs = new Map()));
      const list = addrs.get(f.addr);
      if (list) list.push(i);
      else addrs.set(f.addr, [i]);
    });
    const order: number[] = [];
    args.push(byJail.size);
    for (const [jail, addrs] of byJail) {
      args.push(jail, addrs.size);
      for (const [addr, list] of addrs) {
        args.push(addr, list.length);
        for (const i of list) {
          const f = failures[i]!;
          // None of the fields can hold ',' or ';' (validated by decodeReport).
          args.push(Math.round(f.time), `,${f.eid},${f.host};`);
          order.push(i);
        }
      }
    }
    for (const [stream, ids] of acks) if (ids.length > 0) args.push(stream, ids.length, ...ids);
    const out = (await this.call('recordFailures')(...args)) as Array<string | number>;
    const results = new Array<number>(failures.length);
    order.forEach((i, k) => { results[i] = Number(out[k]); });
    const bans: RecordResult['bans'] = [];
    for (let i = failures.length; i + 2 < out.length; i += 3) {
      bans.push({ jail: String(out[i]), addr: String(out[i + 1]), until: Number(out[i + 2]) });
    }
    return { results, bans };
  }

  /** @returns isNew: false when an existing ban was replaced; decisionId: the ban's entry in the decisions stream */
  async ban(b: { jail: string; addr: string; now: number; until: number; reason: string; origin: string }): Promise<{ isNew: boolean; decisionId: string }> {
    const k = this.keys;
    const [isNew, decisionId] = (await this.call('ban')(k.bans, k.banExpiry, k.decisions, k.stats,
      b.jail, b.addr, b.now, b.until, b.reason, b.origin, this.decisionsMaxlen, PROTOCOL_VERSION,
      k.failureWindowPrefix, k.historyPrefix, this.historyRetentionMs)) as [number, string];
    return { isNew: Number(isNew) === 1, decisionId };
  }

  /**
   * @param targets [jail, addr] pairs; jail '*' lifts the address in every jail
   * @returns the bans lifted, and the id of the last unban decision ('' when nothing was banned)
   */
  async unban(origin: string, targets: ReadonlyArray<readonly [string, string]>): Promise<{ lifted: Array<{ jail: string; addr: string }>; decisionId: string }> {
    const k = this.keys;
    const out = (await this.call('unban')(k.bans, k.banExpiry, k.decisions, k.failureWindowPrefix,
      origin, this.decisionsMaxlen, PROTOCOL_VERSION, ...targets.flat())) as string[];
    const lifted: Array<{ jail: string; addr: string }> = [];
    for (let i = 1; i + 1 < out.length; i += 2) lifted.push({ jail: out[i]!, addr: out[i + 1]! });
    return { lifted, decisionId: out[0] ?? '' };
  }

  /** @returns the number of bans lifted (jail '*' for all) and the id of the flush decision */
  async flush(jail: string, origin: string): Promise<{ count: number; decisionId: string }> {
    const k = this.keys;
    const [count, decisionId] = (await this.call('flush')(k.bans, k.banExpiry, k.decisions, k.failureWindowPrefix,
      jail, origin, this.decisionsMaxlen, PROTOCOL_VERSION)) as [number, string];
    return { count: Number(count), decisionId };
  }

  /** @returns `jail|addr` ids of the bans expired by this call (at most `limit`) */
  async expire(now: number, limit = 1000): Promise<string[]> {
    const k = this.keys;
    return (await this.call('expire')(k.bans, k.banExpiry, k.decisions, now, limit, this.decisionsMaxlen, PROTOCOL_VERSION)) as string[];
  }

  /**
   * Active bans and the matching decisions stream position, read atomically: a MULTI of two reads,
   * which an agent's read-only access to both keys allows (it may run no script): the agent
   * applies the bans, then reads decisions after that id, and so misses none.
   */
  async snapshot(): Promise<Snapshot> {
    const replies = await this.redis.multi().xrevrange(this.keys.decisions, '+', '-', 'COUNT', 1).hgetall(this.keys.bans).exec();
    if (!replies) throw new Error('snapshot transaction was aborted');
    const [[lastErr, last], [bansErr, all]] = replies as [[Error | null, Array<[string, string[]]>], [Error | null, Record<string, string>]];
    if (lastErr || bansErr) throw lastErr ?? bansErr;
    const lastId = last[0]?.[0] ?? '0-0';
    const bans: BanRecord[] = [];
    const damaged: string[] = [];
    for (const [field, json] of Object.entries(all)) {
      const d = decodeBan(json);
      if (d.ok) bans.push(d.value);
      else damaged.push(`${field}: ${d.reason}`);
    }
    return { lastId, bans, damaged };
  }
}
