import { parseFormula, type Formula } from './formula.js';
import { MAX_BAN_MS } from '../protocol/messages.js';

/** fail2ban's `bantime.*` options of one jail, in seconds. */
export interface BanTimePolicy {
  /** Base bantime in seconds, or -1 for permanent. */
  readonly bantime: number;
  readonly increment: boolean;
  readonly factor: number;
  /** Formula text (fail2ban's default when unset). */
  readonly formula: string;
  readonly multipliers: readonly number[];
  /** Cap in seconds, 0 for none. */
  readonly maxtime: number;
  /** Random extra seconds at most, 0 for none. */
  readonly rndtime: number;
  /** Count earlier bans of the address in every jail, not only this one. */
  readonly overalljails: boolean;
}

/** fail2ban's default formula: doubling per earlier ban, at most 2^20 times. */
export const DEFAULT_FORMULA = 'ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor';

/** How many earlier-ban counts get their own entry; later counts use the last entry. */
const TABLE_SIZE = 21;

/**
 * The ban duration for each number of earlier bans, in ms (-1 permanent), precomputed so the
 * counting script picks `table[min(count, last)]` atomically without evaluating anything.
 * @throws Error from the formula parser
 */
export function banTimeTable(p: BanTimePolicy): number[] {
  if (p.bantime < 0) return [-1];
  const baseMs = Math.min(Math.round(p.bantime * 1000), MAX_BAN_MS);
  if (!p.increment) return [baseMs];
  // Escalation (2^20 times the base by default) must stay within what every firewall accepts.
  const capMs = Math.min(p.maxtime > 0 ? Math.round(p.maxtime * 1000) : Infinity, MAX_BAN_MS);
  let at: (count: number) => number;
  if (p.multipliers.length > 0) {
    at = (count) => p.bantime * p.factor * p.multipliers[Math.min(count, p.multipliers.length - 1)]!;
  } else {
    const f: Formula = parseFormula(p.formula);
    at = (count) => f({ time: p.bantime, count, factor: p.factor });
  }
  const size = Math.max(TABLE_SIZE, p.multipliers.length);
  const table: number[] = [];
  for (let count = 0; count < size; count++) {
    const seconds = at(count);
    // A formula that goes wrong (NaN, negative) must not make a ban shorter than the base or permanent.
    const ms = Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : baseMs;
    table.push(Math.min(Math.max(ms, 1000), capMs));
  }
  return table;
}
