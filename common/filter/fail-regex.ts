import { translateContentHead, translatePythonRegex, type TranslatedRegex } from './py-regex.js';

/**
 * One fail2ban filter regex: tags such as `<HOST>`, `<F-USER>…</F-USER>` expanded to Python
 * groups, then translated to JavaScript. fail2ban's group names are kept (`ip4`, `ip6`, `dns`,
 * `fid`, `user`, `content`, `mlfid`, `nofail`, ...), so the engine reads results by those names.
 */

// Address shapes (facts of the formats; the alternatives match what fail2ban's tags accept).
const IPV4_OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = `(?:${IPV4_OCTET}\\.){3}${IPV4_OCTET}`;
// Every round of the first group ends with ':', so a final ':' (as in "2001:db8::") needs no
// lookbehind; without lookaround V8 can fall back to its linear engine on a pathological line.
const IPV6 = '(?:[0-9a-fA-F]{1,4}:{1,2}|:){1,7}(?:[0-9a-fA-F]{1,4}|:)';
const TAG_IP4 = `(?:::f{4,6}:)?(?P<ip4>${IPV4})`;
const TAG_IP6 = `(?P<ip6>${IPV6})`;
const TAG_DNS = '(?P<dns>[\\w\\-.^_]*\\w)';
const TAG_ADDR = `\\[?(?:${TAG_IP4}|${TAG_IP6})\\]?`;
const TAG_CIDR = '(?P<cidr>\\d+)';
const TAG_SUBNET = `\\[?(?:${TAG_IP4}|${TAG_IP6})(?:/${TAG_CIDR})?\\]?`;

const STATIC_TAGS: Record<string, string> = {
  IP4: TAG_IP4,
  'F-IP4/': TAG_IP4,
  IP6: TAG_IP6,
  'F-IP6/': TAG_IP6,
  ADDR: TAG_ADDR,
  'F-ADDR/': TAG_ADDR,
  CIDR: TAG_CIDR,
  'F-CIDR/': TAG_CIDR,
  SUBNET: TAG_SUBNET,
  'F-SUBNET/': TAG_SUBNET,
  DNS: TAG_DNS,
  'F-DNS/': TAG_DNS,
  'F-ID/': '(?P<fid>\\S+)',
  'F-PORT/': '(?P<fport>\\w+)',
};

/** `<F-ID>` stores as `fid`, `<F-PORT>` as `fport`; every other `<F-NAME>` as `name` in lower case. */
function tagGroupName(tag: string): string {
  const t = tag.toLowerCase();
  return t === 'id' ? 'fid' : t === 'port' ? 'fport' : t;
}

/** How `<HOST>` is expanded: with `usedns = no` only addresses, otherwise addresses or a host name. */
export type UseDns = 'yes' | 'warn' | 'no' | 'raw';

/**
 * Replace fail2ban's tags in a regex (still Python syntax).
 * @param regex failregex/ignoreregex/prefregex text after interpolation
 * @param usedns the filter's usedns
 * @returns the Python regex
 */
export function resolveTags(regex: string, usedns: UseDns): string {
  const open = new Set<string>();
  let skip = 0;
  return regex.replace(/<\/?[\w-]+\/?>/g, (tag) => {
    const name = tag.slice(1, -1);
    if (name === 'HOST') return usedns === 'no' ? TAG_ADDR : `(?:${TAG_ADDR}|${TAG_DNS})`;
    if (name === 'SKIPLINES') return `\\n(?P<skiplines${skip++}>(?:(?:.*\\n)*?))`;
    const fixed = STATIC_TAGS[name];
    if (fixed !== undefined) return fixed;
    const m = /^(\/?)F-([A-Z0-9_-]+)$/.exec(name);
    if (!m) return tag;
    if (m[1]) return open.has(m[2]!) ? ')' : tag;
    open.add(m[2]!);
    return `(?P<${tagGroupName(m[2]!)}>`;
  });
}

/** Groups that identify a failure (at least one must be present in a failregex or its prefregex). */
export const FAILURE_ID_GROUPS = ['fid', 'ip4', 'ip6', 'dns', 'mlfid'] as const;

/** A compiled fail2ban regex with named access to its groups. */
export class FailRegex {
  /** the regex as written in the filter (after interpolation) */
  readonly text: string;
  readonly translated: TranslatedRegex;
  private readonly re: RegExp;
  private readonly names: Array<readonly [string, readonly number[]]>;
  private readonly alts: Array<readonly [string, string]>;
  private readonly multiline: boolean;
  /** literal words every match must contain (for a cheap `includes` pre-check), or empty */
  readonly required: string[];
  /** see TranslatedRegex.anchoredPrefixes */
  readonly prefixes: readonly string[] | undefined;
  /** for a prefregex of the usual `...<F-CONTENT>.+</F-CONTENT>$` shape: its head (see ContentHead) */
  private readonly head: RegExp | undefined;
  private readonly headAt: RegExp | undefined;
  private readonly headNames: Array<readonly [string, readonly number[]]> = [];

  /**
   * @param text regex text with fail2ban tags
   * @param options usedns and multiline (maxlines > 1); prefregex: also compile the head that
   *   finds where the content starts (see contentStart())
   * @throws RegexTranslationError when the regex cannot be translated
   */
  constructor(text: string, options: { usedns: UseDns; multiline: boolean; prefregex?: boolean }) {
    this.text = text;
    this.multiline = options.multiline;
    let py = resolveTags(text, options.usedns);
    // fail2ban turns `((?i)x)` and `(?:(?i)x)` into local flags `(?i:x)`.
    py = py.replace(/(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)/g, '$1:');
    this.translated = translatePythonRegex(py, { multiline: options.multiline });
    this.re = this.translated.regex;
    this.prefixes = this.translated.anchoredPrefixes;
    if (options.prefregex && !options.multiline) {
      const head = translateContentHead(py);
      if (head) {
        this.head = head.regex;
        this.headAt = head.regexAt;
        this.headNames = [...head.groups].filter(([k]) => !/^\d+$/.test(k));
      }
    }
    this.names = [...this.translated.groups].filter(([k]) => !/^\d+$/.test(k));
    this.alts = this.names
      .map(([k]) => k)
      .filter((k) => k.startsWith('alt_'))
      .sort()
      .map((k) => [k, tagGroupName(k.replace(/^alt_/, '').replace(/_\d+$/, ''))] as [string, string]);
    this.required = requiredLiterals(py);
  }

  /** named groups: name -> JS group indices of its copies (the first that took part gives the value) */
  get groupNames(): ReadonlyArray<readonly [string, readonly number[]]> {
    return this.names;
  }

  /** `<F-ALT_X>` groups: [alt group, the group it stands in for], applied in this order */
  get altNames(): ReadonlyArray<readonly [string, string]> {
    return this.alts;
  }

  /** named groups of the head (see contentStart()) */
  get headGroupNames(): ReadonlyArray<readonly [string, readonly number[]]> {
    return this.headNames;
  }

  /** true when compiled for multi-line buffers (maxlines > 1) */
  get isMultiline(): boolean {
    return this.multiline;
  }

  /**
   * Search the buffer, giving V8's raw match (for callers that read groups by index).
   * @param precheck false when the caller already knows the buffer may match (skips mayMatch)
   */
  match(buf: string, precheck = true): RegExpExecArray | null {
    if (precheck && !this.mayMatch(buf)) return null;
    return this.re.exec(buf);
  }

  /** true when matchHeadAt() can be used */
  get hasHeadAt(): boolean {
    return this.headAt !== undefined;
  }

  /**
   * true when matchHeadAt() can run on a chunk of lines as well as on the line alone: without
   * lookaround or backreferences (atomic groups are printed with both), the head only reads what
   * it consumes, so a match that ends within the line is the line's own.
   */
  get headAtReadsOnlyWhatItMatches(): boolean {
    return this.headAt !== undefined && !/\(\?<?[=!]|\\[1-9]|\\k</.test(this.headAt.source);
  }

  /**
   * matchHead() on `line.slice(offset)` without slicing: the content starts at
   * `offset + m[0].length - 1` in the line.
   */
  matchHeadAt(line: string, offset: number): RegExpExecArray | null {
    const head = this.headAt!;
    head.lastIndex = offset;
    return head.exec(line);
  }

  /**
   * The head's raw match (see contentStart()): the content starts at `m[0].length - 1`.
   * @param line the line without its date, containing no newline
   */
  matchHead(line: string): RegExpExecArray | null {
    const head = this.head!;
    head.lastIndex = 0;
    return head.exec(line);
  }

  /** @returns whether the regex defines group `name` */
  has(name: string): boolean {
    return this.translated.groups.has(name);
  }

  /** Cheap pre-check: false when the buffer cannot match because a required word is missing. */
  mayMatch(buf: string): boolean {
    for (const w of this.required) if (!buf.includes(w)) return false;
    return true;
  }

  /**
   * @returns false when the buffer does not start with any of the anchored prefixes (so the
   *   regex cannot match at `from`); true when it might, or when the regex has no known prefixes
   */
  mayStartAt(buf: string, from: number): boolean {
    const p = this.prefixes;
    if (p === undefined) return true;
    for (let i = 0; i < p.length; i++) if (buf.startsWith(p[i]!, from)) return true;
    return false;
  }

  /** true when contentStart()/execHead() can be used (a prefregex of the usual shape) */
  get hasHead(): boolean {
    return this.head !== undefined;
  }

  /**
   * Where this prefregex's content starts in a line, running only the head (see ContentHead).
   * @param line the line without its date, containing no newline
   * @returns the index where the content starts, or -1 when the prefregex does not match
   */
  contentStart(line: string): number {
    const head = this.head!;
    head.lastIndex = 0;
    return head.test(line) ? head.lastIndex - 1 : -1;
  }

  /**
   * The prefregex match of a line whose contentStart() was found: named groups of the head plus
   * `content`, exactly what exec() would give for `${line}\n`.
   */
  execHead(line: string, contentStart: number): Map<string, string> {
    const head = this.head!;
    head.lastIndex = 0;
    const m = head.exec(line)!;
    const groups = this.collect(m, this.headNames);
    groups.set('content', line.slice(contentStart));
    return groups;
  }

  /**
   * Search the buffer.
   * @param precheck false when the caller already knows the buffer may match (skips mayMatch)
   * @returns named groups that took part (first participating copy of each name), or undefined
   */
  exec(buf: string, precheck = true): { groups: Map<string, string>; index: number; end: number } | undefined {
    if (precheck && !this.mayMatch(buf)) return undefined;
    const m = this.re.exec(buf);
    if (!m) return undefined;
    return { groups: this.collect(m, this.names), index: m.index, end: m.index + m[0].length };
  }

  private collect(m: RegExpExecArray, names: ReadonlyArray<readonly [string, readonly number[]]>): Map<string, string> {
    const groups = new Map<string, string>();
    for (let n = 0; n < names.length; n++) {
      const [name, idxs] = names[n]!;
      for (let k = 0; k < idxs.length; k++) {
        let v = m[idxs[k]!];
        if (v === undefined) continue;
        // Python's `$` is translated as `\n?$`, which can pull the buffer's final newline into a group.
        if (!this.multiline && v.endsWith('\n')) v = v.slice(0, -1);
        groups.set(name, v);
        break;
      }
    }
    for (const [alt, target] of this.alts) {
      const v = groups.get(alt);
      if (v && !groups.get(target)) groups.set(target, v);
    }
    return groups;
  }
}

/**
 * Literal runs that every match must contain, found conservatively from the top-level sequence
 * of the regex: only text outside any group, class, alternation or quantifier counts. A regex with
 * a top-level `|` yields none. Lower-case letters under `(?i)` disable the check.
 */
function requiredLiterals(py: string): string[] {
  if (/\(\?[a-z]*i/.test(py)) return [];
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  const flush = (): void => {
    if (cur.length >= 3) out.push(cur);
    cur = '';
  };
  for (let i = 0; i < py.length; i++) {
    const c = py[i]!;
    if (c === '\\') {
      const n = py[i + 1] ?? '';
      i++;
      if (depth === 0 && /[^\w\s]/.test(n) && !/[*+?{]/.test(py[i + 1] ?? '')) cur += n;
      else if (depth === 0 && n === ' ') cur += ' ';
      else {
        flush();
        // Escapes that go on after their letter (\x41, \u0042, \101): their digits are no literal.
        const rest = /^(?:x[0-9a-fA-F]{0,2}|u[0-9a-fA-F]{0,4}|U[0-9a-fA-F]{0,8}|N\{[^}]*\}|[0-9]{1,3})/.exec(py.slice(i));
        if (rest) i += rest[0].length - 1;
      }
      continue;
    }
    if (c === '[') {
      flush();
      // skip the class
      let j = i + 1;
      if (py[j] === '^') j++;
      if (py[j] === ']') j++;
      while (j < py.length && py[j] !== ']') j += py[j] === '\\' ? 2 : 1;
      i = skipQuantifier(py, j);
      continue;
    }
    if (c === '(') {
      flush();
      depth++;
      continue;
    }
    if (c === ')') {
      flush();
      depth--;
      i = skipQuantifier(py, i);
      continue;
    }
    if (c === '|') {
      if (depth === 0) return [];
      flush();
      continue;
    }
    if (depth > 0) continue;
    if (/[.^$]/.test(c)) {
      flush();
      continue;
    }
    if (c === '{') {
      flush();
      const close = py.indexOf('}', i);
      if (close > 0) i = close;
      continue;
    }
    if (/[*+?]/.test(c)) {
      flush();
      continue;
    }
    if (/[*+?{]/.test(py[i + 1] ?? '')) {
      flush();
      continue;
    }
    cur += c;
  }
  flush();
  return out;
}

/** @returns the index of the last character of the quantifier after position i (or i) */
function skipQuantifier(py: string, i: number): number {
  const next = py[i + 1];
  if (next === '{') {
    const close = py.indexOf('}', i + 1);
    i = close > 0 ? close : i;
  } else if (next === '*' || next === '+' || next === '?') i++;
  else return i;
  if (py[i + 1] === '?' || py[i + 1] === '+') i++;
  return i;
}
