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

/** A compiled filter; see loadFilter() in index.ts for reading one from filter.d. */
export class CompiledFilter implements Filter {
  /**
   * @param def compiled parts of the filter
   */
  constructor(readonly def: FilterDefinition) {}

  get name(): string {
    return this.def.name;
  }

  /** @returns a matcher that reports failures with an IP address (the agent's view) */
  createMatcher(): LineMatcher {
    const detailed = this.createDetailedMatcher();
    return {
      feed(line: string): FailureMatch[] {
        const r = detailed.feed(line);
        if (r.kind !== 'failure' || r.addr === undefined) return [];
        const match: FailureMatch = r.user !== undefined ? { addr: r.addr, time: r.time, user: r.user, text: r.text } : { addr: r.addr, time: r.time, text: r.text };
        return [match];
      },
    };
  }

  /** @returns a matcher that explains every line */
  createDetailedMatcher(): DetailedMatcher {
    return new DetailedMatcher(this.def);
  }
}

type Groups = Map<string, string>;
interface MlfEntry {
  groups: Groups;
  users: Set<string>;
  pending: boolean;
  lines: string[];
}

/** Stateful per-stream matcher with full results. */
export class DetailedMatcher {
  private readonly dates: DateDetector;
  private buffer: BufferedLine[] = [];
  private readonly mlfid = new Map<string, MlfEntry>();
  private lastTime: number | undefined;

  constructor(private readonly def: FilterDefinition) {
    this.dates = new DateDetector(def.datepattern);
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
      } else time = this.lastTime;
    }
    const multi = def.maxlines > 1;
    let lines: BufferedLine[];
    if (multi) {
      this.buffer.push({ stripped, original: line });
      if (this.buffer.length > def.maxlines) this.buffer = this.buffer.slice(-def.maxlines);
      lines = this.buffer;
    } else lines = [{ stripped, original: line }];
    const orgLines = lines;
    let buf = multi ? joinBuf(lines) : `${stripped}\n`;
    const result = (kind: LineResult['kind'], extra: Partial<LineResult> = {}): LineResult => ({
      kind, regex: -1, ignore: -1, host: undefined, addr: undefined, time, user: undefined, dateTemplate,
      text: line, groups: undefined, ...extra,
    });

    if (def.ignoreregex.length > 0 && def.ignoreregex.length < def.failregex.length - 2) {
      const ig = this.findIgnore(buf);
      if (ig >= 0) return result('ignored', { ignore: ig });
    }

    let pre: Groups | undefined;
    if (def.prefregex) {
      const m = def.prefregex.exec(buf);
      if (!m) return result('missed');
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

    for (let i = 0; i < def.failregex.length; i++) {
      const fr = def.failregex[i]!;
      const m = fr.exec(buf);
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
      const ig = this.findIgnore(multi ? joinBuf(matchedLines) : buf);
      if (ig >= 0) {
        if (multi) this.buffer = unmatched;
        return result('ignored', { regex: i, ignore: ig });
      }
      if (multi) this.buffer = unmatched;
      let groups: Groups = m.groups;
      if (pre) {
        groups = new Map(pre);
        for (const [k, v] of m.groups) groups.set(k, v);
      }
      const text = (orgLines === lines ? matchedLines : orgLines).map((l) => l.original).join('\n');
      const mlfid = groups.get('mlfid');
      let entry: MlfEntry | undefined;
      if (mlfid !== undefined) {
        entry = this.mergeMultiLine(mlfid, groups, text);
        groups = entry.groups;
        if (groups.has('nofail')) return result('nofail', { regex: i, groups, text, user: groups.get('user') });
      }
      const fid = groups.get('fid');
      const ip = groups.get('ip4') ?? groups.get('ip6');
      const dns = ip === undefined ? groups.get('dns') : undefined;
      const user = groups.get('user');
      if (ip === undefined && dns === undefined && fid === undefined) {
        // A multi-line failure without its address yet: remember it is pending.
        if (entry) entry.pending = true;
        return result('nofail', { regex: i, groups, text, user });
      }
      const fullText = entry ? [...entry.lines].join('\n') : text;
      if (ip !== undefined) {
        const parsed = tryParseAddress(ip);
        let addr = parsed?.text;
        const cidr = groups.get('cidr');
        if (parsed && cidr !== undefined) addr = containingNetwork(parsed, Number(cidr)).text;
        const host = fid !== undefined && fid !== ip ? fid : addr ?? ip;
        return result(parsed ? 'failure' : 'missed', { regex: i, host, addr, groups, text: fullText, user });
      }
      if (dns !== undefined) {
        if (def.usedns === 'raw') return result('failure', { regex: i, host: fid ?? dns, addr: dns, groups, text: fullText, user });
        // Host names are never resolved: DNS answers are the attacker's to choose.
        return result('hostname', { regex: i, host: fid ?? dns, groups, text: fullText, user });
      }
      const asAddr = tryParseAddress(fid!);
      return result(asAddr ? 'failure' : 'hostname', { regex: i, host: fid, addr: asAddr?.text, groups, text: fullText, user });
    }
    return result('missed');
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
