/**
 * Plain iptables backend for hosts without nftables or ipset, laid out the way fail2ban's
 * iptables-multiport action does it: a chain `f2b-<jail>` per jail (`f2b-<label>` when the jail
 * has a label, as fail2ban's `name=` gives) holding one `-s ADDR -j DROP` rule per ban (`-j REJECT
 * --reject-with icmp-port-unreachable` with blocktype = reject, as fail2ban's `-j <blocktype>`;
 * tcp-reset adds `-p tcp`, plus a port-unreachable rule when the jail covers more than TCP),
 * entered for the jail's ports and protocols. The jumps live in a dispatch chain of
 * ours (`fleetban`, jumped to from the top of INPUT) so that re-running init with changed ports
 * rewrites them without touching INPUT or the bans.
 *
 * Batches go through `iptables-restore --noflush` / `ip6tables-restore --noflush`: commits through
 * one long-lived process per family (which applies each COMMIT as it reads it), syncs and large
 * batches through a one-shot process. The long-lived one is used only with the nf_tables variant
 * of iptables, which takes no lock for its lifetime. iptables has no timeouts, so this backend deletes expired bans itself on a
 * timer, and it keeps a ledger of the rules it wrote: deleting a rule that is not there would fail
 * the whole restore, so a delete is only written for a rule the ledger holds.
 *
 * Changing a jail's label renames its chain: init removes the old chain with its bans, and the
 * agent's next sync or reconciliation writes them into the new one. Changing its blocktype keeps
 * the chain and rewrites each ban rule's target in init's restore.
 */
import { now as clockNow } from '../../common/clock.js';
import { InvalidInputError } from '../../common/errors.js';
import type { FirewallBan, JailRule } from './backend.js';
import { CapBudget } from './cap-budget.js';
import { InputJump } from './input-jump.js';
import { iptablesMatches, iptablesVerdicts } from './iptables-matches.js';
import { banKey, banTarget, boundedName, splitBanKey, validateJailRules } from './jail-rules.js';
import { KernelBackend, type KernelBackendOptions } from './kernel-backend.js';
import type { PendingChange } from './pending-changes.js';
import { prepareSync } from './prepare-sync.js';
import { SESSION_PROTOCOLS, type CommandSession } from './command-session.js';
import { applyInSession, applyWithRepair, BatchRefusedError, SESSION_MAX_BYTES, type Batch } from './repair-and-retry.js';

/** Options of {@link IptablesBackend}. */
export interface IptablesOptions extends KernelBackendOptions {
  /** Prefix of per-jail chain names (28 characters at most in all); default `f2b-`. */
  readonly namePrefix?: string;
  /** Name of the dispatch chain; default `fleetban`. */
  readonly chain?: string;
  /** How often expired bans are removed, ms; default 1000. */
  readonly expireIntervalMs?: number;
}

const NAME_PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,9}$/;
const FAMILIES = [4, 6] as const;
/** Declaring one of these under --noflush would empty it. */
const BUILT_IN_CHAINS = new Set(['INPUT', 'FORWARD', 'OUTPUT']);

interface JailChain {
  readonly rule: JailRule;
  readonly chain: string;
}

/** iptables implementation of {@link FirewallBackend}; see the module comment. */
export class IptablesBackend extends KernelBackend<JailChain> {
  readonly name = 'iptables';
  private readonly prefix: string;
  private readonly jump: InputJump;
  private readonly expireIntervalMs: number;
  private readonly sessions: Record<4 | 6, CommandSession | undefined>;
  /**
   * Whether iptables is the nf_tables variant (probed at first init). Legacy iptables-restore
   * holds the xtables lock while it runs, so a long-lived one would block every other iptables
   * command on the host; there each batch stays a one-shot process.
   */
  private nfTablesVariant: boolean | undefined;

  /** @param options see {@link IptablesOptions} */
  constructor(options: IptablesOptions = {}) {
    super(options, 'firewall.iptables', false);
    this.prefix = options.namePrefix ?? 'f2b-';
    if (!NAME_PREFIX.test(this.prefix)) throw new InvalidInputError(`iptables chain prefix '${this.prefix}' must match ${NAME_PREFIX}`);
    this.jump = new InputJump(this.run, options.chain ?? 'fleetban');
    this.expireIntervalMs = options.expireIntervalMs ?? 1000;
    this.sessions = {
      4: this.openSession('iptables-restore', SESSION_PROTOCOLS.iptablesRestore),
      6: this.openSession('ip6tables-restore', SESSION_PROTOCOLS.iptablesRestore),
    };
  }

  async init(jails: readonly JailRule[]): Promise<void> {
    const next = this.chainsFor(validateJailRules(jails));
    return this.serialize(async () => {
      if (this.nfTablesVariant === undefined && (this.sessions[4] || this.sessions[6])) {
        const v = await this.run.run('iptables version', ['iptables', '--version'], undefined, { allowFail: true });
        this.nfTablesVariant = /nf_tables/.test(v.stdout);
      }
      await this.setup(next);
      this.startExpiry(this.expireIntervalMs, () => this.expire(), 'removing expired bans failed');
      if (this.nfTablesVariant) await this.warmSessions();
    });
  }

  /**
   * Each jail's chain: prefix plus label, or plus jail name when there is no label. No two jails
   * may share a chain (one's unban would lift the other's ban, and setup counts a chain's rules
   * for one jail only), nor may a jail chain be our dispatch chain or a built-in one.
   * @throws InvalidInputError naming the jails, before anything touches the kernel
   */
  private chainsFor(checked: Map<string, JailRule>): Map<string, JailChain> {
    const next = new Map<string, JailChain>();
    const owner = new Map<string, string>();
    for (const [name, rule] of checked) {
      const chain = boundedName(this.prefix, rule.label ?? name, 28);
      if (chain === this.jump.chain || BUILT_IN_CHAINS.has(chain)) {
        throw new InvalidInputError(`jail '${name}': its iptables chain would be '${chain}', which is not ours to use; choose another label or name prefix`);
      }
      const other = owner.get(chain);
      if (other !== undefined) throw new InvalidInputError(`jails '${other}' and '${name}' would share iptables chain '${chain}'; give one of them another label`);
      owner.set(chain, name);
      next.set(name, { rule, chain });
    }
    return next;
  }

  /**
   * Create missing jail chains (existing ones keep their bans), rebuild the dispatch chain, make
   * INPUT jump to it, delete chains of jails no longer configured, and reload the ledger from
   * what the kernel really holds.
   */
  private async setup(jails: Map<string, JailChain>): Promise<void> {
    const previousUntil = new Map<string, number>();
    for (const k of this.ledger.keys()) previousUntil.set(k, this.ledger.get(k)!);
    this.ledger.clear();
    for (const family of FAMILIES) {
      const state = await this.save(family);
      const lines = ['*filter'];
      for (const j of jails.values()) if (!state.chains.has(j.chain)) lines.push(`:${j.chain} - [0:0]`);
      lines.push(`:${this.jump.chain} - [0:0]`); // --noflush empties only this declared chain
      const byChainRule = new Map([...jails.values()].map((j) => [j.chain, j]));
      for (const [chain, found] of state.bans) {
        const j = byChainRule.get(chain);
        if (!j) continue;
        // A jail whose blocktype changed: its bans move to the new target in this same transaction.
        for (const b of found.values()) {
          const want = banSpecs(j, family, b.addr);
          const have = b.rules.map((r) => `-s ${b.addr} ${r.rest}`);
          if (want.length === have.length && want.every((w) => have.includes(w))) continue;
          for (const r of b.rules) lines.push(`-D ${chain} -s ${r.saved} ${r.rest}`);
          for (const w of want) lines.push(`-A ${chain} ${w}`);
        }
      }
      for (const j of jails.values()) {
        for (const m of iptablesMatches(j.rule)) lines.push(['-A', this.jump.chain, ...m, '-j', j.chain].join(' '));
      }
      // Chains the old dispatch chain jumped to but no configured jail owns any more.
      const stale = [...state.dispatchTargets].filter((c) => ![...jails.values()].some((j) => j.chain === c) && state.chains.has(c));
      for (const c of stale) lines.push(`-F ${c}`, `-X ${c}`);
      lines.push('COMMIT');
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      await this.run.run(`${restore} (setup)`, [restore, '-w', '--noflush'], lines.join('\n') + '\n');
      await this.jump.ensure(family);
      const byChain = new Map([...jails.values()].map((j) => [j.chain, j.rule.jail]));
      for (const [chain, addrs] of state.bans) {
        const jail = byChain.get(chain);
        if (!jail) continue;
        for (const addr of addrs.keys()) {
          const key = banKey(jail, addr);
          this.ledger.set(key, previousUntil.get(key) ?? -1);
        }
      }
    }
    this.jails = jails;
  }

  /** Parse `iptables-save -t filter`: our chains, where the dispatch chain jumps, ban rules per chain. */
  private async save(family: 4 | 6): Promise<{ chains: Set<string>; dispatchTargets: Set<string>; bans: Map<string, Map<string, SavedBan>> }> {
    const tool = family === 4 ? 'iptables-save' : 'ip6tables-save';
    const { stdout } = await this.run.run(tool, [tool, '-t', 'filter']);
    const chains = new Set<string>();
    const dispatchTargets = new Set<string>();
    const bans = new Map<string, Map<string, SavedBan>>();
    for (const line of stdout.split('\n')) {
      if (line.startsWith(':')) {
        chains.add(line.slice(1).split(' ')[0]!);
        continue;
      }
      if (!line.startsWith('-A ')) continue;
      const parts = line.split(' ');
      const chain = parts[1]!;
      if (chain === this.jump.chain) {
        const j = parts.indexOf('-j');
        if (j !== -1 && parts[j + 1]) dispatchTargets.add(parts[j + 1]!);
        continue;
      }
      // Our ban rules have exactly this shape; anything else in the chain is not ours to count.
      const m = /^-A (\S+) -s (\S+) ((?:-p tcp )?-j (?:DROP|REJECT --reject-with (?:icmp6?-port-unreachable|tcp-reset)))$/.exec(line);
      if (!m) continue;
      const addr = banTarget(m[2]!).text;
      let chainBans = bans.get(m[1]!);
      if (!chainBans) bans.set(m[1]!, (chainBans = new Map()));
      let b = chainBans.get(addr);
      if (!b) chainBans.set(addr, (b = { addr, rules: [] }));
      b.rules.push({ saved: m[2]!, rest: m[3]! });
    }
    return { chains, dispatchTargets, bans };
  }

  protected applyChanges(changes: readonly PendingChange[], repair = true): Promise<void> {
    return this.withRepair('iptables commit', () => this.buildCommit(changes), repair);
  }

  /** Rules to add and delete per family; an already present ban only gets its expiry updated. */
  private buildCommit(changes: readonly PendingChange[]): Batches {
    const nowMs = clockNow();
    const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
    const after: Record<4 | 6, Array<() => void>> = { 4: [], 6: [] };
    let freed = 0;
    for (const c of changes) {
      if (c.kind !== 'delete') continue;
      const j = this.jails.get(c.jail);
      const key = banKey(c.jail, c.addr);
      if (!j || this.ledger.get(key) === undefined) continue;
      const t = banTarget(c.addr);
      for (const spec of banSpecs(j, t.family, t.text)) lines[t.family].push(`-D ${j.chain} ${spec}`);
      if (this.ledger.has(key, nowMs)) freed++;
      after[t.family].push(() => this.ledger.delete(key));
    }
    const budget = new CapBudget(this.ledger, nowMs, freed);
    for (const c of changes) {
      if (c.kind !== 'add') continue;
      const { ban } = c;
      const j = this.jails.get(ban.jail);
      if (!j || (ban.until !== -1 && ban.until <= nowMs)) continue;
      const key = banKey(ban.jail, ban.addr);
      if (this.ledger.get(key) !== undefined) {
        // The rule is there (maybe expired but not yet swept): only the expiry changes.
        after[ban.family].push(() => this.ledger.set(key, ban.until));
        continue;
      }
      if (!budget.take()) continue;
      for (const spec of banSpecs(j, ban.family, ban.addr)) lines[ban.family].push(`-A ${j.chain} ${spec}`);
      after[ban.family].push(() => this.ledger.set(key, ban.until));
    }
    budget.finish();
    return { lines, flush: false, onFamily: (f) => after[f].forEach((op) => op()), onSuccess: () => undefined };
  }

  sync(bans: readonly FirewallBan[]): Promise<void> {
    return this.serialize(() => this.withRepair('iptables sync', () => this.buildSync(bans)));
  }

  private buildSync(bans: readonly FirewallBan[]): Batches {
    const nowMs = clockNow();
    const list = prepareSync(bans, { check: (b) => this.check(b), now: nowMs, log: this.log, ledger: this.ledger });
    const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
    for (const [, c] of list) {
      const j = this.jails.get(c.jail)!;
      for (const spec of banSpecs(j, c.target.family, c.target.text)) lines[c.target.family].push(`-A ${j.chain} ${spec}`);
    }
    return {
      lines,
      flush: true,
      onSuccess: () => {
        this.ledger.replaceAll(list.map(([key, c]) => [key, c.until] as const));
      },
    };
  }

  private restoreText(b: Batches, family: 4 | 6): string | undefined {
    if (!b.flush && b.lines[family].length === 0) return undefined;
    // Declaring a chain under --noflush empties it, which is what a sync wants and a commit must not do.
    const head = b.flush ? [...this.jails.values()].map((j) => `:${j.chain} - [0:0]`) : [];
    return ['*filter', ...head, ...b.lines[family], 'COMMIT', ''].join('\n');
  }

  /** Apply both families' batches; on failure resynchronise with the kernel, rebuild, retry once. */
  private withRepair(operation: string, build: () => Batches, repair = true): Promise<void> {
    return applyWithRepair(operation, build, {
      log: this.log,
      warning: 'iptables batch failed; re-reading the chains and retrying once',
      apply: (op, batch, allowFail) => this.restore(op, batch, allowFail),
      // A family that did apply is now in the kernel; setup reads it back into the ledger.
      repair: () => this.setup(this.jails),
    }, repair);
  }

  /**
   * One `ip(6)tables-restore` batch per family that has lines: a commit through the family's
   * session, a sync or a large batch (or one the session could not answer) through a one-shot
   * process. Both families are tried even when the first fails, so one family's problem does not
   * hold back the other's bans.
   * @returns undefined when every family applied, else their stderr (when allowFail)
   * @throws BatchRefusedError when a family failed and allowFail is not set
   */
  private async restore(operation: string, batch: Batches, allowFail: boolean): Promise<string | undefined> {
    const failed: string[] = [];
    for (const family of FAMILIES) {
      const text = this.restoreText(batch, family);
      if (!text) continue;
      const restore = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      const session = this.sessions[family];
      let err: string | undefined | 'broken' = 'broken';
      if (session && this.nfTablesVariant && !batch.flush && text.length <= SESSION_MAX_BYTES) err = await applyInSession(this.run, session, operation, text);
      if (err === 'broken') {
        const r = await this.run.run(operation, [restore, '-w', '--noflush'], text, { allowFail: true });
        err = r.exitCode === 0 ? undefined : r.stderr.trim();
      }
      if (err === undefined) batch.onFamily?.(family);
      else failed.push(err);
    }
    if (failed.length && !allowFail) throw new BatchRefusedError(operation, failed.join('\n'));
    return failed.length === 0 ? undefined : failed.join('\n');
  }

  /** Delete the rules of bans whose time is up, one restore per family. */
  private expire(): Promise<void> {
    return this.serialize(async () => {
      const nowMs = clockNow();
      const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
      const keys: string[] = [];
      for (const key of this.ledger.keys()) {
        const until = this.ledger.get(key)!;
        if (until === -1 || until > nowMs) continue;
        const { jail, addr } = splitBanKey(key);
        const j = this.jails.get(jail);
        if (!j) continue;
        const family = addr.includes(':') ? 6 : 4;
        for (const spec of banSpecs(j, family, addr)) lines[family].push(`-D ${j.chain} ${spec}`);
        keys.push(key);
      }
      if (keys.length === 0) return;
      await this.withRepair('iptables expire', () => ({
        lines,
        flush: false,
        onFamily: (f) => keys.forEach((k) => (k.includes(':') ? 6 : 4) === f && this.ledger.delete(k)),
        onSuccess: () => undefined,
      }));
    });
  }

  list(): Promise<FirewallBan[]> {
    return this.serialize(async () => {
      const byChain = new Map([...this.jails.values()].map((j) => [j.chain, j.rule.jail]));
      const out: FirewallBan[] = [];
      const nowMs = clockNow();
      for (const family of FAMILIES) {
        const state = await this.save(family);
        for (const [chain, addrs] of state.bans) {
          const jail = byChain.get(chain);
          if (!jail) continue;
          for (const addr of addrs.keys()) {
            const until = this.ledger.get(banKey(jail, addr)) ?? -1;
            // Expired but not yet swept: the rule still drops, yet the ban is over.
            if (until !== -1 && until <= nowMs) continue;
            out.push({ jail, addr, family, until });
          }
        }
      }
      return out;
    });
  }

  protected async cleanup(): Promise<void> {
    for (const family of FAMILIES) {
      const tool = family === 4 ? 'iptables' : 'ip6tables';
      await this.jump.remove(family);
      const state = await this.save(family);
      const chains = [this.jump.chain, ...[...this.jails.values()].map((j) => j.chain), ...state.dispatchTargets];
      for (const c of new Set(chains)) {
        if (!state.chains.has(c)) continue;
        await this.run.run(`${tool} cleanup`, [tool, '-w', '-F', c], undefined, { allowFail: true });
      }
      for (const c of new Set(chains)) {
        if (!state.chains.has(c)) continue;
        await this.run.run(`${tool} cleanup`, [tool, '-w', '-X', c], undefined, { allowFail: true });
      }
    }
    this.ledger.clear();
  }
}

/** One address' ban rules in a chain, as iptables-save printed them (two with tcp-reset). */
interface SavedBan {
  /** Canonical address or network. */
  readonly addr: string;
  /** Each rule: the `-s` argument as saved (`198.51.100.7/32`), and what follows it. */
  readonly rules: Array<{ saved: string; rest: string }>;
}

/**
 * A ban's rules after `-A`/`-D CHAIN`: the source and the jail's target for its family. A
 * TCP-only jail's bans carry `-p tcp`, which tcp-reset needs and which its dispatch jump implies.
 */
function banSpecs(j: JailChain, family: 4 | 6, addr: string): string[] {
  const tcpOnly = j.rule.protocols !== 'all' && j.rule.protocols.every((p) => p === 'tcp');
  const match = j.rule.blocktype === 'tcp-reset' && tcpOnly ? ['-s', addr, '-p', 'tcp'] : ['-s', addr];
  return iptablesVerdicts(j.rule, family, match).map((r) => r.join(' '));
}

interface Batches extends Batch {
  readonly lines: Record<4 | 6, string[]>;
  /** Empty the jail chains first (sync). */
  readonly flush: boolean;
  /**
   * Record what one family's batch put in the kernel, as soon as that family applied, so that a
   * batch whose other family failed leaves the ledger true (a commit; a sync relies on onSuccess).
   */
  readonly onFamily?: (family: 4 | 6) => void;
}
