import { readdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';

/**
 * Expansion of `logpath` globs the way fail2ban's Python `glob.glob` does it: `*`, `?` and `[...]`
 * (with `!` negation) inside one path segment, no `**`, and names starting with `.` only matched by
 * a segment that starts with `.`. Node 20 has no `fs.glob` (it arrived in Node 22), and the matcher
 * is small enough that a dependency is not worth it.
 */

const GLOB_CHARS = /[*?[]/;

/** True when the path contains glob syntax. */
export function hasGlob(pattern: string): boolean {
  return GLOB_CHARS.test(pattern);
}

/**
 * Compile one path segment (no `/`) into an anchored regular expression.
 * @param segment e.g. `*error.log`
 * @returns a RegExp matching whole names
 */
export function segmentRegExp(segment: string): RegExp {
  let out = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i] as string;
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) {
        out += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      let negate = false;
      if (body.startsWith('!')) {
        negate = true;
        body = body.slice(1);
      }
      // Only `-` keeps its meaning inside the class; everything else is literal, as in fnmatch.
      body = body.replace(/[\\\]^[]/g, (m) => `\\${m}`);
      out += `[${negate ? '^' : ''}${body}]`;
      i = close;
    } else out += c.replace(/[.+^${}()|\\]/g, (m) => `\\${m}`);
  }
  return new RegExp(`^${out}$`, 's');
}

/**
 * Expand one pattern to the regular files that exist now. A pattern without glob syntax is returned
 * as is, whether the file exists or not (a missing file is waited for, not an error).
 * @param pattern absolute path, possibly with glob segments
 * @returns absolute paths, sorted
 */
export async function expandGlob(pattern: string): Promise<string[]> {
  const abs = isAbsolute(pattern) ? pattern : resolve(pattern);
  if (!hasGlob(abs)) return [abs];
  const segments = abs.split(sep).filter((s) => s.length > 0);
  let dirs: string[] = [sep];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string;
    const next: string[] = [];
    if (!hasGlob(segment)) {
      for (const d of dirs) next.push(join(d, segment));
    } else {
      const re = segmentRegExp(segment);
      const dotOk = segment.startsWith('.');
      for (const d of dirs) {
        let names: string[];
        try {
          names = await readdir(d);
        } catch {
          continue; // a directory that vanished or cannot be read just matches nothing
        }
        for (const name of names) {
          if (name.startsWith('.') && !dotOk) continue;
          if (re.test(name)) next.push(join(d, name));
        }
      }
    }
    dirs = next;
  }
  const files: string[] = [];
  for (const p of dirs) {
    try {
      if ((await stat(p)).isFile()) files.push(p);
    } catch {
      // gone between readdir and stat
    }
  }
  return files.sort();
}

/**
 * Whether `path` could be produced by `pattern` (used to decide if a directory event deserves a rescan).
 * @param pattern absolute glob
 * @param path absolute path
 */
export function globMatches(pattern: string, path: string): boolean {
  const ps = pattern.split(sep).filter((s) => s.length > 0);
  const xs = path.split(sep).filter((s) => s.length > 0);
  if (ps.length !== xs.length) return false;
  return ps.every((p, i) => {
    const x = xs[i] as string;
    if (!hasGlob(p)) return p === x;
    if (x.startsWith('.') && !p.startsWith('.')) return false;
    return segmentRegExp(p).test(x);
  });
}

/**
 * The deepest directory of a pattern that has no glob syntax, i.e. the one to watch for new files
 * when the glob is only in the last segment.
 * @returns the parent directory when only the file name has glob syntax, otherwise undefined
 */
export function literalParent(pattern: string): string | undefined {
  const i = pattern.lastIndexOf(sep);
  if (i < 0) return undefined;
  const dir = pattern.slice(0, i) || sep;
  return hasGlob(dir) ? undefined : dir;
}
