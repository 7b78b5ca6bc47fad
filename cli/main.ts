import { Command } from 'commander';
import type { LevelWithSilent } from 'pino';
import { rootLogger, logToStderr } from '../common/log.js';
import { FLEETBAN_VERSION } from '../common/protocol/version.js';
import { ConfigError, InvalidInputError } from '../common/errors.js';
import { CliError, type GlobalOptions } from './context.js';
import { registerBanCommands } from './commands/bans.js';
import { registerStatusCommands } from './commands/status.js';
import { registerDaemonCommands } from './commands/daemons.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerRegexCommand } from './commands/regex.js';
import { registerAclCommand } from './commands/acl.js';

const program = new Command();
program
  .name('fleetban')
  .description('distributed fail2ban: cluster-wide bans for a fleet of servers')
  .version(FLEETBAN_VERSION)
  .option('-c, --config <dir>', 'configuration directory (default: $FLEETBAN_CONFIG or /etc/fleetban)')
  .option('--log-level <level>', 'daemon log level: trace, debug, info, warn, error', undefined)
  .option('--json', 'machine-readable output')
  .showHelpAfterError()
  .hook('preAction', (_program, command) => {
    const level = program.opts<GlobalOptions>().logLevel;
    if (level) rootLogger(level as LevelWithSilent);
    if (!DAEMONS.has(command.name())) logToStderr();
  });

/** Commands whose stdout is their log; every other command's stdout is its result. */
const DAEMONS = new Set(['agent', 'coordinator', 'up']);

const globals = (): GlobalOptions => program.opts<GlobalOptions>();
registerDaemonCommands(program, globals);
registerBanCommands(program, globals);
registerStatusCommands(program, globals);
registerPolicyCommands(program, globals);
registerRegexCommand(program, globals);
registerAclCommand(program, globals);

program.parseAsync(process.argv).catch((err: unknown) => {
  const known = err instanceof CliError || err instanceof ConfigError || err instanceof InvalidInputError;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`fleetban: ${message}\n`);
  if (!known && process.env.FLEETBAN_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
});
