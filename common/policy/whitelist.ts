import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import type { Logger } from 'pino';
import { AddressMatcher, tryParseAddress } from '../address.js';
import { InvalidInputError } from '../errors.js';

/** Why an address is not banned, for logs and for `fleetban ban` refusals. */
export type IgnoreReason = 'ignoreip' | 'ignoreself' | 'ignorecommand';

export interface WhitelistSpec {
  readonly jail: string;
  /** ignoreip entries: addresses, networks, host names, `file:PATH` (one entry per line, # comments). */
  readonly ignoreip: readonly string[];
  readonly ignoreself: boolean;
  readonly ignorecommand: string | undefined;
}

/** The fleet's own addresses, kept current from agent heartbeats by the caller. */
export interface FleetAddresses {
  contains(addr: string): boolean;
}

/** Results of ignorecommand are cached this long per address: a flood must not fork a process per line. */
const COMMAND_CACHE_MS = 60_000;
const COMMAND_TIMEOUT_MS = 5_000;

/**
 * ignorecommand processes running at once at most, per jail. One at a time, 50 new addresses
 * with a command taking 0.2 s stalled all counting for 10.8 s; unbounded, a flood of new
 * addresses would fork thousands of processes.
 */
export const COMMAND_CONCURRENCY = 16;

/**
 * One jail's whitelist: fail2ban's ignoreip (with host names resolved and file: lists read when
 * loaded), ignoreself (here: every fleet member's addresses) and ignorecommand (run with an
 * argument array, never a shell; exit 0 means "ignore").
 */
export class Whitelist {
  private readonly commandCache = new Map<string, { ignore: boolean; at: number; pending?: Promise<boolean> }>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  private constructor(
    readonly spec: WhitelistSpec,
    private readonly static_: AddressMatcher,
    private readonly fleet: FleetAddresses | undefined,
    private readonly command: string[] | undefined,
    private readonly log: Logger,
  ) {}

  /**
   * Resolve names and read files now (fail2ban resolves ignoreip names at load as well).
   * Unresolvable names and unreadable files are warned about and skipped; they never stop the coordinator.
   */
  static async load(spec: WhitelistSpec, fleet: FleetAddresses | undefined, log: Logger): Promise<Whitelist> {
    const matcher = new AddressMatcher();
    const addEntry = async (entry: string, from: string): Promise<void> => {
      if (entry.startsWith('file:')) {
        const path = entry.slice(5);
        let text: string;
        try {
          text = readFileSync(path, 'utf8');
        } catch (err) {
          log.warn({ jail: spec.jail, file: path, err: (err as Error).message }, 'ignoreip file cannot be read; skipped');
          return;
        }
        for (const line of text.split('\n')) {
          const item = line.replace(/#.*/, '').trim();
          if (item) for (const part of item.split(/[\s,]+/)) await addEntry(part, path);
        }
        return;
      }
      try {
        matcher.add(entry);
        return;
      } catch {
        // not an address or network: a host name
      }
      try {
        const addrs = await lookup(entry, { all: true });
        for (const a of addrs) matcher.add(a.address);
        if (addrs.length === 0) throw new Error('no addresses');
      } catch (err) {
        log.warn({ jail: spec.jail, entry, from, err: (err as Error).message }, 'ignoreip entry does not resolve; skipped');
      }
    };
    for (const entry of spec.ignoreip) await addEntry(entry, 'ignoreip');
    const command = spec.ignorecommand ? splitCommand(spec.ignorecommand) : undefined;
    return new Whitelist(spec, matcher, spec.ignoreself ? fleet : undefined, command, log);
  }

  /** @returns the reason addr (address or network) must not be banned, or undefined */
  async check(addr: string): Promise<IgnoreReason | undefined> {
    return this.checkLocal(addr) ?? (this.command ? this.checkCommand(addr) : undefined);
  }

  /** The checks that need no process: ignoreip and ignoreself (the coordinator's hot path). */
  checkLocal(addr: string): IgnoreReason | undefined {
    if (this.static_.size > 0 && this.static_.contains(addr)) return 'ignoreip';
    if (this.fleet?.contains(addr)) return 'ignoreself';
    return undefined;
  }

  /** True when an ignorecommand is configured (checkCommand may run a process). */
  get hasCommand(): boolean {
    return this.command !== undefined;
  }

  /**
   * Run the command for every address of a batch not cached yet, COMMAND_CONCURRENCY at a time,
   * so that the checks that follow find their answer cached instead of running one by one.
   */
  async prefetch(addrs: Iterable<string>): Promise<void> {
    if (!this.command) return;
    const runs: Array<Promise<boolean>> = [];
    for (const a of new Set(addrs)) if (this.checkLocal(a) === undefined) runs.push(this.runCommand(a));
    await Promise.all(runs);
  }

  /** @returns 'ignorecommand' when the command says so (cached per address) */
  async checkCommand(addr: string): Promise<IgnoreReason | undefined> {
    return this.command && (await this.runCommand(addr)) ? 'ignorecommand' : undefined;
  }

  private async runCommand(addr: string): Promise<boolean> {
    const cached = this.commandCache.get(addr);
    const t = Date.now();
    if (cached?.pending) return cached.pending;
    if (cached && t - cached.at < COMMAND_CACHE_MS) return cached.ignore;
    const argv = this.command!.map((a) => a.replaceAll('<ip>', addr).replaceAll('<jail>', this.spec.jail));
    const pending = this.slot().then(() => execa(argv[0]!, argv.slice(1), { reject: false, timeout: COMMAND_TIMEOUT_MS, stdin: 'ignore' })).then((r) => {
      this.release();
      if (r.exitCode !== 0 && r.exitCode !== 1) {
        this.log.warn({ jail: this.spec.jail, addr, exitCode: r.exitCode, stderr: String(r.stderr).slice(0, 200), timedOut: r.timedOut },
          'ignorecommand failed; the address is not ignored');
      }
      const ignore = r.exitCode === 0;
      this.commandCache.set(addr, { ignore, at: Date.now() });
      if (this.commandCache.size > 10_000) this.commandCache.delete(this.commandCache.keys().next().value!);
      return ignore;
    });
    this.commandCache.set(addr, { ignore: false, at: t, pending });
    return pending;
  }

  private slot(): Promise<void> {
    if (this.running < COMMAND_CONCURRENCY) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Hand the slot to the next waiting command, or free it. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}

/**
 * Split a command line into arguments like a shell would for simple quoting ('…', "…", \x),
 * without a shell: nothing is expanded or executed but the command itself.
 */
export function splitCommand(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
    }
  }
  if (quote) throw new InvalidInputError(`unterminated ${quote} in '${text}'`);
  if (has || cur) out.push(cur);
  return out;
}

/** Addresses of every agent of the cluster, from their heartbeats; refreshed by the owner. */
export class FleetAddressSet implements FleetAddresses {
  private matcher = new AddressMatcher();

  /** Replace the set with these addresses (invalid ones are skipped). */
  update(addrs: Iterable<string>): void {
    const m = new AddressMatcher();
    for (const a of addrs) {
      const t = tryParseAddress(a.replace(/%.*$/, ''));
      if (t) m.add(t.text);
    }
    this.matcher = m;
  }

  contains(addr: string): boolean {
    return this.matcher.size > 0 && this.matcher.contains(addr);
  }
}
