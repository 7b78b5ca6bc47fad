import v8 from 'node:v8';
import { containingNetwork, tryParseAddress } from '../address.js';
import { DateDetector } from './date-detector.js';
import { FailRegex, type UseDns } from './fail-regex.js';
import type { FailureMatch, Filter, LineMatcher } from './types.js';

// A pathological line must not hang an agent. V8 can switch a regex that backtracks excessively to
// its linear-time engine; that covers every pattern without lookaround or backreferences. Patterns
// that need backtracking and nest unbounded quantifiers are refused when the filter is loaded
// (see filter-loader.ts), and lines are capped in length, which bounds polynomial cases.
v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

/** Longest line (in UTF-16 units) the engine looks at; the rest of a longer line is ignored. */
export const DEFAULT_MAX_LINE_LENGTH = 4096;

/** The parts of a filter after interpolation, ready to compile. */
export interface FilterDefinition {
  readonly name: string;
  readonly prefregex: FailRegex | undefined;
  readonly failregex: readonly FailRegex[];
  readonly ignoreregex: readonly FailRegex[];
  readonly maxlines: number;
  readonly datepattern: string | undefined;
  readonly usedns: UseDns;
  readonly maxLineLength: number;
}

/** What became of one log line, in detail (for `fleetban regex` and the compatibility test). */
export interface LineResult {
  /**
   * failure: a failure with an address (or, with usedns=raw, a host name);
   * hostname: the failregex found only a host name, which is not resolved;
   * nofail: a helper line (<F-NOFAIL>) or a pending multi-line failure;
   * ignored: a failregex matched but an ignoreregex too; missed: nothing matched.
   */
  readonly kind: 'failure' | 'hostname' | 'nofail' | 'ignored' | 'missed';
  /** index of the failregex that matched, or -1 */
  readonly regex: number;
  /** index of the ignoreregex that matched, or -1 */
  readonly ignore: number;
  /** the failure id as fail2ban reports it: F-ID, else the address text, else the host name */
  readonly host: string | undefined;
  /** canonical address (or network) when the host is an IP address */
  readonly addr: string | undefined;
  /** time of the line (epoch ms), undefined when it carries no date */
  readonly time: number | undefined;
  readonly user: string | undefined;
  /** date template that found the time */
  readonly dateTemplate: string | undefined;
  /** the original line(s) of the failure */
  readonly text: string;
  /** every named group of the match (prefregex and failregex merged) */
  readonly groups: ReadonlyMap<string, string> | undefined;
}

interface BufferedLine {
  readonly stripped: string;
  readonly original: string;
}

const MLFID_CACHE_SIZE = 1000;
/** Canonical forms of recently seen addresses: attackers repeat, and parsing is costly. */
const ADDR_CACHE_SIZE = 4096;
const NO_FAILURES: readonly FailureMatch[] = Object.freeze([]);
/** Stands for the one line of a single-line filter, which needs no buffer. */
const SINGLE: BufferedLine[] = [];

/**
 * Which failregexes can match a buffer, decided from its first character: each anchored
 * failregex starts with one of a few literal prefixes, so most lines need no regex at all.
 */
interface Dispatch {
  /** per ASCII code of the first character: indices of the failregexes that may match, in order */
  readonly ascii: ReadonlyArray<readonly number[]>;
  /** the same for other first characters */
  readonly other: ReadonlyMap<number, readonly number[]>;
  /** failregexes without known prefixes: candidates whatever the first character */
  readonly wild: readonly number[];
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

/** A compiled filter; see loadFilter() in index.ts for reading one from filter.d. */
export class CompiledFilter implements Filter {
  private readonly dispatch: Dispatch;

  /**
   * @param def compiled parts of the filter
   */
  constructor(readonly def: FilterDefinition) {
    this.dispatch = buildDispatch(def.failregex);
  }

  get name(): string {
    return this.def.name;
  }

  /**
   * A matcher that reports failures with an IP address (the agent's view). It gives the same
   * failures as a DetailedMatcher fed the same lines, but does less for lines that cannot match:
   * no result objects, and the date of a syslog line is only turned into a time when the line
   * is a failure.
   * @returns the matcher; the arrays it returns must not be modified
   */
  createMatcher(): LineMatcher & { feedBatch(lines: readonly string[]): FailureMatch[] } {
    const m = new DetailedMatcher(this.def, this.dispatch);
    return {
      feed(line: string): readonly FailureMatch[] {
        const f = m.feedFailure(line);
        return f === undefined ? NO_FAILURES : [f];
      },
      feedBatch(lines: readonly string[]): FailureMatch[] {
        const out: FailureMatch[] = [];
        for (let i = 0; i < lines.length; i++) {
          const f = m.feedFailure(lines[i]!);
          if (f !== undefined) out.push(f);
        }
        return out;
      },
    };
  }

  /** @returns a matcher that explains every line */
  createDetailedMatcher(): DetailedMatcher {
    return new DetailedMatcher(this.def, this.dispatch);
  }
}

type Groups = Map<string, string>;
interface MlfEntry {
  groups: Groups;
  users: Set<string>;
  pending: boolean;
  lines: string[];
}

type Kind = LineResult['kind'];

/** What evaluate() found; one per matcher, overwritten by every line. */
interface Outcome {
  kind: Kind;
  regex: number;
  ignore: number;
  host: string | undefined;
  addr: string | undefined;
  user: string | undefined;
  text: string;
  groups: Groups | undefined;
}

/** Stateful per-stream matcher with full results. */
export class DetailedMatcher {
  private readonly dates: DateDetector;
  private readonly dispatch: Dispatch;
  private buffer: BufferedLine[] = [];
  private readonly mlfid = new Map<string, MlfEntry>();
  private lastTime: number | undefined;
  /** The latest dated line when skim() found its date and its time is not computed yet. */
  private skimmed: string | undefined;
  private readonly addrCache = new Map<string, string | null>();
  private readonly out: Outcome = { kind: 'missed', regex: -1, ignore: -1, host: undefined, addr: undefined, user: undefined, text: '', groups: undefined };
  /** ignoreregex is tried before the prefregex (fail2ban does so when there are few of them) */
  private readonly ignoreFirst: boolean;
  /** single-line filter whose prefregex (if any) has a head: lines can be rejected cheaply */
  private readonly quick: boolean;

  /**
   * @param def the filter's compiled parts
   * @param dispatch failregex dispatch table (computed from def when not given)
   */
  constructor(
    private readonly def: FilterDefinition,
    dispatch?: Dispatch,
  ) {
    this.dates = new DateDetector(def.datepattern);
    this.dispatch = dispatch ?? buildDispatch(def.failregex);
    this.ignoreFirst = def.ignoreregex.length > 0 && def.ignoreregex.length < def.failregex.length - 2;
    this.quick = def.maxlines === 1 && (def.prefregex === undefined || def.prefregex.hasHead);
  }

  /** Date template hits so far. */
  get dateHits(): ReadonlyMap<string, number> {
    return this.dates.hits;
  }

  /**
   * @param rawLine one log line without its newline
   * @param knownTime time of the line when the source knows it (journal); skips date detection
   */
  feed(rawLine: string, knownTime?: number): LineResult {
    const def = this.def;
    const line = rawLine.length > def.maxLineLength ? rawLine.slice(0, def.maxLineLength) : rawLine;
    let stripped = line;
    let time: number | undefined = knownTime;
    let dateTemplate: string | undefined;
    if (knownTime === undefined) {
      const hit = this.dates.find(line);
      if (hit) {
        stripped = hit.start === 0 ? line.slice(hit.end) : line.slice(0, hit.start) + line.slice(hit.end);
        time = hit.time;
        dateTemplate = hit.template;
        this.lastTime = time;
        this.skimmed = undefined;
      } else time = this.currentLastTime();
    }
    const o = this.evaluate(line, stripped);
    return { kind: o.kind, regex: o.regex, ignore: o.ignore, host: o.host, addr: o.addr, time, user: o.user, dateTemplate, text: o.text, groups: o.groups };
  }

  /**
   * The agent's path: like feed(), but only reports failures with an address.
   * @param rawLine one log line without its newline
   * @returns the failure this line completes, if any
   */
  feedFailure(rawLine: string): FailureMatch | undefined {
    const def = this.def;
    const line = rawLine.length > def.maxLineLength ? rawLine.slice(0, def.maxLineLength) : rawLine;
    let stripped = line;
    const end = this.dates.skim(line);
    if (end >= 0) {
      stripped = line.slice(end);
      this.skimmed = line;
    } else {
      const hit = this.dates.find(line);
      if (hit) {
        stripped = hit.start === 0 ? line.slice(hit.end) : line.slice(0, hit.start) + line.slice(hit.end);
        this.lastTime = hit.time;
        this.skimmed = undefined;
      }
    }
    const o = this.evaluate(line, stripped);
    if (o.kind !== 'failure' || o.addr === undefined) return undefined;
    const time = this.currentLastTime();
    return o.user !== undefined ? { addr: o.addr, time, user: o.user, text: o.text } : { addr: o.addr, time, text: o.text };
  }

  /** Time of the latest dated line (the current one when it has a date). */
  private currentLastTime(): number | undefined {
    if (this.skimmed !== undefined) {
      this.lastTime = this.dates.skimmedTime(this.skimmed);
      this.skimmed = undefined;
    }
    return this.lastTime;
  }

  /** Runs the filter over a line whose date is cut out (`stripped`); the result is in this.out. */
  private evaluate(line: string, stripped: string): Outcome {
    const def = this.def;
    const o = this.out;
    o.kind = 'missed';
    o.regex = -1;
    o.ignore = -1;
    o.host = undefined;
    o.addr = undefined;
    o.user = undefined;
    o.text = line;
    o.groups = undefined;
    const multi = def.maxlines > 1;

    if (!multi && this.quick && !this.ignoreFirst && stripped.indexOf('\n') < 0) {
      // Cheap rejection: where does the content start, and can any failregex begin there?
      let contentStart = 0;
      const pref = def.prefregex;
      if (pref) {
        contentStart = pref.contentStart(stripped);
        if (contentStart < 0) return o;
      }
      if (!this.mayAnyStart(stripped, contentStart)) return o;
      let pre: Groups | undefined;
      let buf: string;
      if (pref) {
        pre = pref.execHead(stripped, contentStart);
        const content = pre.get('content')!;
        pre.delete('content');
        buf = `${content}\n`;
      } else buf = `${stripped}\n`;
      return this.failregexes(line, SINGLE, SINGLE, buf, pre, true);
    }

    let lines: BufferedLine[];
    if (multi) {
      this.buffer.push({ stripped, original: line });
      if (this.buffer.length > def.maxlines) this.buffer = this.buffer.slice(-def.maxlines);
      lines = this.buffer;
    } else lines = [{ stripped, original: line }];
    const orgLines = lines;
    let buf = multi ? joinBuf(lines) : `${stripped}\n`;

    if (this.ignoreFirst) {
      const ig = this.findIgnore(buf);
      if (ig >= 0) {
        o.kind = 'ignored';
        o.ignore = ig;
        return o;
      }
    }

    let pre: Groups | undefined;
    if (def.prefregex) {
      const m = def.prefregex.exec(buf);
      if (!m) return o;
      pre = m.groups;
      const content = pre.get('content');
      if (content !== undefined) {
        pre.delete('content');
        if (content) {
          lines = [{ stripped: content, original: line }];
          buf = `${content}\n`;
        }
      }
    }
    return this.failregexes(line, lines, orgLines, buf, pre, false);
  }

  /** Can any failregex match content that starts at `from`? (single-line filters) */
  private mayAnyStart(s: string, from: number): boolean {
    const d = this.dispatch;
    const code = s.charCodeAt(from);
    const cands = code < 128 ? d.ascii[code]! : (d.other.get(code) ?? d.wild);
    const fr = this.def.failregex;
    for (let k = 0; k < cands.length; k++) if (fr[cands[k]!]!.mayStartAt(s, from)) return true;
    return false;
  }

  /**
   * Try the failregexes in order on `buf` and merge the first match into its multi-line failure.
   * @param dispatched the caller checked prefixes: only failregexes that can start `buf` are tried
   */
  private failregexes(line: string, lines: BufferedLine[], orgLines: BufferedLine[], buf: string, pre: Groups | undefined, dispatched: boolean): Outcome {
    const def = this.def;
    const o = this.out;
    const multi = def.maxlines > 1;
    let cands: readonly number[] | undefined;
    if (dispatched) {
      const code = buf.charCodeAt(0);
      cands = code < 128 ? this.dispatch.ascii[code]! : (this.dispatch.other.get(code) ?? this.dispatch.wild);
    }
    const count = cands ? cands.length : def.failregex.length;
    for (let k = 0; k < count; k++) {
      const i = cands ? cands[k]! : k;
      const fr = def.failregex[i]!;
      if (cands && !fr.mayStartAt(buf, 0)) continue;
      const m = fr.exec(buf, !dispatched);
      if (!m) continue;
      let matchedLines: BufferedLine[] = lines;
      let unmatched: BufferedLine[] = [];
      if (multi && lines.length > 1) {
        const first = countNewlines(buf, 0, buf.lastIndexOf('\n', m.index - 1) + 1);
        const endNl = buf.indexOf('\n', Math.max(m.end - 1, 0));
        const last = countNewlines(buf, 0, endNl < 0 ? buf.length : endNl + 1);
        matchedLines = lines.slice(first, last);
        unmatched = [...lines.slice(0, first), ...lines.slice(last)];
      }
      o.regex = i;
      const ig = this.findIgnore(multi ? joinBuf(matchedLines) : buf);
      if (multi) this.buffer = unmatched;
      if (ig >= 0) {
        o.kind = 'ignored';
        o.ignore = ig;
        return o;
      }
      let groups: Groups = m.groups;
      if (pre) {
        groups = new Map(pre);
        for (const [key, v] of m.groups) groups.set(key, v);
      }
      const text = !multi ? line : (orgLines === lines ? matchedLines : orgLines).map((l) => l.original).join('\n');
      o.text = text;
      o.groups = groups;
      const mlfid = groups.get('mlfid');
      let entry: MlfEntry | undefined;
      if (mlfid !== undefined) {
        entry = this.mergeMultiLine(mlfid, groups, text);
        groups = entry.groups;
        o.groups = groups;
        if (groups.has('nofail')) {
          o.kind = 'nofail';
          o.user = groups.get('user');
          return o;
        }
      }
      const fid = groups.get('fid');
      const ip = groups.get('ip4') ?? groups.get('ip6');
      const dns = ip === undefined ? groups.get('dns') : undefined;
      o.user = groups.get('user');
      if (ip === undefined && dns === undefined && fid === undefined) {
        // A multi-line failure without its address yet: remember it is pending.
        if (entry) entry.pending = true;
        o.kind = 'nofail';
        return o;
      }
      o.text = entry ? entry.lines.join('\n') : text;
      if (ip !== undefined) {
        const cidr = groups.get('cidr');
        const addr = cidr === undefined ? this.canonical(ip) : networkOf(ip, Number(cidr));
        o.addr = addr;
        o.host = fid !== undefined && fid !== ip ? fid : addr ?? ip;
        o.kind = addr !== undefined ? 'failure' : 'missed';
        return o;
      }
      if (dns !== undefined) {
        o.host = fid ?? dns;
        if (def.usedns === 'raw') {
          o.addr = dns;
          o.kind = 'failure';
          return o;
        }
        // Host names are never resolved: DNS answers are the attacker's to choose.
        o.kind = 'hostname';
        return o;
      }
      o.host = fid;
      o.addr = this.canonical(fid!);
      o.kind = o.addr !== undefined ? 'failure' : 'hostname';
      return o;
    }
    return o;
  }

  /** @returns the canonical text of an address, or undefined when the text is not one */
  private canonical(ip: string): string | undefined {
    const cached = this.addrCache.get(ip);
    if (cached !== undefined) return cached ?? undefined;
    const text = tryParseAddress(ip)?.text;
    if (this.addrCache.size >= ADDR_CACHE_SIZE) this.addrCache.clear();
    this.addrCache.set(ip, text ?? null);
    return text;
  }

  private findIgnore(buf: string): number {
    const ig = this.def.ignoreregex;
    for (let j = 0; j < ig.length; j++) if (ig[j]!.exec(buf)) return j;
    return -1;
  }

  /**
   * Merge a line into its multi-line failure (same `<F-MLFID>`, e.g. a connection), following
   * fail2ban: `<F-NOFAIL>` lines wait for a real failure, `<F-MLFFORGET>` ends the connection,
   * `<F-MLFGAINED>` (a successful login) clears what was pending.
   */
  private mergeMultiLine(mlfid: string, fail: Groups, text: string): MlfEntry {
    const gained = fail.has('mlfgained');
    let nofail = gained || fail.has('nofail');
    if (gained && !fail.has('nofail')) fail.set('nofail', fail.get('mlfgained')!);
    const forget = fail.has('mlfforget');
    fail.delete('mlfforget');
    const user = fail.get('user');
    let entry = this.mlfid.get(mlfid);
    if (entry) {
      if (user !== undefined) entry.users.add(user);
      entry.groups.delete('nofail');
      entry.groups.delete('mlfgained');
      if (gained) entry.pending = false;
      for (const [k, v] of fail) entry.groups.set(k, v);
      entry.lines.push(text);
      if (forget) this.mlfid.delete(mlfid);
    } else {
      entry = { groups: fail, users: new Set(user !== undefined ? [user] : []), pending: false, lines: [text] };
      if (!forget) {
        if (this.mlfid.size >= MLFID_CACHE_SIZE) this.mlfid.delete(this.mlfid.keys().next().value!);
        this.mlfid.set(mlfid, entry);
      }
    }
    if (entry.pending || entry.users.size > 1) {
      // Failures were pending, or several users were tried: the helper line counts after all.
      entry.groups.delete('nofail');
      entry.groups.delete('mlfgained');
      entry.pending = false;
      nofail = false;
    }
    void nofail;
    return entry;
  }
}

function networkOf(ip: string, cidr: number): string | undefined {
  const parsed = tryParseAddress(ip);
  return parsed ? containingNetwork(parsed, cidr).text : undefined;
}

function joinBuf(lines: readonly BufferedLine[]): string {
  let s = '';
  for (const l of lines) s += `${l.stripped}\n`;
  return s;
}

function countNewlines(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = s.indexOf('\n', from); i >= 0 && i < to; i = s.indexOf('\n', i + 1)) n++;
  return n;
}
