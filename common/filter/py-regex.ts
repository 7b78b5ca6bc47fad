/**
 * Translation of Python `re` patterns (as fail2ban filters write them) into JavaScript RegExps.
 *
 * The pattern is parsed into a small syntax tree and printed again as JavaScript, instead of
 * being rewritten with string substitutions, because several Python features have no direct
 * JavaScript spelling and need structural rewrites:
 * - conditional groups `(?(name)yes|no)` become alternatives (the sequence that holds both the
 *   group and the condition is duplicated: once with the group forced to take part, once without);
 * - local flags `(?i:...)`, `(?s:...)` are applied while printing (Node 20 has no regexp modifiers);
 * - atomic groups and possessive quantifiers become `(?=(X))\N`;
 * - named groups become numbered groups with a name -> indices map, since duplicated alternatives
 *   repeat names and Node 20 refuses duplicate group names.
 * Python's `$` (end, or before a final newline) and `.` (anything but newline) are spelled out.
 */

/** A pattern construct that cannot be expressed in JavaScript, with the offending text. */
export class RegexTranslationError extends Error {
  /**
   * @param message what cannot be translated
   * @param construct the Python construct, as written
   */
  constructor(
    message: string,
    readonly construct: string,
  ) {
    super(message);
    this.name = 'RegexTranslationError';
  }
}

interface Flags {
  i: boolean;
  s: boolean;
  m: boolean;
  x: boolean;
}

type Node =
  | { t: 'alt'; branches: Node[] }
  | { t: 'seq'; items: Node[] }
  | { t: 'group'; cap: boolean; name?: string; pyIndex?: number; body: Node; flags?: Partial<Flags> }
  | { t: 'look'; ahead: boolean; neg: boolean; body: Node }
  | { t: 'atomic'; body: Node }
  | { t: 'cond'; ref: string; yes: Node; no: Node }
  | { t: 'quant'; body: Node; min: number; max: number; lazy: boolean; possessive: boolean }
  | { t: 'char'; ch: string } // one literal character (code unit string, may be a surrogate pair)
  | { t: 'esc'; text: string } // JS-ready escape that is case-neutral: \d \w \s \b, \n ...
  | { t: 'class'; neg: boolean; items: ClassItem[] }
  | { t: 'dot' }
  | { t: 'bol' }
  | { t: 'eol' }
  | { t: 'start' } // \A
  | { t: 'end' } // \Z
  | { t: 'backref'; ref: string }
  | { t: 'setflags'; flags: Partial<Flags> }; // inline (?i) in the middle of a pattern

type ClassItem = { k: 'range'; from: number; to: number } | { k: 'esc'; text: string };

const INF = Number.POSITIVE_INFINITY;

/** A compiled translation: the RegExp plus where each Python group name ended up. */
export interface TranslatedRegex {
  readonly source: string;
  readonly regex: RegExp;
  /** group name -> JS group indices (several when alternatives were duplicated), in match-priority order */
  readonly groups: ReadonlyMap<string, readonly number[]>;
  /** true when an unbounded quantifier contains another one: the pattern can backtrack super-linearly */
  readonly nestedQuantifiers: boolean;
  /** true when the JS source uses lookaround or backreferences (V8's linear engine cannot run it) */
  readonly needsBacktracking: boolean;
  /**
   * When the pattern is anchored at the start of the input (`^` or `\A`, not multiline): strings
   * one of which every match starts with (none empty, none a prefix of another); else undefined.
   * A cheap `startsWith` on them tells which of many anchored regexes can match at all.
   */
  readonly anchoredPrefixes: readonly string[] | undefined;
}

/**
 * The part of a prefregex before its `<F-CONTENT>.+</F-CONTENT>$` tail, compiled on its own.
 *
 * On a line without a newline, `^P(?P<content>.+)$` matches exactly when `^P[^\n]` does, the
 * first such way through P is the same, and the content is the rest of the line. Running only
 * P is cheaper: it looks at the prefix of the line, not at all of it.
 */
export interface ContentHead {
  /** sticky regex for `P[^\n]`: the content starts one character before the end of the match */
  readonly regex: RegExp;
  /**
   * The same without P's leading `^`, to run at an offset (lastIndex) as if the line started
   * there; undefined when P does not start with `^` or uses word boundaries. Same group indices.
   */
  readonly regexAt: RegExp | undefined;
  /** named groups of P -> JS group indices, as in TranslatedRegex.groups */
  readonly groups: ReadonlyMap<string, readonly number[]>;
}

/**
 * Translate a Python regular expression.
 * @param pattern Python `re` source
 * @param options multiline: compile as with `re.MULTILINE` (fail2ban does so when maxlines > 1);
 *   indices: record group positions (JS `d` flag)
 * @returns the JavaScript regex and its group map
 * @throws RegexTranslationError naming the construct that cannot be translated or is invalid
 */
export function translatePythonRegex(pattern: string, options: { multiline?: boolean; indices?: boolean } = {}): TranslatedRegex {
  const parser = new Parser(pattern, { i: false, s: false, m: options.multiline ?? false, x: false });
  let tree = parser.parse();
  tree = expandConditionals(tree);
  const printer = new Printer();
  const source = printer.print(tree, parser.globalFlags);
  let regex: RegExp;
  try {
    regex = new RegExp(source, options.indices ? 'd' : '');
  } catch (err) {
    throw new RegexTranslationError(`translated pattern does not compile: ${(err as Error).message}`, pattern);
  }
  return {
    source,
    regex,
    groups: printer.groups,
    nestedQuantifiers: hasNestedQuantifiers(tree, false),
    needsBacktracking: printer.usesLookOrBackref,
    anchoredPrefixes: options.multiline ? undefined : anchoredPrefixes(tree, parser.globalFlags),
  };
}

/**
 * Split a prefregex of the usual shape `^P<F-CONTENT>.+</F-CONTENT>$` (Python syntax, tags
 * already resolved) into its head P; see ContentHead.
 * @param pattern Python `re` source of the prefregex
 * @returns the compiled head, or undefined when the pattern has another shape (or P uses
 *   lookaround, `$` or flags that make the equivalence doubtful)
 */
export function translateContentHead(pattern: string): ContentHead | undefined {
  const parser = new Parser(pattern, { i: false, s: false, m: false, x: false });
  let tree: Node;
  try {
    tree = expandConditionals(parser.parse());
  } catch {
    return undefined;
  }
  if (tree.t !== 'seq' || parser.globalFlags.m || parser.globalFlags.s) return undefined;
  const items = tree.items;
  const ci = items.findIndex((n) => n.t === 'group' && n.cap && n.name === 'content');
  const content = items[ci];
  if (!content || content.t !== 'group' || content.flags) return undefined;
  const body = content.body;
  if (body.t !== 'quant' || body.min !== 1 || body.max !== INF || body.lazy || body.possessive || body.body.t !== 'dot') return undefined;
  const tail = items.slice(ci + 1);
  if (tail.length !== 1 || tail[0]!.t !== 'eol') return undefined;
  const head = items.slice(0, ci);
  const unsafe = (n: Node, first: boolean): boolean => {
    if (n.t === 'look' || n.t === 'eol' || n.t === 'end' || n.t === 'cond') return true;
    if ((n.t === 'bol' || n.t === 'start') && !first) return true;
    if (n.t === 'setflags' && (n.flags.m || n.flags.s)) return true;
    if (n.t === 'group' && n.flags && (n.flags.m || n.flags.s)) return true;
    return children(n).some((c) => unsafe(c, false));
  };
  if (head.some((n, i) => unsafe(n, i === 0))) return undefined;
  const notNewline: Node = { t: 'class', neg: true, items: [{ k: 'range', from: 10, to: 10 }] };
  const printer = new Printer();
  const source = printer.print({ t: 'seq', items: [...head, notNewline] }, parser.globalFlags);
  // Without its leading anchor the head can run at the offset where a line's date ends, with no
  // slice of the line; a word boundary would look at the character before that offset, though.
  const first = head[0];
  const wordBoundary = (n: Node): boolean => (n.t === 'esc' && (n.text === '\\b' || n.text === '\\B')) || children(n).some(wordBoundary);
  const sourceAt = first && (first.t === 'bol' || first.t === 'start') && !head.some(wordBoundary)
    ? new Printer().print({ t: 'seq', items: [...head.slice(1), notNewline] }, parser.globalFlags)
    : undefined;
  try {
    return { regex: new RegExp(source, 'y'), regexAt: sourceAt === undefined ? undefined : new RegExp(sourceAt, 'y'), groups: printer.groups };
  } catch {
    return undefined;
  }
}

class Parser {
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

// ---------------------------------------------------------------------------------------------
// Conditional groups -> alternatives

function expandConditionals(root: Node): Node {
  for (let guard = 0; guard < 64; guard++) {
    const condPath = findPath(root, (n) => n.t === 'cond');
    if (!condPath) return root;
    const cond = condPath[condPath.length - 1] as Extract<Node, { t: 'cond' }>;
    // Earlier expansions copied the group: use the copy that shares the most ancestors with the condition.
    const candidates = findAllPaths(root, (n) => n.t === 'group' && n.cap && (n.name === cond.ref || String(n.pyIndex) === cond.ref));
    if (candidates.length === 0) throw new RegexTranslationError(`conditional refers to unknown group '${cond.ref}'`, `(?(${cond.ref})`);
    const common = (p: Node[]): number => {
      let k = 0;
      while (k < condPath.length && k < p.length && condPath[k] === p[k]) k++;
      return k;
    };
    const groupPath = candidates.reduce((best, p) => (common(p) > common(best) ? p : best));
    const k = common(groupPath);
    const lca = condPath[k - 1]!;
    const condIdx = lca.t === 'seq' ? lca.items.indexOf(condPath[k]!) : -1;
    const groupIdx = lca.t === 'seq' ? lca.items.indexOf(groupPath[k]!) : -1;
    if (lca.t !== 'seq' || groupIdx >= condIdx) {
      // The group is in another branch or comes later: it has not matched when the condition is tested.
      root = replaceNode(root, cond, cond.no);
      continue;
    }
    const sub = groupPath.slice(k); // from the lca's child down to the group
    const optionalAt = sub.findIndex((n, i) => optionalStep(n, sub[i + 1]));
    if (optionalAt < 0) {
      root = replaceNode(root, cond, cond.yes);
      continue;
    }
    const yes = forceParticipation(lca, groupPath.slice(k - 1), cond);
    const no = forbidParticipation(lca, groupPath.slice(k - 1), cond);
    const step = sub[optionalAt]!;
    const noFirst = step.t === 'quant' ? step.lazy : false;
    const branches = no ? (noFirst ? [no, yes] : [yes, no]) : [yes];
    root = replaceNode(root, lca, { t: 'group', cap: false, body: { t: 'alt', branches } });
  }
  throw new RegexTranslationError('too many conditional groups to expand', '(?(');
}

/** Can `node` be passed without its child `next` taking part? */
function optionalStep(node: Node, next: Node | undefined): boolean {
  if (node.t === 'quant') return node.min === 0;
  if (node.t === 'alt') return next !== undefined && node.branches.length > 1;
  return false;
}

function findPath(n: Node, pred: (n: Node) => boolean, path: Node[] = []): Node[] | undefined {
  path.push(n);
  if (pred(n)) return path;
  for (const c of children(n)) {
    const found = findPath(c, pred, path);
    if (found) return found;
  }
  path.pop();
  return undefined;
}

function findAllPaths(n: Node, pred: (n: Node) => boolean, path: Node[] = [], out: Node[][] = []): Node[][] {
  path.push(n);
  if (pred(n)) out.push([...path]);
  for (const c of children(n)) findAllPaths(c, pred, path, out);
  path.pop();
  return out;
}

function children(n: Node): Node[] {
  switch (n.t) {
    case 'alt':
      return n.branches;
    case 'seq':
      return n.items;
    case 'group':
    case 'look':
    case 'atomic':
    case 'quant':
      return [n.body];
    case 'cond':
      return [n.yes, n.no];
    default:
      return [];
  }
}

function mapChildren(n: Node, f: (c: Node) => Node | undefined): Node {
  switch (n.t) {
    case 'alt':
      return { ...n, branches: n.branches.map(f).filter((x): x is Node => x !== undefined) };
    case 'seq':
      return { ...n, items: n.items.map(f).filter((x): x is Node => x !== undefined) };
    case 'group':
    case 'look':
    case 'atomic':
    case 'quant':
      return { ...n, body: f(n.body) ?? { t: 'seq', items: [] } };
    case 'cond':
      return { ...n, yes: f(n.yes) ?? { t: 'seq', items: [] }, no: f(n.no) ?? { t: 'seq', items: [] } };
    default:
      return n;
  }
}

function replaceNode(root: Node, target: Node, by: Node): Node {
  if (root === target) return by;
  return mapChildren(root, (c) => replaceNode(c, target, by));
}

/** Copy of `lca` where the group at the end of `path` must take part and `cond` takes its yes branch. */
function forceParticipation(lca: Node, path: Node[], cond: Extract<Node, { t: 'cond' }>): Node {
  const onPath = new Set(path);
  const walk = (n: Node): Node => {
    if (n === cond) return cond.yes;
    if (!onPath.has(n)) return mapChildren(n, walk);
    const idx = path.indexOf(n);
    const next = path[idx + 1];
    if (n.t === 'quant' && n.min === 0) return { ...n, min: 1, max: Math.max(1, n.max), body: walk(n.body) };
    if (n.t === 'alt' && next) return walk(next);
    return mapChildren(n, walk);
  };
  return walk(lca);
}

/** Copy of `lca` where the group at the end of `path` cannot take part; undefined when impossible. */
function forbidParticipation(lca: Node, path: Node[], cond: Extract<Node, { t: 'cond' }>): Node | undefined {
  // Cut at the innermost optional step: that alone keeps the group out.
  let cut = -1;
  for (let i = path.length - 2; i >= 1; i--) {
    if (optionalStep(path[i]!, path[i + 1])) {
      cut = i;
      break;
    }
  }
  if (cut < 0) return undefined;
  const cutNode = path[cut]!;
  const cutChild = path[cut + 1]!;
  const walk = (n: Node): Node | undefined => {
    if (n === cond) return cond.no;
    if (n === cutNode) {
      if (n.t === 'quant') return { t: 'seq', items: [] };
      if (n.t === 'alt') {
        const rest = n.branches.filter((b) => b !== cutChild).map((b) => walk(b)!);
        return rest.length === 1 ? rest[0]! : { t: 'alt', branches: rest };
      }
    }
    return mapChildren(n, walk);
  };
  return walk(lca);
}

function hasNestedQuantifiers(n: Node, insideUnbounded: boolean): boolean {
  if (n.t === 'look') return false; // lookarounds are bounded by their own position
  if (n.t === 'quant') {
    const unbounded = n.max === INF || n.max > 32;
    if (unbounded && insideUnbounded) return true;
    if (n.possessive) return false;
    // `(?: x\S+)*`: each round starts with a character the inner loops cannot eat, so the rounds
    // cannot split the text in more than one way: no blow-up.
    const inner = unbounded && !insideUnbounded && delimitedLoop(n.body) ? false : insideUnbounded || unbounded;
    return hasNestedQuantifiers(n.body, inner);
  }
  if (n.t === 'atomic') return false;
  return children(n).some((c) => hasNestedQuantifiers(c, insideUnbounded));
}

/** Characters the sequence must contain at its top level (outside optional parts). */
function mandatoryLiterals(n: Node): string[] {
  if (n.t === 'char') return [n.ch];
  if (n.t === 'seq') return n.items.flatMap(mandatoryLiterals);
  if (n.t === 'group') return mandatoryLiterals(n.body);
  if (n.t === 'quant' && n.min > 0) return mandatoryLiterals(n.body);
  return [];
}

/**
 * True when every round of a loop must contain a character that none of the loops inside it can
 * consume (`(?:\[[^\]]+\] )*`, `(?: \S+)*`): the rounds are then cut at those characters, so
 * the text cannot be split among them in exponentially many ways.
 */
function delimitedLoop(body: Node): boolean {
  const innerAtoms: string[] = [];
  let complex = false;
  const visit = (n: Node): void => {
    if (n.t === 'look') return;
    if (n.t === 'quant' && (n.max === INF || n.max > 32)) {
      const b = n.body;
      if (b.t !== 'char' && b.t !== 'class' && b.t !== 'esc' && b.t !== 'dot') complex = true;
      else innerAtoms.push(new Printer().print(b, { i: false, s: false, m: false, x: false }));
      return;
    }
    children(n).forEach(visit);
  };
  visit(body);
  if (complex) return false;
  const res = innerAtoms.map((a) => new RegExp(`^(?:${a})$`));
  return mandatoryLiterals(body).some((c) => res.every((re) => !re.test(c)));
}

// ---------------------------------------------------------------------------------------------
// Literal prefixes of anchored patterns

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
      let out = new Set<string>(n.min === 0 ? [''] : []);
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
function anchoredPrefixes(root: Node, globalFlags: Flags): string[] | undefined {
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

// ---------------------------------------------------------------------------------------------
// Printing

class Printer {
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

function charText(ch: string, ignoreCase: boolean): string {
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
  return /[\\\]\[^-]/.test(ch) ? `\\${ch}` : ch;
}
