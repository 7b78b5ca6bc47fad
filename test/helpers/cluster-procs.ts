import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { Redis } from 'ioredis';
import { writeConfig, type Daemon } from './spawn.js';
import { unsignedConfig } from './keys.js';
import { addIdentityLines, type TestIdentity } from './redis-server.js';
import { COORDINATOR_GROUP, type ClusterKeys } from '../../common/protocol/keys.js';
import { HOSTS_CHANGED, decodeReport, encodeReport, splitIntoReports, type FailureEvent } from '../../common/protocol/messages.js';

/** What a test file starts, stopped and removed after its tests (see testProcesses()). */
export interface TestProcesses {
  /** Scratch directory for configs, logs and state. */
  readonly work: string;
  /** Daemons to stop (push each one started). */
  readonly daemons: Daemon[];
  /** Servers to stop after the daemons: a TestRedis, a Sentinel set-up. */
  readonly servers: Array<{ stop(): Promise<void> }>;
}

/**
 * The cleanup every process test needs, registered once: after the file's tests, daemons are
 * stopped (with `signal`), then servers, then the scratch directory is removed.
 * @param name part of the scratch directory's name
 */
export function testProcesses(name: string, signal?: NodeJS.Signals): TestProcesses {
  const t: TestProcesses = { work: mkdtempSync(join(tmpdir(), `fleetban-${name}-`)), daemons: [], servers: [] };
  after(async () => {
    await Promise.all(t.daemons.map((d) => d.stop(signal)));
    for (const s of t.servers) await s.stop();
    rmSync(t.work, { recursive: true, force: true });
  });
  return t;
}

/** What one host's configuration directory needs in the reliability tests. */
export interface HostConfig {
  cluster: string;
  url: string;
  host: string;
  /** Parent of the host's state_dir. */
  work: string;
  /** The sshd jail's log; a host without one follows a file nobody writes. */
  logpath?: string;
  maxretry?: number;
  findtime?: string;
  bantime?: string;
  claimIdle?: string;
  banaction?: string;
  /** Extra lines for [agent]. */
  agent?: string;
  /** False: no keys, unsigned decisions accepted (benchmarks compare both); default signed with the test key. */
  signing?: boolean;
  /** Extra lines for the [sshd] jail, e.g. an `action = …`. */
  jail?: string;
  /** Per-role logins for a server the harness did not provision itself (Sentinel data nodes). */
  identities?: Partial<Record<'agent' | 'coordinator' | 'cli', TestIdentity>>;
}

/** @returns a configuration directory with fleetban.conf and a one-jail (sshd) jail.conf */
export function hostConfig(c: HostConfig): string {
  return writeConfig({
    'fleetban.conf': (c.identities ? (text: string) => addIdentityLines(text, c.identities!) : (text: string) => text)([
      '[cluster]', `name = ${c.cluster}`,
      '[redis]', `url = ${c.url}`,
      '[agent]', `host = ${c.host}`, `banaction = ${c.banaction ?? 'dry-run'}`, `state_dir = ${join(c.work, c.host)}`, 'heartbeat = 1s',
      ...(c.agent ? [c.agent] : []),
      '[coordinator]', `consumer = ${c.host}`, 'expire_interval = 1s', `claim_idle = ${c.claimIdle ?? '30s'}`,
    ].join('\n') + '\n'),
    'jail.conf': [
      '[sshd]', 'enabled = true', 'filter = sshd', 'port = ssh', `logpath = ${c.logpath ?? join(c.work, 'nobody.log')}`,
      `maxretry = ${c.maxretry ?? 5}`, `findtime = ${c.findtime ?? '10m'}`, `bantime = ${c.bantime ?? '1h'}`,
      ...(c.jail ? [c.jail] : []),
    ].join('\n') + '\n',
    ...(c.signing === false ? { 'fleetban.local': unsignedConfig() } : {}),
  });
}

/** Predicate of the dry-run backend's ban line for `addr`. */
export const isBan = (addr: string) => (l: Record<string, unknown>): boolean => l.msg === 'dry-run ban' && l.addr === addr;
/** Predicate of the dry-run backend's unban line for `addr`. */
export const isUnban = (addr: string) => (l: Record<string, unknown>): boolean => l.msg === 'dry-run unban' && l.addr === addr;

/**
 * Append failures to the hosts' streams exactly as agent/reporter.ts does (same encoding, MAXLEN ~,
 * pipelined batches), standing in for agents when a test needs tens of thousands of events; the
 * hosts are registered as `fleetban acl --apply` does.
 */
export async function xaddFailures(redis: Redis, keys: ClusterKeys, events: readonly Omit<FailureEvent, 'sent'>[], batch = 500): Promise<void> {
  const hosts = [...new Set(events.map((e) => e.host))];
  if (hosts.length > 0 && (await redis.sadd(keys.registry, ...hosts)) > 0) await redis.publish(keys.control, HOSTS_CHANGED);
  for (let i = 0; i < events.length; i += batch) {
    const p = redis.pipeline();
    const sent = Date.now();
    for (const r of splitIntoReports(events.slice(i, i + batch))) p.xadd(keys.host(r[0]!.host).failures, 'MAXLEN', '~', 1_000_000, '*', ...encodeReport(r[0]!.host, sent, r));
    const res = (await p.exec()) ?? [];
    const err = res.find(([e]) => e);
    if (err) throw err[0];
  }
}

/** @returns the number of failures in the registered hosts' failure streams (their entries are reports of several) */
export async function failuresInStream(redis: Redis, keys: ClusterKeys): Promise<number> {
  let n = 0;
  for (const host of await redis.smembers(keys.registry)) {
    for (const [, fields] of await redis.xrange(keys.host(host).failures, '-', '+')) {
      const d = decodeReport(fields, host);
      if (d.ok) n += d.value.failures.length;
    }
  }
  return n;
}

/**
 * @param consumer only this coordinator's pending entries (default: every coordinator's)
 * @returns the entries read from the registered hosts' failure streams and not yet acknowledged
 */
export async function pendingReports(redis: Redis, keys: ClusterKeys, consumer?: string): Promise<number> {
  let n = 0;
  for (const host of await redis.smembers(keys.registry)) {
    const [count, , , consumers] = (await redis.xpending(keys.host(host).failures, COORDINATOR_GROUP).catch(() => [0, null, null, null])) as [number, string, string, Array<[string, string]> | null];
    n += consumer === undefined ? Number(count) : Number(consumers?.find(([name]) => name === consumer)?.[1] ?? 0);
  }
  return n;
}

/** @returns the entries of the registered hosts' failure streams */
export async function streamLength(redis: Redis, keys: ClusterKeys): Promise<number> {
  let n = 0;
  for (const host of await redis.smembers(keys.registry)) n += await redis.xlen(keys.host(host).failures);
  return n;
}

/** @returns a counter of the stats hash, 0 when absent */
export async function stat(redis: Redis, keys: ClusterKeys, field: string): Promise<number> {
  return Number((await redis.hget(keys.stats, field)) ?? 0);
}

export { waitUntil } from './wait.js';

/** @returns the ban decisions in the decisions stream, as `jail|addr` strings in stream order */
export async function banDecisions(redis: Redis, keys: ClusterKeys): Promise<string[]> {
  const out: string[] = [];
  let start = '-';
  for (;;) {
    const page = (await redis.xrange(keys.decisions, start, '+', 'COUNT', 1000)) as Array<[string, string[]]>;
    for (const [, f] of page) {
      const m = new Map<string, string>();
      for (let i = 0; i + 1 < f.length; i += 2) m.set(f[i]!, f[i + 1]!);
      if (m.get('op') === 'ban') out.push(`${m.get('jail')}|${m.get('addr')}`);
    }
    if (page.length < 1000) return out;
    start = `(${page[page.length - 1]![0]}`;
  }
}
