import { pino, destination, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

let root: Logger | undefined;

/**
 * The process-wide root logger (JSON to stdout). Components take a child once, at construction,
 * never per line: child creation is measurably slower than a log call on the hot path.
 * @param level initial level when the logger is created by this call
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
      // Synchronous writes: a daemon logs a few lines per decision, and each asynchronous write costs
      // a thread-pool round trip and an extra event-loop wake-up, which measured ~0.3 ms of CPU per
      // line here, more than the write itself (bench/propagation).
      destination({ dest: 1, sync: true }),
    );
  } else if (level) {
    root.level = level;
  }
  return root;
}

/**
 * @param component short component name, e.g. `agent.decisions`
 * @returns a child logger tagged with the component
 */
export function componentLogger(component: string): Logger {
  return rootLogger().child({ component });
}
