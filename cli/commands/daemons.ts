import type { Command } from 'commander';
import { join } from 'node:path';
import { execa } from 'execa';
import { configDir, loadFleetbanConfig, roleRedis, shippedConfigDir, type FleetbanConfig, type RedisRole } from '../../common/config/fleetban-config.js';
import { loadJails, type JailConfig } from '../../common/config/jails.js';
import { readFail2banSettings } from '../../common/config/fail2ban-settings.js';
import { componentLogger, rootLogger } from '../../common/log.js';
import { startAgent, loadJailFilters, jailRules } from '../../agent/main.js';
import { jailsWithoutLogFiles } from '../../agent/sources/index.js';
import { ConfigError, InvalidInputError } from '../../common/errors.js';
import { coordinatorSigner, startCoordinator } from '../../coordinator/main.js';
import { checkBackendName, createFirewallBackend } from '../../agent/firewall/index.js';
import { startPrivateRedis } from '../private-redis.js';
import { chooseSshdSource, hostChecks } from '../../agent/preflight.js';
import { CliError, type GlobalOptions } from '../context.js';
import { ensureUpKeys } from '../../common/config/up-keys.js';
import { DEFAULT_KEY_DIR, generateKeyFiles } from '../../common/config/keys.js';

/**
 * Take SIGHUP from the first moment: `systemctl reload` right after a start (Ansible's handlers do
 * that) would otherwise hit node's default action and end the daemon while it is still starting.
 * A reload asked for during the start runs once the daemon is up.
 * @returns call with the started daemon's reload
 */
function earlyReload(): (reload: () => void) => void {
  let target: (() => void) | undefined;
  let pending = false;
  process.on('SIGHUP', () => {
    if (target) target();
    else pending = true;
  });
  // A SIGHUP that came while node was still loading (cli/early-hup.cts) is a reload to run too;
  // that listener goes only now that this one is installed, so no SIGHUP finds none.
  const early = (globalThis as { fleetbanEarlyHup?: { count: number; listener: () => void } }).fleetbanEarlyHup;
  if (early) {
    process.off('SIGHUP', early.listener);
    if (early.count > 0) {
      pending = true;
      componentLogger('signals').info({ signals: early.count }, 'SIGHUP while loading: reloading once started');
    }
  }
  return (reload) => {
    target = reload;
    if (pending) reload();
  };
}

/** Stop cleanly on SIGINT/SIGTERM, reload on SIGHUP. */
function onSignals(stop: () => Promise<void>, reload?: () => void): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    rootLogger().info({ signal }, 'stopping');
    stop().then(
      () => process.exit(0),
      (err: Error) => {
        rootLogger().error({ err: err.message }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
  if (reload) process.on('SIGHUP', reload);
}

async function nftUsable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    await execa('nft', ['list', 'tables'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A configuration moved from fail2ban keeps its `loglevel` (fail2ban.conf / fail2ban.local):
 * the daemons log at it unless `--log-level` or `FLEETBAN_LOG_LEVEL` is given, which win.
 * @throws ConfigError naming file, line and key of a value fail2ban would not take either
 */
function applyFail2banLogLevel(dir: string, globals: GlobalOptions): void {
  const { loglevel } = readFail2banSettings(dir);
  if (!loglevel) return;
  if (globals.logLevel || process.env.FLEETBAN_LOG_LEVEL) {
    rootLogger().debug({ loglevel: loglevel.text }, 'fail2ban.conf loglevel not used: --log-level / FLEETBAN_LOG_LEVEL is set');
    return;
  }
  rootLogger(loglevel.level);
  rootLogger().info({ loglevel: loglevel.text, level: loglevel.level }, `log level ${loglevel.level}, from fail2ban.conf loglevel = ${loglevel.text}`);
}

export function registerDaemonCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('agent')
    .description('run the agent: follow logs, report failures, apply the cluster\'s bans to this host\'s firewall')
    .option('--start-at <where>', 'where to start reading logs: end, beginning, resume', 'end')
    .option('--cleanup', 'remove every firewall table, set and rule fleetban created on this host, then exit')
    .action(async (o: { startAt: string; cleanup?: boolean }) => {
      const dir = configDir(globals().config);
      if (o.cleanup) {
        const config = loadFleetbanConfig(dir);
        checkBackendName(config.agent.banaction, config.sources['agent.banaction']);
        const backend = await createFirewallBackend(config.agent.banaction, { maxBans: config.agent.maxBans });
        await backend.init(jailRules(loadJails(dir).jails));
        await backend.shutdown({ cleanup: true });
        console.log(`removed fleetban's ${backend.name} state from this host`);
        return;
      }
      if (!['end', 'beginning', 'resume'].includes(o.startAt)) throw new InvalidInputError(`--start-at must be end, beginning or resume, not '${o.startAt}'`);
      applyFail2banLogLevel(dir, globals());
      const onReload = earlyReload();
      const agent = await startAgent(dir, { startAt: o.startAt as 'end' | 'beginning' | 'resume' });
      onSignals(() => agent.stop());
      onReload(() => void agent.reload());
    });

  program
    .command('coordinator')
    .description('run a coordinator: count failures across the cluster, decide and expire bans')
    .action(async () => {
      const dir = configDir(globals().config);
      applyFail2banLogLevel(dir, globals());
      const onReload = earlyReload();
      const coordinator = await startCoordinator(dir);
      onSignals(() => coordinator.stop());
      onReload(() => void coordinator.reload());
    });

  program
    .command('up')
    .description('all-in-one on this host: private Redis (unless [redis] url is set), coordinator and agent')
    .option('--start-at <where>', 'where to start reading logs: end, beginning, resume', 'end')
    .action(async (o: { startAt: string }) => {
      const log = componentLogger('up');
      const dir = configDir(globals().config);
      applyFail2banLogLevel(dir, globals());
      const config = loadFleetbanConfig(dir);
      log.info({ config: dir }, 'configuration');
      const stops: Array<() => Promise<void>> = [];
      let redis = config.redis;
      if (config.redis.private) {
        const priv = await startPrivateRedis(join(config.agent.stateDir, 'redis'), log);
        stops.push(() => priv.stop());
        redis = { ...config.redis, url: `unix://${priv.socket}` };
      }
      // The private server has no ACL users: every role logs in as its default user.
      const identities = config.redis.private ? {} : config.identities;
      let agentSettings = config.agent;
      if (config.agent.banaction === 'auto' && !(await nftUsable())) {
        log.warn('not root or no working nft: bans are only logged (dry-run), not enforced. Run as root with nftables installed to enforce.');
        agentSettings = { ...config.agent, banaction: 'dry-run' };
      } else if (config.agent.banaction === 'auto') {
        agentSettings = { ...config.agent, banaction: 'nftables' };
      }
      // Signed like a fleet, with a key pair of its own (made on first start in the state directory).
      const upKeys = ensureUpKeys(config.agent.stateDir);
      agentSettings = { ...agentSettings, trustedKeys: [...agentSettings.trustedKeys, upKeys.pubFile] };
      const coordinatorSettings = { ...config.coordinator, signingKey: config.coordinator.signingKey ?? upKeys.keyFile };
      const override: Partial<FleetbanConfig> = { redis, identities, agent: agentSettings, coordinator: coordinatorSettings };
      const coordinator = await startCoordinator(dir, override);
      stops.unshift(() => coordinator.stop());
      // The shipped default jail follows whichever sshd log this host has (auth.log or the journal).
      const adjustJails = dir === shippedConfigDir()
        ? async (jails: JailConfig[]) => Promise.all(jails.map(async (j) => {
          if (j.name !== 'sshd') return j;
          const chosen = await chooseSshdSource(j);
          log.info(chosen.source);
          return chosen.jail;
        }))
        : undefined;
      const agent = await startAgent(dir, { override, startAt: o.startAt as 'end' | 'beginning' | 'resume', adjustJails });
      stops.unshift(() => agent.stop());
      log.info('fleetban is up: `fleetban status`, `fleetban banned`, `fleetban hosts` show what it does');
      onSignals(async () => {
        for (const stop of stops) await stop();
      }, () => {
        void coordinator.reload();
        void agent.reload();
      });
    });

  program
    .command('keygen')
    .description('make an Ed25519 key pair that signs decisions: NAME.key (private, 0600) and NAME.pub (for [agent] trusted_keys)')
    .argument('<name>', 'key name, e.g. the coordinator or admin it belongs to')
    .option('--dir <dir>', 'where to write the files', DEFAULT_KEY_DIR)
    .action((name: string, o: { dir: string }) => {
      let made;
      try {
        made = generateKeyFiles(o.dir, name);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
      if (globals().json) console.log(JSON.stringify(made));
      else console.log(`wrote ${made.keyFile} (private: [coordinator] or [cli] signing_key) and ${made.pubFile} (public: [agent] trusted_keys); key id ${made.kid}`);
    });

  program
    .command('check-config')
    .description('parse fleetban.conf, the jails and their filters; report problems with file, line and key; check the host (sshd LogLevel, Shorewall BLACKLIST, log sources)')
    .option('--role <role>', 'also read the secrets of this role (agent, coordinator, cli), as the units do before starting; without it no secret is read')
    .action(async (o: { role?: string }) => {
      const g = globals();
      const dir = configDir(g.config);
      const config = loadFleetbanConfig(dir);
      checkBackendName(config.agent.banaction, config.sources['agent.banaction']);
      if (o.role !== undefined) {
        if (!['agent', 'coordinator', 'cli'].includes(o.role)) throw new CliError(`--role must be agent, coordinator or cli, not '${o.role}'`);
        // Only this role's: the unit that runs check-config holds no other role's credential.
        roleRedis(config, o.role as RedisRole);
        if (o.role === 'coordinator') coordinatorSigner(config);
      }
      const loaded = loadJails(dir);
      loadJailFilters(dir, loaded.jails);
      // fail2ban-client -t refuses a jail that has no log file to follow; so does check-config.
      const noLogs = await jailsWithoutLogFiles(loaded.jails);
      if (noLogs.length > 0) {
        const first = loaded.jails.find((j) => j.name === noLogs[0]!.jail)!;
        throw new ConfigError(noLogs.map((m) => `jail [${m.jail}]: have not found any log file (logpath ${m.logpath.join(' ')})`).join('; ') +
          '; create the file, fix logpath, or read the journal with backend = systemd', first.file, first.line, 'logpath');
      }
      const host = await hostChecks(loaded.jails, { banaction: config.agent.banaction, sshdConfig: config.agent.sshdConfig });
      loaded.warnings.push(...host.map((w) => w.message));
      const warnings = [...readFail2banSettings(dir).warnings, ...loaded.warnings];
      if (g.json) {
        console.log(JSON.stringify({ ok: true, dir, cluster: config.cluster, jails: loaded.jails.map((j) => j.name), warnings }));
        return;
      }
      for (const w of warnings) console.log(`warning: ${w}`);
      console.log(`OK: ${dir}: cluster ${config.cluster}, ${loaded.jails.length} enabled jail${loaded.jails.length === 1 ? '' : 's'}${loaded.jails.length ? ` (${loaded.jails.map((j) => j.name).join(', ')})` : ''}`);
    });
}
