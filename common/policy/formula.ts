import { InvalidInputError } from '../errors.js';
/**
 * fail2ban's `bantime.formula` is Python, evaluated by fail2ban with eval(). fleetban never evals
 * configuration: it parses the small arithmetic language such formulas use and interprets it.
 * Supported: numbers, the variables `ban.Time`, `ban.Count`, `banFactor`; + - * / // % ** << >>;
 * comparisons; `a if cond else b`; and/or/not; parentheses; the functions float, int, abs, round,
 * min, max and math.exp, math.log, math.sqrt, math.pow. Anything else is refused with the position.
 */

export interface FormulaVars {
  readonly time: number;
  readonly count: number;
  readonly factor: number;
}

export type Formula = (vars: FormulaVars) => number;

type Node =
  | { k: 'num'; v: number }
  | { k: 'var'; name: 'ban.Time' | 'ban.Count' | 'banFactor' }
  | { k: 'un'; op: string; a: Node }
  | { k: 'bin'; op: string; a: Node; b: Node }
  | { k: 'if'; then: Node; cond: Node; else: Node }
  | { k: 'call'; fn: string; args: Node[] };

const FUNCTIONS: Record<string, (...a: number[]) => number> = {
  float: (x = 0) => x,
  int: (x = 0) => Math.trunc(x),
  abs: (x = 0) => Math.abs(x),
  round: (x = 0) => Math.round(x),
  min: (...a) => Math.min(...a),
  max: (...a) => Math.max(...a),
  'math.exp': (x = 0) => Math.exp(x),
  'math.log': (x = 0, base?: number) => (base === undefined ? Math.log(x) : Math.log(x) / Math.log(base)),
  'math.sqrt': (x = 0) => Math.sqrt(x),
  'math.pow': (x = 0, y = 0) => x ** y,
};

const TOKEN_RE = /\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)|([A-Za-z_][\w.]*)|(\*\*|\/\/|<<|>>|<=|>=|==|!=|[-+*/%()<>,]))/y;

/**
 * @param text the formula
 * @returns an evaluator
 * @throws Error naming the position and the unsupported construct
 */
export function parseFormula(text: string): Formula {
  const tokens: Array<{ t: string; pos: number }> = [];
  TOKEN_RE.lastIndex = 0;
  let pos = 0;
  while (pos < text.length) {
    if (/^\s*$/.test(text.slice(pos))) break;
    TOKEN_RE.lastIndex = pos;
    const m = TOKEN_RE.exec(text);
    if (!m) throw new InvalidInputError(`bantime.formula: unsupported text at position ${pos + 1}: '${text.slice(pos, pos + 12)}'`);
    tokens.push({ t: m[1] ?? m[2] ?? m[3]!, pos: m.index + m[0].length - (m[1] ?? m[2] ?? m[3]!).length });
    pos = TOKEN_RE.lastIndex;
  }
  let i = 0;
  const peek = (): string | undefined => tokens[i]?.t;
  const fail = (what: string): never => {
    const at = tokens[i]?.pos ?? text.length;
    throw new InvalidInputError(`bantime.formula: ${what} at position ${at + 1} in '${text}'`);
  };
  const expect = (t: string): void => {
    if (peek() !== t) fail(`expected '${t}'`);
    i++;
  };

  // Python precedence, lowest first: if-else, or, and, not, comparison, |..., shift, +-, */ // %, unary, **.
  const ternary = (): Node => {
    const then = orExpr();
    if (peek() === 'if') {
      i++;
      const cond = orExpr();
      expect('else');
      return { k: 'if', then, cond, else: ternary() };
    }
    return then;
  };
  const orExpr = (): Node => {
    let a = andExpr();
    while (peek() === 'or') { i++; a = { k: 'bin', op: 'or', a, b: andExpr() }; }
    return a;
  };
  const andExpr = (): Node => {
    let a = notExpr();
    while (peek() === 'and') { i++; a = { k: 'bin', op: 'and', a, b: notExpr() }; }
    return a;
  };
  const notExpr = (): Node => {
    if (peek() === 'not') { i++; return { k: 'un', op: 'not', a: notExpr() }; }
    return comparison();
  };
  const comparison = (): Node => {
    let a = shift();
    while (['<', '>', '<=', '>=', '==', '!='].includes(peek() ?? '')) { const op = tokens[i++]!.t; a = { k: 'bin', op, a, b: shift() }; }
    return a;
  };
  const shift = (): Node => {
    let a = sum();
    while (peek() === '<<' || peek() === '>>') { const op = tokens[i++]!.t; a = { k: 'bin', op, a, b: sum() }; }
    return a;
  };
  const sum = (): Node => {
    let a = term();
    while (peek() === '+' || peek() === '-') { const op = tokens[i++]!.t; a = { k: 'bin', op, a, b: term() }; }
    return a;
  };
  const term = (): Node => {
    let a = unary();
    while (['*', '/', '//', '%'].includes(peek() ?? '')) { const op = tokens[i++]!.t; a = { k: 'bin', op, a, b: unary() }; }
    return a;
  };
  const unary = (): Node => {
    if (peek() === '-' || peek() === '+') { const op = tokens[i++]!.t; return { k: 'un', op, a: unary() }; }
    return power();
  };
  const power = (): Node => {
    const a = atom();
    if (peek() === '**') { i++; return { k: 'bin', op: '**', a, b: unary() }; }
    return a;
  };
  const atom = (): Node => {
    const tok = peek();
    if (tok === undefined) return fail('unexpected end');
    if (tok === '(') { i++; const e = ternary(); expect(')'); return e; }
    if (/^[\d.]/.test(tok)) { i++; return { k: 'num', v: Number(tok) }; }
    if (/^[A-Za-z_]/.test(tok)) {
      if (tok === 'ban.Time' || tok === 'ban.Count' || tok === 'banFactor') { i++; return { k: 'var', name: tok }; }
      if (tok === 'True' || tok === 'False') { i++; return { k: 'num', v: tok === 'True' ? 1 : 0 }; }
      if (FUNCTIONS[tok] && tokens[i + 1]?.t === '(') {
        i += 2;
        const args: Node[] = [];
        if (peek() !== ')') {
          args.push(ternary());
          while (peek() === ',') { i++; args.push(ternary()); }
        }
        expect(')');
        return { k: 'call', fn: tok, args };
      }
      return fail(`'${tok}' is not supported (variables: ban.Time, ban.Count, banFactor; functions: ${Object.keys(FUNCTIONS).join(', ')})`);
    }
    return fail(`unexpected '${tok}'`);
  };

  const tree = ternary();
  if (i < tokens.length) fail(`unexpected '${peek()}'`);
  return (vars) => evaluate(tree, vars);
}

function evaluate(n: Node, v: FormulaVars): number {
  switch (n.k) {
    case 'num':
      return n.v;
    case 'var':
      return n.name === 'ban.Time' ? v.time : n.name === 'ban.Count' ? v.count : v.factor;
    case 'un': {
      const a = evaluate(n.a, v);
      return n.op === '-' ? -a : n.op === 'not' ? Number(!a) : a;
    }
    case 'if':
      return evaluate(n.cond, v) ? evaluate(n.then, v) : evaluate(n.else, v);
    case 'call':
      return FUNCTIONS[n.fn]!(...n.args.map((a) => evaluate(a, v)));
    case 'bin': {
      if (n.op === 'and') return evaluate(n.a, v) ? evaluate(n.b, v) : evaluate(n.a, v);
      if (n.op === 'or') return evaluate(n.a, v) || evaluate(n.b, v);
      const a = evaluate(n.a, v);
      const b = evaluate(n.b, v);
      switch (n.op) {
        case '+': return a + b;
        case '-': return a - b;
        case '*': return a * b;
        case '/': return a / b;
        case '//': return Math.floor(a / b);
        case '%': return a - b * Math.floor(a / b);
        case '**': return a ** b;
        case '<<': return a * 2 ** Math.trunc(b);
        case '>>': return Math.floor(a / 2 ** Math.trunc(b));
        case '<': return Number(a < b);
        case '>': return Number(a > b);
        case '<=': return Number(a <= b);
        case '>=': return Number(a >= b);
        case '==': return Number(a === b);
        default: return Number(a !== b);
      }
    }
  }
}
