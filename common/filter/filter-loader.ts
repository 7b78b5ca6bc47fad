import { readFileSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { ConfSet, fileExists, readWithIncludes } from '../config/conf-reader.js';
import { DatePatternError, DateDetector } from './date-detector.js';
import { FailRegex, FAILURE_ID_GROUPS, type UseDns } from './fail-regex.js';
import { CompiledFilter, DEFAULT_MAX_LINE_LENGTH } from './filter-engine.js';
import { RegexTranslationError } from './py-regex.js';
import { componentLogger } from '../log.js';

const log = componentLogger('filter');

/** A parsed filter spec: `sshd[mode=aggressive, publickey=invalid]`. */
export interface FilterSpec {
  readonly name: string;
  readonly options: Map<string, string>;
}

/**
 * Split `name[key=value, key2="v, w"]` into name and options (keys lower-cased).
 * @throws ConfigError for an unbalanced or malformed option list
 */
export function parseFilterSpec(spec: string): FilterSpec {
  const text = spec.trim();
  const open = text.indexOf('[');
  if (open < 0) return { name: text, options: new Map() };
  if (!text.endsWith(']')) throw new ConfigError(`filter '${text}': option list is not closed with ']'`);
  const name = text.slice(0, open).trim();
  const body = text.slice(open + 1, -1);
  const options = new Map<string, string>();
  const re = /\s*([\w.\-/]+)\s*=\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,]*?)\s*(?:,|$)/gy;
  let pos = 0;
  while (pos < body.length) {
    re.lastIndex = pos;
    const m = re.exec(body);
    if (!m || m[0].length === 0) throw new ConfigError(`filter '${text}': cannot parse options at '${body.slice(pos)}'`);
    let v = m[2]!;
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    options.set(m[1]!.toLowerCase(), v);
    pos = re.lastIndex;
  }
  return { name, options };
}

/** Jail options that fail2ban lets override the filter's own values. */
const JAIL_OVERRIDES = ['logtype', 'maxlines', 'datepattern', 'usedns', 'journalmatch', 'prefregex', 'failregex', 'ignoreregex', 'logtimezone', 'maxlinelength', 'unsaferegex'];

/**
 * Find, read, interpolate and compile a filter.
 * @param spec filter name with optional options, or a path to a `.conf` file
 * @param options dirs searched in order for NAME.conf/NAME.local; jail options that override filter values
 * @returns the compiled filter
 * @throws ConfigError naming file, line and key
 */
export function loadFilterFrom(spec: string, options: { dirs: string[]; jail?: ReadonlyMap<string, string> }): CompiledFilter {
  const { name, options: specOpts } = parseFilterSpec(spec);
  if (name === '') throw new ConfigError(`empty filter name in '${spec}'`);
  let path: string | undefined;
  if (name.endsWith('.conf') || name.endsWith('.local') || isAbsolute(name) || name.includes('/')) {
    path = resolve(name.endsWith('.local') ? `${name.slice(0, -6)}.conf` : name);
    if (!fileExists(path) && !fileExists(`${path.slice(0, -5)}.local`)) throw new ConfigError(`filter file not found`, path);
  } else {
    if (!/^[\w.-]+$/.test(name)) throw new ConfigError(`filter name '${name}' may contain only letters, digits, '.', '-' and '_'`);
    for (const dir of options.dirs) {
      const p = join(dir, `${name}.conf`);
      if (fileExists(p) || fileExists(join(dir, `${name}.local`))) {
        path = p;
        break;
      }
    }
    if (!path) throw new ConfigError(`filter '${name}' not found in ${options.dirs.join(', ') || '(no filter directories)'}`);
  }
  const docs = readWithIncludes(path);
  const conf = new ConfSet(docs);
  const filterName = basename(path).replace(/\.(conf|local)$/, '');
  return new FilterResolver(conf, path, filterName, specOpts, options.jail).compile();
}

class FilterResolver {
  private readonly vars = new Map<string, string>();
  private readonly tagCache = new Map<string, string | null>();
  private allowUnsafe = false;

  constructor(
    private readonly conf: ConfSet,
    private readonly path: string,
    private readonly name: string,
    specOpts: Map<string, string>,
    jail: ReadonlyMap<string, string> | undefined,
  ) {
    for (const k of JAIL_OVERRIDES) {
      const v = jail?.get(k);
      if (v !== undefined) this.vars.set(k, v);
    }
    for (const [k, v] of specOpts) this.vars.set(k, v);
    // [Init] gives defaults for the filter's options; options passed by the jail win.
    if (conf.hasSection('Init')) {
      for (const k of conf.ownKeys('Init')) {
        if (!this.vars.has(k)) this.vars.set(k, this.interpolate('Init', conf.raw('Init', k)!.value, k, 0));
      }
    }
  }

  compile(): CompiledFilter {
    const where = (key: string) => this.conf.raw('Definition', key);
    const usednsText = (this.option('usedns') ?? 'warn').trim().toLowerCase();
    if (!['yes', 'warn', 'no', 'raw'].includes(usednsText)) {
      throw new ConfigError(`usedns must be yes, warn, no or raw, not '${usednsText}'`, where('usedns')?.file ?? this.path, where('usedns')?.line, 'usedns');
    }
    const usedns = usednsText as UseDns;
    const maxlinesText = (this.option('maxlines') ?? '1').trim();
    const maxlines = Number(maxlinesText);
    if (!Number.isInteger(maxlines) || maxlines < 1) {
      throw new ConfigError(`maxlines must be a positive integer, not '${maxlinesText}'`, where('maxlines')?.file ?? this.path, where('maxlines')?.line, 'maxlines');
    }
    const maxLineLength = Number(this.option('maxlinelength') ?? DEFAULT_MAX_LINE_LENGTH);
    const multiline = maxlines > 1;
    this.allowUnsafe = /^(?:true|yes|1|on)$/i.test((this.option('unsaferegex') ?? '').trim());
    const compileList = (key: string): FailRegex[] =>
      (this.option(key) ?? '')
        .split('\n')
        .filter((r) => r.trim() !== '')
        .map((r) => this.compileRegex(key, r, usedns, multiline));
    const prefText = this.option('prefregex');
    const prefregex = prefText && prefText.trim() !== '' ? this.compileRegex('prefregex', prefText, usedns, false) : undefined;
    const failregex = compileList('failregex');
    const ignoreregex = compileList('ignoreregex');
    for (const fr of failregex) {
      if (!FAILURE_ID_GROUPS.some((g) => fr.has(g) || prefregex?.has(g))) {
        throw this.errorFor('failregex', fr.text, 'has no failure id: use <HOST>, <ADDR>, <F-ID>...</F-ID> or <F-MLFID>');
      }
    }
    let datepattern = this.option('datepattern');
    if (datepattern !== undefined && datepattern.trim() === '') datepattern = undefined;
    try {
      new DateDetector(datepattern);
    } catch (err) {
      if (err instanceof DatePatternError) {
        const w = where('datepattern');
        throw new ConfigError(err.message, w?.file ?? this.path, w?.line, 'datepattern');
      }
      throw err;
    }
    return new CompiledFilter({ name: this.name, prefregex, failregex, ignoreregex, maxlines, datepattern, usedns, maxLineLength });
  }

  private compileRegex(key: string, text: string, usedns: UseDns, multiline: boolean): FailRegex {
    let fr: FailRegex;
    try {
      fr = new FailRegex(text, { usedns, multiline, prefregex: key === 'prefregex' });
    } catch (err) {
      if (err instanceof RegexTranslationError) {
        throw this.errorFor(key, err.construct, `cannot translate '${err.construct}' in filter '${this.name}': ${err.message}`);
      }
      throw err;
    }
    if (fr.translated.nestedQuantifiers && fr.translated.needsBacktracking) {
      const why = `regex in filter '${this.name}' nests unbounded quantifiers and needs backtracking (lookaround or backreference), so a crafted line could make it run for hours`;
      if (!this.allowUnsafe) throw this.errorFor(key, text, `${why}; rewrite it, or set unsaferegex = true to accept the risk: ${text}`);
      log.warn({ filter: this.name, key, regex: text }, `${why}; loaded because unsaferegex = true`);
    }
    return fr;
  }

  /** A ConfigError pointing at the line that holds `needle`, else at the option itself. */
  private errorFor(key: string, needle: string, message: string): ConfigError {
    for (const file of [...this.conf.files].reverse()) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      const idx = needle ? text.indexOf(needle) : -1;
      if (idx >= 0) return new ConfigError(message, file, text.slice(0, idx).split('\n').length, key);
    }
    const w = this.conf.raw('Definition', key);
    return new ConfigError(message, w?.file ?? this.path, w?.line, key);
  }

  /** A [Definition] option with interpolation and tags resolved, jail/filter options first. */
  option(key: string): string | undefined {
    const v = this.vars.get(key) ?? this.definitionValue(key);
    return v === undefined ? undefined : this.resolveTags(v, key);
  }

  private definitionValue(key: string): string | undefined {
    const entry = this.conf.raw('Definition', key);
    if (!entry) return undefined;
    return this.interpolate('Definition', entry.value, key, 0);
  }

  /** `%(name)s`, `%(section/name)s`, `%(known/name)s` and `%%`. */
  private interpolate(section: string, value: string, key: string, depth: number): string {
    if (!value.includes('%')) return value;
    if (depth > 20) throw this.errorFor(key, '', `interpolation of '${key}' is nested more than 20 deep (a reference loop?)`);
    return value.replace(/%(%|\(([^)]+)\)s)/g, (whole, pct: string, ref: string | undefined) => {
      if (pct === '%') return '%';
      const name = ref!.toLowerCase();
      if (name === '__name__') return section;
      if (name !== key || section === 'Init') {
        const fromVars = this.vars.get(name);
        if (fromVars !== undefined && section !== 'Init') return fromVars;
      }
      const found = this.lookup(section, name, key);
      if (found === undefined) {
        throw this.errorFor(key, whole, `'${whole}' in '${key}' refers to an option that is not set`);
      }
      return this.interpolate(found.section, found.value, name, depth + 1);
    });
  }

  private lookup(section: string, name: string, selfKey: string): { section: string; value: string } | undefined {
    if (name.startsWith('known/')) {
      const k = name.slice(6);
      const e = this.conf.raw(section, `known/${k}`) ?? (k !== selfKey ? this.conf.raw(section, k) : undefined);
      if (e) return { section, value: e.value };
      // A section's known/KEY is the value it inherits: DEFAULT's.
      const d = section !== 'DEFAULT' ? this.conf.raw('DEFAULT', k) : undefined;
      return d ? { section: 'DEFAULT', value: d.value } : undefined;
    }
    if (name.startsWith('default/')) {
      const e = this.conf.raw('DEFAULT', name.slice(8));
      return e ? { section: 'DEFAULT', value: e.value } : undefined;
    }
    const slash = name.indexOf('/');
    if (slash > 0) {
      const sec = this.conf.sectionNames().find((s) => s.toLowerCase() === name.slice(0, slash)) ?? name.slice(0, slash);
      const e = this.conf.raw(sec, name.slice(slash + 1));
      return e ? { section: sec, value: e.value } : undefined;
    }
    const e = this.conf.raw(section, name);
    return e ? { section, value: e.value } : undefined;
  }

  /** `<name>` references to other options, innermost first, so `<mdre-<mode>>` works. */
  private resolveTags(value: string, key: string): string {
    let out = value;
    for (let pass = 0; pass < 50; pass++) {
      let changed = false;
      out = out.replace(/<([^<>\s]+)>/g, (whole, name: string) => {
        const v = this.tagValue(name.toLowerCase(), key);
        if (v === undefined) return whole;
        changed = true;
        return v;
      });
      if (!changed) return out;
    }
    throw this.errorFor(key, '', `tags in '${key}' refer to each other in a loop`);
  }

  private tagValue(name: string, selfKey: string): string | undefined {
    if (name === selfKey) return undefined;
    if (!/^[a-z_][\w\-/]*$/.test(name) || /^f-/.test(name)) return undefined;
    if (this.tagCache.has(name)) return this.tagCache.get(name) ?? undefined;
    let v = this.vars.get(name);
    if (v === undefined) {
      const found = this.lookup('Definition', name, selfKey);
      v = found ? this.interpolate(found.section, found.value, name, 0) : undefined;
    }
    this.tagCache.set(name, v ?? null);
    return v;
  }
}
