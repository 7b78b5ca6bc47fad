import { isCanonicalAddress, parseBanTarget } from '../address.js';
import { PROOF_RE } from './signing.js';
import { PROTOCOL_VERSION } from './version.js';

/**
 * Encoding of every message that crosses Redis. Stream entries are flat field/value lists; each
 * carries `v` (protocol version). Decoders never throw: anything written by anyone can reach them,
 * so they return a reason instead, and the caller logs and skips the entry.
 */

export const LIMITS = {
  /** Matched log text kept with a failure; longer lines are cut, never rejected. */
  lineChars: 1024,
  /** Whole decision entry; anything bigger was not written by fleetban. */
  entryBytes: 8192,
  /** Failures in one report at most. */
  reportFailures: 100,
  /** What an agent aims at per report, so that a report never nears {@link LIMITS.reportBytes}. */
  reportTargetBytes: 64 * 1024,
  /** Whole report entry; anything bigger was not written by fleetban. */
  reportBytes: 256 * 1024,
  nameChars: 64,
  hostChars: 253,
  reasonChars: 256,
  /** Addresses one heartbeat may claim for its host (ignoreself exempts them from bans). */
  heartbeatAddrs: 64,
  /** Jails one heartbeat may list. */
  heartbeatJails: 256,
  /** Whole heartbeat or coordinator registration, as JSON. */
  heartbeatBytes: 16 * 1024,
  /** Short free-text fields (version, backend, consumer name). */
  labelChars: 128,
} as const;

/** Message on the control channel after hosts were registered: coordinators re-read the registry at once. */
export const HOSTS_CHANGED = 'hosts';

/** An agent or coordinator is alive when it reported within this long (three missed 5 s heartbeats). */
export const ALIVE_MS = 15_000;

/**
 * A heartbeat key lives this long after its last refresh: long enough for `fleetban hosts` to show
 * a dead host as dead for a day, short enough that what a removed or fake host wrote goes away.
 */
export const HEARTBEAT_TTL_MS = 86_400_000;

/** Times before this or after {@link MAX_TIME_MS} are not times fleetban wrote (2001 to 2286). */
const MIN_TIME_MS = 1_000_000_000_000;
const MAX_TIME_MS = 10_000_000_000_000;

const STREAM_ID_RE = /^\d{1,20}-\d{1,20}$/;

/** Jail names end up in Redis keys and firewall set names. */
export const JAIL_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
export const HOST_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$/;
export const EVENT_ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/** One failed login seen by an agent. */
export interface FailureEvent {
  jail: string;
  addr: string;
  /** Time of the failure in epoch ms on the reporting host's clock: the log line's own time when it has one. */
  time: number;
  /**
   * Event id chosen by the agent (`<agent incarnation>-<sequence>`): the same failure sent twice
   * (a pipeline resent after a lost reply, a spool replayed) is counted once, because the counting
   * script keys the window member by it, not by the stream entry id.
   */
  eid: string;
  /**
   * When the agent handed the failure to Redis, on the same host clock. `sent - time` is the
   * failure's age measured on one clock, which lets the coordinator place it on Redis' clock.
   */
  sent: number;
  host: string;
  line: string;
}

/**
 * A decision every agent applies. `kid` and `sig` are its signature (common/protocol/signing.ts);
 * an unban or a flush lifts only bans that started at or before its `at` (absent in decisions of
 * older releases: it then lifts whatever it names).
 */
export type Decision = (
  | { op: 'ban'; jail: string; addr: string; since: number; until: number; reason: string; origin: string }
  | { op: 'unban'; jail: string; addr: string; origin: string; at?: number }
  | { op: 'flush'; jail: string; origin: string; at?: number }
) & { kid?: string; sig?: string; proof?: string };

/**
 * Longest ban, 100 years: every backend accepts it (nft refuses timeouts over ~213,503 days, and
 * an element it refused used to wedge every later batch). Longer bans are cut to this by the
 * config, the CLI, the Lua scripts (escalation included) and the agent; -1 stays permanent.
 */
export const MAX_BAN_MS = 100 * 365 * 86_400_000;

/** @returns `until` cut to at most {@link MAX_BAN_MS} after `from` (FOREVER stays) */
export function boundedUntil(until: number, from: number): number {
  return until === FOREVER ? FOREVER : Math.min(until, from + MAX_BAN_MS);
}

/** Jail of bans made by hand without --jail; every agent enforces it on all ports. */
export const MANUAL_JAIL = 'manual';

/** Reason prefix of bans brought over by `fleetban import-fail2ban`: restored bans, not new ones (not mailed). */
export const IMPORTED_REASON = 'imported from fail2ban';

/** `until` value of a permanent ban. */
export const FOREVER = -1;

/** An active ban as stored in the bans hash. */
export interface BanRecord {
  jail: string;
  addr: string;
  since: number;
  /** Expiry in epoch ms, or FOREVER. */
  until: number;
  reason: string;
  /** Host whose failures led to the ban, or `cli:<user>` for a manual ban. */
  origin: string;
  /** Failures counted in the window when the ban was decided (0 for manual bans). */
  failures: number;
  /** Signature of the ban decision (same fields), when the ban was signed. */
  kid?: string;
  sig?: string;
  proof?: string;
}

/** An agent's heartbeat in the hosts hash. */
export interface Heartbeat {
  v: number;
  host: string;
  addrs: string[];
  version: string;
  backend: string;
  jails: string[];
  pid: number;
  startedAt: number;
  seenAt: number;
  bansApplied: number;
  /** Bans this host's firewall refused since start (its element cap was reached, or the kernel refused the element). */
  bansRefused?: number;
  /** Bans the host holds now. */
  bansHeld?: number;
  /** Id of the newest decision stream entry applied, `0-0` when none. */
  lastDecision: string;
  /** Decisions and snapshot entries refused since start: unsigned, bad signature, untrusted key. */
  decisionsRefused?: number;
  /** Signed bans this host's self-guard refused since start (own address, never_ban, too short a prefix). */
  guardRefused?: number;
}

type Fields = string[];

/** A failure as it travels inside a report: host and send time belong to the report. */
export type ReportedFailure = Omit<FailureEvent, 'host' | 'sent'>;

/**
 * Encode one report: up to {@link LIMITS.reportFailures} failures of one host in one stream entry.
 * One entry per failure cost Redis an XADD and a share of XREADGROUP for each (more than half of
 * the counting script's own time) and this process an ioredis command each; a report amortises
 * both over a whole batch. Failures are a JSON array of `[eid, jail, addr, time, line]`.
 * @param sent when the report goes out, on the host clock
 * @returns the flat field list for XADD
 */
export function encodeReport(host: string, sent: number, failures: readonly ReportedFailure[]): Fields {
  const rows = failures.map((f) => [f.eid, f.jail, f.addr, Math.round(f.time), f.line.length > LIMITS.lineChars ? f.line.slice(0, LIMITS.lineChars) : f.line]);
  return ['v', String(PROTOCOL_VERSION), 'host', host, 'sent', String(Math.round(sent)), 'failures', JSON.stringify(rows)];
}

/**
 * Split failures into reports that stay well inside the entry limits: at most
 * {@link LIMITS.reportFailures} failures and about {@link LIMITS.reportTargetBytes} of text each
 * (a line of control characters grows sixfold in JSON, so the count alone does not bound the size).
 * A report holds one host's failures (a spool written under an earlier host name is kept apart).
 */
export function splitIntoReports<T extends ReportedFailure & { readonly host: string }>(failures: readonly T[]): T[][] {
  const reports: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const f of failures) {
    const size = 96 + Math.min(f.line.length, LIMITS.lineChars) * 6;
    if (current.length > 0 && (current.length >= LIMITS.reportFailures || bytes + size > LIMITS.reportTargetBytes || f.host !== current[0]!.host)) {
      reports.push(current);
      current = [];
      bytes = 0;
    }
    current.push(f);
    bytes += size;
  }
  if (current.length > 0) reports.push(current);
  return reports;
}

/** A decoded report: the failures that passed validation, and why the others did not. */
export interface DecodedReport {
  readonly host: string;
  readonly sent: number;
  readonly failures: FailureEvent[];
  /** Failures of the report that were malformed (index in the report, reason); each is skipped alone. */
  readonly rejected: Array<{ index: number; reason: string }>;
}

/**
 * Decode a report. A damaged envelope (version, send time, not JSON, over the limits) rejects the
 * entry; a damaged failure inside a good envelope rejects only that failure.
 * @param fields flat list as returned by XREADGROUP
 * @param host the host whose stream the entry was read from: only that host's identity can write
 *   there, so this, not the entry's own `host` field, says who reported it
 */
export function decodeReport(fields: Fields, host: string): Decoded<DecodedReport> {
  const m = toMap(fields, LIMITS.reportBytes);
  if (!m.ok) return m;
  const f = m.value;
  const version = checkVersion(f);
  if (version) return { ok: false, reason: version };
  if (!HOST_NAME_RE.test(host)) return bad('host', host);
  const sent = Number(f.get('sent'));
  if (!Number.isSafeInteger(sent) || sent <= 0) return bad('sent', f.get('sent'));
  let rows: unknown;
  try {
    rows = JSON.parse(f.get('failures') ?? '');
  } catch {
    return bad('failures', f.get('failures'));
  }
  if (!Array.isArray(rows)) return bad('failures', f.get('failures'));
  if (rows.length > LIMITS.reportFailures) return { ok: false, reason: `report of ${rows.length} failures is over the ${LIMITS.reportFailures} limit` };
  const failures: FailureEvent[] = [];
  const rejected: DecodedReport['rejected'] = [];
  for (let index = 0; index < rows.length; index++) {
    const reason = checkReportedFailure(rows[index]);
    if (reason) rejected.push({ index, reason });
    else {
      const [eid, jail, addr, time, line] = rows[index] as [string, string, string, number, string];
      failures.push({ eid, jail, addr, time, sent, host, line });
    }
  }
  return { ok: true, value: { host, sent, failures, rejected } };
}

function checkReportedFailure(row: unknown): string | undefined {
  if (!Array.isArray(row) || row.length !== 5) return 'not a [eid, jail, addr, time, line] row';
  const [eid, jail, addr, time, line] = row as unknown[];
  if (typeof eid !== 'string' || !EVENT_ID_RE.test(eid)) return bad('eid', String(eid)).reason;
  if (typeof jail !== 'string' || !JAIL_NAME_RE.test(jail)) return bad('jail', String(jail)).reason;
  if (typeof addr !== 'string' || !isCanonicalAddress(addr)) return bad('addr', String(addr)).reason;
  if (typeof time !== 'number' || !Number.isSafeInteger(time) || time <= 0) return bad('time', String(time)).reason;
  if (typeof line !== 'string') return bad('line', String(line)).reason;
  return undefined;
}

/** @returns the flat field list for XADD of a decision */
export function encodeDecision(d: Decision): Fields {
  const base = ['v', String(PROTOCOL_VERSION), 'op', d.op, 'jail', d.jail, 'origin', d.origin];
  const signed = d.sig && d.kid ? ['kid', d.kid, 'sig', d.sig, ...(d.proof !== undefined ? ['proof', d.proof] : [])] : [];
  switch (d.op) {
    case 'ban':
      return [...base, 'addr', d.addr, 'since', String(d.since), 'until', String(d.until), 'reason', d.reason, ...signed];
    case 'unban':
      return [...base, 'addr', d.addr, ...(d.at !== undefined ? ['at', String(d.at)] : []), ...signed];
    case 'flush':
      return [...base, ...(d.at !== undefined ? ['at', String(d.at)] : []), ...signed];
  }
}

const KID_RE = /^[0-9a-f]{16}$/;
const SIG_RE = /^[A-Za-z0-9+/]{86}==$/;

/** The signature fields of an entry, when well formed (a damaged one is as good as none). */
function signatureOf(get: (k: string) => unknown): { kid?: string; sig?: string; proof?: string } {
  const kid = get('kid');
  const sig = get('sig');
  if (!(typeof kid === 'string' && typeof sig === 'string' && KID_RE.test(kid) && SIG_RE.test(sig))) return {};
  const proof = get('proof');
  if (proof === undefined || proof === null) return { kid, sig };
  // A damaged proof stays a proof (it then fails verification) rather than passing for a single signature.
  return { kid, sig, proof: typeof proof === 'string' && PROOF_RE.test(proof) ? proof : '!' };
}

/** @param fields flat list as returned by XREAD */
export function decodeDecision(fields: Fields): Decoded<Decision> {
  const m = toMap(fields);
  if (!m.ok) return m;
  const f = m.value;
  const version = checkVersion(f);
  if (version) return { ok: false, reason: version };
  const op = f.get('op');
  const jail = f.get('jail');
  // `*` is the jail of a flush, or an unban, that covers every jail.
  if (!jail || !(JAIL_NAME_RE.test(jail) || ((op === 'flush' || op === 'unban') && jail === '*'))) return bad('jail', jail);
  const origin = f.get('origin') ?? '';
  if (origin.length > LIMITS.hostChars) return bad('origin', origin);
  const signature = signatureOf((k) => f.get(k));
  let at: number | undefined;
  if (f.has('at')) {
    at = Number(f.get('at'));
    if (!Number.isSafeInteger(at) || at <= 0) return bad('at', f.get('at'));
  }
  const when = at === undefined ? {} : { at };
  if (op === 'flush') return { ok: true, value: { op, jail, origin, ...when, ...signature } };
  const addr = f.get('addr');
  if (!addr || !isCanonicalTarget(addr)) return bad('addr', addr);
  if (op === 'unban') return { ok: true, value: { op, jail, addr, origin, ...when, ...signature } };
  if (op !== 'ban') return bad('op', op);
  const since = Number(f.get('since'));
  const until = Number(f.get('until'));
  if (!Number.isSafeInteger(since) || since <= 0) return bad('since', f.get('since'));
  if (!Number.isSafeInteger(until) || (until <= 0 && until !== FOREVER)) return bad('until', f.get('until'));
  // Reason and origin are signed as written: a text cut here would no longer verify.
  const reason = f.get('reason') ?? '';
  if (reason.length > LIMITS.reasonChars) return bad('reason', reason);
  return { ok: true, value: { op, jail, addr, since, until, reason, origin, ...signature } };
}

/** @returns JSON for the bans hash */
export function encodeBan(b: BanRecord): string {
  return JSON.stringify(b);
}

/** Parse a ban record from the bans hash; a damaged one is reported, not thrown. */
export function decodeBan(json: string): Decoded<BanRecord> {
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch {
    return { ok: false, reason: 'ban record is not JSON' };
  }
  if (typeof o !== 'object' || o === null) return { ok: false, reason: 'ban record is not an object' };
  const r = o as Record<string, unknown>;
  if (typeof r.jail !== 'string' || !JAIL_NAME_RE.test(r.jail)) return bad('jail', String(r.jail));
  if (typeof r.addr !== 'string' || !isCanonicalTarget(r.addr)) return bad('addr', String(r.addr));
  if (typeof r.since !== 'number' || typeof r.until !== 'number') return { ok: false, reason: 'ban record has no times' };
  const signature = signatureOf((k) => r[k]);
  return {
    ok: true,
    value: {
      jail: r.jail,
      addr: r.addr,
      since: r.since,
      until: r.until,
      reason: typeof r.reason === 'string' ? r.reason : '',
      origin: typeof r.origin === 'string' ? r.origin : '',
      failures: typeof r.failures === 'number' ? r.failures : 0,
      ...signature,
    },
  };
}

/**
 * Parse and validate a heartbeat. Anything a compromised host can write reaches this, so every
 * field is checked and bounded: addresses must be canonical addresses and few, times must be
 * times, counters whole numbers; the host must be the one whose key held it.
 * @param host the host whose heartbeat key held it
 */
export function decodeHeartbeat(json: string, host: string): Decoded<Heartbeat> {
  const o = parseObject(json, 'heartbeat');
  if (!o.ok) return o;
  const r = o.value;
  if (r.host !== host) return bad('host', String(r.host));
  if (!Array.isArray(r.addrs) || r.addrs.length > LIMITS.heartbeatAddrs) return { ok: false, reason: `addrs must be a list of at most ${LIMITS.heartbeatAddrs} addresses` };
  for (const a of r.addrs) if (typeof a !== 'string' || !isCanonicalAddress(a)) return bad('addrs', String(a));
  if (!Array.isArray(r.jails) || r.jails.length > LIMITS.heartbeatJails || !r.jails.every((j) => typeof j === 'string' && JAIL_NAME_RE.test(j))) return { ok: false, reason: 'invalid jails' };
  for (const k of ['seenAt', 'startedAt'] as const) if (!isTime(r[k])) return bad(k, String(r[k]));
  for (const k of ['pid', 'bansApplied'] as const) if (!isCount(r[k])) return bad(k, String(r[k]));
  for (const k of ['bansRefused', 'bansHeld', 'decisionsRefused', 'guardRefused'] as const) if (r[k] !== undefined && !isCount(r[k])) return bad(k, String(r[k]));
  if (typeof r.lastDecision !== 'string' || !STREAM_ID_RE.test(r.lastDecision)) return bad('lastDecision', String(r.lastDecision));
  return {
    ok: true,
    value: {
      v: typeof r.v === 'number' ? r.v : 0, host, addrs: r.addrs as string[], version: label(r.version), backend: label(r.backend),
      jails: r.jails as string[], pid: r.pid as number, startedAt: r.startedAt as number, seenAt: r.seenAt as number,
      bansApplied: r.bansApplied as number, lastDecision: r.lastDecision,
      ...(r.bansRefused !== undefined ? { bansRefused: r.bansRefused as number } : {}),
      ...(r.bansHeld !== undefined ? { bansHeld: r.bansHeld as number } : {}),
      ...(r.decisionsRefused !== undefined ? { decisionsRefused: r.decisionsRefused as number } : {}),
      ...(r.guardRefused !== undefined ? { guardRefused: r.guardRefused as number } : {}),
    },
  };
}

/** A coordinator's entry in the coordinators hash, read by `fleetban reload` and `fleetban hosts`. */
export interface CoordinatorRegistration {
  consumer: string;
  host: string;
  pid: number;
  /** Last refresh, on Redis' clock. */
  seenAt: number;
  policy: string;
  jails: string[];
  /** Last reload (or start), on Redis' clock. */
  reloadedAt: number;
  reloadError?: string;
  /** Release and wire protocol (`fleetban version`); absent from registrations of older coordinators. */
  version?: string;
  protocol?: number;
}

/** Parse and validate a coordinator registration (only coordinators write them; still bounded). */
export function decodeCoordinatorRegistration(json: string): Decoded<CoordinatorRegistration> {
  const o = parseObject(json, 'coordinator registration');
  if (!o.ok) return o;
  const r = o.value;
  if (typeof r.consumer !== 'string' || r.consumer === '' || r.consumer.length > LIMITS.labelChars) return bad('consumer', String(r.consumer));
  if (typeof r.host !== 'string' || r.host.length > LIMITS.hostChars) return bad('host', String(r.host));
  if (!isTime(r.seenAt)) return bad('seenAt', String(r.seenAt));
  if (!isTime(r.reloadedAt)) return bad('reloadedAt', String(r.reloadedAt));
  if (!isCount(r.pid)) return bad('pid', String(r.pid));
  if (!Array.isArray(r.jails) || r.jails.length > LIMITS.heartbeatJails || !r.jails.every((j) => typeof j === 'string' && JAIL_NAME_RE.test(j))) return { ok: false, reason: 'invalid jails' };
  return {
    ok: true,
    value: {
      consumer: r.consumer, host: r.host, pid: r.pid as number, seenAt: r.seenAt as number, policy: label(r.policy), jails: r.jails as string[],
      reloadedAt: r.reloadedAt as number, ...(typeof r.reloadError === 'string' ? { reloadError: r.reloadError.slice(0, LIMITS.reasonChars) } : {}),
      ...(typeof r.version === 'string' ? { version: label(r.version) } : {}),
      ...(isCount(r.protocol) ? { protocol: r.protocol as number } : {}),
    },
  };
}

function parseObject(json: string, what: string): Decoded<Record<string, unknown>> {
  if (json.length > LIMITS.heartbeatBytes) return { ok: false, reason: `${what} of ${json.length} bytes is over the ${LIMITS.heartbeatBytes} byte limit` };
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch {
    return { ok: false, reason: `${what} is not JSON` };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { ok: false, reason: `${what} is not an object` };
  return { ok: true, value: o as Record<string, unknown> };
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= MIN_TIME_MS && v <= MAX_TIME_MS;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function label(v: unknown): string {
  return typeof v === 'string' ? v.slice(0, LIMITS.labelChars) : '';
}

function isCanonicalTarget(addr: string): boolean {
  // A single address (nearly every ban) takes the one-pass check; only a network needs ipaddr.js.
  if (!addr.includes('/')) return isCanonicalAddress(addr);
  try {
    return parseBanTarget(addr).text === addr;
  } catch {
    return false;
  }
}

function checkVersion(f: Map<string, string>): string | undefined {
  const v = f.get('v');
  if (v === undefined) return 'no protocol version';
  if (v !== String(PROTOCOL_VERSION)) return `protocol version ${v.slice(0, 16)} is not ${PROTOCOL_VERSION}`;
  return undefined;
}

function toMap(fields: Fields, maxBytes: number = LIMITS.entryBytes): Decoded<Map<string, string>> {
  if (!Array.isArray(fields) || fields.length % 2 !== 0) return { ok: false, reason: 'odd number of fields' };
  let bytes = 0;
  const m = new Map<string, string>();
  for (let i = 0; i < fields.length; i += 2) {
    const k = fields[i]!;
    const v = fields[i + 1]!;
    bytes += k.length + v.length;
    m.set(k, v);
  }
  if (bytes > maxBytes) return { ok: false, reason: `entry of ${bytes} bytes is over the ${maxBytes} byte limit` };
  return { ok: true, value: m };
}

function bad(field: string, value: string | undefined): { ok: false; reason: string } {
  const shown = value === undefined ? 'missing' : `'${value.slice(0, 80)}'`;
  return { ok: false, reason: `invalid ${field}: ${shown}` };
}

/** @returns negative, zero or positive as stream id a is before, equal to or after b */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am - bm || as - bs;
}
