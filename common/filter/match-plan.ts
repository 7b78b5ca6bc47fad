/**
 * What a filter compiles to for matching (its Plan), shared by all its matchers: the group
 * names numbered once (GroupSchema, so a match's groups are an array, not a Map), where each
 * regex's groups go (Binding), and which failregexes can match a line from its first character
 * (Dispatch). The matcher that runs it is DetailedMatcher in filter-engine.ts.
 */
import type { FailRegex } from './fail-regex.js';
import type { FilterDefinition } from './filter-engine.js';

/** Group values of one match, indexed by the filter's GroupSchema (undefined: did not take part). */
export type Slots = Array<string | undefined>;

/**
 * The group names a filter uses, numbered once: a match's groups are then an array instead of a
 * Map, which matters on a path that runs for every other line of an auth.log.
 */
export class GroupSchema {
  readonly names: string[] = [];
  private readonly index = new Map<string, number>();
  readonly content: number;
  readonly mlfid: number;
  readonly nofail: number;
  readonly mlfforget: number;
  readonly mlfgained: number;
  readonly user: number;
  readonly fid: number;
  readonly ip4: number;
  readonly ip6: number;
  readonly dns: number;
  readonly cidr: number;

  constructor() {
    this.content = this.slot('content');
    this.mlfid = this.slot('mlfid');
    this.nofail = this.slot('nofail');
    this.mlfforget = this.slot('mlfforget');
    this.mlfgained = this.slot('mlfgained');
    this.user = this.slot('user');
    this.fid = this.slot('fid');
    this.ip4 = this.slot('ip4');
    this.ip6 = this.slot('ip6');
    this.dns = this.slot('dns');
    this.cidr = this.slot('cidr');
  }

  slot(name: string): number {
    let i = this.index.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name);
      this.index.set(name, i);
    }
    return i;
  }

  empty(): Slots {
    return new Array<string | undefined>(this.names.length);
  }

  /** The groups as fail2ban names them, for LineResult. */
  toMap(slots: Slots): Map<string, string> {
    const m = new Map<string, string>();
    for (let i = 0; i < slots.length; i++) if (slots[i] !== undefined) m.set(this.names[i]!, slots[i]!);
    return m;
  }
}

/** Where a regex's named groups go in the slots. */
export interface Binding {
  readonly slots: readonly number[];
  readonly idxs: ReadonlyArray<readonly number[]>;
  /** `<F-ALT_X>`: [alt group's indices, target slot, target's indices] */
  readonly alts: ReadonlyArray<readonly [readonly number[], number, readonly number[]]>;
  /** Python's `$` is translated as `\n?$`, which can pull the buffer's final newline into a group. */
  readonly stripNewline: boolean;
}

function bind(schema: GroupSchema, names: ReadonlyArray<readonly [string, readonly number[]]>, alts: ReadonlyArray<readonly [string, string]>, multiline: boolean, skip?: string): Binding {
  const own = names.filter(([n]) => n !== skip);
  const byName = new Map(names);
  return {
    slots: own.map(([n]) => schema.slot(n)),
    idxs: own.map(([, i]) => i),
    alts: alts.map(([alt, target]) => [byName.get(alt) ?? [], schema.slot(target), byName.get(target) ?? []] as const),
    stripNewline: !multiline,
  };
}

function firstValue(m: RegExpExecArray, idxs: readonly number[], strip: boolean): string | undefined {
  for (let k = 0; k < idxs.length; k++) {
    const v = m[idxs[k]!];
    if (v !== undefined) return strip && v.charCodeAt(v.length - 1) === 10 ? v.slice(0, -1) : v;
  }
  return undefined;
}

/** Write a match's groups into `into` (values that took part replace what is there). */
export function fill(b: Binding, m: RegExpExecArray, into: Slots): void {
  if (b.alts.length === 0) {
    for (let n = 0; n < b.slots.length; n++) {
      const v = firstValue(m, b.idxs[n]!, b.stripNewline);
      if (v !== undefined) into[b.slots[n]!] = v;
    }
    return;
  }
  // An alt group fills its target only when this regex left the target empty.
  const local = new Map<number, string>();
  for (let n = 0; n < b.slots.length; n++) {
    const v = firstValue(m, b.idxs[n]!, b.stripNewline);
    if (v !== undefined) local.set(b.slots[n]!, v);
  }
  for (const [altIdxs, target] of b.alts) {
    const v = firstValue(m, altIdxs, b.stripNewline);
    if (v && !local.get(target)) local.set(target, v);
  }
  for (const [slot, v] of local) into[slot] = v;
}

/**
 * A copy of a string that does not keep its parent alive. Lines are slices of the chunk a source
 * read (256 KiB); a slice kept in the multi-line cache would pin the whole chunk.
 */
export function detach(s: string): string {
  return (' ' + s).slice(1);
}

/**
 * Which failregexes can match a buffer, decided from its first character: each anchored
 * failregex starts with one of a few literal prefixes, so most lines need no regex at all.
 */
export interface Dispatch {
  /** per ASCII code of the first character: indices of the failregexes that may match, in order */
  readonly ascii: ReadonlyArray<readonly number[]>;
  /** the same for other first characters */
  readonly other: ReadonlyMap<number, readonly number[]>;
  /** failregexes without known prefixes: candidates whatever the first character */
  readonly wild: readonly number[];
}

/** What a filter compiles to for matching, shared by its matchers. */
export interface Plan {
  readonly schema: GroupSchema;
  readonly pre: Binding | undefined;
  readonly head: Binding | undefined;
  /** per slot: filled by the head (a slice of the line as the caller gave it) */
  readonly headSlot: readonly boolean[];
  readonly fail: readonly Binding[];
  readonly dispatch: Dispatch;
}

export function buildPlan(def: FilterDefinition): Plan {
  const schema = new GroupSchema();
  const multi = def.maxlines > 1;
  const pre = def.prefregex ? bind(schema, def.prefregex.groupNames, def.prefregex.altNames, false) : undefined;
  const head = def.prefregex?.hasHead ? bind(schema, def.prefregex.headGroupNames, def.prefregex.altNames, false, 'content') : undefined;
  const fail = def.failregex.map((fr) => bind(schema, fr.groupNames, fr.altNames, multi));
  const headSlot = schema.names.map(() => false);
  for (const slot of head?.slots ?? []) headSlot[slot] = true;
  for (const [, target] of head?.alts ?? []) headSlot[target] = true;
  return { schema, pre, head, headSlot, fail, dispatch: buildDispatch(def.failregex) };
}

function buildDispatch(failregex: readonly FailRegex[]): Dispatch {
  const byCode = new Map<number, number[]>();
  const wild: number[] = [];
  failregex.forEach((fr, i) => {
    if (!fr.prefixes) {
      wild.push(i);
      return;
    }
    for (const p of fr.prefixes) {
      const c = p.charCodeAt(0);
      const list = byCode.get(c) ?? [];
      if (!list.includes(i)) list.push(i);
      byCode.set(c, list);
    }
  });
  const merged = (list: number[]): number[] => [...new Set([...list, ...wild])].sort((a, b) => a - b);
  const ascii: Array<readonly number[]> = [];
  for (let c = 0; c < 128; c++) ascii.push(merged(byCode.get(c) ?? []));
  const other = new Map<number, readonly number[]>();
  for (const [c, list] of byCode) if (c >= 128) other.set(c, merged(list));
  return { ascii, other, wild };
}
