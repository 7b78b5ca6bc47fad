import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, randomCluster, freePort, type TestRedis } from '../helpers/redis-server.js';
import { startCoordinatorAndAgent, writeConfig, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { waitUntil } from '../helpers/wait.js';
import { parseListen } from '../../common/metrics.js';
import { loadFleetbanConfig } from '../../common/config/fleetban-config.js';

/**
 * Prometheus metrics of a real agent and coordinator (processes, dry-run firewall, real
 * redis-server), scraped over HTTP with node's fetch: the numbers move with the events.
 */
let redis: TestRedis;
let agent: Daemon;
let coordinator: Daemon;
const cluster = randomCluster();
const work = mkdtempSync(join(tmpdir(), 'fleetban-metrics-'));
const logFile = join(work, 'auth.log');
let agentUrl = '';
let coordUrl = '';

/** Scrape and parse the text format into `name{labels}` -> value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const value = async (url: string, key: string): Promise<number> => (await scrape(url)).get(key) ?? Number.NaN;

before(async () => {
  redis = await startRedis();
  writeFileSync(logFile, '');
  const [ap, cp] = [await freePort(), await freePort()];
  agentUrl = `http://127.0.0.1:${ap}/metrics`;
  coordUrl = `http://127.0.0.1:${cp}/metrics`;
  const dir = writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = m1\nbanaction = dry-run\nstate_dir = ${join(work, 'state')}\nmetrics = 127.0.0.1:${ap}\n[coordinator]\nconsumer = mc\nmetrics = 127.0.0.1:${cp}\n`,
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${logFile}\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n`,
  });
  ({ coordinator, agent } = await startCoordinatorAndAgent(dir));
});

after(async () => {
  await Promise.all([agent?.stop(), coordinator?.stop()]);
  await redis.stop();
});

test('metrics are off unless configured, and a bad address names the key', () => {
  assert.equal(parseListen(''), undefined);
  assert.deepEqual(parseListen('9641'), { host: '127.0.0.1', port: 9641 });
  assert.deepEqual(parseListen('[::1]:9642'), { host: '::1', port: 9642 });
  assert.throws(() => parseListen('127.0.0.1:99999'), /over 65535/);
  const dir = writeConfig({ 'fleetban.conf': '[agent]\nmetrics = localhost\n' });
  assert.throws(() => loadFleetbanConfig(dir), /fleetban\.conf:2, key 'metrics': 'localhost' is not host:port/);
  assert.equal(loadFleetbanConfig(writeConfig({ 'fleetban.conf': '' })).agent.metrics, undefined);
});

test('lines, failures, bans, decisions and latencies move with the events', async () => {
  const before = await scrape(agentUrl);
  assert.equal(before.get('fleetban_agent_bans_held'), 0);
  assert.equal(before.get('fleetban_agent_info{backend="dry-run",version="0.1.0"}'), 1);
  const attacker = '203.0.113.50';
  appendFileSync(logFile, 'unrelated line\n' + sshdFailure(attacker, 'm1') + sshdFailure(attacker, 'm1') + sshdFailure(attacker, 'm1'));
  await agent.waitFor((l) => l.msg === 'dry-run ban' && l.addr === attacker, 10_000, 'ban applied');
  await waitUntil(async () => (await value(agentUrl, 'fleetban_agent_bans_held')) === 1, 5000, 'bans held 1');
  const a = await scrape(agentUrl);
  assert.equal(a.get('fleetban_agent_lines_read_total{jail="sshd"}'), 4);
  assert.equal(a.get('fleetban_agent_lines_matched_total{jail="sshd"}'), 3);
  assert.equal(a.get('fleetban_agent_failures_reported_total'), 3);
  assert.equal(a.get('fleetban_agent_failures_dropped_total'), 0);
  assert.equal(a.get('fleetban_agent_reports_buffered'), 0);
  assert.ok((a.get('fleetban_agent_decisions_applied_total{backend="dry-run"}') ?? 0) >= 1);
  assert.ok((a.get('fleetban_agent_apply_duration_seconds_count{backend="dry-run"}') ?? 0) >= 1);
  assert.equal(a.get('fleetban_agent_decision_lag_seconds'), 0);
  assert.equal(a.get('fleetban_agent_bans_refused_total'), 0);
  assert.ok(a.has('process_resident_memory_bytes'), 'process metrics too');
  for (const key of a.keys()) assert.ok(!key.includes(attacker), `no address in any label: ${key}`);

  const c = await scrape(coordUrl);
  assert.equal(c.get('fleetban_coordinator_failures_counted_total{jail="sshd"}'), 3);
  assert.equal(c.get('fleetban_coordinator_bans_decided_total{jail="sshd"}'), 1);
  assert.ok((c.get('fleetban_coordinator_script_duration_seconds_count') ?? 0) >= 1);
  assert.equal(c.get('fleetban_coordinator_stream_backlog'), 0);
  assert.equal(c.get('fleetban_coordinator_stream_pending'), 0);
  assert.equal(c.get('fleetban_notifications_pending'), 0);
});

test('Redis reconnects are counted', async () => {
  const n = await value(agentUrl, 'fleetban_agent_redis_reconnects_total');
  await redis.kill();
  await redis.restart();
  await waitUntil(async () => (await value(agentUrl, 'fleetban_agent_redis_reconnects_total')) >= n + 2, 20_000, 'both agent connections reconnected');
});

test('every metric the shipped Grafana dashboard uses is exported', async () => {
  const { readFileSync } = await import('node:fs');
  const dashboard = readFileSync('deploy/grafana/fleetban.json', 'utf8');
  const used = new Set([...dashboard.matchAll(/fleetban_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
  const text = (await (await fetch(agentUrl)).text()) + (await (await fetch(coordUrl)).text());
  for (const name of used) assert.ok(text.includes(`# HELP ${name} `), `${name} is exported`);
  assert.ok(used.size >= 15);
});
