import type { Command } from 'commander';
import { createReadStream, statSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { ConfigError } from '../../common/errors.js';
import { builtinFilterDir, CompiledFilter, parseFilterSpec, type LineResult } from '../../common/filter/index.js';
import { loadFilterFrom } from '../../common/filter/filter-loader.js';
import { FailRegex, FAILURE_ID_GROUPS } from '../../common/filter/fail-regex.js';
import { DEFAULT_MAX_LINE_LENGTH } from '../../common/filter/filter-engine.js';
import { explicitConfigDir } from '../../common/config/fleetban-config.js';
import { CliError, type GlobalOptions } from '../context.js';

/** Missed lines listed without --print-all-missed (fail2ban-regex caps its list the same way). */
const MISSED_SHOWN = 20;
/** Files at least this large get a progress bar when stderr is a terminal. */
const PROGRESS_MIN_BYTES = 16 * 1024 * 1024;
const PROGRESS_EVERY_MS = 200;

/** Options of `fleetban regex`. */
export interface RegexOptions {
  filterDir: string[];
  printAllMissed?: boolean;
  unsafeRegex?: boolean;
}

/** Where the log lines come from. */
type LogInput = { kind: 'file'; path: string; size: number } | { kind: 'stdin' } | { kind: 'line'; text: string };

/** The filter under test and how to describe it in the report header. */
interface FilterUnderTest {
  readonly filter: CompiledFilter;
  readonly header: string[];
}

/** Counters for the human report. */
interface Tally {
  lines: number;
  matched: number;
  ignored: number;
  missed: number;
  failures: number;
  hostnames: number;
  helpers: number;
  regexHits: number[];
  ignoreHits: number[];
  missedLines: string[];
}

/**
 * Register `fleetban regex LOG FILTER`: run a filter over a log and report what it matches,
 * like fail2ban-regex.
 * @param program the root command
 * @param globals the program's global options (--json)
 */
export function registerRegexCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command('regex')
    .description('test a filter against a log file, stdin (-) or a single line, like fail2ban-regex')
    .argument('<log>', "log file, '-' for stdin, or a literal log line")
    .argument('<filter>', "filter name (sshd, 'sshd[mode=aggressive]'), path to a .conf, or a failregex containing <HOST>")
    .option('--filter-dir <dir>', 'look for filters here before the configuration\'s filter.d (with --config) and fleetban\'s own (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--print-all-missed', `list every missed line (otherwise at most ${MISSED_SHOWN})`)
    .option('--unsafe-regex', 'load regexes the ReDoS guard refuses (as unsaferegex = true in a filter)')
    .action(async (log: string, filterArg: string, o: RegexOptions) => {
      const g = globals();
      const json = g.json === true;
      const input = resolveLogInput(log);
      // With --config (or FLEETBAN_CONFIG) the filters are the ones the agent of that configuration loads.
      const confDir = explicitConfigDir(g.config);
      const dirs = [...o.filterDir.map((d) => resolve(d)), ...(confDir ? [join(resolve(confDir), 'filter.d')] : []), builtinFilterDir()];
      const under = resolveFilter(filterArg, dirs, o.unsafeRegex === true);
      if (json) await runJson(input, under.filter);
      else await runReport(input, under, o);
    });
}

/**
 * Decide what LOG means: '-' is stdin, an existing file is read, and anything else is a literal
 * line, except a bare path-like word, which is reported as a missing file (a typo in a file name
 * must not be silently tested as a log line).
 */
function resolveLogInput(log: string): LogInput {
  if (log === '-') return { kind: 'stdin' };
  let st: Stats | undefined;
  try {
    st = statSync(log);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ENAMETOOLONG') throw new CliError(`cannot read log file ${log}: ${(err as Error).message}`);
  }
  if (st?.isDirectory()) throw new CliError(`log file ${log} is a directory`);
  if (st) return { kind: 'file', path: log, size: st.size };
  if (/^[\w./~-]+$/.test(log) && /[./]/.test(log)) throw new CliError(`log file not found: ${log}`);
  return { kind: 'line', text: log };
}

/** A failregex given on the command line carries one of the tags that name the failure. */
const ID_TAG = /<(?:HOST|ADDR|IP4|IP6|SUBNET|DNS|F-ID|F-ADDR|F-IP4|F-IP6|F-MLFID)\/?>/;

function resolveFilter(arg: string, dirs: string[], unsafe: boolean): FilterUnderTest {
  const looksLikePath = !/\s/.test(arg) && (/\.(?:conf|local)(?:\[.*\])?$/.test(arg) || (arg.includes('/') && !arg.includes('<')));
  // `name[...` is a filter spec even when malformed, so the loader can say what is wrong with it.
  const nameLike = /^[\w.-]+$/.test(safeSpecName(arg)) || /^[\w.-]+\[/.test(arg);
  if (ID_TAG.test(arg) || (!looksLikePath && !nameLike)) return literalRegex(arg, unsafe);
  let filter: CompiledFilter;
  try {
    filter = loadFilterFrom(arg, { dirs, jail: unsafe ? new Map([['unsaferegex', 'true']]) : undefined });
  } catch (err) {
    if (err instanceof ConfigError && /unsaferegex = true/.test(err.message)) {
      throw new CliError(`${err.message}\n  (fleetban regex: add --unsafe-regex to load it anyway)`);
    }
    throw err;
  }
  if (unsafe) warnRisky(filter);
  const { name, options } = parseFilterSpec(arg);
  const basedir = looksLikePath ? dirname(resolve(name)) : dirs.find((d) => filterPathIn(d, filter.name)) ?? dirs.join(', ');
  const header = [`Use   failregex filter file : ${filter.name}, basedir: ${basedir}`];
  if (options.size > 0) header.push(`Use      filter options : ${JSON.stringify(Object.fromEntries(options))}`);
  return { filter, header };
}

function safeSpecName(arg: string): string {
  try {
    return parseFilterSpec(arg).name;
  } catch {
    return arg;
  }
}

function filterPathIn(dir: string, name: string): boolean {
  for (const ext of ['conf', 'local']) {
    try {
      if (statSync(resolve(dir, `${name}.${ext}`)).isFile()) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** A single failregex from the command line: default date detection, no prefregex, usedns = warn. */
function literalRegex(text: string, unsafe: boolean): FilterUnderTest {
  let fr: FailRegex;
  try {
    fr = new FailRegex(text, { usedns: 'warn', multiline: false });
  } catch (err) {
    throw new CliError(`invalid regex '${text}': ${(err as Error).message}`);
  }
  if (!FAILURE_ID_GROUPS.some((g) => fr.has(g))) {
    throw new CliError(`'${text}' is neither a known filter nor a failregex with a failure id (<HOST>, <ADDR>, <F-ID>...</F-ID>)`);
  }
  if (fr.translated.nestedQuantifiers && fr.translated.needsBacktracking) {
    if (!unsafe) {
      throw new CliError(`regex nests unbounded quantifiers and needs backtracking (lookaround or backreference), so a crafted line could make it run for hours; rewrite it, or add --unsafe-regex to run it anyway: ${text}`);
    }
    process.stderr.write(`fleetban: warning: running a regex the ReDoS guard would refuse: ${text}\n`);
  }
  const filter = new CompiledFilter({
    name: 'regex',
    prefregex: undefined,
    failregex: [fr],
    ignoreregex: [],
    maxlines: 1,
    datepattern: undefined,
    usedns: 'warn',
    maxLineLength: DEFAULT_MAX_LINE_LENGTH,
  });
  return { filter, header: [`Use   failregex line : ${text}`] };
}

function warnRisky(filter: CompiledFilter): void {
  const { prefregex, failregex, ignoreregex } = filter.def;
  for (const fr of [...(prefregex ? [prefregex] : []), ...failregex, ...ignoreregex]) {
    if (fr.translated.nestedQuantifiers && fr.translated.needsBacktracking) {
      process.stderr.write(`fleetban: warning: loaded a regex the ReDoS guard would refuse (--unsafe-regex): ${fr.text}\n`);
    }
  }
}

/**
 * Yield the lines to test with their 1-based line numbers, skipping blank lines and `#` comments
 * (annotated sample logs carry their annotations as comments).
 */
async function* logLines(input: LogInput, onBytes?: (n: number) => void): AsyncGenerator<[number, string]> {
  if (input.kind === 'line') {
    for (const [i, l] of input.text.split(/\r?\n/).entries()) if (l.trim() !== '' && !l.startsWith('#')) yield [i + 1, l];
    return;
  }
  let stream: Readable;
  if (input.kind === 'stdin') stream = process.stdin;
  else {
    stream = createReadStream(input.path);
    if (onBytes) stream.on('data', (chunk) => onBytes(chunk.length));
  }
  // readline ends quietly when its input fails; remember the error and report it after the loop.
  let failed: Error | undefined;
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  stream.once('error', (err: Error) => {
    failed = err;
    rl.close();
  });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line.trim() === '' || line.startsWith('#')) continue;
    yield [n, line];
  }
  if (failed) throw new CliError(`cannot read log file ${input.kind === 'file' ? input.path : '(stdin)'}: ${failed.message}`);
}

async function runJson(input: LogInput, filter: CompiledFilter): Promise<void> {
  const matcher = filter.createDetailedMatcher();
  let out = '';
  for await (const [n, line] of logLines(input)) {
    const r = matcher.feed(line);
    const failure = r.kind === 'failure';
    out += `${JSON.stringify({
      line: n,
      match: failure,
      host: failure ? r.addr ?? r.host ?? null : r.kind === 'hostname' ? r.host ?? null : null,
      time: r.time === undefined ? null : new Date(r.time).toISOString(),
      user: r.user ?? null,
      kind: r.kind,
      regex: r.regex >= 0 ? r.regex + 1 : null,
    })}\n`;
    // Written in chunks: one write per line costs more than the matching itself.
    if (out.length > 65536) {
      await write(out);
      out = '';
    }
  }
  if (out) await write(out);
}

function write(text: string): Promise<void> {
  return new Promise((res, rej) => {
    process.stdout.write(text, (err) => (err ? rej(err) : res()));
  });
}

async function runReport(input: LogInput, under: FilterUnderTest, o: RegexOptions): Promise<void> {
  const { filter } = under;
  const def = filter.def;
  const out: string[] = ['', 'Running tests', '=============', '', ...under.header];
  if (input.kind === 'file') out.push(`Use         log file : ${input.path}`, 'Use         encoding : UTF-8');
  else if (input.kind === 'stdin') out.push('Use         log file : - (stdin)', 'Use         encoding : UTF-8');
  else out.push(`Use      single line : ${input.text}`);
  out.push('');
  console.log(out.join('\n'));

  const t: Tally = {
    lines: 0, matched: 0, ignored: 0, missed: 0, failures: 0, hostnames: 0, helpers: 0,
    regexHits: def.failregex.map(() => 0), ignoreHits: def.ignoreregex.map(() => 0), missedLines: [],
  };
  const progress = input.kind === 'file' && input.size >= PROGRESS_MIN_BYTES && process.stderr.isTTY ? new Progress(input.size) : undefined;
  const matcher = filter.createDetailedMatcher();
  const started = process.hrtime.bigint();
  for await (const [, line] of logLines(input, progress ? (n) => progress.add(n) : undefined)) {
    t.lines++;
    count(t, matcher.feed(line), line, o.printAllMissed === true);
    if (progress && (t.lines & 1023) === 0) progress.show(t.lines);
  }
  progress?.done();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  const rows: string[] = ['Results', '=======', ''];
  rows.push(`Failregex: ${t.matched} total`, '|-  #) [# of hits] regular expression');
  def.failregex.forEach((fr, i) => rows.push(`|  ${String(i + 1).padStart(2)}) [${t.regexHits[i]}] ${fr.text}`));
  rows.push('`-', '');
  rows.push(`Ignoreregex: ${t.ignored} total`);
  if (def.ignoreregex.length > 0) {
    rows.push('|-  #) [# of hits] regular expression');
    def.ignoreregex.forEach((fr, i) => rows.push(`|  ${String(i + 1).padStart(2)}) [${t.ignoreHits[i]}] ${fr.text}`));
    rows.push('`-');
  }
  rows.push('', 'Date template hits:', '|- [# of hits] date format');
  for (const [template, hits] of [...matcher.dateHits].sort((a, b) => b[1] - a[1])) rows.push(`|  [${hits}] ${template}`);
  rows.push('`-', '');
  rows.push(`Lines: ${t.lines} lines, ${t.ignored} ignored, ${t.matched} matched, ${t.missed} missed`);
  if (t.hostnames > 0 || t.helpers > 0) {
    rows.push(`  (of the matched: ${t.failures} with an address, ${t.hostnames} with a host name only (never resolved, not counted by the agent), ${t.helpers} helper lines of multi-line failures)`);
  }
  const rate = seconds > 0 ? Math.round(t.lines / seconds) : t.lines;
  rows.push(`[processed in ${seconds.toFixed(2)} sec, ${rate} lines/s]`);
  if (t.missed > 0 && input.kind !== 'line') {
    rows.push('');
    if (o.printAllMissed || t.missed <= MISSED_SHOWN) rows.push('|- Missed line(s):', ...t.missedLines.map((l) => `|  ${l}`), '`-');
    else rows.push(`Missed line(s): too many to print.  Use --print-all-missed to print all ${t.missed} lines`);
  }
  console.log(rows.join('\n'));
}

function count(t: Tally, r: LineResult, line: string, keepAllMissed: boolean): void {
  switch (r.kind) {
    case 'ignored':
      t.ignored++;
      if (r.ignore >= 0) t.ignoreHits[r.ignore]!++;
      return;
    case 'missed':
      t.missed++;
      if (keepAllMissed || t.missedLines.length <= MISSED_SHOWN) t.missedLines.push(line);
      return;
    default:
      t.matched++;
      if (r.regex >= 0) t.regexHits[r.regex]!++;
      if (r.kind === 'failure') t.failures++;
      else if (r.kind === 'hostname') t.hostnames++;
      else t.helpers++;
  }
}

/** A one-line progress bar on stderr (only used when stderr is a terminal). */
class Progress {
  private read = 0;
  private last = 0;

  constructor(private readonly total: number) {}

  add(bytes: number): void {
    this.read += bytes;
  }

  show(lines: number): void {
    const t = Date.now();
    if (t - this.last < PROGRESS_EVERY_MS) return;
    this.last = t;
    const frac = Math.min(1, this.read / this.total);
    const width = 30;
    const full = Math.round(frac * width);
    process.stderr.write(`\r[${'#'.repeat(full)}${' '.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}% ${lines} lines`);
  }

  done(): void {
    process.stderr.write('\r\x1b[K');
  }
}
