import ipaddr from 'ipaddr.js';
import { InvalidInputError } from './errors.js';

/** A ban target: one address, or a network in CIDR form. Always in canonical text form. */
export interface BanTarget {
  /** Canonical text: `198.51.100.7`, `2001:db8::1`, `203.0.113.0/24`, `2001:db8::/64`. */
  readonly text: string;
  readonly family: 4 | 6;
  /** Prefix length; 32 or 128 for a single address. */
  readonly prefix: number;
}

/**
 * Parse an address or CIDR network as typed by an operator or found in a log line.
 * IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes IPv4 so one attacker has one key.
 * A CIDR with host bits set (`203.0.113.9/24`) is refused: the operator probably meant something else.
 * @param input text to parse
 * @returns the canonical target
 * @throws InvalidInputError with the reason
 */
export function parseBanTarget(input: string): BanTarget {
  const text = input.trim();
  if (text.length === 0) throw new InvalidInputError('empty address');
  if (text.length > 64) throw new InvalidInputError(`'${text.slice(0, 64)}…' is too long to be an address`);
  const slash = text.indexOf('/');
  if (slash === -1) return single(text);

  const addrPart = text.slice(0, slash);
  const prefixPart = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixPart)) throw new InvalidInputError(`'${text}': prefix length '${prefixPart}' is not a number`);
  const base = single(addrPart);
  const prefix = Number(prefixPart);
  const max = base.family === 4 ? 32 : 128;
  if (prefix > max) throw new InvalidInputError(`'${text}': prefix length ${prefix} is more than ${max}`);
  if (prefix === max) return base;
  if (prefix === 0) throw new InvalidInputError(`'${text}': a /0 network would ban every address`);
  const network = networkAddress(base.text, base.family, prefix);
  if (network !== base.text) {
    throw new InvalidInputError(`'${text}' has host bits set; the network is ${network}/${prefix}`);
  }
  return { text: `${network}/${prefix}`, family: base.family, prefix };
}

/**
 * Parse a single address (no CIDR).
 * @returns the canonical target, or undefined when the text is not an IP address
 */
export function tryParseAddress(text: string): BanTarget | undefined {
  try {
    return single(text);
  } catch {
    return undefined;
  }
}

function single(text: string): BanTarget {
  // ipaddr.isValid accepts shorthand like "1" or "0x7f.1"; attackers' log text must not turn into
  // surprising addresses, so only dotted-quad IPv4 is accepted.
  if (/^[\d.]+$/.test(text)) {
    if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(text) || !ipaddr.IPv4.isValidFourPartDecimal(text)) {
      throw new InvalidInputError(`'${text}' is not a valid IPv4 address`);
    }
    return { text: ipaddr.IPv4.parse(text).toString(), family: 4, prefix: 32 };
  }
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (!bare.includes(':') || bare.includes('%') || !ipaddr.IPv6.isValid(bare)) {
    throw new InvalidInputError(`'${text}' is not a valid IP address`);
  }
  const v6 = ipaddr.IPv6.parse(bare);
  if (v6.isIPv4MappedAddress()) return { text: v6.toIPv4Address().toString(), family: 4, prefix: 32 };
  return { text: v6.toString(), family: 6, prefix: 128 };
}

function networkAddress(addr: string, family: 4 | 6, prefix: number): string {
  const parsed = family === 4 ? ipaddr.IPv4.parse(addr) : ipaddr.IPv6.parse(addr);
  const bytes = parsed.toByteArray();
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/**
 * The network of `prefix` bits that contains `addr`, e.g. to count IPv6 attackers per /64.
 * @returns CIDR text, or the address itself when prefix covers the whole address
 */
export function containingNetwork(target: BanTarget, prefix: number): BanTarget {
  const max = target.family === 4 ? 32 : 128;
  if (prefix >= max || target.prefix <= prefix) return target;
  return { text: `${networkAddress(target.text.split('/')[0]!, target.family, prefix)}/${prefix}`, family: target.family, prefix };
}

/** A list of addresses and networks to test membership against (ignoreip). */
export class AddressMatcher {
  private readonly ranges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> = [];

  /** @param entries addresses or CIDRs; an invalid one throws InvalidInputError naming it */
  constructor(entries: Iterable<string> = []) {
    for (const entry of entries) this.add(entry);
  }

  add(entry: string): void {
    const target = parseBanTarget(entry.includes('/') ? normalizeLooseCidr(entry) : entry);
    const [addr] = target.text.split('/');
    this.ranges.push([ipaddr.parse(addr!), target.prefix]);
  }

  get size(): number {
    return this.ranges.length;
  }

  /** @returns true when `addr` (address or CIDR text, canonical) lies inside any entry */
  contains(addr: string): boolean {
    const target = tryParseAddress(addr.split('/')[0]!);
    if (!target) return false;
    const parsed = ipaddr.parse(target.text);
    const ownPrefix = addr.includes('/') ? Number(addr.split('/')[1]) : target.prefix;
    for (const [range, bits] of this.ranges) {
      if (range.kind() !== parsed.kind() || ownPrefix < bits) continue;
      if ((parsed as ipaddr.IPv4).match(range as ipaddr.IPv4, bits)) return true;
    }
    return false;
  }
}

/** ignoreip lists often write networks with host bits set (127.0.0.1/8); accept them as the network. */
function normalizeLooseCidr(entry: string): string {
  const [addr, bits] = entry.trim().split('/');
  const base = single(addr!);
  const prefix = Number(bits);
  if (!Number.isInteger(prefix)) throw new InvalidInputError(`'${entry}': prefix length is not a number`);
  return `${networkAddress(base.text, base.family, Math.min(prefix, base.family === 4 ? 32 : 128))}/${prefix}`;
}
