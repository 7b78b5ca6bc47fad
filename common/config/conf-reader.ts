import { existsSync, readdirSync } from 'node:fs';
import { FILE_LIMITS, FileRefusedError, readBoundedFile } from './secret-file.js';
import { dirname, isAbsolute, join } from 'node:path';
import { ConfigError } from '../errors.js';

/**
 * Reader for fail2ban's configuration dialect (Python ConfigParser as fail2ban uses it):
 * `[section]`, `key = value` or `key: value`, indented continuation lines, full-line comments
 * with `#` or `;`, inline comments after ` ;`, case-insensitive keys, `[INCLUDES] before/after`,
 * `NAME.local` overriding `NAME.conf`, `%(name)s` interpolation and `%(known/name)s`.
 *
 * npm `ini` is not used: it has no continuation lines (npm/ini#33), no `:` delimiter and no line
 * numbers, and every error here must name file, line and key.
 */

/** One option's value with where it came from. */
export interface ConfValue {
  readonly value: string;
  readonly file: string;
  readonly line: number;
}

/** A section as parsed from one file. Option names are lower-cased, as ConfigParser does. */
export interface ConfSection {
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly options: Map<string, ConfValue>;
}

/** One parsed file, sections in file order. */
export interface ConfDocument {
  readonly file: string;
  readonly sections: ConfSection[];
}

const SECTION_RE = /^\[([^\]]+)\]\s*(?:[;#].*)?$/;
const OPTION_RE = /^([^=:]*?)\s*[=:]\s?(.*)$/;
const INLINE_COMMENT_RE = /\s;.*$/;

/**
 * Parse the text of one file.
 * @param text file content
 * @param file name used in errors
 * @returns sections in order (a repeated section is merged, later keys win, as ConfigParser)
 * @throws ConfigError naming file and line for a line that is neither section, option nor comment
 */
export function parseConf(text: string, file: string): ConfDocument {
  const sections: ConfSection[] = [];
  const byName = new Map<string, ConfSection>();
  let section: ConfSection | undefined;
  let current: { key: string; parts: string[]; line: number } | undefined;

  const flush = (): void => {
    if (!current || !section) return;
    // Continuation lines keep their own text; leading/trailing blank lines are dropped as ConfigParser does.
    const value = current.parts.join('\n').replace(/^\n+|\n+$/g, '');
    section.options.set(current.key, { value, file, line: current.line });
    current = undefined;
  };

  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    const lineNo = i + 1;
    const stripped = raw.trim();
    if (stripped === '') {
      if (current) current.parts.push('');
      continue;
    }
    if (stripped.startsWith('#') || stripped.startsWith(';')) continue;

    const indented = /^\s/.test(raw);
    if (indented && current) {
      current.parts.push(stripInlineComment(stripped));
      continue;
    }
    flush();

    const sec = SECTION_RE.exec(stripped);
    if (sec) {
      const name = sec[1]!.trim();
      section = byName.get(name);
      if (!section) {
        section = { name, file, line: lineNo, options: new Map() };
        byName.set(name, section);
        sections.push(section);
      }
      continue;
    }
    const opt = OPTION_RE.exec(stripped);
    if (!opt || opt[1]!.trim() === '') {
      throw new ConfigError(`cannot parse '${truncate(stripped)}' (expected [section] or key = value)`, file, lineNo);
    }
    if (!section) {
      throw new ConfigError(`option before any [section]`, file, lineNo, opt[1]!.trim());
    }
    current = { key: opt[1]!.trim().toLowerCase(), parts: [stripInlineComment(opt[2]!.trim())], line: lineNo };
  }
  flush();
  return { file, sections };
}

function stripInlineComment(value: string): string {
  return value.replace(INLINE_COMMENT_RE, '').trimEnd();
}

function truncate(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/**
 * @param path file to read
 * @returns the parsed file, or undefined when it does not exist
 * @throws ConfigError for unreadable or malformed files
 */
export function readConfFile(path: string): ConfDocument | undefined {
  let text: string;
  try {
    // Bounded and regular files only: `[INCLUDES] before = /dev/zero` read 5.5 GB before.
    text = readBoundedFile(path, FILE_LIMITS.conf);
  } catch (err) {
    if (err instanceof FileRefusedError && err.code === 'ENOENT') return undefined;
    throw new ConfigError(err instanceof FileRefusedError ? err.reason : `cannot read: ${(err as Error).message}`, path);
  }
  return parseConf(text, path);
}

/**
 * Every file that makes up `path` in fail2ban's order: for `NAME.conf` and then `NAME.local`,
 * its `[INCLUDES] before` files (recursively), itself, then its `after` files.
 * @param path a `.conf` file (need not exist when only the `.local` does)
 * @param options `local: false` reads `path` alone (the caller places the `.local` itself, as
 *   jail.local comes after jail.d/*.conf)
 * @returns parsed documents in reading order
 */
export function readWithIncludes(path: string, options: { local?: boolean } = {}): ConfDocument[] {
  const out: ConfDocument[] = [];
  const local = options.local !== false && path.endsWith('.conf') ? `${path.slice(0, -5)}.local` : undefined;
  for (const file of local ? [path, local] : [path]) collect(file, [], out);
  return out;
}

function collect(file: string, seen: string[], out: ConfDocument[]): void {
  if (seen.includes(file)) return;
  const doc = readConfFile(file);
  if (!doc) return;
  const includes = doc.sections.find((s) => s.name === 'INCLUDES');
  const resolve = (key: 'before' | 'after'): string[] =>
    (includes?.options.get(key)?.value ?? '')
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((f) => (isAbsolute(f) ? f : join(dirname(file), f)));
  for (const f of resolve('before')) collect(f, [...seen, file], out);
  out.push(doc);
  for (const f of resolve('after')) collect(f, [...seen, file], out);
}

/**
 * The files of one fail2ban configuration name in fail2ban's reading order (its configreader.py):
 * `NAME.conf`, `NAME.d/*.conf`, `NAME.local`, `NAME.d/*.local`, each with its `[INCLUDES]`. So a
 * `jail.local` overrides Debian's `jail.d/defaults-debian.conf`, and `jail.d/*.local` overrides both.
 * @param dir configuration directory
 * @param name `jail`, `fail2ban`, ...
 * @returns parsed documents in reading order
 */
export function readConfName(dir: string, name: string): ConfDocument[] {
  const dotD = join(dir, `${name}.d`);
  let entries: string[] = [];
  try {
    entries = readdirSync(dotD).sort();
  } catch {
    // no NAME.d: nothing to add
  }
  const inD = (ext: string): ConfDocument[] => entries.filter((e) => e.endsWith(ext)).flatMap((e) => readWithIncludes(join(dotD, e), { local: false }));
  return [
    ...readWithIncludes(join(dir, `${name}.conf`), { local: false }),
    ...inD('.conf'),
    ...readWithIncludes(join(dir, `${name}.local`), { local: false }),
    ...inD('.local'),
  ];
}

/** Sources for values that are not in the file, e.g. `__name__` or jail options passed to a filter. */
export type ExtraValues = ReadonlyMap<string, string>;

/**
 * Several documents merged in reading order: later files override earlier ones per key, and the
 * overridden value stays reachable as `known/KEY` (fail2ban's `%(known/KEY)s`).
 */
export class ConfSet {
  private readonly sections = new Map<string, Map<string, ConfValue>>();
  private readonly sectionOrder: string[] = [];
  private readonly sectionOrigin = new Map<string, { file: string; line: number }>();
  readonly files: string[] = [];

  /** @param docs documents in reading order */
  constructor(docs: Iterable<ConfDocument> = []) {
    for (const doc of docs) this.add(doc);
  }

  /** Merge one more document on top. */
  add(doc: ConfDocument): void {
    this.files.push(doc.file);
    for (const s of doc.sections) {
      let target = this.sections.get(s.name);
      if (!target) {
        target = new Map();
        this.sections.set(s.name, target);
        this.sectionOrder.push(s.name);
        this.sectionOrigin.set(s.name, { file: s.file, line: s.line });
      }
      for (const [k, v] of s.options) {
        const previous = target.get(k);
        if (previous && !k.startsWith('known/')) target.set(`known/${k}`, previous);
        target.set(k, v);
      }
    }
  }

  /** @returns section names in first-seen order, DEFAULT and INCLUDES excluded */
  sectionNames(): string[] {
    return this.sectionOrder.filter((n) => n !== 'DEFAULT' && n !== 'INCLUDES');
  }

  hasSection(name: string): boolean {
    return this.sections.has(name);
  }

  /** @returns where a section was first defined */
  sectionLocation(name: string): { file: string; line: number } | undefined {
    return this.sectionOrigin.get(name);
  }

  /** @returns option names defined in the section itself (not inherited), `known/` ones excluded */
  ownKeys(section: string): string[] {
    return [...(this.sections.get(section)?.keys() ?? [])].filter((k) => !k.startsWith('known/'));
  }

  /**
   * The raw (uninterpolated) value of a key: the section's own, else `[DEFAULT]`'s.
   * @returns value with location, or undefined
   */
  raw(section: string, key: string): ConfValue | undefined {
    const k = key.toLowerCase();
    return this.sections.get(section)?.get(k) ?? this.sections.get('DEFAULT')?.get(k);
  }

  /**
   * A value with `%(name)s` references expanded (ConfigParser BasicInterpolation, depth 10).
   * @param section section to look in (falls back to DEFAULT)
   * @param key option name
   * @param extra values consulted before the file (highest priority), e.g. jail options
   * @returns the expanded value, or undefined when the key is not set
   * @throws ConfigError naming file, line and key for a missing reference or a loop
   */
  get(section: string, key: string, extra?: ExtraValues): string | undefined {
    const own = extra?.get(key.toLowerCase());
    if (own !== undefined) return this.interpolate(section, key, own, undefined, extra);
    const entry = this.raw(section, key);
    if (!entry) return undefined;
    return this.interpolate(section, key, entry.value, entry, extra);
  }

  /**
   * Expand `%(name)s` in an arbitrary value as if it were option `key` of `section`.
   * @throws ConfigError for missing references or loops
   */
  interpolate(section: string, key: string, value: string, where?: ConfValue, extra?: ExtraValues, depth = 0): string {
    if (!value.includes('%')) return value;
    if (depth > 10) {
      throw new ConfigError('interpolation is nested more than 10 deep (a reference loop?)', where?.file, where?.line, key);
    }
    return value.replace(/%(%|\(([^)]+)\)s)/g, (whole, pct: string, name: string | undefined) => {
      if (pct === '%') return '%';
      const ref = name!.toLowerCase();
      if (ref === '__name__') return section;
      const fromExtra = extra?.get(ref);
      if (fromExtra !== undefined) return this.interpolate(section, ref, fromExtra, where, extra, depth + 1);
      let entry = this.raw(section, ref);
      const defaults = this.sections.get('DEFAULT');
      if (!entry && ref.startsWith('default/')) entry = defaults?.get(ref.slice(8));
      // known/KEY with no earlier value in the section itself means the inherited one.
      if (!entry && ref.startsWith('known/')) entry = defaults?.get(ref.slice(6));
      if (!entry) {
        throw new ConfigError(`'${whole}' refers to an option that is not set in [${section}] or [DEFAULT]`, where?.file, where?.line, key);
      }
      return this.interpolate(section, ref, entry.value, entry, extra, depth + 1);
    });
  }
}

/** @returns true when a file exists (helper for optional config files) */
export function fileExists(path: string): boolean {
  return existsSync(path);
}
