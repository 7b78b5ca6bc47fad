import type { Redis } from 'ioredis';
import type { ClusterKeys } from '../protocol/keys.js';
import { COORDINATOR_GROUP } from '../protocol/keys.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { ALIVE_MS, LIMITS, boundedUntil, decodeBan, encodeBan, encodeDecision, type BanRecord, type Decision } from '../protocol/messages.js';
import { recordAsDecision, type Signature } from '../protocol/signing.js';
import { commandName, defineScripts } from './loader.js';

/** A failure handed to the counting script; its time is on the coordinators' (Redis') clock. */
export interface CountedFailure {
  /** The agent's event id: what makes a failure sent twice count once. */
  readonly eid: string;
  readonly jail: string;
  readonly addr: string;
  readonly time: number;
  readonly host: string;
  /** The matched log line, for the notifications' record (coordinator/notify/matches.ts); not sent to the script. */
  readonly line?: string;
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
  /** With signing on: the parking hash field this call's bans wait under (give it to publishParked). */
  readonly parkedUnder?: string;
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
 * Signs a decision for this cluster (common/protocol/signing.ts); absent when signing is off.
 * `batch`, when present, signs many at once under one signature (the counting path's bans).
 */
export type DecisionSigner = ((d: Decision) => Signature) & { batch?: (ds: readonly Decision[]) => Signature[] };

/** The XADD fields of a decision without the version, which the scripts add themselves. */
function decisionFields(d: Decision): string[] {
  return encodeDecision(d).slice(2);
}

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
   * @param signer signs every decision these calls publish; without one they go out unsigned
   */
  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly decisionsMaxlen = 100_000,
    private readonly historyRetentionMs = DEFAULT_HISTORY_RETENTION_MS,
    private readonly signer?: DecisionSigner,
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
    // Also the call's id: the field its parked bans are noted under is `<now>:<callId>`.
    const callId = Math.floor(Math.random() * 2 ** 31);
    const args: Array<string | number> = [
      k.registry, k.bans, k.banExpiry, k.decisions, k.stats,
      COORDINATOR_GROUP, now, k.failureWindowPrefix, this.decisionsMaxlen, PROTOCOL_VERSION, k.historyPrefix,
      this.historyRetentionMs, k.windowHostsPrefix, callId, k.hostPrefix, ALIVE_MS,
      LIMITS.heartbeatAddrs, LIMITS.heartbeatBytes, this.signer ? k.unsignedBans : '', k.failingPrefix, policies.length,
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
    return { results, bans, ...(this.signer && bans.length > 0 ? { parkedUnder: `${Math.trunc(now)}:${callId}` } : {}) };
  }

  /**
   * Sign and publish the bans recordFailures parked for their signature (see
   * includes/record-ban.lua): those of a call just made (`ids`, parked under `parkedUnder`), or,
   * with `olderThan`, those any coordinator left parked before that time (it died between
   * counting and publishing).
   * @returns the number of bans published
   */
  async publishParked(select: { ids: readonly string[]; parkedUnder: string } | { olderThan: number }): Promise<number> {
    if (!this.signer) return 0;
    const k = this.keys;
    let ids: string[];
    let fields: string[];
    if ('ids' in select) {
      ids = [...select.ids];
      fields = [select.parkedUnder];
    } else {
      const [, flat] = (await this.redis.hscan(k.unsignedBans, '0', 'COUNT', 100)) as [string, string[]];
      ids = [];
      fields = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        // Field `<time>:<call>`; a field that is not one (written by someone else) is dropped too.
        if (Number(flat[i]!.split(':')[0]) >= select.olderThan) continue;
        fields.push(flat[i]!);
        for (const id of flat[i + 1]!.split(',')) if (id) ids.push(id);
      }
      ids = [...new Set(ids)].slice(0, 10_000);
    }
    if (ids.length === 0 && fields.length === 0) return 0;
    // The records as they are now; publish-3.lua replaces each only if it is still this text.
    const current = ids.length > 0 ? await this.redis.hmget(k.bans, ...ids) : [];
    const records = ids.map((id, i) => [id, current[i] ?? null] as const);
    const args: Array<string | number> = [k.bans, k.decisions, k.unsignedBans, this.decisionsMaxlen, PROTOCOL_VERSION, fields.length, ...fields];
    const parked: Array<{ id: string; json: string; record: BanRecord; decision: Decision }> = [];
    for (const [id, json] of records) {
      const r = json ? decodeBan(json) : undefined;
      if (!r?.ok || r.value.sig) {
        // Lifted meanwhile, damaged, or replaced by a signed ban: nothing to publish; the script unparks it.
        args.push(id, '', '', 0);
        continue;
      }
      parked.push({ id, json: json!, record: r.value, decision: recordAsDecision(r.value) });
    }
    const signer = this.signer;
    const signatures = signer.batch ? signer.batch(parked.map((p) => p.decision)) : parked.map((p) => signer(p.decision));
    parked.forEach(({ id, json, record, decision }, i) => {
      const s = signatures[i]!;
      const fields = decisionFields({ ...decision, ...s });
      args.push(id, json, encodeBan({ ...record, ...s }), fields.length, ...fields);
    });
    const out = (await this.call('publish')(...args)) as string[];
    return out.filter(Boolean).length;
  }

  /** @returns isNew: false when an existing ban was replaced; decisionId: the ban's entry in the decisions stream */
  async ban(b: { jail: string; addr: string; now: number; until: number; reason: string; origin: string }): Promise<{ isNew: boolean; decisionId: string }> {
    const k = this.keys;
    const until = boundedUntil(b.until, b.now);
    const s = this.signer?.({ op: 'ban', jail: b.jail, addr: b.addr, since: b.now, until, reason: b.reason, origin: b.origin });
    const [isNew, decisionId] = (await this.call('ban')(k.bans, k.banExpiry, k.decisions, k.stats,
      b.jail, b.addr, b.now, until, b.reason, b.origin, this.decisionsMaxlen, PROTOCOL_VERSION,
      k.failureWindowPrefix, k.historyPrefix, this.historyRetentionMs, s?.kid ?? '', s?.sig ?? '')) as [number, string];
    return { isNew: Number(isNew) === 1, decisionId };
  }

  /**
   * @param targets [jail, addr] pairs; jail '*' lifts the address in every jail
   * @param at when the unban is decided (cluster clock): agents lift bans that started no later
   * @returns the bans lifted in Redis, and the id of the last unban decision (published for every
   *   target, lifted here or not: agents may hold a ban whose record is gone)
   */
  async unban(origin: string, targets: ReadonlyArray<readonly [string, string]>, at: number = Date.now()): Promise<{ lifted: Array<{ jail: string; addr: string }>; decisionId: string }> {
    const k = this.keys;
    const args: Array<string | number> = [];
    for (const [jail, addr] of targets) {
      const s = this.signer?.({ op: 'unban', jail, addr, origin, at });
      args.push(jail, addr, s?.kid ?? '', s?.sig ?? '');
    }
    const out = (await this.call('unban')(k.bans, k.banExpiry, k.decisions,
      origin, this.decisionsMaxlen, PROTOCOL_VERSION, at, k.failureWindowPrefix, ...args)) as string[];
    const lifted: Array<{ jail: string; addr: string }> = [];
    for (let i = 1; i + 1 < out.length; i += 2) lifted.push({ jail: out[i]!, addr: out[i + 1]! });
    return { lifted, decisionId: out[0] ?? '' };
  }

  /**
   * @param at when the flush is decided (cluster clock): agents lift bans that started no later
   * @returns the number of bans lifted (jail '*' for all) and the id of the flush decision
   */
  async flush(jail: string, origin: string, at: number = Date.now()): Promise<{ count: number; decisionId: string }> {
    const k = this.keys;
    const s = this.signer?.({ op: 'flush', jail, origin, at });
    const [count, decisionId] = (await this.call('flush')(k.bans, k.banExpiry, k.decisions,
      jail, origin, this.decisionsMaxlen, PROTOCOL_VERSION, at, s?.kid ?? '', s?.sig ?? '', k.failureWindowPrefix)) as [number, string];
    return { count: Number(count), decisionId };
  }

  /** @returns `jail|addr` ids of the bans expired by this call (at most `limit`) */
  async expire(now: number, limit = 1000): Promise<string[]> {
    const k = this.keys;
    const due = (await this.call('expire')(k.bans, k.banExpiry, k.decisions, now, limit, this.decisionsMaxlen, PROTOCOL_VERSION,
      this.signer ? '0' : '1')) as string[];
    if (this.signer && due.length > 0) {
      const p = this.redis.pipeline();
      for (const id of due) {
        const sep = id.indexOf('|');
        const d: Decision = { op: 'unban', jail: id.slice(0, sep), addr: id.slice(sep + 1), origin: 'expired', at: now };
        p.xadd(k.decisions, 'MAXLEN', '~', this.decisionsMaxlen, '*', ...encodeDecision({ ...d, ...this.signer(d) }));
      }
      await p.exec();
    }
    return due;
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
