/** Literal prefixes of anchored patterns: which of many regexes can match a line at all, with a cheap startsWith. */
import { type Flags, type Node } from './syntax.js';


const MAX_SET = 32;
const MAX_LITERAL = 96;
const SIMPLE_ESCAPES: Record<string, string> = { '\\n': '\n', '\\t': '\t', '\\r': '\r', '\\f': '\f', '\\v': '\v', '\\x07': '\x07' };

function withFlags(f: Flags, extra: Partial<Flags> | undefined): Flags {
  return extra ? { ...f, ...extra } : f;
}

function cross(a: readonly string[], b: readonly string[]): string[] | undefined {
  if (a.length * b.length > MAX_SET) return undefined;
  const out = new Set<string>();
  for (const x of a) for (const y of b) out.add(x + y);
  for (const s of out) if (s.length > MAX_LITERAL) return undefined;
  return [...out];
}

/** Every string the node can match, when that is a small finite set (zero-width nodes give ['']). */
function exactSet(n: Node, f: Flags): string[] | undefined {
  switch (n.t) {
    case 'char':
      // Mirrors charText(): only ASCII letters fold under (?i).
      return f.i && /^[A-Za-z]$/.test(n.ch) ? [n.ch.toUpperCase(), n.ch.toLowerCase()] : [n.ch];
    case 'esc':
      if (n.text === '\\b' || n.text === '\\B') return [''];
      return SIMPLE_ESCAPES[n.text] !== undefined ? [SIMPLE_ESCAPES[n.text]!] : undefined;
    case 'class': {
      if (n.neg) return undefined;
      const out: string[] = [];
      for (const it of n.items) {
        if (it.k !== 'range' || it.to > 0xffff || it.to - it.from >= MAX_SET) return undefined;
        for (let c = it.from; c <= it.to; c++) out.push(String.fromCharCode(c));
        if (out.length > 8) return undefined;
      }
      return [...new Set(out)];
    }
    case 'bol':
    case 'start':
    case 'end':
    case 'look':
    case 'setflags':
      return [''];
    case 'eol':
      // Printed as `(?:\n?$)` outside multiline mode: it may consume the final newline.
      return f.m ? [''] : ['', '\n'];
    case 'group':
      return exactSet(n.body, withFlags(f, n.flags));
    case 'atomic':
      return exactSet(n.body, f);
    case 'quant': {
      if (n.max > 3) return undefined;
      const b = exactSet(n.body, f);
      if (!b) return undefined;
      const out = new Set<string>(n.min === 0 ? [''] : []);
      let power: string[] | undefined = [''];
      for (let k = 1; k <= n.max; k++) {
        power = cross(power, b);
        if (!power) return undefined;
        if (k >= n.min) for (const s of power) out.add(s);
      }
      if (out.size > MAX_SET) return undefined;
      return [...out];
    }
    case 'alt': {
      const out = new Set<string>();
      for (const b of n.branches) {
        const e = exactSet(b, { ...f });
        if (!e) return undefined;
        for (const s of e) out.add(s);
      }
      return out.size > MAX_SET ? undefined : [...out];
    }
    case 'seq': {
      const local = { ...f };
      let acc: string[] | undefined = [''];
      for (const item of n.items) {
        if (item.t === 'setflags') {
          Object.assign(local, item.flags);
          continue;
        }
        const e = exactSet(item, local);
        if (!e) return undefined;
        acc = cross(acc, e);
        if (!acc) return undefined;
      }
      return acc;
    }
    default:
      return undefined;
  }
}

/** Strings one of which every match of the node starts with; [''] when nothing is known. */
function prefixSet(n: Node, f: Flags): string[] {
  if (n.t === 'seq') return seqPrefixes(n.items, 0, f);
  if (n.t === 'group') return prefixSet(n.body, withFlags(f, n.flags));
  if (n.t === 'atomic') return prefixSet(n.body, f);
  if (n.t === 'quant') return n.min >= 1 ? prefixSet(n.body, f) : [''];
  if (n.t === 'alt') {
    const out: string[] = [];
    for (const b of n.branches) out.push(...prefixSet(b, { ...f }));
    return out.length > MAX_SET ? [''] : out;
  }
  return exactSet(n, f) ?? [''];
}

function seqPrefixes(items: readonly Node[], from: number, f: Flags): string[] {
  const local = { ...f };
  let acc = [''];
  for (let i = from; i < items.length; i++) {
    const item = items[i]!;
    if (item.t === 'setflags') {
      Object.assign(local, item.flags);
      continue;
    }
    const e = exactSet(item, local);
    const next = cross(acc, e ?? prefixSet(item, local));
    // Stopping early is safe: what was collected so far still starts every match.
    if (!next) return acc;
    acc = next;
    if (!e) break;
  }
  return acc;
}

/** See TranslatedRegex.anchoredPrefixes. */
export function anchoredPrefixes(root: Node, globalFlags: Flags): string[] | undefined {
  const find = (n: Node, f: Flags): string[] | undefined => {
    if (n.t === 'group') return find(n.body, withFlags(f, n.flags));
    if (n.t === 'atomic') return find(n.body, f);
    if (n.t === 'alt') {
      const out: string[] = [];
      for (const b of n.branches) {
        const p = find(b, { ...f });
        if (!p) return undefined;
        out.push(...p);
      }
      return out;
    }
    if (n.t !== 'seq') return undefined;
    const local = { ...f };
    for (let i = 0; i < n.items.length; i++) {
      const item = n.items[i]!;
      if (item.t === 'setflags') {
        Object.assign(local, item.flags);
        continue;
      }
      if (item.t === 'start' || (item.t === 'bol' && !local.m)) return seqPrefixes(n.items, i + 1, local);
      // A group that starts with the anchor anchors the whole match, and starts it.
      if (item.t === 'group' || item.t === 'atomic') return find(item, local);
      return undefined;
    }
    return undefined;
  };
  const found = find(root, { ...globalFlags });
  if (!found || found.length === 0 || found.includes('')) return undefined;
  // "Starts with one of": a shorter string makes every longer one it begins redundant.
  const uniq = [...new Set(found)].sort((a, b) => a.length - b.length);
  return uniq.filter((s, i) => !uniq.slice(0, i).some((p) => s.startsWith(p)));
}
