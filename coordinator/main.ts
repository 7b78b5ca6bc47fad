import { FLEETBAN_VERSION, PROTOCOL_VERSION } from '../common/protocol/version.js';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { loadFleetbanConfig, roleRedis, type FleetbanConfig } from '../common/config/fleetban-config.js';
import { loadJails } from '../common/config/jails.js';
import { clusterKeys } from '../common/protocol/keys.js';
import { HOSTS_CHANGED, HOST_NAME_RE, type CoordinatorRegistration, type Decision } from '../common/protocol/messages.js';
import { agentUser } from '../common/acl.js';
import { MAX_HOSTS, liveFleetAddresses, readFleet } from '../common/hosts.js';
import { connectRedis } from '../common/redis.js';
import { componentLogger } from '../common/log.js';
import { ClusterScripts, type DecisionSigner } from '../common/scripts/index.js';
import { loadSigningKey } from '../common/config/keys.js';
import { signDecision, signDecisions } from '../common/protocol/signing.js';
import { ConfigError } from '../common/errors.js';
import { FleetAddressSet } from '../common/policy/whitelist.js';
import { Aggregator } from './aggregator.js';
import { Expirer } from './expirer.js';
import { RedisClock } from './redis-clock.js';
import { loadPolicy } from './policy.js';
import { startOperations } from './operations.js';

export type { CoordinatorRegistration } from '../common/protocol/messages.js';

/** A running coordinator. */
export interface CoordinatorHandle {
  readonly aggregator: Aggregator;
  /** Re-read the jails from the configuration directory and apply their policy (SIGHUP, `fleetban reload`). */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** How often a coordinator refreshes its registration and the fleet's addresses (ignoreself). */
const REFRESH_MS = 5000;

/** A ban parked for its signature this long was left by a coordinator that died before publishing it. */
const PARKED_GRACE_MS = 10_000;

/**
 * The signer of this coordinator's decisions, from `[coordinator] signing_key`.
 * @throws ConfigError naming the setting when the key does not load
 */
export function coordinatorSigner(config: FleetbanConfig): DecisionSigner | undefined {
  const file = config.coordinator.signingKey;
  if (!file) return undefined;
  const where = config.sources['coordinator.signing_key'];
  try {
    const key = loadSigningKey(file);
    return Object.assign((d: Decision) => signDecision(key, config.cluster, d), { batch: (ds: readonly Decision[]) => signDecisions(key, config.cluster, ds) });
  } catch (err) {
    throw new ConfigError((err as Error).message, where?.file, where?.line, 'signing_key');
  }
}

/**
 * Start a coordinator: count failures from the whole fleet, decide bans, expire them.
 * @param dir configuration directory
 * @param override settings that replace the file's (used by `fleetban up` for its private Redis)
 */
export async function startCoordinator(dir: string, override?: Partial<FleetbanConfig>): Promise<CoordinatorHandle> {
  const log = componentLogger('coordinator');
  const config = { ...loadFleetbanConfig(dir), ...override };
  let loaded = loadJails(dir);
  for (const w of loaded.warnings) log.warn(w);
  const keys = clusterKeys(config.cluster);
  const signer = coordinatorSigner(config);
  if (!signer) log.warn('no [coordinator] signing_key: decisions go out unsigned, and agents that trust keys refuse them');
  const redisSettings = roleRedis(config, 'coordinator');
  const reader: Redis = connectRedis(redisSettings, 'coordinator-reader', log);
  const writer: Redis = connectRedis(redisSettings, 'coordinator', log);
  const subscriber: Redis = connectRedis(redisSettings, 'coordinator-control', log);
  const maxlen = config.coordinator.streamMaxlen;
  const fleet = new FleetAddressSet();
  const agentPrefix = agentUser('');
  let aclReadable = true;
  /**
   * Register the hosts that have an agent user in the ACL (an admin made them), so that a host
   * set up from an ACL file needs no separate registration. Without the right (no ACL in use, or
   * an older ACL), the registry is what admins and agents wrote.
   */
  const registerFromAcl = async (): Promise<void> => {
    if (!aclReadable) return;
    let users: string[];
    try {
      users = (await writer.call('ACL', 'USERS')) as string[];
    } catch (err) {
      // Only a refusal is final; a lost connection is retried with the next refresh.
      if (!/NOPERM|unknown command/i.test((err as Error).message)) throw err;
      aclReadable = false;
      log.info({ err: (err as Error).message }, 'cannot list ACL users; hosts are registered by fleetban acl --apply (or by themselves without an ACL)');
      return;
    }
    const hosts = users.filter((u) => u.startsWith(agentPrefix)).map((u) => u.slice(agentPrefix.length)).filter((h) => HOST_NAME_RE.test(h)).slice(0, MAX_HOSTS);
    if (hosts.length > 0) await writer.sadd(keys.registry, ...hosts);
  };
  let warnedInvalid = new Set<string>();
  const refreshFleet = async (): Promise<void> => {
    await registerFromAcl();
    const view = await readFleet(writer, keys);
    for (const bad of view.invalid) {
      if (!warnedInvalid.has(bad.host)) log.warn({ host: bad.host, reason: bad.reason }, 'invalid heartbeat ignored');
    }
    warnedInvalid = new Set(view.invalid.map((b) => b.host));
    fleet.update(liveFleetAddresses(view));
    await aggregator?.setHosts(view.registered);
  };
  // Read by refreshFleet, which runs once before the aggregator exists.
  // eslint-disable-next-line prefer-const
  let aggregator: Aggregator | undefined;
  await refreshFleet().catch((err: Error) => log.warn({ err: err.message }, 'reading the fleet failed; retrying'));
  let policy = await loadPolicy(loaded.jails, fleet, log);
  const clock = new RedisClock(writer, log);
  await clock.start();
  aggregator = new Aggregator({
    redis: reader, writer, keys, consumer: config.coordinator.consumer, policy, log: componentLogger('coordinator.aggregator'),
    batch: config.coordinator.batch, claimIdleMs: config.coordinator.claimIdle * 1000, decisionsMaxlen: maxlen,
    clock: () => clock.now(), historyRetentionMs: config.coordinator.dbpurgeage * 1000,
    waitForReplica: config.redis.url.startsWith('sentinel://'), hostQuota: config.coordinator.hostQuota,
    hostQuotaBytes: config.coordinator.hostQuotaMb * 1024 * 1024, signer,
  });
  await refreshFleet().catch((err: Error) => log.warn({ err: err.message }, 'reading the fleet failed; retrying'));
  const scripts = new ClusterScripts(writer, keys, maxlen, undefined, signer);
  const expirer = new Expirer(scripts, config.coordinator.expireInterval * 1000,
    componentLogger('coordinator.expirer'), () => clock.now());

  let reloadedAt = clock.now();
  let reloadError: string | undefined;
  const register = async (): Promise<void> => {
    const reg: CoordinatorRegistration = {
      consumer: config.coordinator.consumer, host: hostname(), pid: process.pid, seenAt: clock.now(),
      policy: policy.digest, jails: loaded.jails.map((j) => j.name), reloadedAt, ...(reloadError ? { reloadError } : {}),
      version: FLEETBAN_VERSION, protocol: PROTOCOL_VERSION,
    };
    await writer.hset(keys.coordinators, reg.consumer, JSON.stringify(reg));
  };
  const reload = async (): Promise<void> => {
    try {
      const next = loadJails(dir);
      for (const w of next.warnings) log.warn(w);
      const nextPolicy = await loadPolicy(next.jails, fleet, log);
      loaded = next;
      policy = nextPolicy;
      started.setPolicy(policy);
      operations.reload();
      reloadError = undefined;
      log.info({ jails: next.jails.map((j) => j.name), policy: policy.digest }, 'policy reloaded');
    } catch (err) {
      // A broken edit must not take down a running coordinator: keep the old policy, report why.
      reloadError = (err as Error).message;
      log.error({ err: reloadError }, 'reload failed; keeping the previous policy');
    }
    reloadedAt = clock.now();
    await register().catch(() => undefined);
  };

  const started: Aggregator = aggregator;
  const operations = await startOperations(config, keys, writer, started, () => loaded.jails, () => clock.now());
  await started.start();
  expirer.start();
  await register().catch(() => undefined);
  const timer = setInterval(() => {
    refreshFleet().catch(() => undefined);
    register().catch(() => undefined);
    scripts.publishParked({ olderThan: clock.now() - PARKED_GRACE_MS }).then(
      (n) => n > 0 && log.warn({ count: n }, 'published bans another coordinator decided but did not sign (it stopped in between)'),
      (err: Error) => log.warn({ err: err.message }, 'publishing parked bans failed; retrying'),
    );
  }, REFRESH_MS);
  timer.unref();
  subscriber.on('message', (_channel: string, message: string) => {
    if (message === 'reload') void reload();
    // Hosts were registered (fleetban acl --apply): follow their streams now, not at the next refresh.
    if (message === HOSTS_CHANGED) refreshFleet().catch((err: Error) => log.warn({ err: err.message }, 'reading the fleet failed; retrying'));
  });
  await subscriber.subscribe(keys.control);
  log.info({ cluster: config.cluster, consumer: config.coordinator.consumer, jails: loaded.jails.map((j) => j.name), policy: policy.digest }, 'coordinator started');

  return {
    aggregator: started,
    reload,
    async stop() {
      clearInterval(timer);
      expirer.stop();
      clock.stop();
      await started.stop();
      await operations.stop();
      subscriber.disconnect();
      reader.disconnect();
      // Only with Redis there: commands to a Redis that is gone would wait for it for ever.
      if (writer.status === 'ready') {
        await writer.hdel(keys.coordinators, config.coordinator.consumer).catch(() => undefined);
        await writer.quit().catch(() => writer.disconnect());
      } else {
        writer.disconnect();
      }
      log.info('coordinator stopped');
    },
  };
}
