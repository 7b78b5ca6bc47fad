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
  private readonly ranges: Array<{ family: 4 | 6; words: number[]; prefix: number }> = [];

  /** @param entries addresses or CIDRs; an invalid one throws InvalidInputError naming it */
  constructor(entries: Iterable<string> = []) {
    for (const entry of entries) this.add(entry);
  }

  add(entry: string): void {
    const target = parseBanTarget(entry.includes('/') ? normalizeLooseCidr(entry) : entry);
    this.ranges.push({ family: target.family, words: wordsOf(target.text.split('/')[0]!), prefix: target.prefix });
  }

  get size(): number {
    return this.ranges.length;
  }

  /** @returns true when `addr` (address or CIDR text, canonical) lies inside any entry */
  contains(addr: string): boolean {
    if (this.ranges.length === 0) return false;
    const slash = addr.indexOf('/');
    const base = slash === -1 ? addr : addr.slice(0, slash);
    let words = canonicalWords(base);
    if (!words) {
      const target = tryParseAddress(base);
      if (!target) return false;
      words = wordsOf(target.text);
    }
    const max = words.length * 32;
    const ownPrefix = slash === -1 ? max : Number(addr.slice(slash + 1));
    for (const range of this.ranges) {
      if (range.words.length !== words.length || ownPrefix < range.prefix) continue;
      if (samePrefix(words, range.words, range.prefix)) return true;
    }
    return false;
  }
}

/** True when the first `bits` bits of two addresses' words agree. */
function samePrefix(a: readonly number[], b: readonly number[], bits: number): boolean {
  let i = 0;
  for (; bits >= 32; bits -= 32, i++) if (a[i] !== b[i]) return false;
  if (bits === 0) return true;
  const mask = (0xffffffff << (32 - bits)) >>> 0;
  return ((a[i]! & mask) >>> 0) === ((b[i]! & mask) >>> 0);
}

/** Words of any canonical address (the fast path, else ipaddr.js' bytes). */
function wordsOf(canonical: string): number[] {
  const fast = canonicalWords(canonical);
  if (fast) return fast;
  const bytes = ipaddr.parse(canonical).toByteArray();
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) words.push(((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0);
  return words;
}

/**
 * @returns true when the text is a dotted-quad IPv4 address in canonical form (no leading
 *   zeros, each part at most 255), which tryParseAddress() would return unchanged. The one
 *   check of that form: the filter engine runs it on every address a log line carries, the
 *   coordinator on every failure, the firewall on every ban of a sync.
 */
export function isCanonicalIPv4(s: string): boolean {
  const n = s.length;
  if (n < 7 || n > 15) return false;
  let parts = 0;
  let i = 0;
  while (i < n) {
    const start = i;
    let v = 0;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + c - 48;
      i++;
    }
    const len = i - start;
    if (len === 0 || len > 3 || v > 255 || (len > 1 && s.charCodeAt(start) === 48)) return false;
    parts++;
    if (i === n) break;
    if (s.charCodeAt(i) !== 46 || parts === 4) return false;
    i++;
    if (i === n) return false;
  }
  return parts === 4;
}

/**
 * The 32-bit words (one for IPv4, four for IPv6) of an address written exactly as
 * tryParseAddress() prints it; undefined for anything else, and for the rare canonical forms
 * this shortcut does not decide (several runs of zero groups, IPv4-mapped), which callers hand
 * to tryParseAddress(). It runs for every failure a coordinator counts: ipaddr.js takes ~4 µs to
 * parse and print an IPv6 address here, and the coordinator validated and whitelisted each
 * failure's address that way (most of its CPU time under a flood). Tested against
 * tryParseAddress() on generated addresses.
 */
export function canonicalWords(text: string): number[] | undefined {
  if (text.length > 39) return undefined;
  if (!text.includes(':')) {
    if (!isCanonicalIPv4(text)) return undefined;
    const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number];
    return [((a << 24) | (b << 16) | (c << 8) | d) >>> 0];
  }
  // One pass over the characters: hextets are lowercase hex without leading zeros, '::' at most once.
  const groups: number[] = [];
  const n = text.length;
  let gapAt = -1;
  let i = 0;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return undefined;
    gapAt = 0;
    i = 2;
  }
  while (i < n) {
    let value = 0;
    const start = i;
    for (; i < n && i - start < 5; i++) {
      const c = text.charCodeAt(i);
      const hex = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
      if (hex === -1) break;
      value = value * 16 + hex;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4 || (digits > 1 && text.charCodeAt(start) === 48)) return undefined;
    groups.push(value);
    if (i === n) break;
    if (text.charCodeAt(i) !== 58 || groups.length > 8) return undefined;
    i++;
    if (text.charCodeAt(i) === 58) {
      if (gapAt !== -1) return undefined;
      gapAt = groups.length;
      i++;
    } else if (i === n) {
      return undefined;
    }
  }
  const compressed = 8 - groups.length;
  if (gapAt === -1 ? compressed !== 0 : compressed < 2) return undefined;
  if (gapAt !== -1) groups.splice(gapAt, 0, ...new Array<number>(compressed).fill(0));
  // Canonical: '::' stands for the only run of two or more zero groups, all of it. Where the
  // form is decided differently (several such runs: ipaddr.js and RFC 5952 break ties
  // differently), leave it to tryParseAddress().
  let runs = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i >= 2) {
      runs++;
      if (gapAt === -1 || i !== gapAt || j - i !== compressed) return undefined;
    }
    i = j;
  }
  if (runs > 1) return undefined;
  // IPv4-mapped addresses are canonically IPv4.
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) return undefined;
  return [0, 2, 4, 6].map((i) => ((groups[i]! << 16) | groups[i + 1]!) >>> 0);
}

/** True when `text` is an address in the canonical form tryParseAddress() gives. */
export function isCanonicalAddress(text: string): boolean {
  return canonicalWords(text) !== undefined || tryParseAddress(text)?.text === text;
}

/** ignoreip lists often write networks with host bits set (127.0.0.1/8); accept them as the network. */
function normalizeLooseCidr(entry: string): string {
  const [addr, bits] = entry.trim().split('/');
  const base = single(addr!);
  const prefix = Number(bits);
  if (!Number.isInteger(prefix)) throw new InvalidInputError(`'${entry}': prefix length is not a number`);
  return `${networkAddress(base.text, base.family, Math.min(prefix, base.family === 4 ? 32 : 128))}/${prefix}`;
}
