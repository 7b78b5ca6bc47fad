import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CompiledFilter, LineResult } from '../../common/filter/index.js';

/**
 * Runner for fail2ban-style annotated sample logs, shared by our own filter tests and the
 * compatibility test against fail2ban's samples. Format (fail2ban's tests/files/logs):
 *   # failJSON: { "time": "2005-02-25T14:34:10", "match": true, "host": "198.51.100.7" }
 *   <the log line it describes>
 *   # filterOptions: [{"mode": "aggressive"}, ...]   (following lines are run with each option set)
 *   # fileOptions: {...}                              (merged into every filterOptions entry)
 *   # addFILE: "other-file"                           (process that sample file too)
 * "constraint" in a failJSON and "test.condition" in options are the few Python expressions
 * fail2ban's samples use: `name == 'x'` and `opts.get('k') == 'v'` / `!=`.
 */

/** Expected outcome of one annotated line. */
export interface Annotation {
  readonly match?: boolean;
  readonly host?: string;
  readonly time?: string;
  readonly desc?: string;
  readonly constraint?: string;
  readonly [key: string]: unknown;
}

/** One annotated line run through one filter variant. */
export interface SampleOutcome {
  readonly file: string;
  readonly lineNo: number;
  readonly line: string;
  readonly variant: string;
  readonly expected: Annotation;
  readonly result: LineResult;
  /** empty when the result agrees with the annotation, else why not */
  readonly problems: string[];
}

/** Per-variant bookkeeping of which failregexes had a sample. */
export interface VariantUse {
  readonly variant: string;
  readonly filter: CompiledFilter;
  readonly used: Set<number>;
}

/**
 * Run a sample log through a filter.
 * @param path sample log
 * @param name filter name (for `name == ...` conditions)
 * @param load compiles the filter with the given options (cached per option set by the caller)
 * @param options checkTime: compare "time" (local time, as fail2ban's samples are written)
 * @returns outcomes for every annotated line and each variant's regex usage
 */
export function runSampleLog(
  path: string,
  name: string,
  load: (opts: Map<string, string>) => CompiledFilter,
  options: { checkTime: boolean },
): { outcomes: SampleOutcome[]; variants: VariantUse[] } {
  const outcomes: SampleOutcome[] = [];
  const variantsByName = new Map<string, VariantUse & { matcher: ReturnType<CompiledFilter['createDetailedMatcher']>; opts: Record<string, unknown> }>();
  const files = [path];
  let active: Array<VariantUse & { matcher: ReturnType<CompiledFilter['createDetailedMatcher']>; opts: Record<string, unknown> }> = [];
  let common: Record<string, unknown> = {};
  const variant = (opts: Record<string, unknown>): (typeof active)[number] => {
    const filterOpts = Object.fromEntries(Object.entries(opts).filter(([k]) => !k.startsWith('test.')));
    const key = (opts['test.filter-name'] as string | undefined) ?? (Object.keys(filterOpts).length ? JSON.stringify(filterOpts) : '');
    let v = variantsByName.get(key);
    if (!v) {
      const filter = load(new Map(Object.entries(filterOpts).map(([k, val]) => [k.toLowerCase(), String(val)])));
      v = { variant: key || '(default)', filter, used: new Set(), matcher: filter.createDetailedMatcher(), opts };
      variantsByName.set(key, v);
    }
    return v;
  };
  for (let fi = 0; fi < files.length; fi++) {
    const file = files[fi]!;
    const lines = readFileSync(file, 'utf8').split('\n');
    let ignoreBlock = false;
    for (let i = 0; i < lines.length; i++) {
      let line = lines[i]!.replace(/\r$/, '');
      let expected: Annotation = {};
      const ann = /^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$/.exec(line);
      let lineNo = i + 1;
      if (ann) {
        const data: unknown = JSON.parse(ann[2]!);
        if (ann[1] === 'fileOptions') {
          common = data as Record<string, unknown>;
          continue;
        }
        if (ann[1] === 'filterOptions') {
          active = [];
          ignoreBlock = false;
          for (const o of Array.isArray(data) ? data : [data]) {
            const opts = { ...common, ...(o as Record<string, unknown>) };
            if (typeof opts['test.condition'] === 'string' && !evalCondition(opts['test.condition'], name, opts)) {
              ignoreBlock = true;
              continue;
            }
            if (!ignoreBlock) active.push(variant(opts));
          }
          continue;
        }
        if (ann[1] === 'addFILE') {
          files.push(join(dirname(path), data as string));
          continue;
        }
        expected = data as Annotation;
        i++;
        lineNo = i + 1;
        if (i >= lines.length) break;
        line = lines[i]!.replace(/\r$/, '');
      } else if (ignoreBlock || line.startsWith('#') || line.trim() === '') continue;
      if (ignoreBlock) continue;
      if (active.length === 0) active = [variant({})];
      for (const v of active) {
        if (expected.constraint && !evalCondition(expected.constraint, name, v.opts)) continue;
        let result: LineResult;
        if (v.opts['logtype'] === 'journal') {
          const prefix = typeof v.opts['test.prefix-line'] === 'string' ? v.opts['test.prefix-line'] : '';
          result = v.matcher.feed(prefix + line, Date.now());
        } else result = v.matcher.feed(line);
        if (result.regex >= 0) v.used.add(result.regex);
        outcomes.push({ file, lineNo, line, variant: v.variant, expected, result, problems: check(expected, result, options.checkTime) });
      }
    }
  }
  return { outcomes, variants: [...variantsByName.values()].map(({ variant: vn, filter, used }) => ({ variant: vn, filter, used })) };
}

function check(expected: Annotation, r: LineResult, checkTime: boolean): string[] {
  const problems: string[] = [];
  const found = r.kind === 'failure';
  const want = expected.match === true;
  if (found !== want) {
    problems.push(want ? `not matched (${r.kind})` : `matched by failregex ${r.regex} (host ${r.host})`);
    return problems;
  }
  if (!found) return problems;
  if (expected.host !== undefined && expected.host !== r.host) problems.push(`host ${r.host} instead of ${expected.host}`);
  if (checkTime && expected.time !== undefined) {
    const want = parseLocal(expected.time);
    if (r.time !== want) problems.push(`time ${r.time === undefined ? 'none' : new Date(r.time).toISOString()} instead of ${new Date(want).toISOString()} (${expected.time} local)`);
  }
  return problems;
}

/** "2005-02-25T14:34:10" (local time, optional fraction) -> epoch ms */
export function parseLocal(text: string): number {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new Error(`bad time in annotation: ${text}`);
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms).getTime();
}

function evalCondition(expr: string, name: string, opts: Record<string, unknown>): boolean {
  const m = /^\s*(name|opts\.get\('([\w.-]+)'\))\s*(==|!=)\s*'([^']*)'\s*$/.exec(expr);
  if (!m) throw new Error(`unsupported condition in sample log: ${expr}`);
  const left = m[1] === 'name' ? name : opts[m[2]!];
  return m[3] === '==' ? left === m[4] : left !== m[4];
}
