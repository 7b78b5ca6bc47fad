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
 *
 * The stages live in py-regex/: syntax (the tree), parser, rewrites, prefixes, printer; this
 * module puts them together.
 */
import { anchoredPrefixes } from './py-regex/prefixes.js';
import { expandConditionals, hasNestedQuantifiers } from './py-regex/rewrites.js';
import { Parser } from './py-regex/parser.js';
import { Printer } from './py-regex/printer.js';
export { RegexTranslationError } from './py-regex/syntax.js';
import { RegexTranslationError, INF, children, type Node } from './py-regex/syntax.js';

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
