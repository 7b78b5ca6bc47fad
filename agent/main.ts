import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { loadFleetbanConfig, roleRedis, type FleetbanConfig } from '../common/config/fleetban-config.js';
import { loadJails, type JailConfig } from '../common/config/jails.js';
import { clusterKeys } from '../common/protocol/keys.js';
import { connectRedis } from '../common/redis.js';
import { componentLogger } from '../common/log.js';
import { now } from '../common/clock.js';
import { FLEETBAN_VERSION } from '../common/protocol/version.js';
import { ConfigError } from '../common/errors.js';
import { MANUAL_JAIL } from '../common/protocol/messages.js';
import { loadFilter, builtinFilterDir } from '../common/filter/index.js';
import type { Filter, LineMatcher } from '../common/filter/types.js';
import { checkBackendName, createFirewallBackend } from './firewall/index.js';
import type { JailRule } from './firewall/backend.js';
import { createLogSources, jailsWithoutLogFiles } from './sources/index.js';
import type { LogSource } from './sources/source.js';
import { Enforcer } from './enforcer.js';
import { DecisionFollower } from './decisions.js';
import { Reporter } from './reporter.js';
import { FailureSpool } from './spool.js';
import { HeartbeatSender, hostAddresses } from './heartbeat.js';
import { startAgentMetrics } from './metrics.js';
import { FoundLog } from './found-log.js';
import { hostChecks, type HostCheckOptions } from './preflight.js';
import { DecisionGate } from './decision-gate.js';
import { loadTrustedKeys } from '../common/config/keys.js';

/**
 * The agent's decision gate from its configuration: the trusted keys must load, and an agent
 * with none refuses to start unless `allow_unsigned = true` says that anyone who can write to
 * Redis may ban and unban on this host.
 * @throws ConfigError naming `trusted_keys`
 */
export function agentGate(config: FleetbanConfig, ownAddresses: readonly string[], log: import('pino').Logger): DecisionGate {
  const a = config.agent;
  const where = config.sources['agent.trusted_keys'];
  let trusted;
  try {
    trusted = loadTrustedKeys(a.trustedKeys);
  } catch (err) {
    throw new ConfigError((err as Error).message, where?.file, where?.line, 'trusted_keys');
  }
  if (trusted.keys.size === 0 && !a.allowUnsigned) {
    throw new ConfigError('no trusted key: set [agent] trusted_keys to the public keys that sign decisions (fleetban keygen), '
      + 'or allow_unsigned = true to let anyone who can write to Redis ban and unban on this host', where?.file, where?.line, 'trusted_keys');
  }
  if (a.allowUnsigned) log.warn('allow_unsigned = true: unsigned decisions are applied; anyone who can write to Redis can ban and unban on this host');
  else log.info({ keys: [...trusted.keys.keys()], files: trusted.files }, 'decisions must be signed by one of these keys');
  return new DecisionGate({
    cluster: config.cluster, trusted: trusted.keys, allowUnsigned: a.allowUnsigned, ownAddresses,
    neverBan: a.neverBan, minPrefixV4: a.minPrefixV4, minPrefixV6: a.minPrefixV6,
  }, log);
}

export interface AgentOptions {
  /** Settings that replace the file's (fleetban up, tests). */
  readonly override?: Partial<FleetbanConfig>;
  /** Where log sources start: end (default), beginning, or resume from saved positions. */
  readonly startAt?: 'end' | 'beginning' | 'resume';
  /** Where the start-up host checks look (tests); see agent/preflight.ts. */
  readonly hostChecks?: HostCheckOptions;
  /** Change the loaded jails before they run (`fleetban up` picks its default jail's log source). */
  readonly adjustJails?: (jails: JailConfig[]) => Promise<JailConfig[]>;
}

export interface AgentHandle {
  readonly enforcer: Enforcer;
  readonly reporter: Reporter;
  readonly follower: DecisionFollower;
  /**
   * Re-read the jails and their filters (SIGHUP, `systemctl reload`). Bans stay in the firewall;
   * a jail whose logs did not change keeps its source, so no line is skipped or read twice; a jail
   * whose logs changed resumes from the saved positions. A configuration that does not load is
   * refused with its error and the running one is kept.
   */
  reload(): Promise<void>;
  stop(options?: { cleanup?: boolean }): Promise<void>;
}

/** A jail's running log sources and the filter they feed. */
interface JailPipe {
  jail: JailConfig;
  filter: Filter;
  /** One matcher per origin (file or journal), for multi-line filters. */
  readonly matchers: Map<string, LineMatcher>;
  readonly sources: LogSource[];
  /** What the sources were built from; a reload keeps them while this stays the same. */
  readonly key: string;
}

/** The jail options a log source is built from. */
function sourceKey(j: JailConfig): string {
  return JSON.stringify([j.backend, j.logpath, j.logencoding, j.journalmatch]);
}

/**
 * Load the filters of the enabled jails. Done before anything starts, so a broken filter stops the
 * agent with the file, line and key instead of failing later.
 */
export function loadJailFilters(dir: string, jails: readonly JailConfig[]): Map<string, Filter> {
  const dirs = [join(dir, 'filter.d'), builtinFilterDir()];
  const filters = new Map<string, Filter>();
  for (const j of jails) {
    if (j.countsBans) continue; // fed by the cluster's own bans, not by a log
    try {
      filters.set(j.name, loadFilter(j.filter, { dirs, jail: j.options }));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`jail [${j.name}]: filter '${j.filter}': ${(err as Error).message}`, j.file, j.line, 'filter');
    }
  }
  return filters;
}

/** The firewall rule of each enforcing jail, plus the manual jail. */
export function jailRules(jails: readonly JailConfig[]): JailRule[] {
  const rules: JailRule[] = jails
    .filter((j) => j.enforce)
    .map((j) => ({ jail: j.name, ports: j.ports, protocols: j.protocols, ...(j.actionName ? { label: j.actionName } : {}),
      ...(j.blocktype !== 'drop' ? { blocktype: j.blocktype } : {}) }));
  if (!rules.some((r) => r.jail === MANUAL_JAIL)) rules.push({ jail: MANUAL_JAIL, ports: 'all', protocols: 'all' });
  return rules;
}

/**
 * Start an agent: follow the jails' logs, report failures, apply the cluster's decisions.
 * @param dir configuration directory
 */
export async function startAgent(dir: string, options: AgentOptions = {}): Promise<AgentHandle> {
  const log = componentLogger('agent');
  const config = { ...loadFleetbanConfig(dir), ...options.override };
  const adjust = async (read: ReturnType<typeof loadJails>): Promise<ReturnType<typeof loadJails>> =>
    options.adjustJails ? { ...read, jails: await options.adjustJails(read.jails) } : read;
  let loaded = await adjust(loadJails(dir));
  for (const w of loaded.warnings) log.warn(w);
  // The firewall's own check runs in the backend's init, against the configuration it runs with.
  for (const w of await hostChecks(loaded.jails, { sshdConfig: config.agent.sshdConfig, ...options.hostChecks, firewall: false })) log.warn({ check: w.check }, w.message);
  const filters = loadJailFilters(dir, loaded.jails);
  const keys = clusterKeys(config.cluster);
  const host = config.agent.host;
  // Read once: a host's addresses rarely change, and the heartbeat runs every few seconds for ever.
  const addrs = hostAddresses();
  const gate = agentGate(config, addrs, componentLogger('agent.decisions'));

  checkBackendName(config.agent.banaction, config.sources['agent.banaction']);
  const backend = await createFirewallBackend(config.agent.banaction, { maxBans: config.agent.maxBans });
  const enforcer = new Enforcer(backend, jailRules(loaded.jails), componentLogger('agent.firewall'));
  await enforcer.init();

  const redisSettings = roleRedis(config, 'agent');
  const commands: Redis = connectRedis(redisSettings, 'agent', log);
  // Decisions from replicas when configured (same identity and TLS as the primary), else from it.
  const decisionUrls = config.agent.decisionsFrom.map((url) => ({ ...redisSettings, url }));
  const blocking: Redis = connectRedis(decisionUrls[0] ?? redisSettings, 'agent-decisions', log);
  const spool = new FailureSpool(join(config.agent.stateDir, 'spool'), componentLogger('agent.spool'));
  const reporter = new Reporter({
    redis: commands, stream: keys.host(host).failures, log: componentLogger('agent.reporter'),
    batch: config.agent.reportBatch, streamMaxlen: config.coordinator.streamMaxlen, spool,
  });
  const follower = new DecisionFollower({
    redis: blocking, other: commands, keys, enforcer, log: componentLogger('agent.decisions'), gate,
    ack: (id) => {
      if (commands.status === 'ready') commands.set(keys.host(host).ack, id).catch(() => undefined);
    },
    ...(decisionUrls.length > 0 ? { sources: { urls: [...decisionUrls, redisSettings], maxLagMs: config.agent.decisionsMaxLag * 1000, log } } : {}),
  });
  const heartbeat = new HeartbeatSender(commands, keys, config.agent.heartbeat * 1000, () => ({
    host,
    addrs,
    version: FLEETBAN_VERSION,
    backend: enforcer.backendName,
    jails: loaded.jails.map((j) => j.name),
    bansApplied: enforcer.applied,
    bansRefused: enforcer.refusedTotal,
    bansHeld: enforcer.size,
    lastDecision: follower.lastId,
    decisionsRefused: gate.refused,
    guardRefused: gate.guarded,
  }), componentLogger('agent.heartbeat'));

  // Logs are followed from before the wait for the first snapshot: with `--start-at end`, lines
  // written during the wait (up to 5 s with Redis away) were lost. Failures found meanwhile are
  // buffered by the reporter like any others.
  for (const m of await jailsWithoutLogFiles(loaded.jails)) {
    log.warn({ jail: m.jail, logpath: m.logpath }, `jail [${m.jail}]: no log file found yet; it is followed once it appears`);
  }
  const metrics = await startAgentMetrics(config.agent.metrics, { enforcer, reporter, follower, keys, commands, connections: [commands, blocking] });

  const found = new FoundLog(componentLogger('agent.found'));
  // One pipeline per log-following jail. Sources call through `pipe.filter`, so a reload can swap
  // the filter under a running source without stopping it.
  const pipes = new Map<string, JailPipe>();
  const positions = join(config.agent.stateDir, 'positions');
  const startPipe = async (jail: JailConfig, filter: Filter, startAt: 'end' | 'beginning' | 'resume'): Promise<void> => {
    const pipe: JailPipe = { jail, filter, matchers: new Map(), sources: [], key: sourceKey(jail) };
    for (const source of createLogSources(jail, { stateDir: positions, startAt })) {
      await source.start((lines, origin) => {
        let matcher = pipe.matchers.get(origin);
        if (!matcher) {
          matcher = pipe.filter.createMatcher();
          pipe.matchers.set(origin, matcher);
        }
        // A file source hands over its decoded chunk: the matcher walks the lines in place.
        const failures = Array.isArray(lines) ? matcher.feedBatch(lines) : matcher.feedChunk(lines.text, lines);
        metrics?.metrics.lines(jail.name, lines, failures.length);
        for (const m of failures) {
          reporter.report({ jail: jail.name, addr: m.addr, time: m.time ?? now(), host, line: m.text });
          found.found(jail.name, m.addr, origin);
        }
      });
      pipe.sources.push(source);
    }
    pipes.set(jail.name, pipe);
  };
  for (const jail of loaded.jails) {
    const filter = filters.get(jail.name);
    if (filter) await startPipe(jail, filter, options.startAt ?? 'end');
  }

  let reloading: Promise<void> = Promise.resolve();
  const doReload = async (): Promise<void> => {
    let next: ReturnType<typeof loadJails>;
    let nextFilters: Map<string, Filter>;
    try {
      next = await adjust(loadJails(dir));
      nextFilters = loadJailFilters(dir, next.jails);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload failed; keeping the running jails and filters');
      return;
    }
    for (const w of next.warnings) log.warn(w);
    await enforcer.setRules(jailRules(next.jails));
    for (const [name, pipe] of pipes) {
      const filter = nextFilters.get(name);
      const jail = next.jails.find((j) => j.name === name);
      if (filter && jail && sourceKey(jail) === pipe.key) {
        // Same logs: keep following them; new matchers start with the next line.
        pipe.jail = jail;
        pipe.filter = filter;
        pipe.matchers.clear();
        continue;
      }
      // Gone or reading other logs: stopping saves the positions, so a restarted source resumes.
      await Promise.all(pipe.sources.map((src) => src.stop()));
      pipes.delete(name);
    }
    for (const jail of next.jails) {
      const filter = nextFilters.get(jail.name);
      if (filter && !pipes.has(jail.name)) await startPipe(jail, filter, 'resume');
    }
    loaded = next;
    log.info({ jails: next.jails.map((j) => j.name), bans: enforcer.size }, 'agent reloaded');
  };

  // Wait briefly for the first snapshot so the kernel holds the cluster's bans when the agent says
  // it started; with Redis away, start anyway: enforcing what the kernel has and buffering reports.
  const synced = follower.start();
  let haveSnapshot = false;
  void synced.then(() => (haveSnapshot = true));
  const waited = await Promise.race([synced.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]);
  if (!waited) log.warn('cluster bans not loaded yet (Redis unreachable?); continuing and retrying in the background');
  heartbeat.start();

  const reconcileTimer = setInterval(() => {
    // Until a snapshot arrived the agent does not know the cluster's bans (started while Redis was
    // unreachable): "repairing" the kernel then would lift every ban it still enforces.
    if (!haveSnapshot) return;
    enforcer.reconcile().then(
      (n) => n > 0 && log.warn({ repaired: n }, 'firewall repaired'),
      (err: Error) => log.error({ err: err.message }, 'reconciliation failed'),
    );
  }, config.agent.reconcile * 1000);
  reconcileTimer.unref();

  log.info({ host, cluster: config.cluster, backend: enforcer.backendName, jails: loaded.jails.map((j) => j.name) }, 'agent started');

  return {
    enforcer,
    reporter,
    follower,
    reload() {
      // One reload at a time: two SIGHUPs in a row must not start a jail's sources twice.
      reloading = reloading.then(doReload, doReload);
      return reloading;
    },
    async stop(stopOptions = {}) {
      clearInterval(reconcileTimer);
      heartbeat.stop();
      await reloading.catch(() => undefined);
      await metrics?.server.close();
      await Promise.all([...pipes.values()].flatMap((p) => p.sources.map((s) => s.stop())));
      // The hosts entry stays: `fleetban hosts` shows a stopped agent as not alive rather than forgetting it.
      await Promise.race([reporter.flush(), new Promise((r) => setTimeout(r, 2000).unref())]);
      reporter.persist();
      await follower.stop();
      // QUIT would wait in the offline queue for a Redis that may be unreachable: only when connected.
      if (commands.status === 'ready') await commands.quit().catch(() => commands.disconnect());
      else commands.disconnect();
      // Without cleanup the bans stay in the kernel (with their timeouts) while the agent is down.
      await enforcer.shutdown(stopOptions.cleanup ?? false);
      log.info('agent stopped');
    },
  };
}
