/** The syntax tree a Python pattern is parsed into (parser.ts), rewritten (rewrites.ts), analysed (prefixes.ts) and printed as JavaScript (printer.ts), and the walks over it. */

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

export interface Flags {
  i: boolean;
  s: boolean;
  m: boolean;
  x: boolean;
}

export type Node =
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

export type ClassItem = { k: 'range'; from: number; to: number } | { k: 'esc'; text: string };

export const INF = Number.POSITIVE_INFINITY;

export function findPath(n: Node, pred: (n: Node) => boolean, path: Node[] = []): Node[] | undefined {
  path.push(n);
  if (pred(n)) return path;
  for (const c of children(n)) {
    const found = findPath(c, pred, path);
    if (found) return found;
  }
  path.pop();
  return undefined;
}

export function findAllPaths(n: Node, pred: (n: Node) => boolean, path: Node[] = [], out: Node[][] = []): Node[][] {
  path.push(n);
  if (pred(n)) out.push([...path]);
  for (const c of children(n)) findAllPaths(c, pred, path, out);
  path.pop();
  return out;
}

export function children(n: Node): Node[] {
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

export function mapChildren(n: Node, f: (c: Node) => Node | undefined): Node {
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

export function replaceNode(root: Node, target: Node, by: Node): Node {
  if (root === target) return by;
  return mapChildren(root, (c) => replaceNode(c, target, by));
}
