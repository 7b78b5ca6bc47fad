import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, randomCluster } from '../helpers/redis-server.js';
import { startDaemon, sshdFailure } from '../helpers/spawn.js';
import { testProcesses, hostConfig, waitUntil } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';

/**
 * An agent started with `--start-at end` while Redis is away waits up to 5 s for its first
 * snapshot. Lines written to its logs during that wait used to be lost (the logs were opened only
 * after it); now they are read and their failures delivered once Redis is back.
 */
const { work, daemons, servers } = testProcesses('start-at-end');

test('lines written while the agent waits for its first snapshot are not lost with --start-at end', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  servers.push(redis);
  const cluster = randomCluster();
  const keys = clusterKeys(cluster);
  const log = join(work, 'auth.log');
  writeFileSync(log, sshdFailure('198.51.100.1', 'w1'));
  // Written while Redis runs: the harness provisions the agent's ACL user then.
  const dir = hostConfig({ cluster, url: redis.url, host: 'w1', work, logpath: log });
  await redis.kill();
  const agent = startDaemon(['--config', dir, 'agent', '--start-at', 'end']);
  daemons.push(agent);
  await agent.waitFor((l) => l.msg === 'Redis unreachable, retrying', 10_000, 'the agent finds Redis away');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(agent.count((l) => l.msg === 'agent started'), 0, 'still waiting for the first snapshot');
  appendFileSync(log, sshdFailure('198.51.100.2', 'w1') + sshdFailure('198.51.100.3', 'w1'));
  await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'the agent gives up waiting and starts');
  await redis.restart();
  const client = redis.client();
  // The host's own stream (Redis restarted without persistence: the registry is gone, the stream is new).
  const reported = async () => (await client.xrange(keys.host('w1').failures, '-', '+')).flatMap(([, f]) => JSON.parse(f[f.indexOf('failures') + 1]!) as unknown[][]).map((r) => r[2]);
  await waitUntil(async () => (await reported()).length === 2, 20_000, 'both failures delivered').catch((err: Error) => {
    throw new Error(`${err.message}\nagent:\n${agent.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}`);
  });
  const addrs = await reported();
  assert.deepEqual(addrs.sort(), ['198.51.100.2', '198.51.100.3'], 'the line from before the start is not read (start at end)');
});
