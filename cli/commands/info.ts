import type { Command, Option } from 'commander';
import { FLEETBAN_VERSION, PROTOCOL_VERSION } from '../../common/protocol/version.js';
import { redactUrl } from '../../common/config/fleetban-config.js';
import { isAlive, readFleet } from '../../common/hosts.js';
import { CliError, withContext, printTable, formatTime, type CliContext, type GlobalOptions } from '../context.js';
import { coordinators } from '../cluster-view.js';

/** One running (or recently seen) daemon of the cluster, as `version` lists it. */
interface DaemonInfo {
  kind: 'agent' | 'coordinator';
  name: string;
  host: string;
  version: string;
  protocol: number | null;
  alive: boolean;
  lastSeen: string;
}

/** Every agent (heartbeats) and coordinator (registrations) the cluster knows, with their versions. */
async function daemons(ctx: CliContext): Promise<DaemonInfo[]> {
  const [view, coords] = await Promise.all([readFleet(ctx.redis, ctx.keys), coordinators(ctx)]);
  const out: DaemonInfo[] = [];
  for (const hb of view.heartbeats.values()) {
    out.push({ kind: 'agent', name: hb.host, host: hb.host, version: hb.version, protocol: typeof hb.v === 'number' ? hb.v : null,
      alive: isAlive(hb, view.now), lastSeen: formatTime(hb.seenAt) });
  }
  for (const c of coords) {
    out.push({ kind: 'coordinator', name: c.consumer, host: c.host, version: c.version ?? 'unknown (older release)',
      protocol: c.protocol ?? null, alive: c.alive, lastSeen: formatTime(c.seenAt) });
  }
  return out.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
}

export function registerInfoCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('ping')
    .description('check that Redis answers and how many agents and coordinators are alive, like fail2ban-client ping')
    .action(async () => {
      const g = globals();
      await withContext(g, async (ctx) => {
        const started = process.hrtime.bigint();
        const pong = await ctx.redis.ping();
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const live = (await daemons(ctx)).filter((d) => d.alive);
        const agents = live.filter((d) => d.kind === 'agent').length;
        const coordinators = live.length - agents;
        const url = redactUrl(ctx.config.redis.url);
        if (g.json) {
          console.log(JSON.stringify({ pong: pong === 'PONG', redis: url, ms: Math.round(ms * 100) / 100, cluster: ctx.config.cluster, agents, coordinators }));
        } else {
          console.log(`pong: Redis at ${url} answered in ${ms.toFixed(1)} ms; cluster ${ctx.config.cluster}: ` +
            `${agents} live agent${agents === 1 ? '' : 's'}, ${coordinators} live coordinator${coordinators === 1 ? '' : 's'}`);
        }
        if (coordinators === 0) throw new CliError('no coordinator is running: failures are not counted and nothing is banned', 1);
      });
    });

  program
    .command('version')
    .description("this CLI's version and protocol, and every daemon's the cluster knows")
    .action(async () => {
      const g = globals();
      let list: DaemonInfo[] | undefined;
      let unreachable: string | undefined;
      try {
        list = await withContext(g, daemons);
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        unreachable = err.message;
      }
      if (g.json) {
        console.log(JSON.stringify({ cli: { version: FLEETBAN_VERSION, protocol: PROTOCOL_VERSION }, daemons: list ?? null, ...(unreachable ? { error: unreachable } : {}) }));
        return;
      }
      console.log(`fleetban ${FLEETBAN_VERSION} (protocol ${PROTOCOL_VERSION})`);
      if (unreachable) {
        process.stderr.write(`fleetban: daemons unknown: ${unreachable}\n`);
        return;
      }
      if (!list || list.length === 0) {
        console.log('no daemons have registered');
        return;
      }
      printTable(['KIND', 'NAME', 'HOST', 'VERSION', 'PROTOCOL', 'ALIVE', 'LAST SEEN'],
        list.map((d) => [d.kind, d.name, d.host, d.version, d.protocol === null ? '?' : String(d.protocol), d.alive ? 'yes' : 'NO', d.lastSeen]));
      const other = list.filter((d) => d.alive && d.protocol !== null && d.protocol !== PROTOCOL_VERSION);
      if (other.length > 0) console.log(`warning: ${other.length} live daemon${other.length === 1 ? ' speaks' : 's speak'} another protocol than this CLI (${PROTOCOL_VERSION})`);
    });

  program
    .command('completion')
    .description('print a shell completion script generated from the command definitions')
    .argument('[shell]', 'bash or zsh', 'bash')
    .action((shell: string) => {
      if (shell === 'bash') process.stdout.write(bashCompletion(program));
      else if (shell === 'zsh') process.stdout.write(`autoload -U +X bashcompinit && bashcompinit\n${bashCompletion(program)}`);
      else throw new CliError(`no completion for shell '${shell}' (bash or zsh)`);
    });

  program
    .command('man')
    .description('print the manual page (roff), generated from the command definitions: fleetban man | man -l -')
    .action(() => {
      process.stdout.write(manPage(program));
    });
}

function longFlags(options: readonly Option[]): string[] {
  return options.map((o) => o.long).filter((l): l is string => Boolean(l));
}

/**
 * A bash completion script: commands after `fleetban`, each command's options after it, global
 * options everywhere. Generated from commander's definitions, so it cannot fall behind them.
 */
export function bashCompletion(program: Command): string {
  const globalFlags = [...longFlags(program.options), '--help', '--version'];
  const cmds = program.commands.filter((c) => c.name() !== 'help');
  const cases = cmds.map((c) => `    ${c.name()}) opts="${[...longFlags(c.options), '--help'].join(' ')}" ;;`).join('\n');
  return `# bash completion for fleetban, generated by \`fleetban completion bash\`
_fleetban() {
  local cur cmd i opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -c|--config|--log-level) ((i++)) ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  if [ -z "$cmd" ]; then
    COMPREPLY=($(compgen -W "${cmds.map((c) => c.name()).join(' ')} ${globalFlags.join(' ')}" -- "$cur"))
    return
  fi
  opts=""
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts ${globalFlags.join(' ')}" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _fleetban fleetban
`;
}

/** Escape text for roff: backslashes, and a leading dot or quote that would start a request. */
function roff(text: string): string {
  return text.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/gm, '\\&$1');
}

function optionLines(options: readonly Option[]): string[] {
  return options.flatMap((o) => ['.TP', `.B ${roff(o.flags)}`, roff(o.description + (o.defaultValue !== undefined && o.defaultValue !== false && !(Array.isArray(o.defaultValue) && o.defaultValue.length === 0) ? ` (default: ${String(o.defaultValue)})` : ''))]);
}

/**
 * The manual page, section 8, in roff: synopsis, every command with its arguments and options.
 * @param program the root command
 */
export function manPage(program: Command): string {
  const cmds = program.commands.filter((c) => c.name() !== 'help');
  const lines = [
    `.TH FLEETBAN 8 "" "fleetban ${FLEETBAN_VERSION}" "System Administration"`,
    '.SH NAME', `fleetban \\- ${roff(program.description())}`,
    '.SH SYNOPSIS', `.B fleetban`, roff('[--config DIR] [--log-level LEVEL] [--json] COMMAND [ARGS]'),
    '.SH DESCRIPTION',
    roff('Agents follow logs on every host and report failures through Redis; coordinators count them across the cluster and publish bans that every host applies to its firewall. Configuration uses fail2ban\'s files: jail.conf, jail.d/*.conf, jail.local, jail.d/*.local, filter.d/.'),
    '.SH GLOBAL OPTIONS', ...optionLines(program.options),
    '.SH COMMANDS',
  ];
  for (const c of cmds) {
    lines.push('.SS', roff(`${c.name()} ${c.usage()}`), roff(c.description()));
    const args = c.registeredArguments;
    if (args.length > 0) lines.push(...args.flatMap((a) => ['.TP', `.I ${roff(a.name())}`, roff(a.description || '')]));
    lines.push(...optionLines(c.options));
  }
  lines.push(
    '.SH ENVIRONMENT',
    '.TP', '.B FLEETBAN_CONFIG', roff('configuration directory when --config is not given'),
    '.TP', '.B FLEETBAN_REDIS_URL', roff('overrides [redis] url'),
    '.TP', '.B FLEETBAN_LOG_LEVEL', roff('daemon log level (below --log-level, above fail2ban.conf loglevel)'),
    '.SH FILES',
    '.TP', '.I /etc/fleetban', roff('configuration directory (else the shipped deploy/etc/fleetban defaults)'),
    '.SH EXIT STATUS', roff('0 on success; 1 on an error, printed as one line (as JSON with --json); 2 when --wait timed out or no live agent could apply a decision.'),
    '.SH SEE ALSO', 'fail2ban-client(1), fail2ban-regex(1)',
  );
  return `${lines.join('\n')}\n`;
}
