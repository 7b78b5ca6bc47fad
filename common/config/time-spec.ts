import { InvalidInputError } from '../errors.js';
/**
 * fail2ban time values: `600`, `10m`, `1h`, `1d`, `1w`, `1h 30m`, `1d12h`, `-1` (permanent).
 * Units follow fail2ban's abbreviations: y(ears), mo(nths), w(eeks), d(ays), h(ours), m(inutes), s(econds).
 */
const UNITS: Array<[RegExp, number]> = [
  [/^(?:years?|yea|ye|y)$/i, 365 * 86400],
  [/^(?:months?|mon|mo)$/i, 30 * 86400 + 10 * 3600 + 30 * 60], // fail2ban: a month is 30.4375 days
  [/^(?:weeks?|wee|we|w)$/i, 7 * 86400],
  [/^(?:days?|da|dd|d)$/i, 86400],
  [/^(?:hours?|hou|ho|hh|h)$/i, 3600],
  [/^(?:minutes?|mins?|mi|mm|m)$/i, 60],
  [/^(?:seconds?|secs?|se|ss|s)$/i, 1],
];

/** Permanent ban marker, as fail2ban's `bantime = -1`. */
export const PERMANENT = -1;

/**
 * @param text a fail2ban time value
 * @returns seconds (may be fractional), or PERMANENT for a negative value
 * @throws Error describing the bad part
 */
export function parseTimeSpec(text: string): number {
  const value = text.trim();
  if (value === '') throw new InvalidInputError('empty time value');
  if (/^-\d+(?:\.\d+)?$/.test(value)) return PERMANENT;
  if (/^\d+(?:\.\d+)?$/.test(value)) return Number(value);
  let total = 0;
  let rest = value;
  const part = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*/i;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) throw new InvalidInputError(`'${value}' is not a time value (expected e.g. 600, 10m, 1h, 1d, -1)`);
    const unit = UNITS.find(([re]) => re.test(m[2]!));
    if (!unit) throw new InvalidInputError(`'${value}': unknown time unit '${m[2]}'`);
    total += Number(m[1]) * unit[1];
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** @returns a short human form: 600 -> "10m", 90061 -> "1d1h1m1s", -1 -> "permanent" */
export function formatDuration(seconds: number): string {
  if (seconds < 0) return 'permanent';
  let s = Math.round(seconds);
  if (s === 0) return '0s';
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.join('');
}
