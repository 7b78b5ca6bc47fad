/**
 * Checks shared by every backend: jail definitions and ban targets are validated once, here, so no
 * backend ever writes unchecked text into an nft/ipset/iptables batch (those batches are small
 * languages, and an address taken from a log line must not be able to add a statement).
 */
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { isCanonicalIPv4, parseBanTarget, type BanTarget } from '../../common/address.js';
import { InvalidInputError } from '../../common/errors.js';
import type { FirewallBan, JailRule } from './backend.js';

/** The jail name syntax promised by {@link JailRule}. */
export const JAIL_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

const PROTOCOLS = new Set(['tcp', 'udp', 'sctp']);

/**
 * Validate jail definitions before any backend turns them into rules.
 * @param jails the jails to check
 * @returns the same jails, keyed by name
 * @throws InvalidInputError naming the jail and the problem
 */
export function validateJailRules(jails: readonly JailRule[]): Map<string, JailRule> {
  const byName = new Map<string, JailRule>();
  for (const j of jails) {
    if (typeof j.jail !== 'string' || !JAIL_NAME.test(j.jail)) {
      throw new InvalidInputError(`jail name '${String(j.jail)}' must match ${JAIL_NAME}`);
    }
    if (byName.has(j.jail)) throw new InvalidInputError(`jail '${j.jail}' is defined twice`);
    // A label becomes part of a chain name in a restore file, so it gets the jail name's check.
    if (j.label !== undefined && (typeof j.label !== 'string' || !JAIL_NAME.test(j.label))) {
      throw new InvalidInputError(`jail '${j.jail}': label '${String(j.label)}' must match ${JAIL_NAME}`);
    }
    if (j.ports !== 'all') {
      if (j.ports.length === 0) throw new InvalidInputError(`jail '${j.jail}': empty port list (use 'all')`);
      for (const [lo, hi] of j.ports) {
        if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
          throw new InvalidInputError(`jail '${j.jail}': port range ${lo}-${hi} is not within 1-65535`);
        }
      }
    }
    if (j.protocols !== 'all') {
      if (j.protocols.length === 0) throw new InvalidInputError(`jail '${j.jail}': empty protocol list (use 'all')`);
      for (const p of j.protocols) {
        if (!PROTOCOLS.has(p)) throw new InvalidInputError(`jail '${j.jail}': unknown protocol '${String(p)}'`);
      }
    }
    byName.set(j.jail, j);
  }
  return byName;
}

/** The protocols a port-scoped jail applies to ('all' means every protocol that has ports). */
export function portProtocols(rule: JailRule): ReadonlyArray<'tcp' | 'udp' | 'sctp'> {
  return rule.protocols === 'all' ? ['tcp', 'udp', 'sctp'] : rule.protocols;
}

/** A ban after validation: canonical target, family taken from the address itself. */
export interface CheckedBan {
  readonly jail: string;
  readonly target: BanTarget;
  readonly until: number;
}

/**
 * @param ban a ban as handed to a backend
 * @returns the ban with its address parsed into canonical form
 * @throws InvalidInputError when the address is not an address or CIDR, or until is not a time
 */
export function checkBan(ban: FirewallBan): CheckedBan {
  const target = fastTarget(ban.addr) ?? parseBanTarget(ban.addr);
  if (!Number.isFinite(ban.until) || (ban.until < 0 && ban.until !== -1)) {
    throw new InvalidInputError(`ban of ${ban.addr} in jail '${ban.jail}': until ${ban.until} is neither epoch ms nor -1`);
  }
  return { jail: ban.jail, target, until: ban.until };
}

/** Key of one (jail, address) pair in buffers and ledgers (NUL cannot occur in either). */
export function banKey(jail: string, addr: string): string {
  return `${jail}\u0000${addr}`;
}

/** @returns the jail and address of a {@link banKey} */
export function splitBanKey(key: string): { jail: string; addr: string } {
  const i = key.indexOf('\u0000');
  return { jail: key.slice(0, i), addr: key.slice(i + 1) };
}

/**
 * A name of at most `max` characters for a per-jail kernel object (ipset set names stop at 31,
 * iptables chains at 28). Short jail names are kept readable; long ones are cut and get a hash
 * suffix so two long names sharing a start still get different objects.
 */
export function boundedName(prefix: string, jail: string, max: number): string {
  const plain = `${prefix}${jail}`;
  if (plain.length <= max) return plain;
  const hash = createHash('sha256').update(jail).digest('hex').slice(0, 8);
  return `${plain.slice(0, max - 9)}~${hash}`;
}

/**
 * A sync of 100,000 bans spends half a second in the general parser; bans from the coordinator
 * are already canonical single addresses, so those are recognised cheaply here (node's own
 * address check, then a comparison with the RFC 5952 form). Anything else, including CIDR,
 * IPv4-mapped and non-canonical spellings, returns undefined and takes the general parser.
 */
function fastTarget(text: string): BanTarget | undefined {
  if (text.length > 39) return undefined;
  if (isCanonicalIPv4(text)) return { text, family: 4, prefix: 32 };
  if (text.includes('.') || !isIPv6(text)) return undefined;
  const canonical = rfc5952(text);
  return canonical === text ? { text, family: 6, prefix: 128 } : undefined;
}

/** RFC 5952 text of an IPv6 address that isIPv6 accepted and that has no dotted tail; undefined for IPv4-mapped. */
function rfc5952(text: string): string | undefined {
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = new Array<number>(8).fill(0);
  head.forEach((g, i) => (groups[i] = parseInt(g, 16)));
  tail.forEach((g, i) => (groups[8 - tail.length + i] = parseInt(g, 16)));
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) return undefined;
  let bestStart = -1;
  let bestLen = 1; // a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * @param text an address or CIDR
 * @returns its canonical target, cheaply when it already is canonical
 * @throws InvalidInputError when it is not an address or CIDR
 */
export function banTarget(text: string): BanTarget {
  return fastTarget(text) ?? parseBanTarget(text);
}

/** Exposed for tests: the fast path must agree with the general parser. */
export const fastTargetForTests = fastTarget;
