import { ConfigError } from '../../common/errors.js';

/** A journal field match as journalctl takes it: upper-case field name, `=`, any value. */
const MATCH_RE = /^[A-Z0-9_]+=/;

/**
 * Turn fail2ban `journalmatch` lines into journalctl arguments. Within a line, space-separated
 * matches are ANDed (different fields) and `+` separates alternatives, exactly journalctl's syntax;
 * separate lines are alternatives too (fail2ban adds a disjunction per `addjournalmatch`). Values
 * may be quoted (`"_SYSTEMD_UNIT=my unit.service"`), as fail2ban splits them shell-style.
 * Each token is validated so no value can be taken for a journalctl option.
 * @param lines one entry per journalmatch line
 * @param jail jail name for errors
 * @returns arguments to append after `--`, e.g. `['_SYSTEMD_UNIT=sshd.service', '+', '_COMM=sshd']`
 * @throws ConfigError naming the bad token
 */
export function parseJournalMatch(lines: readonly string[], jail: string): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const tokens = splitWords(line, jail);
    if (tokens.length === 0) continue;
    if (out.length > 0) out.push('+');
    for (const t of tokens) {
      if (t !== '+' && !MATCH_RE.test(t)) {
        throw new ConfigError(
          `jail ${jail}: journalmatch '${t}' is not FIELD=value or '+'`,
          undefined,
          undefined,
          'journalmatch',
        );
      }
      out.push(t);
    }
    if (out[out.length - 1] === '+' || out[0] === '+') {
      throw new ConfigError(`jail ${jail}: journalmatch '${line}' starts or ends with '+'`, undefined, undefined, 'journalmatch');
    }
  }
  return out;
}

function splitWords(line: string, jail: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: string | undefined;
  for (const c of line) {
    if (quote) {
      if (c === quote) quote = undefined;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new ConfigError(`jail ${jail}: unbalanced quote in journalmatch '${line}'`, undefined, undefined, 'journalmatch');
  if (inWord) words.push(cur);
  return words;
}
