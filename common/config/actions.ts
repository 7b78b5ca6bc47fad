import { InvalidInputError } from '../errors.js';
/**
 * fail2ban `action` values: one action per line, `name[key=value, key2="a, b"]`. fleetban enforces
 * every firewall action with the host's own backend (a fleet is not uniform); what matters from the
 * action is the jail's name, ports and protocol.
 */

export interface ActionRef {
  readonly name: string;
  readonly params: ReadonlyMap<string, string>;
  /** The line as written, for messages. */
  readonly text: string;
}

/** Families of fail2ban actions whose meaning is "drop this address in the host firewall". */
const FIREWALL_ACTION_RE = /^(?:iptables|ip6tables|nftables|shorewall)(?:-[\w-]+)?$/;

/** @returns true when fleetban enforces this action through the host's firewall backend */
export function isFirewallAction(name: string): boolean {
  return FIREWALL_ACTION_RE.test(name);
}

/**
 * Parse an interpolated `action` value.
 * @returns actions in order
 * @throws Error describing the malformed line
 */
export function parseActions(value: string): ActionRef[] {
  const out: ActionRef[] = [];
  for (const line of splitActions(value)) {
    const m = /^([\w.-]+)\s*(?:\[(.*)\])?$/s.exec(line);
    if (!m) throw new InvalidInputError(`cannot parse action '${line}' (expected name or name[key=value, …])`);
    out.push({ name: m[1]!, params: parseParams(m[2] ?? '', line), text: line });
  }
  return out;
}

/** Actions are separated by newlines, but a bracketed parameter list may itself span lines. */
function splitActions(value: string): string[] {
  const out: string[] = [];
  let current = '';
  let depth = 0;
  let quote: string | undefined;
  for (const ch of value) {
    if (quote) {
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === '[') {
      depth++;
    } else if (ch === ']') {
      depth--;
    } else if (ch === '\n' && depth === 0) {
      if (current.trim()) out.push(current.trim());
      current = '';
      continue;
    }
    current += ch;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

function parseParams(text: string, line: string): Map<string, string> {
  const params = new Map<string, string>();
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /[\s,]/.test(text[i]!)) i++;
    if (i >= n) break;
    const keyStart = i;
    while (i < n && text[i] !== '=') i++;
    if (i >= n) throw new InvalidInputError(`action '${line}': parameter '${text.slice(keyStart).trim()}' has no '='`);
    const key = text.slice(keyStart, i).trim();
    i++;
    while (i < n && text[i] === ' ') i++;
    let value = '';
    const q = text[i];
    if (q === '"' || q === "'") {
      const end = text.indexOf(q, i + 1);
      if (end === -1) throw new InvalidInputError(`action '${line}': unterminated quote in parameter '${key}'`);
      value = text.slice(i + 1, end);
      i = end + 1;
    } else {
      const start = i;
      while (i < n && text[i] !== ',') i++;
      value = text.slice(start, i).trim();
    }
    params.set(key, value);
  }
  return params;
}
