/**
 * nftables backend: one table of our own, one base chain on the input hook, and per jail hash sets
 * with kernel timeouts that the jail's rules look up.
 *
 * Why hash sets per prefix length instead of one `flags interval, timeout` set per family:
 * interval+timeout sets do work with this kernel and nft 1.0.6, but an interval set refuses
 * overlapping elements ("interval overlaps with an existing one") and fails the WHOLE transaction,
 * so a /24 ban plus a ban of one address inside it would make a 10,000-ban batch fail. Elements of
 * one prefix length never overlap, so each ban keeps its own timeout and its own unban, and a hash
 * set loads 100,000 elements faster than an interval set. Single addresses (the common case) go in
 * `<jail>_s4`/`<jail>_s6`; a network ban of length L goes in `<jail>_n4_L` (or `_n6_L`), matched by
 * `ip saddr & <mask> @set`. Network sets are created on first use, in the same batch as the ban.
 */
import type { BanTarget } from '../../common/address.js';
import { now as clockNow } from '../../common/clock.js';
import { FirewallError, InvalidInputError } from '../../common/errors.js';
import type { FirewallBan, JailRule } from './backend.js';
import { CapBudget } from './cap-budget.js';
import { banKey, banTarget, portProtocols, validateJailRules } from './jail-rules.js';
import { KernelBackend, type KernelBackendOptions } from './kernel-backend.js';
import type { PendingChange } from './pending-changes.js';
import { prepareSync } from './prepare-sync.js';
import { SESSION_PROTOCOLS, type CommandSession } from './command-session.js';
import { applyOnStdin, applyWithRepair, type ScriptBatch } from './repair-and-retry.js';

/** Options of {@link NftablesBackend}. */
export interface NftablesOptions extends KernelBackendOptions {
  /** Table name (family `inet`); default `fleetban`. */
  readonly table?: string;
  /** nft binary; default `nft` from PATH. */
  readonly nftBinary?: string;
  /** Base chain priority; default -1, just before the `filter` priority (0) most rulesets use. */
  readonly priority?: number;
  /**
   * Refresh timeouts with add/delete/add even where the kernel updates them on re-add (the path
   * older kernels need; lets tests exercise it on a new kernel). Default: probe the kernel.
   */
  readonly forceReAdd?: boolean;
}

// Kept exported from here, where it was first defined, for code that imports it from this module.
export { DEFAULT_MAX_BANS } from './ban-ledger.js';

/**
 * Longest element timeout nftables takes, ms: 213,503 days. The kernel keeps timeouts in
 * nanoseconds in 64 bits (2^64 ns is 213,503.98 days) and refuses a longer one with "Numerical
 * result out of range" (nft 1.0.6, kernel 6.18: `213503d` accepted, `213504d` refused), failing
 * the whole transaction. A longer ban is written with this timeout, which outlives any host.
 */
export const NFT_MAX_TIMEOUT_MS = 213_503 * 86_400_000;

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const SET_NAME = /^j_((?:[A-Za-z0-9]|_[_dp])+)_(?:s([46])|n([46])_(\d{1,3}))$/;

/**
 * Jail names may hold `-` and `.`; nft identifiers are safest as `[A-Za-z0-9_]`. The escape keeps
 * the mapping one-to-one: `_` becomes `__`, `-` becomes `_d`, `.` becomes `_p`. Set suffixes start
 * with `_s` or `_n`, which an escaped name never contains, so names never collide.
 */
export function nftJailId(jail: string): string {
  return `j_${jail.replace(/[_.-]/g, (c) => (c === '_' ? '__' : c === '-' ? '_d' : '_p'))}`;
}

function decodeJailId(escaped: string): string {
  return escaped.replace(/_([_dp])/g, (_m, c: string) => (c === '_' ? '_' : c === 'd' ? '-' : '.'));
}

function setName(jail: string, t: BanTarget): string {
  const full = t.family === 4 ? 32 : 128;
  return t.prefix === full ? `${nftJailId(jail)}_s${t.family}` : `${nftJailId(jail)}_n${t.family}_${t.prefix}`;
}

/** The element as stored: the address, or for a network its first address (the rule masks saddr). */
function elementText(t: BanTarget): string {
  const slash = t.text.indexOf('/');
  return slash === -1 ? t.text : t.text.slice(0, slash);
}

function maskText(family: 4 | 6, prefix: number): string {
  if (family === 4) {
    const m = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return [24, 16, 8, 0].map((s) => (m >>> s) & 0xff).join('.');
  }
  const groups: string[] = [];
  for (let g = 0; g < 8; g++) {
    const bits = Math.max(0, Math.min(16, prefix - g * 16));
    groups.push(((0xffff << (16 - bits)) & 0xffff).toString(16));
  }
  return groups.join(':');
}

interface SetInfo {
  readonly jail: string;
  readonly family: 4 | 6;
  readonly prefix: number;
}

function parseSetName(name: string): SetInfo | undefined {
  const m = SET_NAME.exec(name);
  if (!m) return undefined;
  const family = Number(m[2] ?? m[3]) as 4 | 6;
  const prefix = m[4] === undefined ? (family === 4 ? 32 : 128) : Number(m[4]);
  return { jail: decodeJailId(m[1]!), family, prefix };
}

/** nftables implementation of {@link FirewallBackend}; see the module comment for the layout. */
export class NftablesBackend extends KernelBackend<JailRule> {
  readonly name = 'nftables';
  private readonly table: string;
  private readonly nft: string;
  private readonly priority: number;
  /** Sets that exist in the kernel, as far as we know. */
  private sets = new Set<string>();
  /** Whether `add element` of a present element sets its new timeout (kernel 6.x); probed once. */
  private addUpdatesTimeout: boolean | undefined;
  override readonly maxTimeoutMs = NFT_MAX_TIMEOUT_MS;
  /** `nft -i` for commit batches; undefined with `persistent: false`. */
  private readonly session: CommandSession | undefined;

  /** @param options see {@link NftablesOptions} */
  constructor(options: NftablesOptions = {}) {
    super(options, 'firewall.nftables');
    this.table = options.table ?? 'fleetban';
    if (!TABLE_NAME.test(this.table)) throw new InvalidInputError(`nftables table name '${this.table}' must match ${TABLE_NAME}`);
    this.nft = options.nftBinary ?? 'nft';
    this.priority = options.priority ?? -1;
    if (!Number.isInteger(this.priority)) throw new InvalidInputError(`nftables priority must be an integer, got ${this.priority}`);
    if (options.forceReAdd) this.addUpdatesTimeout = false;
    this.session = this.openSession(this.nft, SESSION_PROTOCOLS.nft);
  }

  async init(jails: readonly JailRule[]): Promise<void> {
    const checked = validateJailRules(jails);
    return this.serialize(async () => {
      await this.setup(checked);
      await this.seedLedger(() => this.readBans());
      await this.warmSessions();
    });
  }

  /** Create or repair table, chain, sets and rules; existing set elements are kept. */
  private async setup(jails: Map<string, JailRule>): Promise<void> {
    const t = `inet ${this.table}`;
    const existing = await this.run.run('nft list table', [this.nft, '-t', '-j', 'list', 'table', 'inet', this.table], undefined, { allowFail: true });
    const present = new Set<string>();
    if (existing.exitCode === 0) {
      for (const item of parseNftJson(existing.stdout, 'nft list table')) {
        const set = (item as { set?: { name?: unknown } }).set;
        if (set && typeof set.name === 'string') present.add(set.name);
      }
    }
    const keep = new Set<string>();
    for (const jail of jails.keys()) {
      keep.add(`${nftJailId(jail)}_s4`);
      keep.add(`${nftJailId(jail)}_s6`);
    }
    for (const name of present) {
      const info = parseSetName(name);
      if (info && jails.has(info.jail)) keep.add(name);
    }
    const lines = [
      `add table ${t}`,
      `add chain ${t} input { type filter hook input priority ${this.priority}; policy accept; }`,
      // Rules are rebuilt from scratch so a changed port list never leaves a stale rule behind.
      `flush chain ${t} input`,
    ];
    for (const name of keep) lines.push(...this.setLines(name, jails));
    // Sets of jails no longer configured go, after the flush removed the rules referencing them.
    for (const name of present) if (!keep.has(name)) lines.push(`delete set ${t} ${name}`);
    await this.run.run('nft init', [this.nft, '-f', '-'], lines.join('\n') + '\n');
    if (this.addUpdatesTimeout === undefined) this.addUpdatesTimeout = await this.probeTimeoutUpdate();
    this.jails = jails;
    this.sets = keep;
    for (const name of present) {
      if (keep.has(name)) continue;
      const info = parseSetName(name);
      if (!info) continue;
      this.ledger.forgetJails((jail) => jail === info.jail);
    }
  }

  /**
   * Newer kernels update an element's timeout when it is added again; older ones keep the old
   * timeout. Where the update works a ban is one `add`; elsewhere it has to be add, delete, add,
   * which costs a kernel commit with a deletion (about 15 ms instead of 3 ms per batch here).
   */
  private async probeTimeoutUpdate(): Promise<boolean> {
    const t = `inet ${this.table}`;
    const probe = 'fleetban_probe';
    try {
      await this.run.run('nft probe', [this.nft, '-f', '-'], [
        `add set ${t} ${probe} { type ipv4_addr; flags timeout; }`,
        `flush set ${t} ${probe}`,
        `add element ${t} ${probe} { 192.0.2.1 timeout 10s }`,
        `add element ${t} ${probe} { 192.0.2.1 timeout 1000s }`,
        '',
      ].join('\n'));
      const r = await this.run.run('nft probe', [this.nft, '-j', 'list', 'set', 'inet', this.table, probe]);
      const timeouts = [...r.stdout.matchAll(/"timeout":\s*(\d+)/g)].map((m) => Number(m[1]));
      const updates = timeouts.includes(1000);
      this.log.debug({ updates }, 'probed whether nft add refreshes element timeouts');
      return updates;
    } finally {
      await this.run.run('nft probe', [this.nft, 'delete', 'set', 'inet', this.table, probe], undefined, { allowFail: true });
    }
  }

  /** `add set` (idempotent) plus the rule that drops matching packets for one set. */
  private setLines(name: string, jails: Map<string, JailRule>): string[] {
    const info = parseSetName(name);
    if (!info) throw new Error(`internal: '${name}' is not a set name of ours`);
    const rule = jails.get(info.jail);
    if (!rule) throw new Error(`internal: no jail '${info.jail}'`);
    const t = `inet ${this.table}`;
    const full = info.family === 4 ? 32 : 128;
    const field = info.family === 4 ? 'ip saddr' : 'ip6 saddr';
    const lookup = info.prefix === full ? `${field} @${name}` : `${field} & ${maskText(info.family, info.prefix)} @${name}`;
    const verdicts = rule.blocktype === 'reject' ? ['reject']
      // nft takes `with tcp reset` only after a tcp match; what else the jail covers gets port unreachable.
      : rule.blocktype === 'tcp-reset' ? ['meta l4proto tcp reject with tcp reset', ...(onlyTcp(rule) ? [] : ['reject'])]
        : ['drop'];
    return [
      `add set ${t} ${name} { type ${info.family === 4 ? 'ipv4_addr' : 'ipv6_addr'}; flags timeout; }`,
      ...verdicts.map((v) => `add rule ${t} input ${matchText(rule)}${lookup} ${v} comment "fleetban jail ${rule.jail}"`),
    ];
  }

  protected applyChanges(changes: readonly PendingChange[], repair = true): Promise<void> {
    return this.withRepair('nft commit', () => this.buildCommit(changes), this.session, repair);
  }

  /**
   * Build one transaction for a set of changes. An unbanned element is first added bare, then
   * deleted: `delete` of a missing element would fail the whole transaction. A ban is one `add`
   * where the kernel updates timeouts on re-add; elsewhere it is add bare, delete, add with the new
   * timeout, so a repeated ban still refreshes the timeout.
   */
  private buildCommit(changes: readonly PendingChange[]): ScriptBatch {
    const t = `inet ${this.table}`;
    const nowMs = clockNow();
    const perSet = new Map<string, { touch: string[]; add: string[] }>();
    const ledgerOps: Array<() => void> = [];
    const newSets = new Set<string>();
    let freed = 0;
    const slot = (name: string) => {
      let s = perSet.get(name);
      if (!s) perSet.set(name, (s = { touch: [], add: [] }));
      if (!this.sets.has(name)) newSets.add(name);
      return s;
    };
    // Unbans first, so the room they free counts for the bans of the same batch.
    for (const c of changes) {
      if (c.kind !== 'delete' || !this.jails.has(c.jail)) continue;
      const target = banTarget(c.addr);
      const name = setName(c.jail, target);
      // Unbanning from a set that does not exist yet is a no-op; creating the set would be noise.
      if (!this.sets.has(name)) continue;
      slot(name).touch.push(elementText(target));
      const key = banKey(c.jail, c.addr);
      if (this.ledger.has(key, nowMs)) freed++;
      ledgerOps.push(() => this.ledger.delete(key));
    }
    const budget = new CapBudget(this.ledger, nowMs, freed);
    let expired = 0;
    for (const c of changes) {
      if (c.kind !== 'add') continue;
      const { ban } = c;
      if (!this.jails.has(ban.jail)) continue;
      const left = ban.until === -1 ? -1 : ban.until - nowMs;
      if (ban.until !== -1 && left <= 0) {
        expired++;
        continue;
      }
      const key = banKey(ban.jail, ban.addr);
      if (!this.ledger.has(key, nowMs) && !budget.take()) continue;
      const target = banTarget(ban.addr);
      const s = slot(setName(ban.jail, target));
      const el = elementText(target);
      if (!this.addUpdatesTimeout) s.touch.push(el);
      s.add.push(left === -1 ? el : `${el} timeout ${nftDuration(Math.min(left, NFT_MAX_TIMEOUT_MS))}`);
      ledgerOps.push(() => this.ledger.set(key, ban.until));
    }
    budget.finish();
    if (expired > 0) this.log.debug({ expired }, 'skipped bans that had already expired');
    const lines: string[] = [];
    for (const name of newSets) lines.push(...this.setLines(name, this.jails));
    for (const [name, s] of perSet) if (s.touch.length) lines.push(`add element ${t} ${name} { ${s.touch.join(', ')} }`);
    for (const [name, s] of perSet) if (s.touch.length) lines.push(`delete element ${t} ${name} { ${s.touch.join(', ')} }`);
    for (const [name, s] of perSet) if (s.add.length) lines.push(`add element ${t} ${name} { ${s.add.join(', ')} }`);
    return {
      script: lines.length ? lines.join('\n') + '\n' : '',
      onSuccess: () => {
        for (const n of newSets) this.sets.add(n);
        for (const op of ledgerOps) op();
      },
    };
  }

  sync(bans: readonly FirewallBan[]): Promise<void> {
    return this.serialize(() => this.withRepair('nft sync', () => this.buildSync(bans)));
  }

  private buildSync(bans: readonly FirewallBan[]): ScriptBatch {
    const t = `inet ${this.table}`;
    const nowMs = clockNow();
    const list = prepareSync(bans, { check: (b) => this.check(b), now: nowMs, log: this.log, ledger: this.ledger });
    const perSet = new Map<string, string[]>();
    const newSets = new Set<string>();
    for (const [, c] of list) {
      const name = setName(c.jail, c.target);
      if (!this.sets.has(name)) newSets.add(name);
      let arr = perSet.get(name);
      if (!arr) perSet.set(name, (arr = []));
      const el = elementText(c.target);
      arr.push(c.until === -1 ? el : `${el} timeout ${nftDuration(Math.min(c.until - nowMs, NFT_MAX_TIMEOUT_MS))}`);
    }
    const lines: string[] = [];
    for (const name of newSets) lines.push(...this.setLines(name, this.jails));
    for (const name of this.sets) lines.push(`flush set ${t} ${name}`);
    for (const [name, els] of perSet) lines.push(`add element ${t} ${name} { ${els.join(', ')} }`);
    return {
      script: lines.join('\n') + '\n',
      onSuccess: () => {
        for (const n of newSets) this.sets.add(n);
        this.ledger.replaceAll(list.map(([key, c]) => [key, c.until] as const));
        this.markLedgerSeeded();
      },
    };
  }

  /**
   * Apply a batch with `nft -f -`, or through the `nft -i` session when one is given; when it
   * fails, repair the table and retry once (unless repair is false).
   */
  private withRepair(operation: string, build: () => ScriptBatch, session?: CommandSession, repair = true): Promise<void> {
    return applyWithRepair(operation, build, {
      log: this.log,
      warning: 'nft batch failed; repairing the table and retrying once',
      apply: applyOnStdin(this.run, [this.nft, '-f', '-'], session),
      repair: () => this.setup(this.jails),
    }, repair);
  }

  list(): Promise<FirewallBan[]> {
    return this.serialize(() => this.readBans());
  }

  /** Read every element of our sets; `until` is rebuilt from the kernel's whole-second `expires`. */
  private async readBans(): Promise<FirewallBan[]> {
    const r = await this.run.run('nft list', [this.nft, '-j', 'list', 'table', 'inet', this.table], undefined, { allowFail: true });
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return [];
      throw new FirewallError('nft list', r.stderr);
    }
    const nowMs = clockNow();
    const out: FirewallBan[] = [];
    for (const item of parseNftJson(r.stdout, 'nft list')) {
      const set = (item as { set?: { name?: unknown; elem?: unknown } }).set;
      if (!set || typeof set.name !== 'string' || !Array.isArray(set.elem)) continue;
      const info = parseSetName(set.name);
      if (!info) continue;
      const full = info.family === 4 ? 32 : 128;
      for (const e of set.elem as unknown[]) {
        let val: unknown = e;
        let expires: unknown;
        if (e && typeof e === 'object' && 'elem' in e) {
          const inner = (e as { elem: { val?: unknown; expires?: unknown } }).elem;
          val = inner.val;
          expires = inner.expires;
        }
        if (typeof val !== 'string') continue;
        out.push({
          jail: info.jail,
          addr: info.prefix === full ? val : `${val}/${info.prefix}`,
          family: info.family,
          until: typeof expires === 'number' ? nowMs + expires * 1000 : -1,
        });
      }
    }
    return out;
  }

  protected async cleanup(): Promise<void> {
    const r = await this.run.run('nft cleanup', [this.nft, 'delete', 'table', 'inet', this.table], undefined, { allowFail: true });
    if (r.exitCode !== 0 && !/No such file or directory/.test(r.stderr)) throw new FirewallError('nft cleanup', r.stderr);
    this.sets.clear();
    this.ledger.clear();
  }
}

/** Whether the jail's rules only ever see TCP. */
function onlyTcp(rule: JailRule): boolean {
  return rule.protocols !== 'all' && rule.protocols.every((p) => p === 'tcp');
}

/** The match part of a jail's rules: protocol and ports, or nothing when the jail drops everything. */
function matchText(rule: JailRule): string {
  if (rule.ports === 'all') {
    return rule.protocols === 'all' ? '' : `meta l4proto { ${rule.protocols.join(', ')} } `;
  }
  const ports = rule.ports.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}-${hi}`)).join(', ');
  return `meta l4proto { ${portProtocols(rule).join(', ')} } th dport { ${ports} } `;
}

/**
 * nft 1.0.6 rejects a single time unit above about 2^31 ("1000000000ms": value too large), so a
 * 30-day ban written in ms fails; a mixed-unit value like `30d0h0m0s1ms` is accepted.
 */
export function nftDuration(ms: number): string {
  let left = Math.max(1, Math.ceil(ms));
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    const n = Math.floor(left / size);
    if (n > 0) out += `${n}${unit}`;
    left -= n * size;
  }
  return left > 0 || out === '' ? `${out}${left}ms` : out;
}

function parseNftJson(text: string, operation: string): unknown[] {
  try {
    const doc = JSON.parse(text) as { nftables?: unknown };
    return Array.isArray(doc.nftables) ? doc.nftables : [];
  } catch (err) {
    throw new FirewallError(operation, `unreadable JSON from nft: ${(err as Error).message}`, { cause: err });
  }
}
