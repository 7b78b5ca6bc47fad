import { execa } from 'execa';
import { componentLogger, type Logger } from '../../common/log.js';
import { ConfigError } from '../../common/errors.js';
import type { FirewallBackend } from './backend.js';
import { DryRunBackend } from './dry-run.js';
import { NFT_MAX_TIMEOUT_MS, NftablesBackend } from './nftables.js';

/**
 * Longest ban, ms, that every backend enforces for exactly its length: the smallest of the
 * backends' `maxTimeoutMs` (nftables' kernel limit, 213,503 days; ipset and iptables lift longer
 * bans themselves). A longer ban is clamped to this on nftables, so caps on ban durations
 * elsewhere (config, CLI, escalation) can use it as their ceiling.
 */
export const FIREWALL_MAX_BAN_MS = NFT_MAX_TIMEOUT_MS;

/** Options understood by {@link createFirewallBackend}; each backend uses the ones that apply. */
export interface FirewallBackendOptions {
  /** argv run before every firewall command, e.g. `['ip','netns','exec',ns]`. */
  readonly commandPrefix?: readonly string[];
  /** Per-host cap on banned elements across all jails. */
  readonly maxBans?: number;
  /** nftables table name (default `fleetban`). */
  readonly nftTable?: string;
  /** Prefix of ipset set and iptables chain names (default `f2b-` for iptables, `fb-` for ipset). */
  readonly namePrefix?: string;
  /** How often the iptables backend removes expired addresses, ms (default 1000). */
  readonly expireIntervalMs?: number;
  /** Long-lived tool processes for commit batches (nftables, ipset, iptables); default true. */
  readonly persistent?: boolean;
  readonly logger?: Logger;
}

/** Every name {@link createFirewallBackend} accepts. */
export const FIREWALL_BACKENDS = ['auto', 'nftables', 'ipset', 'iptables', 'shorewall', 'dry-run'] as const;
export type FirewallBackendName = (typeof FIREWALL_BACKENDS)[number];

/**
 * Refuse a `[agent] banaction` that names no backend, so that check-config catches it before an
 * agent fails to start on it.
 * @param name the configured value
 * @throws ConfigError naming `banaction` and the valid names
 */
export function checkBackendName(name: string, where?: { readonly file?: string; readonly line?: number }): asserts name is FirewallBackendName {
  if (!(FIREWALL_BACKENDS as readonly string[]).includes(name)) throw unknownBackend(name, where);
}

function unknownBackend(name: string, where?: { readonly file?: string; readonly line?: number }): ConfigError {
  return new ConfigError(`unknown firewall backend '${name}' in [agent]; valid: ${FIREWALL_BACKENDS.join(', ')}`, where?.file, where?.line, 'banaction');
}

/**
 * Build the firewall backend an agent was configured with.
 * @param name one of {@link FIREWALL_BACKENDS}; `auto` picks nftables, then ipset, then iptables,
 *   by which tools actually work on this host (inside commandPrefix, when given)
 * @param options see {@link FirewallBackendOptions}
 * @returns the backend, not yet initialised (call init(jails))
 * @throws ConfigError naming `banaction` for an unknown name (with the valid ones), or when `auto`
 *   finds no working tool
 */
export async function createFirewallBackend(name: string, options: FirewallBackendOptions = {}): Promise<FirewallBackend> {
  switch (name) {
    case 'nftables':
      return new NftablesBackend({ ...options, table: options.nftTable });
    case 'dry-run':
      return new DryRunBackend({ logger: options.logger });
    case 'ipset': {
      const { IpsetBackend } = await import('./ipset.js');
      return new IpsetBackend(options);
    }
    case 'iptables': {
      const { IptablesBackend } = await import('./iptables.js');
      return new IptablesBackend(options);
    }
    case 'shorewall': {
      const { ShorewallBackend } = await import('./shorewall.js');
      return new ShorewallBackend(options);
    }
    case 'auto':
      return createFirewallBackend(await detectBackend(options.commandPrefix ?? []), options);
    default:
      throw unknownBackend(name);
  }
}

/**
 * Which backend `auto` means on this host: the first whose tools answer a harmless query. Merely
 * finding a binary is not enough (nft exists in containers without CAP_NET_ADMIN, where it fails).
 * @param prefix argv run before each probe
 * @returns `nftables`, `ipset` or `iptables`
 */
export async function detectBackend(prefix: readonly string[] = []): Promise<'nftables' | 'ipset' | 'iptables'> {
  const log = componentLogger('firewall');
  const works = async (argv: string[]): Promise<boolean> => {
    const full = [...prefix, ...argv];
    const r = await execa(full[0]!, full.slice(1), { reject: false, timeout: 10_000 });
    return r.exitCode === 0;
  };
  const tried: string[] = [];
  if (await works(['nft', 'list', 'tables'])) return 'nftables';
  tried.push('nft list tables');
  if ((await works(['ipset', 'list', '-n'])) && (await works(['iptables', '-w', '-S', 'INPUT']))) return 'ipset';
  tried.push('ipset list -n');
  if (await works(['iptables', '-w', '-S', 'INPUT'])) return 'iptables';
  tried.push('iptables -S INPUT');
  log.error({ tried }, 'no firewall tool works on this host');
  throw new ConfigError(`firewall backend 'auto': none of nft, ipset, iptables works here (tried: ${tried.join('; ')}); run as root or pick 'dry-run'`,
    undefined, undefined, 'banaction');
}
