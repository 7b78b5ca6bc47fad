import { now } from '../clock.js';
import { translatePythonRegex } from './py-regex.js';

/**
 * Finding and parsing the timestamp of a log line, following fail2ban's `datepattern` language:
 * strftime-like fields (`%b %d %H:%M:%S`, with fail2ban's `%Ex*` strict variants), `{^LN-BEG}`
 * (anchor at line start), `{DATE}` (insert the default formats), `{UNB}`, `{NONE}`, `EPOCH`,
 * `LEPOCH`, `TAI64N`, and the built-in list of common formats used when no pattern is set.
 *
 * Dates without a zone are local time, like fail2ban; a date without a year gets the current year
 * (from common/clock `now()`), or the previous one when that would put it more than a day in the future.
 */

/** Where the date was found in a line, and its value. */
export interface DateHit {
  /** epoch milliseconds */
  readonly time: number;
  readonly start: number;
  readonly end: number;
  /** name of the template that matched (for reports) */
  readonly template: string;
}

interface Template {
  readonly name: string;
  readonly lineBegin: boolean;
  find(line: string): DateHit | undefined;
  /** Only the syslog fast template: where its date ends in the line at `[at, end)` of `text`, relative to `at` (-1: not there), without computing the time. */
  dateEnd?(text: string, at: number, end: number): number;
  /**
   * Only the syslog fast template: the time of the line at `at` that dateEnd() accepted, given the
   * current time; `gen` is `prefix.gen` as it was when dateEnd() accepted it, if known.
   */
  timeOf?(text: string, at: number, current: number, gen?: number): number;
  /** Only the syslog fast template: `gen` changes whenever dateEnd() remembers another minute. */
  readonly prefix?: { gen: number };
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const MONTHS_FULL = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const DAYS_FULL = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

// Field regexes (Python syntax; the group names are what parseFields reads).
const FIELDS: Record<string, string> = {
  a: `(?P<a>${DAYS.join('|')})`,
  A: `(?P<A>${DAYS_FULL.join('|')})`,
  b: `(?P<b>${MONTHS.join('|')})`,
  B: `(?P<B>${MONTHS_FULL.join('|')})`,
  d: '(?P<d>3[01]|[12]\\d|[0 ]?[1-9])',
  Exd: '(?P<d>3[01]|[12]\\d|0[1-9])',
  m: '(?P<m>1[0-2]|0?[1-9])',
  Exm: '(?P<m>1[0-2]|0[1-9])',
  Y: '(?P<Y>\\d{4})',
  ExY: '(?P<Y>(?:19[7-9]|20\\d)\\d)',
  y: '(?P<y>\\d\\d)',
  Exy: '(?P<y>\\d\\d)',
  H: '(?P<H>2[0-3]|[01]?\\d)',
  ExH: '(?P<H>2[0-3]|[01]\\d)',
  k: ' ?(?P<H>[0-2]?\\d)',
  Exk: ' ?(?P<H>2[0-3]|[01]?\\d)',
  I: '(?P<I>1[0-2]|0?[1-9])',
  l: ' ?(?P<I>1?\\d)',
  Exl: ' ?(?P<I>1[0-2]|\\d)',
  M: '(?P<M>[0-5]?\\d)',
  ExM: '(?P<M>[0-5]\\d)',
  S: '(?P<S>6[01]|[0-5]?\\d)',
  ExS: '(?P<S>6[01]|[0-5]\\d)',
  f: '(?P<f>\\d{1,6})',
  p: '(?P<p>am|pm)',
  j: '(?P<j>36[0-6]|3[0-5]\\d|[12]\\d\\d|0?[1-9]\\d|0{0,2}[1-9])',
  z: '(?P<z>Z|UTC|GMT|[+-][01]\\d(?::?\\d{2})?)',
  Exz: '(?P<z>(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\\d(?::?\\d{2})?|[A-Z](?:[A-Z]{2,4})?)',
  Z: '(?P<Z>Z|[A-Z]{3,5})',
  ExZ: '(?P<Z>[A-Z](?:[A-Z]{2,4})?)',
  '%': '%',
};
const FIELD_RE = /%(Ex[a-zA-Z]|[a-zA-Z%])/g;

/** fail2ban's built-in formats, tried when a filter sets no datepattern (or uses {^LN-BEG}/{DATE}). */
const DEFAULT_PATTERNS = [
  '%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\\s*%z)?',
  '(?:%a )?%b %d %k:%M:%S(?:\\.%f)?(?: %ExY)?',
  '(?:%a )?%b %d %ExY %k:%M:%S(?:\\.%f)?',
  '%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S',
  '%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\\.%f)?(?: %z)?',
  '%m/%d/%ExY:%H:%M:%S',
  '%m-%d-%ExY %k:%M:%S(?:\\.%f)?',
  'EPOCH',
  '{^LN-BEG}%H:%M:%S',
  '^<%m/%d/%Exy@%H:%M:%S>',
  '%Exy%Exm%Exd  ?%H:%M:%S',
  '%b %d, %ExY %I:%M:%S %p',
  '^%b-%d-%Exy %k:%M:%S',
  '%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\\s*%z)?',
  '(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\\.%f)?(?: %ExY)?',
  '(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\\.%f)?(?: %ExY)?',
  'TAI64N',
];

/** Error in a datepattern, with the pattern. */
export class DatePatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatePatternError';
  }
}

/**
 * Finds the date in lines of one log stream. It remembers which template hit last and tries it
 * first, as most logs use one format throughout.
 */
export class DateDetector {
  private readonly templates: Template[];
  private last: Template | undefined;
  private lastStart = -1;
  /** The template's `prefix.gen` when skim() or skimAt() last accepted a line. */
  private skimGen = -1;
  /** Template hits by name, for `fleetban regex` reports. */
  readonly hits = new Map<string, number>();

  /**
   * @param datepattern the filter's `datepattern` (one per line), or undefined for the defaults
   * @throws DatePatternError for a pattern that cannot be compiled
   */
  constructor(datepattern?: string) {
    const patterns = (datepattern ?? '')
      .split(/\n+/)
      .map((s) => s.trim())
      .filter(Boolean);
    this.templates = patterns.length === 0 ? defaultTemplates('all') : patterns.flatMap((p) => templatesFor(p));
  }

  /** @returns the date of the line, or undefined when no template finds one */
  find(line: string): DateHit | undefined {
    const last = this.last;
    if (last) {
      const hit = last.find(line);
      // Accept the remembered template when it is anchored or found the date where it did before;
      // otherwise another template might find an earlier date, so search them all.
      if (hit && (last.lineBegin || hit.start === this.lastStart)) return this.count(hit);
    }
    let best: DateHit | undefined;
    let bestTemplate: Template | undefined;
    for (const t of this.templates) {
      const hit = t.find(line);
      if (!hit) continue;
      if (t.lineBegin) {
        best = hit;
        bestTemplate = t;
        break;
      }
      if (!best || hit.start < best.start) {
        best = hit;
        bestTemplate = t;
        if (hit.start === 0) break;
      }
    }
    if (!best) return undefined;
    this.last = bestTemplate;
    this.lastStart = best.start;
    return this.count(best);
  }

  /**
   * The agent's cheap path: when the template that hit last is the syslog one and this line starts
   * with that date, find() would return that template's hit; this gives where the date ends and
   * leaves computing the time to skimmedTime(), for the few lines that need it. Unlike find(),
   * it does not count the hit in `hits`.
   * @returns the end of the date in the line, or -1 (then call find())
   */
  skim(line: string): number {
    const last = this.last;
    if (!last?.dateEnd) return -1;
    const end = last.dateEnd(line, 0, line.length);
    if (end >= 0) this.skimGen = last.prefix!.gen;
    return end;
  }

  /**
   * skim() for the line at `[at, end)` of a chunk of lines, without cutting it out.
   * @returns the end of the date relative to `at`, or -1
   */
  skimAt(text: string, at: number, end: number): number {
    const last = this.last;
    if (!last?.dateEnd) return -1;
    const dateEnd = last.dateEnd(text, at, end);
    if (dateEnd >= 0) this.skimGen = last.prefix!.gen;
    return dateEnd;
  }

  /**
   * @param current the time now (epoch ms), which decides the year of a date without one; a
   *   caller matching a batch of lines may read the clock once for all of them
   * @param at where the line starts in `line` (a chunk of lines)
   * @param latest the line is the last one skim() or skimAt() accepted: its minute may be known
   * @returns the time of a line that skim() accepted
   */
  skimmedTime(line: string, current: number = now(), at = 0, latest = false): number {
    const last = this.last!;
    return last.timeOf ? last.timeOf(line, at, current, latest ? this.skimGen : undefined) : last.find(line)!.time;
  }

  private count(hit: DateHit): DateHit {
    this.hits.set(hit.template, (this.hits.get(hit.template) ?? 0) + 1);
    return hit;
  }
}

let defaultCache: { all: Template[]; lineBegin: Template[] } | undefined;

function defaultTemplates(kind: 'all' | 'lineBegin'): Template[] {
  if (!defaultCache) {
    const anchored: Template[] = [];
    const plain: Template[] = [];
    for (const p of DEFAULT_PATTERNS) {
      const t = compileOne(p);
      // fail2ban tries a line-start anchored copy of each unanchored default first.
      if (!t.lineBegin && !p.startsWith('^') && p !== 'TAI64N' && p !== 'EPOCH') anchored.push(compileOne(`{^LN-BEG}${p}`));
      if (p === 'EPOCH') anchored.push(compileOne('{^LN-BEG}EPOCH'));
      if (p === 'TAI64N') anchored.push(compileOne('{^LN-BEG}TAI64N'));
      plain.push(t);
    }
    const all = [syslogFastTemplate(), ...anchored, ...plain];
    defaultCache = { all, lineBegin: all.filter((t) => t.lineBegin) };
  }
  return defaultCache[kind];
}

function templatesFor(pattern: string): Template[] {
  const key = pattern.includes('%') ? pattern : pattern.toUpperCase();
  if (key === '{^LN-BEG}' || key === '{DEFAULT}') return defaultTemplates(key === '{^LN-BEG}' ? 'lineBegin' : 'all');
  if (/\{DATE\}/i.test(pattern)) {
    return DEFAULT_PATTERNS.filter((p) => p !== 'EPOCH' && p !== 'TAI64N').map((p) =>
      compileOne(pattern.replace(/(?<!\\)\{DATE\}/gi, () => unbound(p))),
    );
  }
  if (key === '{NONE}') return [noneTemplate()];
  return [compileOne(pattern)];
}

function unbound(p: string): string {
  return p.replace(/^\{UNB\}/, '').replace(/^\{\^LN-BEG\}/, '');
}

/** `{NONE}`: the line has no date; the caller uses "now". */
function noneTemplate(): Template {
  return { name: '{NONE}', lineBegin: true, find: () => undefined };
}

function compileOne(pattern: string): Template {
  let p = pattern.trim();
  let wordBegin: boolean | 'start' = true;
  let wordEnd = true;
  if (p.startsWith('{UNB}')) {
    p = p.slice(5);
    wordBegin = wordEnd = false;
  }
  if (wordBegin && p.startsWith('{^LN-BEG}')) {
    p = p.slice(9);
    wordBegin = 'start';
  }
  const upper = p.toUpperCase();
  if (upper === 'EPOCH' || upper === 'LEPOCH' || upper === '^EPOCH' || upper === '^LEPOCH') {
    return epochTemplate(upper.includes('LEPOCH'), wordBegin === 'start' || upper.startsWith('^'), pattern);
  }
  if (/\{L?EPOCH\}/i.test(p)) {
    const long = /\{LEPOCH\}/i.test(p);
    const re = p.replace(/\{L?EPOCH\}/gi, () => `(?P<epoch>${long ? '\\d{10,11}(?:\\d{3}(?:\\.\\d{1,6}|\\d{3})?)?' : '\\d{10,11}\\b(?:\\.\\d{3,6})?'})`);
    return regexTemplate(pattern, `(${re})`, wordBegin, wordEnd, long);
  }
  if (upper === 'TAI64N' || upper === '^TAI64N') return tai64nTemplate(wordBegin === 'start' || upper.startsWith('^'), pattern);
  let alpha = false;
  const re = p.replace(FIELD_RE, (whole, f: string) => {
    const r = FIELDS[f];
    if (r === undefined) throw new DatePatternError(`datepattern '${pattern}': unknown field '${whole}'`);
    if ('aAbBp'.includes(f)) alpha = true;
    return r;
  });
  return regexTemplate(pattern, alpha ? `(?i)${re}` : re, wordBegin, wordEnd, false);
}

function regexTemplate(name: string, pyRegex: string, wordBegin: boolean | 'start', wordEnd: boolean, longEpoch: boolean): Template {
  let flags = '';
  let re = pyRegex;
  const gf = /^\(\?[a-z]+\)/.exec(re);
  if (gf) {
    flags = gf[0];
    re = re.slice(flags.length);
  }
  const noBoundBegin = /^\(*(?:\^|\*\*|\(\?:\^)/.test(re);
  const noBoundEnd = /(?:\$\)?|\\b|\\s|\*\*\)*)$/.test(re) && !/\\\$\)?$/.test(re);
  const boundBegin = wordBegin !== false && !noBoundBegin;
  const boundEnd = wordEnd && !noBoundEnd;
  // fail2ban takes the date text from group 1; wrap the whole pattern when it has no plain group.
  if (!/(?<!\\)\((?!\?)/.test(re)) {
    const m = /^(\^?)(.*?)(\$?)$/s.exec(re)!;
    re = `${m[1]}(${m[2]})${m[3]}`;
  }
  let lineBegin = /^(?:\^|\((?:\?:)?\^(?!\|))/.test(re);
  if (boundBegin) {
    if (wordBegin === 'start') {
      re = `^(?:\\W{0,2})?${re}`;
      lineBegin = true;
    } else re = `(?=^|\\b|\\W)${re}`;
  }
  if (boundEnd) re += '(?=\\b|\\W|$)';
  re = re.replace(/^\(*\*\*|(?<!\\)\*\*\)*$/g, (m) => m.replace(/\*\*/g, ''));
  let tr;
  try {
    tr = translatePythonRegex(flags + re, { indices: true });
  } catch (err) {
    throw new DatePatternError(`datepattern '${name}': ${(err as Error).message}`);
  }
  const regex = tr.regex;
  const g = (key: string): number => tr.groups.get(key)?.[0] ?? -1;
  const idx = {
    one: g('1'),
    Y: g('Y'), y: g('y'), m: g('m'), b: g('b'), B: g('B'), d: g('d'), H: g('H'), I: g('I'),
    M: g('M'), S: g('S'), f: g('f'), p: g('p'), z: g('z'), Z: g('Z'), j: g('j'), epoch: g('epoch'),
  };
  return {
    name,
    lineBegin,
    find(line: string): DateHit | undefined {
      const m = regex.exec(line);
      if (!m) return undefined;
      const span = m.indices![idx.one] ?? m.indices![0]!;
      const get = (i: number): string | undefined => (i < 0 ? undefined : m[i]);
      let time: number | undefined;
      if (idx.epoch >= 0) time = epochValue(get(idx.epoch)!, longEpoch);
      else {
        time = fieldsToTime({
          Y: get(idx.Y), y: get(idx.y), m: get(idx.m), b: get(idx.b), B: get(idx.B), d: get(idx.d),
          H: get(idx.H), I: get(idx.I), M: get(idx.M), S: get(idx.S), f: get(idx.f), p: get(idx.p),
          z: get(idx.z) ?? get(idx.Z), j: get(idx.j),
        });
      }
      if (time === undefined) return undefined;
      return { time, start: span[0], end: span[1], template: name };
    },
  };
}

function epochValue(text: string, long: boolean): number {
  let v = Number(text);
  if (long && text.length >= 13) v = text.length >= 16 && !text.includes('.') ? v / 1e6 : v / 1e3;
  return Math.round(v * 1000);
}

function epochTemplate(long: boolean, lineBeginOnly: boolean, name: string): Template {
  const num = long ? '\\d{10,11}(?:\\d{3}(?:\\.\\d{1,6}|\\d{3})?)?' : '\\d{10,11}\\b(?:\\.\\d{3,6})?';
  // A bare number is a date only at line start, in `[...]` at line start, or in an audit(...) record.
  const re = lineBeginOnly
    ? new RegExp(`^(?:\\W{0,2})?(\\[)?(${num})(?=\\b|\\W|$)`)
    : new RegExp(`(?:^(\\[)?|(?<=\\baudit\\())(${num})(?=\\b|\\W|$)`);
  return {
    name,
    lineBegin: lineBeginOnly,
    find(line: string): DateHit | undefined {
      const m = re.exec(line);
      if (!m) return undefined;
      const text = m[2]!;
      const start = m.index + m[0].length - text.length;
      const after = line[start + text.length];
      if (m[1] === '[' && after !== ']') return undefined;
      if (!lineBeginOnly && m[1] !== '[' && m.index > 0 && !/^:\d+\)/.test(line.slice(start + text.length))) return undefined;
      return { time: epochValue(text, long), start, end: start + text.length, template: name };
    },
  };
}

function tai64nTemplate(lineBegin: boolean, name: string): Template {
  const re = lineBegin ? /^(?:\W{0,2})?(@[0-9a-f]{24})(?=\b|\W|$)/ : /(@[0-9a-f]{24})(?=\b|\W|$)/;
  return {
    name,
    lineBegin,
    find(line: string): DateHit | undefined {
      const m = re.exec(line);
      if (!m) return undefined;
      const text = m[1]!;
      const start = m.index + m[0].length - text.length;
      // TAI64 labels are 2^62 + seconds; the low 15 hex digits hold the seconds.
      const seconds = parseInt(text.slice(2, 17), 16);
      return { time: seconds * 1000, start, end: start + text.length, template: name };
    },
  };
}

interface Fields {
  Y?: string; y?: string; m?: string; b?: string; B?: string; d?: string; H?: string; I?: string;
  M?: string; S?: string; f?: string; p?: string; z?: string; j?: string;
}

function fieldsToTime(f: Fields): number | undefined {
  let year: number | undefined = f.Y !== undefined ? Number(f.Y) : f.y !== undefined ? 2000 + Number(f.y) : undefined;
  let month: number | undefined;
  if (f.m !== undefined) month = Number(f.m) - 1;
  else if (f.b !== undefined) month = MONTHS.indexOf(f.b.toLowerCase());
  else if (f.B !== undefined) month = MONTHS_FULL.indexOf(f.B.toLowerCase());
  let day = f.d !== undefined ? Number(f.d.trim()) : undefined;
  let hour = f.H !== undefined ? Number(f.H.trim()) : 0;
  if (f.I !== undefined) {
    hour = Number(f.I.trim());
    const pm = f.p?.toLowerCase() === 'pm';
    if (pm && hour !== 12) hour += 12;
    if (!pm && hour === 12) hour = 0;
  }
  const minute = f.M !== undefined ? Number(f.M) : 0;
  const second = f.S !== undefined ? Math.min(Number(f.S), 59) : 0;
  const ms = f.f !== undefined ? Math.floor(Number(`0.${f.f}`) * 1000) : 0;
  const offset = f.z !== undefined ? zoneOffsetMinutes(f.z) : undefined;
  const current = now();
  const assumeYear = year === undefined;
  if (year === undefined) year = localParts(current, offset).year;
  if ((month === undefined || day === undefined) && f.j !== undefined) {
    const d = new Date(Date.UTC(year, 0, Number(f.j)));
    month = d.getUTCMonth();
    day = d.getUTCDate();
  }
  let assumeToday = false;
  if (month === undefined && day === undefined) {
    const p = localParts(current, offset);
    month = p.month;
    day = p.day;
    assumeToday = true;
  }
  if (month === undefined || month < 0 || day === undefined) return undefined;
  const build = (y: number, dayShift = 0): number =>
    offset === undefined
      ? new Date(y, month!, day! + dayShift, hour, minute, second, ms).getTime()
      : Date.UTC(y, month!, day! + dayShift, hour, minute, second, ms) - offset * 60_000;
  let t = build(year);
  if (assumeToday && t > current) t = build(year, -1);
  if (assumeYear && t > current + 86_400_000) t = build(year - 1);
  return Number.isFinite(t) ? t : undefined;
}

function localParts(ms: number, offset: number | undefined): { year: number; month: number; day: number } {
  if (offset === undefined) {
    const d = new Date(ms);
    return { year: d.getFullYear(), month: d.getMonth(), day: d.getDate() };
  }
  const d = new Date(ms + offset * 60_000);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth(), day: d.getUTCDate() };
}

// Zone abbreviations fail2ban accepts (fixed offsets in hours; no DST switching, as fail2ban).
const ZONES: Record<string, number> = {};
for (const [off, names] of [
  [-12, 'Y'], [-11, 'X NUT SST'], [-10, 'W CKT HAST HST TAHT TKT'], [-9, 'V AKST GAMT GIT HADT HNY'],
  [-8, 'U AKDT CIST HAY HNP PST PT'], [-7, 'T HAP HNR MST PDT'], [-6, 'S CST EAST GALT HAR HNC MDT'],
  [-5, 'R CDT COT EASST ECT EST ET HAC HNE PET'], [-4, 'Q AST BOT CLT COST EDT FKT GYT HAE HNA PYT'],
  [-3, 'P ADT ART BRT CLST FKST GFT HAA PMST PYST SRT UYT WGT'], [-2, 'O BRST FNT PMDT UYST WGST'],
  [-1, 'N AZOT CVT EGT'], [0, 'Z EGST GMT UTC WET WT'], [1, 'A CET DFT WAT WEDT WEST'],
  [2, 'B CAT CEDT CEST EET SAST WAST'], [3, 'C EAT EEDT EEST IDT MSK'], [4, 'D AMT AZT GET GST KUYT MSD MUT RET SAMT SCT'],
  [5, 'E AMST AQTT AZST HMT MAWT MVT PKT TFT TJT TMT UZT YEKT'], [6, 'F ALMT BIOT BTT IOT KGT NOVT OMST YEKST'],
  [7, 'G CXT DAVT HOVT ICT KRAT NOVST OMSST THA WIB'], [8, 'H ACT AWST BDT BNT CAST HKT IRKT KRAST MYT PHT SGT ULAT WITA WST'],
  [9, 'I AWDT IRKST JST KST PWT TLT WDT WIT YAKT'], [10, 'K AEST ChST PGT VLAT YAKST YAPT'],
  [11, 'L AEDT LHDT MAGT NCT PONT SBT VLAST VUT'], [12, 'M ANAST ANAT FJT GILT MAGST MHT NZST PETST PETT TVT WFT'],
  [13, 'FJST NZDT'], [11.5, 'NFT'], [10.5, 'ACDT LHST'], [9.5, 'ACST'], [6.5, 'CCT MMT'], [5.75, 'NPT'],
  [5.5, 'SLT'], [4.5, 'AFT IRDT'], [3.5, 'IRST'], [-2.5, 'HAT NDT'], [-3.5, 'HNT NST NT'], [-4.5, 'HLV VET'], [-9.5, 'MART MIT'],
] as Array<[number, string]>) {
  for (const n of names.split(' ')) ZONES[n] = off * 60;
}

function zoneOffsetMinutes(z: string): number | undefined {
  const m = /^([A-Za-z]*)([+-])?(\d\d)?:?(\d\d)?$/.exec(z);
  if (!m) return undefined;
  const base = m[1] ? ZONES[m[1]] : 0;
  if (base === undefined) return undefined;
  if (!m[2]) return base;
  const sign = m[2] === '-' ? -1 : 1;
  return base + sign * (Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0));
}

// --- hot path: `Mmm dd HH:MM:SS ` at line start (syslog), parsed by hand ----------------------

const MONTH_CODES = new Map<number, number>();
for (let i = 0; i < 12; i++) {
  const s = MONTHS[i]!;
  const cap = s[0]!.toUpperCase() + s.slice(1);
  MONTH_CODES.set((cap.charCodeAt(0) << 16) | (cap.charCodeAt(1) << 8) | cap.charCodeAt(2), i);
}

function digit(c: number): number {
  return c >= 48 && c <= 57 ? c - 48 : -1;
}

/** @returns the number written with two digits at `at`, or -1 when either is not a digit */
function twoDigits(line: string, at: number): number {
  const a = digit(line.charCodeAt(at));
  const b = digit(line.charCodeAt(at + 1));
  return a < 0 || b < 0 ? -1 : a * 10 + b;
}

function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/**
 * Checks that a line starts with `Mmm dd HH:MM:SS` (valid ranges) and that what follows does not
 * make it another format.
 * @returns the month (0-11), or -1
 */
function syslogMonth(line: string): number {
  if (line.length < 15) return -1;
  const month = MONTH_CODES.get((line.charCodeAt(0) << 16) | (line.charCodeAt(1) << 8) | line.charCodeAt(2));
  if (month === undefined || line.charCodeAt(3) !== 32) return -1;
  const d1 = line.charCodeAt(4);
  const d2 = digit(line.charCodeAt(5));
  const day = (d1 === 32 ? 0 : digit(d1)) * 10 + d2;
  if (d2 < 0 || (d1 !== 32 && digit(d1) < 0) || day < 1 || day > 31 || line.charCodeAt(6) !== 32) return -1;
  const h = twoDigits(line, 7);
  const mi = twoDigits(line, 10);
  const s = twoDigits(line, 13);
  if (line.charCodeAt(9) !== 58 || line.charCodeAt(12) !== 58 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 61) return -1;
  if (line.length > 15) {
    const next = line.charCodeAt(15);
    // '.', a year, or a word character right after: let the full templates decide.
    if (next === 46 || (next === 32 && digit(line.charCodeAt(16)) >= 0) || isWordChar(next)) return -1;
  }
  return month;
}

/**
 * The syslog default (`Mmm dd HH:MM:SS` at the start of a line) parsed without a regex: most
 * agents read syslog files, and the generic template path allocates a match object per line.
 * Anything unusual (fractions, a year, a weekday) falls through to the regex templates.
 */
function syslogFastTemplate(): Template {
  let cacheKey = -1;
  let cacheBase = 0;
  // The cached base holds while "now" stays in the year it was computed for.
  let yearStart = 0;
  let yearEnd = -1;
  let nowYear = 0;
  const name = '{^LN-BEG}(?:%a )?%b %d %k:%M:%S(?:\\.%f)?(?: %ExY)?';
  // "Mmm dd HH:MM:" of the last line that passed, as character codes: lines come in bursts, and
  // comparing thirteen codes costs less than checking them one by one for what they mean (and,
  // measured, much less than startsWith() on the slices of a chunk that lines usually are).
  const okPrefix = new Int32Array(13).fill(-1);
  // okPrefix's minute, this year, computed for the first line of it that needs a time: the
  // multi-line cache needs the time of every line it merges, and finding the month costs more.
  // Valid while prefix.gen is minuteGen (several matchers share this template).
  const prefix = { gen: 0 };
  let minuteGen = -1;
  let minuteBase = 0;
  return {
    name,
    lineBegin: true,
    prefix,
    dateEnd(text: string, at: number, end: number): number {
      let j = 0;
      if (end - at >= 15) while (j < 13 && text.charCodeAt(at + j) === okPrefix[j]) j++;
      if (j === 13) {
        const s = twoDigits(text, at + 13);
        if (s < 0 || s > 61) return -1;
        if (end - at > 15) {
          const next = text.charCodeAt(at + 15);
          if (next === 46 || (next === 32 && end - at > 16 && digit(text.charCodeAt(at + 16)) >= 0) || isWordChar(next)) return -1;
        }
        return 15;
      }
      const line = at === 0 && end === text.length ? text : text.slice(at, end);
      if (syslogMonth(line) < 0) return -1;
      for (let k = 0; k < 13; k++) okPrefix[k] = line.charCodeAt(k);
      prefix.gen++;
      return 15;
    },
    find(line: string): DateHit | undefined {
      const month = syslogMonth(line);
      if (month < 0) return undefined;
      return { time: this.timeOf!(line, 0, now()), start: 0, end: 15, template: name };
    },
    timeOf(text: string, at: number, current: number, gen?: number): number {
      const s = (text.charCodeAt(at + 13) - 48) * 10 + text.charCodeAt(at + 14) - 48;
      if (current < yearStart || current >= yearEnd) {
        nowYear = new Date(current).getFullYear();
        yearStart = new Date(nowYear, 0, 1).getTime();
        yearEnd = new Date(nowYear + 1, 0, 1).getTime();
        cacheKey = -1;
        minuteGen = -1;
      }
      // The line's minute is okPrefix's when the prefix has not changed since it was accepted.
      const known = gen !== undefined && gen === prefix.gen;
      if (known && gen === minuteGen && minuteBase + s * 1000 <= current + 86_400_000) return minuteBase + Math.min(s, 59) * 1000;
      const month = MONTH_CODES.get((text.charCodeAt(at) << 16) | (text.charCodeAt(at + 1) << 8) | text.charCodeAt(at + 2))!;
      const d1 = text.charCodeAt(at + 4);
      const day = (d1 === 32 ? 0 : d1 - 48) * 10 + text.charCodeAt(at + 5) - 48;
      const h = (text.charCodeAt(at + 7) - 48) * 10 + text.charCodeAt(at + 8) - 48;
      const mi = (text.charCodeAt(at + 10) - 48) * 10 + text.charCodeAt(at + 11) - 48;
      const key = (month << 16) | (day << 8) | h;
      if (key !== cacheKey) {
        cacheBase = new Date(nowYear, month, day, h).getTime();
        cacheKey = key;
      }
      if (known) {
        minuteGen = gen;
        minuteBase = cacheBase + mi * 60_000;
      }
      let base = cacheBase;
      // A date more than a day ahead of now is from last year (the log has no year).
      if (base + mi * 60_000 + s * 1000 > current + 86_400_000) base = new Date(nowYear - 1, month, day, h).getTime();
      return base + mi * 60_000 + Math.min(s, 59) * 1000;
    },
  };
}
