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
