import { fstatSync } from 'node:fs';
import { pino, destination, type Logger, type LevelWithSilent } from 'pino';
import { createRequire } from 'node:module';
import type { PrettyOptions } from 'pino-pretty';

export type { Logger };

let root: Logger | undefined;
const components = new Set<Logger>();

// Synchronous writes: a daemon logs a few lines per decision, and each asynchronous write costs a
// thread-pool round trip and an extra event-loop wake-up, which measured ~0.3 ms of CPU per line
// here, more than the write itself (bench/propagation).
const stdout = destination({ dest: 1, sync: true });
let stderr: ReturnType<typeof destination> | undefined;
let toStderr = false;

/**
 * How lines are written:
 * - `pretty`: one readable line per event (time, level, message, fields), for a terminal;
 * - `journal`: JSON, each line prefixed with its syslog priority (`<4>` for a warning), which
 *   journald strips and stores as PRIORITY (systemd's SyslogLevelPrefix=, on by default), so
 *   `journalctl -p warning` shows fleetban's warnings and errors;
 * - `json`: JSON lines, for pipes and collectors (the level is the `level` field).
 */
export type LogFormat = 'pretty' | 'journal' | 'json';

/** syslog priority of each pino level (fatal 60 -> crit, error -> err, warn -> warning, info, debug/trace -> debug). */
function priority(level: number): string {
  if (level >= 60) return '<2>';
  if (level >= 50) return '<3>';
  if (level >= 40) return '<4>';
  if (level >= 30) return '<6>';
  return '<7>';
}

/**
 * The format for a file descriptor: `FLEETBAN_LOG_FORMAT` when set; else pretty on a terminal,
 * journal when the descriptor is the stream systemd connected to journald (it names it in
 * `JOURNAL_STREAM` as `device:inode`), JSON otherwise.
 * @param fd 1 or 2
 */
export function detectLogFormat(fd: number, env: NodeJS.ProcessEnv = process.env): LogFormat {
  const forced = env.FLEETBAN_LOG_FORMAT;
  if (forced === 'pretty' || forced === 'journal' || forced === 'json') return forced;
  try {
    const st = fstatSync(fd);
    if (st.isCharacterDevice() && (fd === 1 ? process.stdout.isTTY : process.stderr.isTTY)) return 'pretty';
    const js = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
    if (js && Number(js[1]) === st.dev && Number(js[2]) === st.ino) return 'journal';
  } catch {
    // a closed descriptor: JSON is as good as anything
  }
  return 'json';
}

type Writer = (line: string) => void;

function writerFor(dest: { write(s: string): unknown }, fd: number): Writer {
  const format = detectLogFormat(fd);
  if (format === 'journal') {
    // pino's lines start with {"level":NN
    return (line) => dest.write(priority(Number(line.slice(9, 11))) + line);
  }
  if (format === 'pretty') {
    // Loaded only for a terminal: it costs every other start (daemons under systemd, CLI in scripts) time for nothing.
    const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as { prettyFactory: (o: PrettyOptions) => (line: string) => string };
    const pretty = prettyFactory({
      colorize: fd === 1 ? Boolean(process.stdout.hasColors?.()) : Boolean(process.stderr.hasColors?.()),
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,component',
      messageFormat: '{if component}{component}: {end}{msg}',
      singleLine: true,
    });
    return (line) => dest.write(pretty(line));
  }
  return (line) => dest.write(line);
}

let writeOut: Writer | undefined;
let writeErr: Writer | undefined;

/** Daemons log to stdout (journald); one-shot commands keep stdout for their output. */
const sink = {
  write(line: string): void {
    if (toStderr) (writeErr ??= writerFor((stderr ??= destination({ dest: 2, sync: true })), 2))(line);
    else (writeOut ??= writerFor(stdout, 1))(line);
  },
};

/**
 * The process-wide root logger. Components take a child once, at construction, never per line:
 * child creation is measurably slower than a log call on the hot path.
 * @param level when given, the level of the root and of every component logger from now on
 * @returns the root logger
 */
export function rootLogger(level?: LevelWithSilent): Logger {
  if (!root) {
    root = pino(
      {
        level: level ?? (process.env.FLEETBAN_LOG_LEVEL || 'info'),
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
      },
      sink,
    );
  } else if (level) {
    root.level = level;
    // Children copy the level when created, and some are created when their module loads,
    // before the command line is parsed.
    for (const c of components) c.level = level;
  }
  return root;
}

/** Send log lines to stderr instead of stdout (CLI commands whose stdout is their result). */
export function logToStderr(): void {
  toStderr = true;
}

/**
 * @param component short component name, e.g. `agent.decisions`
 * @returns a child logger tagged with the component
 */
export function componentLogger(component: string): Logger {
  const child = rootLogger().child({ component });
  components.add(child);
  return child;
}
