import { Command, CommanderError } from 'commander';
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
import { registerInfoCommands } from './commands/info.js';
import { registerImportCommand } from './commands/import-fail2ban.js';
import { registerAclCommand } from './commands/acl.js';
import { enableBacktrackingFallback } from '../common/filter/regex-safety.js';

// Before any filter is compiled: a pathological line must not hang a daemon (see regex-safety.ts).
enableBacktrackingFallback();

const program = new Command();
program
  .name('fleetban')
  .description('distributed fail2ban: cluster-wide bans for a fleet of servers')
  .version(FLEETBAN_VERSION)
  .option('-c, --config <dir>', 'configuration directory (default: $FLEETBAN_CONFIG, else /etc/fleetban when it exists, else the shipped deploy/etc/fleetban)')
  .option('--log-level <level>', 'daemon log level: trace, debug, info, warn, error (wins over FLEETBAN_LOG_LEVEL and fail2ban.conf loglevel)', undefined)
  .option('--json', 'machine-readable output')
  // Usage errors are one line (printed below); commander's own printing of them is turned off.
  // Both settings are inherited by every command added after this.
  .exitOverride()
  .configureOutput({ outputError: () => undefined })
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
registerInfoCommands(program, globals);
registerImportCommand(program, globals);
registerAclCommand(program, globals);

/** Commander's codes for help and version output, which are not errors. */
const NOT_ERRORS = new Set(['commander.helpDisplayed', 'commander.version', 'commander.help']);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError && NOT_ERRORS.has(err.code)) process.exit(err.exitCode);
  const known = err instanceof CliError || err instanceof ConfigError || err instanceof InvalidInputError || err instanceof CommanderError;
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof CommanderError) {
    // "error: missing required argument 'addr'" -> one line naming where to read more.
    const sub = process.argv.slice(2).find((a) => program.commands.some((c) => c.name() === a));
    message = `${message.split('\n')[0]!.replace(/^error: /, '')} (see 'fleetban ${sub ? `${sub} ` : ''}--help')`;
  }
  const exitCode = err instanceof CliError ? err.exitCode : 1;
  // Parse errors happen before options are known: look for --json in argv too.
  if (program.opts<GlobalOptions>().json || process.argv.slice(2).includes('--json')) {
    process.stderr.write(`${JSON.stringify({ error: message, exitCode })}\n`);
  } else process.stderr.write(`fleetban: ${message}\n`);
  if (!known && process.env.FLEETBAN_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(exitCode);
});
