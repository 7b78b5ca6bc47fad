import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { roleRedis, type FleetbanConfig } from '../common/config/fleetban-config.js';
import type { JailConfig } from '../common/config/jails.js';
import { notificationActions, type NotifyAction } from '../common/config/notify-actions.js';
import type { ClusterKeys } from '../common/protocol/keys.js';
import { connectRedis } from '../common/redis.js';
import { componentLogger } from '../common/log.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics.js';
import type { Aggregator } from './aggregator.js';
import { CoordinatorMetrics } from './metrics.js';
import { MatchRecorder, matchBounds, type MatchBounds } from './notify/matches.js';
import { Notifier } from './notify/notifier.js';

/** The coordinator's notifications and metrics, started beside its counting. */
export interface Operations {
  /** Take the jails' notification actions again (after a policy reload). */
  reload(): void;
  stop(): Promise<void>;
  readonly notifier: Notifier;
  readonly metrics: MetricsServer | undefined;
}

/**
 * Start notifications (matched-line record, notifier) and, when configured, the metrics endpoint,
 * and hook them into the aggregator.
 * @param jails the jails of the current policy (changes on reload)
 */
export async function startOperations(
  config: FleetbanConfig, keys: ClusterKeys, writer: Redis, aggregator: Aggregator, jails: () => readonly JailConfig[], clock: () => number,
): Promise<Operations> {
  const log = componentLogger('coordinator.notify');
  const recorder = new MatchRecorder(writer, keys, log, clock);
  let actions = new Map<string, NotifyAction[]>();
  const reload = (): void => {
    const next = new Map<string, NotifyAction[]>();
    const bounds = new Map<string, MatchBounds>();
    for (const j of jails()) {
      // Validated when the jails were loaded; a jail whose actions fail here sends nothing.
      let list: NotifyAction[] = [];
      try {
        list = notificationActions(j.name, j.actions);
      } catch (err) {
        log.error({ jail: j.name, err: (err as Error).message }, 'notification actions ignored');
      }
      if (list.length === 0) continue;
      next.set(j.name, list);
      const lines = Math.max(0, ...list.map((a) => (a.kind === 'mail' ? (a.lines ? a.grepmax : 0) : a.lines)));
      bounds.set(j.name, matchBounds(j.maxretry, lines, j.findtime * 1000));
    }
    actions = next;
    recorder.setJails(bounds);
    if (next.size > 0) log.info({ jails: Object.fromEntries([...next].map(([j, l]) => [j, l.map((a) => a.action)])) }, 'notifications configured');
  };
  reload();

  const reader = connectRedis(roleRedis(config, 'coordinator'), 'coordinator-notifier', log);
  const notifier = new Notifier(reader, writer, keys, config.coordinator.consumer, (jail) => actions.get(jail) ?? [], log, {
    cluster: config.cluster, from: hostname(), claimIdleMs: config.coordinator.claimIdle * 1000,
  });
  let metrics: CoordinatorMetrics | undefined;
  let server: MetricsServer | undefined;
  if (config.coordinator.metrics) {
    metrics = new CoordinatorMetrics(writer, keys, () => notifier.queued);
    server = await startMetricsServer(config.coordinator.metrics, metrics.registry, componentLogger('coordinator.metrics'));
    notifier.onResult = (jail, action, result) => metrics!.notified(jail, action, result);
  }
  aggregator.observer = {
    before: (failures) => recorder.record(failures),
    after: (failures, bans, seconds) => metrics?.after(failures, bans, seconds),
  };
  await notifier.start();
  return {
    reload,
    notifier,
    metrics: server,
    async stop() {
      await notifier.stop();
      reader.disconnect();
      await server?.close();
    },
  };
}
