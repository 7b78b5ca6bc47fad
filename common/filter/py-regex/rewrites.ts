/** Structural rewrites of the tree (conditional groups become alternatives) and the checks run on it (nested quantifiers, delimited loops). */
import { Printer } from './printer.js';
import { RegexTranslationError, INF, findPath, findAllPaths, children, mapChildren, replaceNode, type Node } from './syntax.js';


export function expandConditionals(root: Node): Node {
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

export function hasNestedQuantifiers(n: Node, insideUnbounded: boolean): boolean {
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
