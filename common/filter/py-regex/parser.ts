/** Python `re` syntax -> tree: groups, classes, quantifiers, flags, conditionals, as fail2ban filters write them. */
import { RegexTranslationError, INF, type Flags, type Node, type ClassItem } from './syntax.js';

export class Parser {
  private pos = 0;
  private groupCount = 0;
  readonly globalFlags: Flags;
  readonly names = new Map<string, number>();

  constructor(
    private readonly src: string,
    flags: Flags,
  ) {
    this.globalFlags = { ...flags };
    // Leading global flags: `(?i)` at the start applies to the whole pattern.
    const lead = /^\(\?([aiLmsux]+)\)/.exec(src);
    if (lead) {
      this.applyFlagLetters(this.globalFlags, lead[1]!, lead[0]);
      this.pos = lead[0].length;
    }
  }

  parse(): Node {
    const node = this.parseAlt(this.globalFlags);
    if (this.pos < this.src.length) this.fail(`unbalanced ')'`, this.src.slice(this.pos, this.pos + 10));
    return node;
  }

  private fail(message: string, construct: string): never {
    throw new RegexTranslationError(`${message} at position ${this.pos}`, construct);
  }

  private applyFlagLetters(flags: Partial<Flags>, letters: string, construct: string): void {
    for (const l of letters) {
      if (l === 'i' || l === 's' || l === 'm' || l === 'x') flags[l] = true;
      else if (l === 'a' || l === 'u') continue; // ASCII/Unicode classes: JS classes are ASCII already
      else this.fail(`flag '${l}' has no JavaScript equivalent`, construct);
    }
  }

  private parseAlt(flags: Flags): Node {
    const branches: Node[] = [this.parseSeq(flags)];
    while (this.src[this.pos] === '|') {
      this.pos++;
      branches.push(this.parseSeq(flags));
    }
    return branches.length === 1 ? branches[0]! : { t: 'alt', branches };
  }

  private parseSeq(outer: Flags): Node {
    // Inline flags in mid-pattern change the flags for the rest of this sequence's group.
    const flags = outer;
    const items: Node[] = [];
    while (this.pos < this.src.length) {
      const c = this.src[this.pos]!;
      if (c === '|' || c === ')') break;
      if (flags.x && /\s/.test(c)) {
        this.pos++;
        continue;
      }
      if (flags.x && c === '#') {
        while (this.pos < this.src.length && this.src[this.pos] !== '\n') this.pos++;
        continue;
      }
      const atom = this.parseAtom(flags);
      if (!atom) continue;
      if (atom.t === 'setflags') {
        Object.assign(flags, atom.flags);
        items.push(atom);
        continue;
      }
      items.push(this.parseQuant(atom, flags));
    }
    return items.length === 1 ? items[0]! : { t: 'seq', items };
  }

  private parseQuant(atom: Node, flags: Flags): Node {
    let node = atom;
    for (;;) {
      const c = this.src[this.pos];
      let min: number;
      let max: number;
      const start = this.pos;
      if (c === '*') [min, max] = [0, INF];
      else if (c === '+') [min, max] = [1, INF];
      else if (c === '?') [min, max] = [0, 1];
      else if (c === '{') {
        const m = /^\{(\d*)(?:(,)(\d*))?\}/.exec(this.src.slice(this.pos));
        if (!m || (m[1] === '' && m[2] === undefined)) return node; // literal '{'
        min = m[1] === '' ? 0 : Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? INF : Number(m[3]);
        this.pos += m[0].length - 1;
      } else return node;
      this.pos++;
      if (isAssertion(node)) this.fail('nothing to repeat', this.src.slice(start, this.pos));
      let lazy = false;
      let possessive = false;
      if (this.src[this.pos] === '?') {
        lazy = true;
        this.pos++;
      } else if (this.src[this.pos] === '+') {
        possessive = true;
        this.pos++;
      }
      node = { t: 'quant', body: node, min, max, lazy, possessive };
      void flags;
      if (!/[*+?{]/.test(this.src[this.pos] ?? '')) return node;
      // Python refuses `a**`; a following quantifier after a complete one is "multiple repeat".
      if (this.src[this.pos] !== '{') this.fail('multiple repeat', this.src.slice(start, this.pos + 1));
    }
  }

  private parseAtom(flags: Flags): Node | undefined {
    const c = this.src[this.pos]!;
    switch (c) {
      case '(':
        return this.parseGroup(flags);
      case '[':
        return this.parseClass(flags);
      case '.':
        this.pos++;
        return flags.s ? { t: 'class', neg: true, items: [] } : { t: 'dot' };
      case '^':
        this.pos++;
        return { t: 'bol' };
      case '$':
        this.pos++;
        return { t: 'eol' };
      case '\\':
        return this.parseEscape();
      default: {
        const cp = this.src.codePointAt(this.pos)!;
        const ch = String.fromCodePoint(cp);
        this.pos += ch.length;
        return { t: 'char', ch };
      }
    }
  }

  private parseGroup(flags: Flags): Node | undefined {
    const start = this.pos;
    this.pos++; // (
    const rest = this.src.slice(this.pos, this.pos + 40);
    const inner = (): Node => {
      const body = this.parseAlt({ ...flags });
      if (this.src[this.pos] !== ')') this.fail('missing )', this.src.slice(start, start + 20));
      this.pos++;
      return body;
    };
    if (rest[0] !== '?') {
      const pyIndex = ++this.groupCount;
      return { t: 'group', cap: true, pyIndex, body: inner() };
    }
    let m: RegExpExecArray | null;
    if ((m = /^\?P<([A-Za-z_]\w*)>/.exec(rest))) {
      this.pos += m[0].length;
      const pyIndex = ++this.groupCount;
      if (this.names.has(m[1]!)) this.fail(`redefinition of group name '${m[1]}'`, m[0]);
      this.names.set(m[1]!, pyIndex);
      return { t: 'group', cap: true, name: m[1]!, pyIndex, body: inner() };
    }
    if ((m = /^\?P=([A-Za-z_]\w*)\)/.exec(rest))) {
      this.pos += m[0].length;
      if (!this.names.has(m[1]!)) this.fail(`unknown group name '${m[1]}'`, `(${m[0]}`);
      return { t: 'backref', ref: m[1]! };
    }
    if (rest.startsWith('?:')) {
      this.pos += 2;
      return { t: 'group', cap: false, body: inner() };
    }
    if ((m = /^\?(<?[=!])/.exec(rest))) {
      this.pos += m[0].length;
      return { t: 'look', ahead: !m[1]!.startsWith('<'), neg: m[1]!.endsWith('!'), body: inner() };
    }
    if (rest.startsWith('?>')) {
      this.pos += 2;
      return { t: 'atomic', body: inner() };
    }
    if (rest.startsWith('?#')) {
      const end = this.src.indexOf(')', this.pos);
      if (end < 0) this.fail('missing ), unterminated comment', this.src.slice(start, start + 20));
      this.pos = end + 1;
      return undefined;
    }
    if ((m = /^\?\(([A-Za-z_]\w*|\d+)\)/.exec(rest))) {
      this.pos += m[0].length;
      const ref = m[1]!;
      const yes = this.parseSeq({ ...flags });
      let no: Node = { t: 'seq', items: [] };
      if (this.src[this.pos] === '|') {
        this.pos++;
        no = this.parseSeq({ ...flags });
      }
      if (this.src[this.pos] === '|') this.fail('conditional group with more than two branches', this.src.slice(start, this.pos + 1));
      if (this.src[this.pos] !== ')') this.fail('missing ) after conditional group', this.src.slice(start, start + 20));
      this.pos++;
      return { t: 'cond', ref, yes, no };
    }
    if ((m = /^\?([aiLmsux]*)(?:-([imsx]+))?(:|\))/.exec(rest))) {
      this.pos += m[0].length;
      const set: Partial<Flags> = {};
      this.applyFlagLetters(set, m[1]!, `(${m[0]}`);
      for (const l of m[2] ?? '') set[l as keyof Flags] = false;
      if (m[3] === ')') return { t: 'setflags', flags: set };
      const local = { ...flags, ...set };
      const body = this.parseAlt(local);
      if (this.src[this.pos] !== ')') this.fail('missing )', this.src.slice(start, start + 20));
      this.pos++;
      return { t: 'group', cap: false, body, flags: set };
    }
    if (rest.startsWith('?<')) {
      // Python 3.12+ spelling of named groups: not used by fail2ban, accepted for completeness.
      const n = /^\?<([A-Za-z_]\w*)>/.exec(rest);
      if (n) {
        this.pos += n[0].length;
        const pyIndex = ++this.groupCount;
        this.names.set(n[1]!, pyIndex);
        return { t: 'group', cap: true, name: n[1]!, pyIndex, body: inner() };
      }
    }
    return this.fail('unknown extension', `(${rest.slice(0, 4)}`);
  }

  private parseEscape(): Node {
    const start = this.pos;
    const c = this.src[this.pos + 1];
    if (c === undefined) this.fail('bad escape (end of pattern)', '\\');
    this.pos += 2;
    switch (c) {
      case 'A':
        return { t: 'start' };
      case 'Z':
        return { t: 'end' };
      case 'b':
      case 'B':
      case 'd':
      case 'D':
      case 'w':
      case 'W':
      case 's':
      case 'S':
      case 'n':
      case 't':
      case 'r':
      case 'f':
      case 'v':
        return { t: 'esc', text: `\\${c}` };
      case 'a':
        return { t: 'esc', text: '\\x07' };
      case 'x': {
        const m = /^[0-9a-fA-F]{2}/.exec(this.src.slice(this.pos));
        if (!m) this.fail('incomplete escape', this.src.slice(start, this.pos + 2));
        this.pos += 2;
        return { t: 'char', ch: String.fromCharCode(parseInt(m[0], 16)) };
      }
      case 'u':
      case 'U': {
        const len = c === 'u' ? 4 : 8;
        const hex = this.src.slice(this.pos, this.pos + len);
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) this.fail('incomplete escape', `\\${c}${hex}`);
        this.pos += len;
        return { t: 'char', ch: String.fromCodePoint(parseInt(hex, 16)) };
      }
      case 'N':
        return this.fail('named Unicode escapes (\\N{...}) are not supported', this.src.slice(start, start + 12));
      default:
        break;
    }
    if (/[0-9]/.test(c)) {
      // Octal when it starts with 0 or has three octal digits; otherwise a group number.
      const oct = /^(?:0[0-7]{0,2}|[0-7]{3})/.exec(this.src.slice(start + 1));
      if (oct) {
        this.pos = start + 1 + oct[0].length;
        return { t: 'char', ch: String.fromCharCode(parseInt(oct[0], 8)) };
      }
      const num = /^\d{1,2}/.exec(this.src.slice(start + 1))![0];
      this.pos = start + 1 + num.length;
      if (Number(num) > this.groupCount) this.fail(`invalid group reference ${num}`, `\\${num}`);
      return { t: 'backref', ref: num };
    }
    if (/[A-Za-z]/.test(c)) this.fail(`bad escape \\${c}`, `\\${c}`);
    return { t: 'char', ch: c };
  }

  private parseClass(flags: Flags): Node {
    const start = this.pos;
    this.pos++;
    let neg = false;
    if (this.src[this.pos] === '^') {
      neg = true;
      this.pos++;
    }
    const items: ClassItem[] = [];
    let first = true;
    const readChar = (): ClassItem => {
      const c = this.src[this.pos];
      if (c === undefined) this.fail('unterminated character set', this.src.slice(start, start + 20));
      if (c !== '\\') {
        const cp = this.src.codePointAt(this.pos)!;
        this.pos += cp > 0xffff ? 2 : 1;
        return { k: 'range', from: cp, to: cp };
      }
      const e = this.src[this.pos + 1];
      if (e === undefined) this.fail('bad escape (end of pattern)', '\\');
      this.pos += 2;
      if ('dDwWsS'.includes(e)) return { k: 'esc', text: `\\${e}` };
      const simple: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, a: 7, b: 8 };
      if (simple[e] !== undefined) return { k: 'range', from: simple[e], to: simple[e] };
      if (e === 'x' || e === 'u' || e === 'U') {
        const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        const hex = this.src.slice(this.pos, this.pos + len);
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) this.fail('incomplete escape', `\\${e}${hex}`);
        this.pos += len;
        const cp = parseInt(hex, 16);
        return { k: 'range', from: cp, to: cp };
      }
      if (/[0-7]/.test(e)) {
        const oct = /^[0-7]{1,3}/.exec(this.src.slice(this.pos - 1))![0];
        this.pos += oct.length - 1;
        const cp = parseInt(oct, 8);
        return { k: 'range', from: cp, to: cp };
      }
      if (/[A-Za-z0-9]/.test(e)) this.fail(`bad escape \\${e} in character set`, `\\${e}`);
      return { k: 'range', from: e.codePointAt(0)!, to: e.codePointAt(0)! };
    };
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined) this.fail('unterminated character set', this.src.slice(start, start + 20));
      // Python takes a ']' right after '[' or '[^' literally.
      if (c === ']' && !first) {
        this.pos++;
        break;
      }
      first = false;
      const a = readChar();
      if (a.k === 'range' && this.src[this.pos] === '-' && this.src[this.pos + 1] !== ']' && this.src[this.pos + 1] !== undefined) {
        this.pos++;
        const b = readChar();
        if (b.k !== 'range') this.fail('bad character range', this.src.slice(start, this.pos));
        if (b.from < a.from) this.fail('bad character range', this.src.slice(start, this.pos));
        items.push({ k: 'range', from: a.from, to: b.to });
      } else items.push(a);
    }
    if (flags.i) addOtherCase(items);
    return { t: 'class', neg, items };
  }
}

function isAssertion(n: Node): boolean {
  return n.t === 'bol' || n.t === 'eol' || n.t === 'start' || n.t === 'end' || n.t === 'setflags' || (n.t === 'esc' && /^\\[bB]$/.test(n.text));
}

function addOtherCase(items: ClassItem[]): void {
  const extra: ClassItem[] = [];
  for (const it of items) {
    if (it.k !== 'range') continue;
    const lo = Math.max(it.from, 0x41);
    const hi = Math.min(it.to, 0x5a);
    if (lo <= hi) extra.push({ k: 'range', from: lo + 32, to: hi + 32 });
    const lo2 = Math.max(it.from, 0x61);
    const hi2 = Math.min(it.to, 0x7a);
    if (lo2 <= hi2) extra.push({ k: 'range', from: lo2 - 32, to: hi2 - 32 });
  }
  items.push(...extra);
}
