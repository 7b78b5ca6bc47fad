/** Tree -> JavaScript regex source: local flags applied while printing, named groups numbered, Python's `$` and `.` spelled out. */
import { RegexTranslationError, INF, type Flags, type Node } from './syntax.js';


export class Printer {
  readonly groups = new Map<string, number[]>();
  private readonly lastIndex = new Map<string, number>();
  private count = 0;
  usesLookOrBackref = false;

  print(n: Node, flags: Flags): string {
    return this.node(n, { ...flags });
  }

  private node(n: Node, f: Flags): string {
    switch (n.t) {
      case 'alt':
        return n.branches.map((b) => this.node(b, { ...f })).join('|');
      case 'seq': {
        let out = '';
        const local = { ...f };
        for (const item of n.items) {
          if (item.t === 'setflags') {
            Object.assign(local, item.flags);
            continue;
          }
          out += this.node(item, local);
        }
        return out;
      }
      case 'group': {
        const local = n.flags ? { ...f, ...n.flags } : f;
        if (!n.cap) return `(?:${this.node(n.body, { ...local })})`;
        const idx = ++this.count;
        const key = n.name ?? String(n.pyIndex);
        const list = this.groups.get(key) ?? [];
        list.push(idx);
        this.groups.set(key, list);
        if (n.name && n.pyIndex !== undefined) {
          const byNum = this.groups.get(String(n.pyIndex)) ?? [];
          byNum.push(idx);
          this.groups.set(String(n.pyIndex), byNum);
        }
        const body = this.node(n.body, { ...local });
        this.lastIndex.set(key, idx);
        if (n.pyIndex !== undefined) this.lastIndex.set(String(n.pyIndex), idx);
        return `(${body})`;
      }
      case 'look':
        this.usesLookOrBackref = true;
        return `(?${n.ahead ? '' : '<'}${n.neg ? '!' : '='}${this.node(n.body, { ...f })})`;
      case 'atomic': {
        this.usesLookOrBackref = true;
        const idx = ++this.count;
        return `(?=(${this.node(n.body, { ...f })}))\\${idx}`;
      }
      case 'quant': {
        const q = quantText(n.min, n.max);
        if (n.possessive) {
          this.usesLookOrBackref = true;
          const idx = ++this.count;
          return `(?=(${this.atom(n.body, f)}${q}))\\${idx}`;
        }
        return `${this.atom(n.body, f)}${q}${n.lazy ? '?' : ''}`;
      }
      case 'char':
        return charText(n.ch, f.i);
      case 'esc':
        return n.text;
      case 'class':
        return classText(n);
      case 'dot':
        return '[^\\n]';
      case 'start':
        return '^';
      case 'end':
        return '$';
      case 'bol':
        return f.m ? '(?<![^\\n])' : '^';
      case 'eol':
        // Python's `$` also matches before a newline that ends the string (fail2ban appends one).
        // Consuming the newline instead of looking ahead keeps most patterns free of lookaround, so
        // V8 can run them on its linear engine; only a newline can follow Python's `$` here anyway.
        return f.m ? '(?![^\\n])' : '(?:\\n?$)';
      case 'backref': {
        this.usesLookOrBackref = true;
        const idx = this.lastIndex.get(n.ref);
        if (idx === undefined) throw new RegexTranslationError(`backreference to group '${n.ref}' before it is defined`, `(?P=${n.ref})`);
        return `(?:\\${idx})`;
      }
      case 'cond':
        throw new RegexTranslationError('conditional group could not be expanded', `(?(${n.ref})`);
      case 'setflags':
        return '';
    }
  }

  /** A quantified operand must be one atom in JS; wrap sequences. */
  private atom(n: Node, f: Flags): string {
    const s = this.node(n, f);
    if (n.t === 'seq' || n.t === 'alt' || (n.t === 'char' && s.length > 1 && !s.startsWith('[') && !s.startsWith('\\')) || n.t === 'eol') {
      return `(?:${s})`;
    }
    return s;
  }
}

function quantText(min: number, max: number): string {
  if (min === 0 && max === INF) return '*';
  if (min === 1 && max === INF) return '+';
  if (min === 0 && max === 1) return '?';
  if (max === INF) return `{${min},}`;
  if (min === max) return `{${min}}`;
  return `{${min},${max}}`;
}

const SPECIAL = /[\\^$.*+?()[\]{}|/]/;

export function charText(ch: string, ignoreCase: boolean): string {
  if (ignoreCase && /^[A-Za-z]$/.test(ch)) return `[${ch.toUpperCase()}${ch.toLowerCase()}]`;
  if (ch.length === 1 && SPECIAL.test(ch)) return `\\${ch}`;
  if (ch === '\n') return '\\n';
  if (ch === '\r') return '\\r';
  if (ch === '\t') return '\\t';
  const cp = ch.codePointAt(0)!;
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, '0')}`;
  if (cp > 0xffff) return `(?:${ch})`; // surrogate pair: quantifiers must apply to both halves
  return ch;
}

function classText(n: Extract<Node, { t: 'class' }>): string {
  if (n.items.length === 0) return n.neg ? '[\\s\\S]' : '[^\\s\\S]';
  const parts = n.items.map((it) => {
    if (it.k === 'esc') return it.text;
    const a = classChar(it.from);
    return it.from === it.to ? a : `${a}-${classChar(it.to)}`;
  });
  return `[${n.neg ? '^' : ''}${parts.join('')}]`;
}

function classChar(cp: number): string {
  if (cp > 0xffff) throw new RegexTranslationError('characters outside the BMP in a character set are not supported', String.fromCodePoint(cp));
  if (cp < 0x20 || cp === 0x7f || (cp >= 0x80 && cp < 0xa0)) return `\\x${cp.toString(16).padStart(2, '0')}`;
  const ch = String.fromCharCode(cp);
  return /[\\\][^-]/.test(ch) ? `\\${ch}` : ch;
}
