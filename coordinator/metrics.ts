import type { Redis } from 'ioredis';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { COORDINATOR_GROUP, NOTIFIER_GROUP, type ClusterKeys } from '../common/protocol/keys.js';
import { newRegistry } from '../common/metrics.js';
import type { CountedFailure } from '../common/scripts/index.js';
import type { CountObserver } from './count-observer.js';
import type { NotifyResult } from './notify/notifier.js';

/** A consumer group's pending entries and lag (entries not yet delivered), from XINFO GROUPS. */
async function groupState(redis: Redis, stream: string, group: string): Promise<{ pending: number; lag: number } | undefined> {
  let groups: unknown[][];
  try {
    groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  } catch {
    return undefined; // no stream yet
  }
  for (const g of groups) {
    const field = (name: string): unknown => g[g.indexOf(name) + 1];
    if (field('name') !== group) continue;
    const lag = field('lag');
    return { pending: Number(field('pending')), lag: lag === null || lag === undefined ? Number.NaN : Number(lag) };
  }
  return undefined;
}

/**
 * The coordinator's Prometheus metrics. Counts come from the aggregator once per script call
 * (a per-jail tally of up to 2,000 failures), stream figures are read from Redis at scrape time.
 */
export class CoordinatorMetrics implements CountObserver {
  readonly registry: Registry = newRegistry();
  private readonly failures = new Counter({ name: 'fleetban_coordinator_failures_counted_total', help: 'Failures handed to the counting script, by jail.', labelNames: ['jail'], registers: [this.registry] });
  private readonly bans = new Counter({ name: 'fleetban_coordinator_bans_decided_total', help: 'Bans decided by counting, by jail.', labelNames: ['jail'], registers: [this.registry] });
  private readonly script = new Histogram({
    name: 'fleetban_coordinator_script_duration_seconds', help: 'Duration of one counting script call (round trip), seconds.',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1], registers: [this.registry],
  });
  private readonly notifications = new Counter({
    name: 'fleetban_notifications_total', help: 'Notification attempts by jail, action and result (sent, failed: retried later, dropped).',
    labelNames: ['jail', 'action', 'result'], registers: [this.registry],
  });

  /**
   * @param redis a non-blocking connection, for the stream figures
   * @param queued bans waiting for their notifications on this coordinator
   */
  constructor(redis: Redis, keys: ClusterKeys, queued: () => number) {
    const reg = [this.registry];
    // One read of every registered host's stream per scrape, shared by the two gauges that need it.
    let last: Promise<{ lag: number; pending: number }> | undefined;
    const hostStreams = (): Promise<{ lag: number; pending: number }> => {
      last ??= (async () => {
        const hosts = await redis.smembers(keys.registry);
        const states = await Promise.all(hosts.map((h) => groupState(redis, keys.host(h).failures, COORDINATOR_GROUP)));
        let lag = 0;
        let pending = 0;
        for (const st of states) {
          if (!st) continue;
          if (Number.isFinite(st.lag)) lag += st.lag;
          pending += st.pending;
        }
        return { lag, pending };
      })().finally(() => setTimeout(() => (last = undefined), 1000).unref());
      return last;
    };
    new Gauge({
      name: 'fleetban_coordinator_stream_backlog', help: 'Failure reports in the hosts\' streams not yet read by any coordinator (the group lag, summed).', registers: reg,
      async collect() {
        this.set((await hostStreams()).lag);
      },
    });
    new Gauge({
      name: 'fleetban_coordinator_stream_pending', help: 'Failure reports read by a coordinator and not yet counted (pending in the group, summed over hosts).', registers: reg,
      async collect() {
        this.set((await hostStreams()).pending);
      },
    });
    new Gauge({
      name: 'fleetban_notifications_pending', help: 'Decisions read by the notifiers group and not yet acknowledged (notifications waiting or retrying, cluster-wide).', registers: reg,
      async collect() {
        this.set((await groupState(redis, keys.decisions, NOTIFIER_GROUP))?.pending ?? 0);
      },
    });
    new Gauge({
      name: 'fleetban_notifications_queued', help: 'Bans whose notifications this coordinator is sending or retrying.', registers: reg,
      collect() {
        this.set(queued());
      },
    });
  }

  before(): void {
    // counted after the call, with its outcome
  }

  after(failures: readonly CountedFailure[], bans: ReadonlyArray<{ jail: string }>, seconds: number): void {
    this.script.observe(seconds);
    // One tally per call: failures of a batch are grouped by jail, runs of one jail are common.
    let jail = '';
    let n = 0;
    for (const f of failures) {
      if (f.jail !== jail) {
        if (n > 0) this.failures.inc({ jail }, n);
        jail = f.jail;
        n = 0;
      }
      n++;
    }
    if (n > 0) this.failures.inc({ jail }, n);
    for (const b of bans) this.bans.inc({ jail: b.jail });
  }

  /** @see Notifier.onResult */
  notified(jail: string, action: string, result: NotifyResult): void {
    this.notifications.inc({ jail, action, result });
  }
}
