import { containingNetwork, isCanonicalIPv4, tryParseAddress } from '../address.js';
import { now } from '../clock.js';
import { DateDetector } from './date-detector.js';
import { FailRegex, type UseDns } from './fail-regex.js';
import type { FailureMatch, Filter, LineMatcher, LongLines } from './types.js';
import { type Slots, fill, detach, type Plan, buildPlan } from './match-plan.js';
import { MultiLineCache, type MlfEntry, type MultiLineState } from './multi-line-cache.js';
export { MLFID_CACHE_SIZE, MLFID_CACHE_TIME, type MultiLineState } from './multi-line-cache.js';

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

/** Canonical forms of recently seen addresses: attackers repeat, and parsing is costly. */
const ADDR_CACHE_SIZE = 4096;
const NO_FAILURES: readonly FailureMatch[] = Object.freeze([]);

/** A compiled filter; see loadFilter() in index.ts for reading one from filter.d. */
export class CompiledFilter implements Filter {
  private readonly plan: Plan;

  /**
   * @param def compiled parts of the filter
   */
  constructor(readonly def: FilterDefinition) {
    this.plan = buildPlan(def);
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
  createMatcher(): LineMatcher {
    const m = new DetailedMatcher(this.def, this.plan);
    return {
      feed(line: string): readonly FailureMatch[] {
        const f = m.feedFailure(line);
        return f === undefined ? NO_FAILURES : [f];
      },
      feedBatch(lines: readonly string[]): FailureMatch[] {
        const out: FailureMatch[] = [];
        m.startBatch();
        for (let i = 0; i < lines.length; i++) {
          const f = m.feedFailure(lines[i]!);
          if (f !== undefined) out.push(f);
        }
        m.endBatch();
        return out;
      },
      feedChunk(text: string, long?: LongLines): FailureMatch[] {
        const out: FailureMatch[] = [];
        m.startBatch();
        m.feedChunk(text, out, long);
        m.endBatch();
        return out;
      },
    };
  }

  /** @returns a matcher that explains every line */
  createDetailedMatcher(): DetailedMatcher {
    return new DetailedMatcher(this.def, this.plan);
  }
}

type Kind = LineResult['kind'];

/** What evaluate() found for a line that matched a failregex. */
interface Outcome {
  kind: Kind;
  regex: number;
  ignore: number;
  host: string | undefined;
  addr: string | undefined;
  user: string | undefined;
  text: string;
  groups: Slots | undefined;
}

/** Stateful per-stream matcher with full results. */
export class DetailedMatcher {
  private readonly dates: DateDetector;
  private readonly plan: Plan;
  private buffer: BufferedLine[] = [];
  private readonly multiLine: MultiLineCache;
  /** The match matchCandidates() found last (read at once by its caller). */
  private matched: RegExpExecArray | undefined;
  private lastTime: number | undefined;
  /**
   * The latest dated line when skim() found its date and its time is not computed yet: the line,
   * or the chunk that holds it at skimmedAt.
   */
  private skimmed: string | undefined;
  private skimmedAt = 0;
  /** The clock as read once for the current batch; -1: not read yet; undefined: no batch */
  private batchNow: number | undefined;
  private readonly addrCache = new Map<string, string | null>();
  private out: Outcome = { kind: 'missed', regex: -1, ignore: -1, host: undefined, addr: undefined, user: undefined, text: '', groups: undefined };
  /** ignoreregex is tried before the prefregex (fail2ban does so when there are few of them) */
  private readonly ignoreFirst: boolean;
  /** single-line filter whose prefregex (if any) has a head: lines can be rejected cheaply */
  private readonly quick: boolean;
  /** quick, and the head runs at an offset: the agent's leanFailure() applies */
  private readonly lean: boolean;
  /** lean, and the head may run on a chunk of lines (see feedChunk()) */
  private readonly chunkable: boolean;

  /**
   * @param def the filter's compiled parts
   * @param plan how the filter matches (computed from def when not given)
   */
  constructor(
    private readonly def: FilterDefinition,
    plan?: Plan,
  ) {
    this.dates = new DateDetector(def.datepattern);
    this.plan = plan ?? buildPlan(def);
    this.multiLine = new MultiLineCache(this.plan);
    this.ignoreFirst = def.ignoreregex.length > 0 && def.ignoreregex.length < def.failregex.length - 2;
    this.quick = def.maxlines === 1 && (def.prefregex === undefined || def.prefregex.hasHead);
    this.lean = this.quick && !this.ignoreFirst && (def.prefregex === undefined || def.prefregex.hasHeadAt);
    this.chunkable = this.lean && (def.prefregex === undefined || def.prefregex.headAtReadsOnlyWhatItMatches);
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
    let stripped: string | undefined;
    let dateEnd = 0;
    let time: number | undefined = knownTime;
    let dateTemplate: string | undefined;
    if (knownTime !== undefined) {
      // The multi-line cache expires in log time, which this line's time is.
      this.lastTime = knownTime;
      this.skimmed = undefined;
    } else {
      const hit = this.dates.find(line);
      if (hit) {
        dateEnd = hit.start === 0 ? hit.end : -1;
        stripped = withoutDate(line, hit);
        time = hit.time;
        dateTemplate = hit.template;
        this.lastTime = time;
        this.skimmed = undefined;
      } else time = this.currentLastTime();
    }
    const o = this.evaluate(line, stripped, dateEnd);
    if (o === null) return { kind: 'missed', regex: -1, ignore: -1, host: undefined, addr: undefined, time, user: undefined, dateTemplate, text: line, groups: undefined };
    const groups = o.groups ? this.plan.schema.toMap(o.groups) : undefined;
    return { kind: o.kind, regex: o.regex, ignore: o.ignore, host: o.host, addr: o.addr, time, user: o.user, dateTemplate, text: o.text, groups };
  }

  /**
   * The agent's path: like feed(), but only reports failures with an address.
   * @param rawLine one log line without its newline
   * @returns the failure this line completes, if any
   */
  feedFailure(rawLine: string): FailureMatch | undefined {
    const def = this.def;
    const line = rawLine.length > def.maxLineLength ? rawLine.slice(0, def.maxLineLength) : rawLine;
    let stripped: string | undefined;
    let dateEnd = this.dates.skim(line);
    if (dateEnd >= 0) {
      this.skimmed = line;
      this.skimmedAt = 0;
    } else {
      dateEnd = 0;
      const hit = this.dates.find(line);
      if (hit) {
        dateEnd = hit.start === 0 ? hit.end : -1;
        stripped = withoutDate(line, hit);
        this.lastTime = hit.time;
        this.skimmed = undefined;
      }
    }
    const o = this.evaluate(line, stripped, dateEnd);
    if (o === null || o.kind !== 'failure' || o.addr === undefined) return undefined;
    const time = this.currentLastTime();
    return o.user !== undefined ? { addr: o.addr, time, user: o.user, text: o.text } : { addr: o.addr, time, text: o.text };
  }

  /**
   * The agent's path for a chunk of lines: what feedFailure() gives for each of `text.split('\n')`,
   * without cutting the chunk into lines: the date check and the prefregex head run on the chunk,
   * and only lines that match a failregex are copied.
   * @param text complete lines separated by '\n' (none after the last)
   * @param out receives the failures, in order
   * @param long how the source cuts lines longer than its limit, if it has one
   */
  feedChunk(text: string, out: FailureMatch[], long?: LongLines): void {
    const n = text.length;
    for (let start = 0; ; ) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = n;
      const f = this.chunkLine(text, start, end, long);
      if (f !== undefined) out.push(f);
      if (end === n) return;
      start = end + 1;
    }
  }

  /** feedFailure() for the line at `[start, end)` of a chunk (see feedChunk()). */
  private chunkLine(text: string, start: number, end: number, long: LongLines | undefined): FailureMatch | undefined {
    if (this.chunkable && end - start <= this.def.maxLineLength && (long === undefined || end - start <= long.longerThan)) {
      const dateEnd = this.dates.skimAt(text, start, end);
      if (dateEnd >= 0) {
        this.skimmed = text;
        this.skimmedAt = start;
        const f = this.leanFailure(text, start, end, start + dateEnd, false);
        if (f !== null) return f;
      }
    }
    let line = text.slice(start, end);
    if (long !== undefined && line.length > long.longerThan) line = long.cut(line);
    return this.feedFailure(line);
  }

  /**
   * The agent's path for a line whose date ends where the content may begin: quickly() on the
   * line where a caller's chunk holds it, giving the failure itself instead of an Outcome.
   * @param text the line, or a chunk of lines holding it at [start, end)
   * @param dateEnd where the line's date ends in `text`
   * @param checkNewline the line may hold a newline (a caller's line, not one cut from a chunk)
   * @returns the failure, undefined when there is none, null when the line needs the general path
   */
  private leanFailure(text: string, start: number, end: number, dateEnd: number, checkNewline: boolean): FailureMatch | undefined | null {
    const def = this.def;
    const pref = def.prefregex;
    let cs = dateEnd;
    let hm: RegExpExecArray | null = null;
    if (pref !== undefined) {
      // A head that fails on the chunk fails on the line alone (it has no lookaround, and what
      // matches within the line matches the same in the chunk); one that ran past the line's end
      // is no answer for the line.
      hm = pref.matchHeadAt(text, dateEnd);
      if (hm === null) return undefined;
      cs = dateEnd + hm[0].length - 1;
      if (cs >= end) return null;
      if (checkNewline && text.indexOf('\n', cs) >= 0) return null;
    }
    const cands = this.candidatesAt(text, cs);
    const k = this.firstStartingAt(cands, text, cs);
    if (k === cands.length) return undefined;
    // The private copy of the line (see quickly()): failregexes run on its content, and what is
    // kept (the text, the groups) are slices of it.
    const own = `${start === 0 && end === text.length ? text : text.slice(start, end)}\n`;
    const buf = own.slice(cs - start);
    const i = this.matchCandidates(cands, k, buf);
    if (i < 0) return undefined;
    if (this.findIgnore(buf) >= 0) return undefined;
    const groups = this.plan.schema.empty();
    // These values are slices of the caller's line or chunk: MultiLineCache.merge() copies what it keeps.
    if (hm !== null) fill(this.plan.head!, hm, groups);
    fill(this.plan.fail[i]!, this.matched!, groups);
    const lineText = own.slice(0, end - start);
    this.reset(lineText);
    const o = this.settle(groups, lineText);
    if (o.kind !== 'failure' || o.addr === undefined) return undefined;
    const time = this.currentLastTime();
    return o.user !== undefined ? { addr: o.addr, time, user: o.user, text: o.text } : { addr: o.addr, time, text: o.text };
  }

  /**
   * The candidate loop of both fast paths: run the failregexes `cands[k..]` on `buf` (the first
   * is known to have its literal prefix at the start; the others are checked for theirs first).
   * @returns the index of the failregex that matched, its match left in `matched`; -1 for none
   */
  private matchCandidates(cands: readonly number[], k: number, buf: string): number {
    const fr = this.def.failregex;
    for (let first = true; k < cands.length; k++, first = false) {
      const i = cands[k]!;
      const r = fr[i]!;
      if (!first && !r.mayStartAt(buf, 0)) continue;
      const m = r.match(buf, false);
      if (m) {
        this.matched = m;
        return i;
      }
    }
    return -1;
  }

  /** The failregexes the dispatch allows for content starting at `cs` (by its first character). */
  private candidatesAt(subject: string, cs: number): readonly number[] {
    const d = this.plan.dispatch;
    const code = subject.charCodeAt(cs);
    return code < 128 ? d.ascii[code]! : (d.other.get(code) ?? d.wild);
  }

  /** @returns the index in `cands` of the first failregex whose literal prefix stands at `cs`, or cands.length */
  private firstStartingAt(cands: readonly number[], subject: string, cs: number): number {
    const fr = this.def.failregex;
    let k = 0;
    while (k < cands.length && !fr[cands[k]!]!.mayStartAt(subject, cs)) k++;
    return k;
  }

  /**
   * Lines fed until endBatch() share one reading of the clock (the year of a syslog date without
   * one is decided against it): a batch takes milliseconds, and reading the clock for every
   * failure cost more than the rest of turning its date into a time.
   */
  startBatch(): void {
    this.batchNow = -1;
  }

  /** See startBatch(). */
  endBatch(): void {
    this.batchNow = undefined;
  }

  /** Time of the latest dated line (the current one when it has a date). */
  private currentLastTime(): number | undefined {
    if (this.skimmed !== undefined) {
      let current = this.batchNow;
      if (current === undefined) current = now();
      else if (current < 0) current = this.batchNow = now();
      this.lastTime = this.dates.skimmedTime(this.skimmed, current, this.skimmedAt, true);
      this.skimmed = undefined;
    }
    return this.lastTime;
  }

  /**
   * Runs the filter over a line.
   * @param line the line
   * @param stripped the line without its date when the date was not at its start, else undefined
   * @param dateEnd where the date at the start of the line ends (0: no date), or -1
   * @returns this.out, or null when no failregex matched (this.out then holds an older line)
   */
  private evaluate(line: string, stripped: string | undefined, dateEnd: number): Outcome | null {
    if (this.quick && !this.ignoreFirst) {
      const r = this.quickly(line, stripped, dateEnd);
      if (r !== undefined) return r;
    }
    return this.general(line, stripped ?? (dateEnd > 0 ? line.slice(dateEnd) : line));
  }

  /**
   * A fresh outcome for this line. Fresh rather than reused: a long-lived object written with
   * the line's new strings pays V8's write barrier on every field, which costs more than the
   * allocation.
   */
  private reset(line: string): Outcome {
    const o: Outcome = { kind: 'missed', regex: -1, ignore: -1, host: undefined, addr: undefined, user: undefined, text: line, groups: undefined };
    this.out = o;
    return o;
  }

  /** The way fail2ban runs a filter, for multi-line filters and lines quickly() leaves. */
  private general(line: string, stripped: string): Outcome {
    const def = this.def;
    const o = this.reset(line);
    const multi = def.maxlines > 1;
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

    let pre: Slots | undefined;
    if (def.prefregex) {
      const m = def.prefregex.match(buf);
      if (!m) return o;
      pre = this.plan.schema.empty();
      fill(this.plan.pre!, m, pre);
      const cs = this.plan.schema.content;
      const content = pre[cs];
      if (content !== undefined) {
        pre[cs] = undefined;
        if (content) {
          lines = [{ stripped: content, original: line }];
          buf = `${content}\n`;
        }
      }
    }

    for (let i = 0; i < def.failregex.length; i++) {
      const m = def.failregex[i]!.match(buf);
      if (!m) continue;
      let matchedLines: BufferedLine[] = lines;
      let unmatched: BufferedLine[] = [];
      if (multi && lines.length > 1) {
        const first = countNewlines(buf, 0, buf.lastIndexOf('\n', m.index - 1) + 1);
        const endNl = buf.indexOf('\n', Math.max(m.index + m[0].length - 1, 0));
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
      const groups: Slots = pre ? pre.slice() : this.plan.schema.empty();
      fill(this.plan.fail[i]!, m, groups);
      // The text may be kept (multi-line cache, reports): a copy, not a slice of the source's chunk.
      const text = !multi ? detach(line) : (orgLines === lines ? matchedLines : orgLines).map((l) => l.original).join('\n');
      return this.settle(groups, text);
    }
    return o;
  }

  /**
   * The single-line path without a full prefregex: the prefregex head finds where the content
   * starts, the failregexes' literal prefixes tell which of them can match there, and only those
   * run, on a buffer sliced from one private copy of the line.
   * @returns the outcome; null when nothing matched; undefined when the line needs the general
   *   path (its content holds a newline)
   */
  private quickly(line: string, stripped: string | undefined, dateEnd: number): Outcome | null | undefined {
    const def = this.def;
    const pref = def.prefregex;
    // The head and the prefixes run on `subject` from `base`: the line itself from the end of its
    // date when the head allows it (no slice), else the line without its date.
    let subject = line;
    let base = dateEnd;
    if (stripped !== undefined || (pref !== undefined && !pref.hasHeadAt && dateEnd > 0)) {
      subject = stripped ?? line.slice(dateEnd);
      base = 0;
    }
    let cs = base;
    let hm: RegExpExecArray | null = null;
    if (pref) {
      hm = pref.hasHeadAt ? pref.matchHeadAt(subject, base) : pref.matchHead(subject);
      if (hm === null) return null;
      cs = base + hm[0].length - 1;
      // The head stands for the prefregex only when the content holds no newline: otherwise the
      // prefregex may backtrack to a later start of the content.
      if (subject.indexOf('\n', cs) >= 0) return undefined;
    }
    const cands = this.candidatesAt(subject, cs);
    const k = this.firstStartingAt(cands, subject, cs);
    if (k === cands.length) return null;
    // One copy of the line with the newline fail2ban appends; the buffers are slices of it, so
    // what the multi-line cache keeps does not pin the chunk the line was cut from.
    let buf: string;
    let own: string | undefined;
    if (subject === line || stripped === undefined) {
      own = `${line}\n`;
      buf = own.slice(subject === line ? cs : dateEnd + cs);
    } else buf = `${subject.slice(cs)}\n`;
    const i = this.matchCandidates(cands, k, buf);
    if (i < 0) return null;
    const o = this.reset(line);
    o.regex = i;
    const ig = this.findIgnore(buf);
    if (ig >= 0) {
      o.kind = 'ignored';
      o.ignore = ig;
      return o;
    }
    const groups = this.plan.schema.empty();
    // These values are slices of the source's chunk: MultiLineCache.merge() copies what it keeps.
    if (hm !== null) fill(this.plan.head!, hm, groups);
    fill(this.plan.fail[i]!, this.matched!, groups);
    return this.settle(groups, own !== undefined ? own.slice(0, line.length) : detach(line));
  }

  /**
   * A failregex matched: merge it into its multi-line failure and classify it.
   * @param groups prefregex and failregex groups merged
   * @param text the line(s) it matched, safe to keep
   */
  private settle(groups: Slots, text: string): Outcome {
    const S = this.plan.schema;
    const o = this.out;
    o.text = text;
    o.groups = groups;
    const mlfid = groups[S.mlfid];
    let entry: MlfEntry | undefined;
    if (mlfid !== undefined) {
      entry = this.multiLine.merge(mlfid, groups, text, this.currentLastTime());
      groups = entry.groups;
      o.groups = groups;
      if (groups[S.nofail] !== undefined) {
        o.kind = 'nofail';
        o.user = groups[S.user];
        return o;
      }
    }
    const fid = groups[S.fid];
    const ip = groups[S.ip4] ?? groups[S.ip6];
    const dns = ip === undefined ? groups[S.dns] : undefined;
    o.user = groups[S.user];
    if (ip === undefined && dns === undefined && fid === undefined) {
      // A multi-line failure without its address yet: remember it is pending.
      if (entry) entry.pending = true;
      o.kind = 'nofail';
      return o;
    }
    if (entry) {
      // Report the lines that led to this failure, then start over, as fail2ban clears the
      // matches of a connection once they were reported.
      o.text = joinLines(entry.lines);
      entry.lines = [];
    } else o.text = text;
    if (ip !== undefined) {
      const cidr = groups[S.cidr];
      const addr = cidr === undefined ? this.canonical(ip) : networkOf(ip, Number(cidr));
      o.addr = addr;
      o.host = fid !== undefined && fid !== ip ? fid : addr ?? ip;
      o.kind = addr !== undefined ? 'failure' : 'missed';
      return o;
    }
    if (dns !== undefined) {
      o.host = fid ?? dns;
      if (this.def.usedns === 'raw') {
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

  /** @returns the canonical text of an address, or undefined when the text is not one */
  private canonical(ip: string): string | undefined {
    if (isCanonicalIPv4(ip)) return ip;
    const cached = this.addrCache.get(ip);
    if (cached !== undefined) return cached ?? undefined;
    const text = tryParseAddress(ip)?.text;
    if (this.addrCache.size >= ADDR_CACHE_SIZE) this.addrCache.clear();
    this.addrCache.set(detach(ip), text ?? null);
    return text;
  }

  private findIgnore(buf: string): number {
    const ig = this.def.ignoreregex;
    for (let j = 0; j < ig.length; j++) if (ig[j]!.match(buf)) return j;
    return -1;
  }



  /** @returns what the multi-line state holds now (for tests and diagnostics; walks every entry) */
  multiLineState(): MultiLineState {
    return this.multiLine.state();
  }
}

function networkOf(ip: string, cidr: number): string | undefined {
  const parsed = tryParseAddress(ip);
  return parsed ? containingNetwork(parsed, cidr).text : undefined;
}

/**
 * `lines.join('\n')` by concatenation: most failures report one or two lines, for which the join
 * builtin's set-up costs more than the strings it builds.
 */
function joinLines(lines: readonly string[]): string {
  let s = lines[0]!;
  for (let i = 1; i < lines.length; i++) s = `${s}\n${lines[i]!}`;
  return s;
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

/**
 * The line without a date found inside it (fail2ban matches the rest), or undefined when the date
 * opens the line: then the content simply starts where the date ends.
 */
function withoutDate(line: string, hit: { start: number; end: number }): string | undefined {
  return hit.start === 0 ? undefined : line.slice(0, hit.start) + line.slice(hit.end);
}
