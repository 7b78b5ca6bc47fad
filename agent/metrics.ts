import type { Redis } from 'ioredis';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ClusterKeys } from '../common/protocol/keys.js';
import { newRegistry, startMetricsServer, type MetricsServer } from '../common/metrics.js';
import { componentLogger } from '../common/log.js';
import { FLEETBAN_VERSION } from '../common/protocol/version.js';
import type { LineChunk } from './sources/source.js';
import type { Enforcer } from './enforcer.js';
import type { Reporter } from './reporter.js';
import type { DecisionFollower } from './decisions.js';

/** What the agent's metrics read from. */
export interface AgentParts {
  readonly enforcer: Enforcer;
  readonly reporter: Reporter;
  readonly follower: DecisionFollower;
  readonly keys: ClusterKeys;
  /** A non-blocking connection, for the stream's newest id at scrape time. */
  readonly commands: Redis;
  /** Every connection of the agent, whose reconnects are counted. */
  readonly connections: readonly Redis[];
}

/** A counter that follows a running total kept elsewhere (the component's own stats). */
function totalCounter(registry: Registry, name: string, help: string, total: () => number): void {
  let seen = 0;
  new Counter({
    name, help, registers: [registry],
    collect() {
      const t = total();
      if (t > seen) this.inc(t - seen);
      seen = t;
    },
  });
}

/** Milliseconds of a stream id `<ms>-<seq>`. */
const idMs = (id: string): number => Number(id.slice(0, id.indexOf('-')));

/**
 * The agent's Prometheus metrics. Lines are counted per delivered batch (one call per batch, not
 * per line); everything the components already keep (reports, drops, bans held or refused) is read
 * at scrape time.
 */
export class AgentMetrics {
  readonly registry: Registry = newRegistry();
  private readonly read = new Counter({ name: 'fleetban_agent_lines_read_total', help: 'Log lines read, by jail.', labelNames: ['jail'], registers: [this.registry] });
  private readonly matched = new Counter({ name: 'fleetban_agent_lines_matched_total', help: 'Log lines that matched a failregex (failures found), by jail.', labelNames: ['jail'], registers: [this.registry] });
  private readonly perJail = new Map<string, { read: Counter.Internal; matched: Counter.Internal }>();

  constructor(parts: AgentParts) {
    const reg = this.registry;
    const { enforcer, reporter, follower } = parts;
    totalCounter(reg, 'fleetban_agent_failures_reported_total', 'Failures written to the cluster stream.', () => reporter.stats.reported);
    totalCounter(reg, 'fleetban_agent_failures_dropped_total', 'Failures dropped because the buffer was full while Redis was away.', () => reporter.stats.dropped);
    totalCounter(reg, 'fleetban_agent_bans_refused_total', 'Bans the firewall backend refused (host cap reached, unusable address).', () => enforcer.refused);
    new Gauge({ name: 'fleetban_agent_reports_buffered', help: 'Failures waiting to be sent (memory and spool).', registers: [reg], collect() { this.set(reporter.pending); } });
    new Gauge({ name: 'fleetban_agent_bans_held', help: 'Bans this host enforces now.', registers: [reg], collect() { this.set(enforcer.size); } });
    new Gauge({
      name: 'fleetban_agent_info', help: 'Always 1; the labels say which backend and release run.', labelNames: ['backend', 'version'], registers: [reg],
      collect() { this.reset(); this.set({ backend: enforcer.backendName, version: FLEETBAN_VERSION }, 1); },
    });
    new Gauge({
      name: 'fleetban_agent_decision_lag_seconds',
      help: 'How far the newest decision applied is behind the newest decision in the stream, in stream time (0: caught up).',
      registers: [reg],
      async collect() {
        // Both ids are stamped by Redis, so host clocks do not enter into it.
        const newest = await parts.commands.xrevrange(parts.keys.decisions, '+', '-', 'COUNT', 1).catch(() => []);
        const last = newest[0]?.[0];
        const lag = last && follower.lastId !== '0-0' ? Math.max(0, idMs(last) - idMs(follower.lastId)) / 1000 : 0;
        this.set(last && follower.lastId === '0-0' ? Number.NaN : lag);
      },
    });
    const applied = new Counter({ name: 'fleetban_agent_decisions_applied_total', help: 'Decisions applied to the firewall, by backend.', labelNames: ['backend'], registers: [reg] });
    const latency = new Histogram({
      name: 'fleetban_agent_apply_duration_seconds', help: 'Time to apply one batch of decisions to the firewall (waiting for the backend included), by backend.',
      labelNames: ['backend'], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [reg],
    });
    enforcer.onApplied = (decisions, seconds) => {
      const backend = enforcer.backendName;
      applied.inc({ backend }, decisions.length);
      latency.observe({ backend }, seconds);
    };
    const reconnects = new Counter({ name: 'fleetban_agent_redis_reconnects_total', help: 'Reconnections to Redis after a lost connection.', registers: [reg] });
    for (const c of parts.connections) {
      let ready = c.status === 'ready';
      c.on('ready', () => {
        if (ready) reconnects.inc();
        ready = true;
      });
    }
  }

  /**
   * Count one delivered batch of a jail.
   * @param lines what the source delivered (lines, or a chunk of them)
   * @param found failures the filter found in it
   */
  lines(jail: string, lines: readonly string[] | LineChunk, found: number): void {
    let c = this.perJail.get(jail);
    if (!c) this.perJail.set(jail, (c = { read: this.read.labels(jail), matched: this.matched.labels(jail) }));
    let n: number;
    if (Array.isArray(lines)) n = (lines as readonly string[]).length;
    else {
      const text = (lines as LineChunk).text;
      n = text.length > 0 ? 1 : 0;
      for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
    }
    c.read.inc(n);
    if (found > 0) c.matched.inc(found);
  }
}

/**
 * Serve the agent's metrics when `[agent] metrics` is set.
 * @returns the metrics and their server, or undefined when metrics are off
 */
export async function startAgentMetrics(listen: { host: string; port: number } | undefined, parts: AgentParts): Promise<{ metrics: AgentMetrics; server: MetricsServer } | undefined> {
  if (!listen) return undefined;
  const metrics = new AgentMetrics(parts);
  return { metrics, server: await startMetricsServer(listen, metrics.registry, componentLogger('agent.metrics')) };
}
