/**
 * Comparing the failures two filter runs found in one log: as multisets of (address, line),
 * where the line is the one that completed the failure. A log repeats lines (the same attempt
 * twice in one second), so counts are compared, not sets.
 */
import { readFileSync } from 'node:fs';
import { tryParseAddress } from '../../common/address.js';

/** Result of a comparison. */
export interface Agreement {
  readonly left: number;
  readonly right: number;
  /** failures found by one side and not the other (sum over keys of the count difference) */
  readonly differences: number;
  /** a few examples: which side found it, how many more times, address and line */
  readonly examples: string[];
}

/**
 * Parse fail2ban-regex output made with `-o '@@<ip>@@<matches>'`: each failure starts a record
 * with "@@ip@@" and lists the lines of its ticket, the line that completed it last.
 * @param path file holding fail2ban-regex's stdout
 * @returns "ADDR<TAB>LINE" per failure, the address canonical as fleetban writes it
 */
export function parseFail2banOut(path: string): string[] {
  const out: string[] = [];
  let ip: string | undefined;
  let last: string | undefined;
  const flush = (): void => {
    if (ip !== undefined && last !== undefined) out.push(`${tryParseAddress(ip)?.text ?? ip}\t${last}`);
  };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^@@([^@]*)@@(.*)$/.exec(line);
    if (m) {
      flush();
      ip = m[1]!;
      last = m[2]!;
    } else if (line !== '') last = line;
  }
  flush();
  return out;
}

/** The differences of a comparison sorted into the documented deliberate kind and the rest. */
export interface Explained {
  /**
   * Lines both sides count the same number of times, fleetban against an address on the line,
   * the other side against one that is not on it (a reused pid whose earlier connection's address
   * fail2ban kept): docs/regex.md, "A failure counts against its own line's address".
   */
  readonly ownAddress: number;
  /**
   * Differences that vanish when the other side's caches run on the log's clock (fleetban agrees
   * there with the reference run): fail2ban-regex reading a file of days in a minute never
   * expires a connection by time. Counted only when a reference is given.
   */
  readonly clock: number;
  /** every other difference (should be 0) */
  readonly unexplained: number;
  /** a few unexplained ones */
  readonly examples: string[];
}

/** @returns the canonical addresses written on a log line (anything that parses as one) */
function addressesOn(line: string): Set<string> {
  const found = new Set<string>();
  for (const m of line.matchAll(/[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]+/g)) {
    const a = tryParseAddress(m[0].replace(/[.:]+$/, ''));
    if (a) found.add(a.text);
  }
  return found;
}

/**
 * Sort the differences between fleetban (left) and another tool (right) line by line.
 * @param left "ADDR<TAB>LINE" per failure, from fleetban
 * @param right the same from the other tool
 * @param reference the other tool's failures with its caches on the log clock, if it was run so
 * @returns how many differences are of the deliberate kinds and how many are not
 */
export function explainDifferences(left: readonly string[], right: readonly string[], reference?: readonly string[]): Explained {
  const counts = new Map<string, number>();
  for (const k of left) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const k of right) counts.set(k, (counts.get(k) ?? 0) - 1);
  // left minus reference, per key: 0 where fleetban agrees with the log-clock run
  const vsReference = new Map<string, number>();
  if (reference) {
    for (const k of left) vsReference.set(k, (vsReference.get(k) ?? 0) + 1);
    for (const k of reference) vsReference.set(k, (vsReference.get(k) ?? 0) - 1);
  }
  // per line: [fleetban's extra failures on an address on the line, the other side's extra on one
  // not on it, anything else]
  const byLine = new Map<string, { onLine: number; offLine: number; other: number; clock: number; keys: string[] }>();
  for (const [k, n] of counts) {
    if (n === 0) continue;
    const tab = k.indexOf('\t');
    const addr = k.slice(0, tab);
    const line = k.slice(tab + 1);
    let e = byLine.get(line);
    if (!e) byLine.set(line, (e = { onLine: 0, offLine: 0, other: 0, clock: 0, keys: [] }));
    if (reference && (vsReference.get(k) ?? 0) === 0) {
      e.clock += Math.abs(n);
      continue;
    }
    const on = addressesOn(line).has(addr);
    if (n > 0 && on) e.onLine += n;
    else if (n < 0 && !on) e.offLine -= n;
    else e.other += Math.abs(n);
    e.keys.push(`${n > 0 ? 'only fleetban' : 'only other'} (x${Math.abs(n)}): ${k}`);
  }
  let ownAddress = 0;
  let clock = 0;
  let unexplained = 0;
  const examples: string[] = [];
  for (const e of byLine.values()) {
    clock += e.clock;
    if (e.other === 0 && e.onLine === e.offLine) {
      ownAddress += 2 * e.onLine;
      continue;
    }
    unexplained += e.onLine + e.offLine + e.other;
    if (examples.length < 8) examples.push(...e.keys.slice(0, 8 - examples.length));
  }
  return { ownAddress, clock, unexplained, examples };
}

/**
 * @param left "ADDR<TAB>LINE" per failure (e.g. fleetban)
 * @param right the same from the other tool (e.g. fail2ban-regex)
 * @param names labels of the two sides for the examples
 * @returns the counts and the first few differences
 */
export function compareFailures(left: readonly string[], right: readonly string[], names: [string, string]): Agreement {
  const counts = new Map<string, number>();
  for (const k of left) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const k of right) counts.set(k, (counts.get(k) ?? 0) - 1);
  let differences = 0;
  const examples: string[] = [];
  for (const [k, n] of counts) {
    if (n === 0) continue;
    differences += Math.abs(n);
    if (examples.length < 8) examples.push(`only ${n > 0 ? names[0] : names[1]} (x${Math.abs(n)}): ${k}`);
  }
  return { left: left.length, right: right.length, differences, examples };
}
