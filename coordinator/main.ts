import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { loadFleetbanConfig, type FleetbanConfig } from '../common/config/fleetban-config.js';
import { loadJails } from '../common/config/jails.js';
import { clusterKeys } from '../common/protocol/keys.js';
import { decodeHeartbeat } from '../common/protocol/messages.js';
import { connectRedis } from '../common/redis.js';
import { componentLogger } from '../common/log.js';
import { ClusterScripts } from '../common/scripts/index.js';
import { FleetAddressSet } from '../common/policy/whitelist.js';
import { Aggregator } from './aggregator.js';
import { Expirer } from './expirer.js';
import { RedisClock } from './redis-clock.js';
import { loadPolicy } from './policy.js';
import { startOperations } from './operations.js';

/** A coordinator's entry in the coordinators hash, read by `fleetban reload` and `fleetban hosts`. */
export interface CoordinatorRegistration {
  consumer: string;
  host: string;
  pid: number;
  seenAt: number;
  policy: string;
  jails: string[];
  reloadedAt: number;
  reloadError?: string;
}

/** A running coordinator. */
export interface CoordinatorHandle {
  readonly aggregator: Aggregator;
  /** Re-read the jails from the configuration directory and apply their policy (SIGHUP, `fleetban reload`). */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** How often a coordinator refreshes its registration and the fleet's addresses (ignoreself). */
const REFRESH_MS = 5000;

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
  const reader: Redis = connectRedis(config.redis, 'coordinator-reader', log);
  const writer: Redis = connectRedis(config.redis, 'coordinator', log);
  const subscriber: Redis = connectRedis(config.redis, 'coordinator-control', log);
  const maxlen = config.coordinator.streamMaxlen;
  const fleet = new FleetAddressSet();
  const refreshFleet = async (): Promise<void> => {
    const hosts = await writer.hgetall(keys.hosts);
    const addrs: string[] = [];
    for (const json of Object.values(hosts)) {
      const hb = decodeHeartbeat(json);
      if (hb.ok && Array.isArray(hb.value.addrs)) addrs.push(...hb.value.addrs);
    }
    fleet.update(addrs);
  };
  await refreshFleet().catch(() => undefined);
  let policy = await loadPolicy(loaded.jails, fleet, log);
  const clock = new RedisClock(writer, log);
  await clock.start();
  const aggregator = new Aggregator(
    reader, writer, keys, config.coordinator.consumer, policy, componentLogger('coordinator.aggregator'),
    config.coordinator.batch, config.coordinator.claimIdle * 1000, maxlen, () => clock.now(), config.coordinator.dbpurgeage * 1000,
    config.redis.url.startsWith('sentinel://'),
  );
  const expirer = new Expirer(new ClusterScripts(writer, keys, maxlen), config.coordinator.expireInterval * 1000,
    componentLogger('coordinator.expirer'), () => clock.now());

  let reloadedAt = Date.now();
  let reloadError: string | undefined;
  const register = async (): Promise<void> => {
    const reg: CoordinatorRegistration = {
      consumer: config.coordinator.consumer, host: hostname(), pid: process.pid, seenAt: Date.now(),
      policy: policy.digest, jails: loaded.jails.map((j) => j.name), reloadedAt, ...(reloadError ? { reloadError } : {}),
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
      aggregator.setPolicy(policy);
      operations.reload();
      reloadError = undefined;
      log.info({ jails: next.jails.map((j) => j.name), policy: policy.digest }, 'policy reloaded');
    } catch (err) {
      // A broken edit must not take down a running coordinator: keep the old policy, report why.
      reloadError = (err as Error).message;
      log.error({ err: reloadError }, 'reload failed; keeping the previous policy');
    }
    reloadedAt = Date.now();
    await register().catch(() => undefined);
  };

  const operations = await startOperations(config, keys, writer, aggregator, () => loaded.jails, () => clock.now());
  await aggregator.start();
  expirer.start();
  await register().catch(() => undefined);
  const timer = setInterval(() => {
    refreshFleet().catch(() => undefined);
    register().catch(() => undefined);
  }, REFRESH_MS);
  timer.unref();
  subscriber.on('message', (_channel: string, message: string) => {
    if (message === 'reload') void reload();
  });
  await subscriber.subscribe(keys.control);
  log.info({ cluster: config.cluster, consumer: config.coordinator.consumer, jails: loaded.jails.map((j) => j.name), policy: policy.digest }, 'coordinator started');

  return {
    aggregator,
    reload,
    async stop() {
      clearInterval(timer);
      expirer.stop();
      clock.stop();
      await aggregator.stop();
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
