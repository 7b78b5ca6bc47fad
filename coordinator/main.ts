import type { Redis } from 'ioredis';
import { loadFleetbanConfig, type FleetbanConfig } from '../common/config/fleetban-config.js';
import { loadJails } from '../common/config/jails.js';
import { clusterKeys } from '../common/protocol/keys.js';
import { connectRedis } from '../common/redis.js';
import { componentLogger } from '../common/log.js';
import { ClusterScripts } from '../common/scripts/index.js';
import { Aggregator, policiesFromJails } from './aggregator.js';
import { Expirer } from './expirer.js';
import { RedisClock } from './redis-clock.js';

/** A running coordinator. */
export interface CoordinatorHandle {
  readonly aggregator: Aggregator;
  /** Re-read jail policies from the configuration directory (SIGHUP). */
  reload(): void;
  stop(): Promise<void>;
}

/**
 * Start a coordinator: count failures from the whole fleet, decide bans, expire them.
 * @param dir configuration directory
 * @param override settings that replace the file's (used by `fleetban up` for its private Redis)
 */
export async function startCoordinator(dir: string, override?: Partial<FleetbanConfig>): Promise<CoordinatorHandle> {
  const log = componentLogger('coordinator');
  const config = { ...loadFleetbanConfig(dir), ...override };
  const loaded = loadJails(dir);
  for (const w of loaded.warnings) log.warn(w);
  const keys = clusterKeys(config.cluster);
  const reader: Redis = connectRedis(config.redis, 'coordinator-reader', log);
  const writer: Redis = connectRedis(config.redis, 'coordinator', log);
  const maxlen = config.coordinator.streamMaxlen;
  const clock = new RedisClock(writer, log);
  await clock.start();
  const aggregator = new Aggregator(
    reader, keys, config.coordinator.consumer, policiesFromJails(loaded.jails), componentLogger('coordinator.aggregator'),
    config.coordinator.batch, config.coordinator.claimIdle * 1000, maxlen, () => clock.now(),
  );
  const expirer = new Expirer(new ClusterScripts(writer, keys, maxlen), config.coordinator.expireInterval * 1000,
    componentLogger('coordinator.expirer'), () => clock.now());
  await aggregator.start();
  expirer.start();
  log.info({ cluster: config.cluster, consumer: config.coordinator.consumer, jails: loaded.jails.map((j) => j.name) }, 'coordinator started');

  return {
    aggregator,
    reload() {
      try {
        const next = loadJails(dir);
        for (const w of next.warnings) log.warn(w);
        aggregator.setPolicies(policiesFromJails(next.jails));
        log.info({ jails: next.jails.map((j) => j.name) }, 'jail policies reloaded');
      } catch (err) {
        // A broken edit must not take down a running coordinator: keep the old policy.
        log.error({ err: (err as Error).message }, 'reload failed; keeping the previous policy');
      }
    },
    async stop() {
      expirer.stop();
      clock.stop();
      await aggregator.stop();
      reader.disconnect();
      await writer.quit().catch(() => writer.disconnect());
      log.info('coordinator stopped');
    },
  };
}
