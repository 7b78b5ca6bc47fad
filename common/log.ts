import { pino, destination, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

let root: Logger | undefined;
const components = new Set<Logger>();

// Synchronous writes: a daemon logs a few lines per decision, and each asynchronous write costs a
// thread-pool round trip and an extra event-loop wake-up, which measured ~0.3 ms of CPU per line
// here, more than the write itself (bench/propagation).
const stdout = destination({ dest: 1, sync: true });
let stderr: ReturnType<typeof destination> | undefined;
let toStderr = false;

/** Daemons log to stdout (journald); one-shot commands keep stdout for their output. */
const sink = {
  write(line: string): void {
    if (toStderr) (stderr ??= destination({ dest: 2, sync: true })).write(line);
    else stdout.write(line);
  },
};

/**
 * The process-wide root logger (JSON lines). Components take a child once, at construction,
 * never per line: child creation is measurably slower than a log call on the hot path.
 * @param level when given, the level of the root and of every component logger from now on
 * @returns the root logger
 */
export function rootLogger(level?: LevelWithSilent): Logger {
  if (!root) {
    root = pino(
      {
        level: level ?? process.env.FLEETBAN_LOG_LEVEL ?? 'info',
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
