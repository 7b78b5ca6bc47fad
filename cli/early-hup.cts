/**
 * Preloaded (`node --require`) by the launchers before fleetban's modules: systemd counts a
 * Type=simple unit as started when it forks, so `systemctl reload` (kill -HUP) can arrive while
 * node is still loading them, and a SIGHUP with no handler ends the process. For the daemons
 * only, it is recorded here and handed to the daemon's own handler (cli/commands/daemons.ts
 * earlyReload), which runs the reload once the daemon is up.
 */
const DAEMONS = ['agent', 'coordinator', 'up'];

interface EarlyHup {
  count: number;
  listener: () => void;
}

if (process.argv.slice(2).some((a) => DAEMONS.includes(a))) {
  const early: EarlyHup = { count: 0, listener: () => { early.count++; } };
  (globalThis as { fleetbanEarlyHup?: EarlyHup }).fleetbanEarlyHup = early;
  process.on('SIGHUP', early.listener);
}
