import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { startCoordinatorAndAgent, runCli, writeConfig, sshdFailure, type Daemon } from '../helpers/spawn.js';
import { testProcesses, isBan } from '../helpers/cluster-procs.js';
import { clusterKeys } from '../../common/protocol/keys.js';
import { FLEETBAN_VERSION, PROTOCOL_VERSION } from '../../common/protocol/version.js';

/**
 * The CLI operators already know from fail2ban-client and cscli, against a real Redis, a
 * coordinator and an agent: ping, version, banned ADDR, several addresses per ban, jail names
 * checked, network bans named on unban, hosts --forget, --wait without agents, errors as one line
 * or JSON.
 */
const t = testProcesses('cli-ops');
let redis: TestRedis;
const cluster = randomCluster();
const log = join(t.work, 'later.log');
let dir: string;
let coordinator: Daemon;
let agent: Daemon;

function config(host: string, clusterName = cluster, jails = true): string {
  return writeConfig({
    'fleetban.conf': `[cluster]\nname = ${clusterName}\n[redis]\nurl = ${redis.url}\n[agent]\nhost = ${host}\nbanaction = dry-run\nstate_dir = ${join(t.work, host)}\nheartbeat = 1s\n[coordinator]\nconsumer = ${host}\n`,
    'jail.conf': jails ? `[DEFAULT]\nignoreip = 127.0.0.1/8 ::1\n[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${log}\nmaxretry = 2\nbantime = 1h\n` : '',
  });
}

const cli = (...args: string[]) => runCli(['--config', dir, ...args]);

before(async () => {
  redis = await startRedis();
  t.servers.push(redis);
  dir = config('h1');
  // The log file does not exist yet: the agent says so, starts anyway, and follows it once it appears.
  ({ coordinator, agent } = await startCoordinatorAndAgent(dir));
  t.daemons.push(coordinator, agent);
});

test('the agent warns about a missing log file and follows it once it appears', async () => {
  const warned = await agent.waitFor((l) => l.jail === 'sshd' && String(l.msg).includes('no log file found yet'), 1000, 'missing-log warning');
  assert.equal(warned.level, 40, 'a warning');
  writeFileSync(log, '');
  await new Promise((r) => setTimeout(r, 6000)); // the sources rescan their globs every 5 s
  appendFileSync(log, sshdFailure('198.51.100.44') + sshdFailure('198.51.100.44'));
  await agent.waitFor(isBan('198.51.100.44'), 15_000, 'ban from the file that appeared');
});

test('ping and version: the CLI, and every running daemon with its version and protocol', async () => {
  const p = await cli('ping');
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, new RegExp(`^pong: Redis at ${redis.url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} answered in [\\d.]+ ms; cluster ${cluster}: 1 live agent, 1 live coordinator\\n$`));
  const v = await cli('--json', 'version');
  assert.equal(v.code, 0, v.stderr);
  const info = JSON.parse(v.stdout) as { cli: { version: string; protocol: number }; daemons: Array<{ kind: string; name: string; version: string; protocol: number; alive: boolean }> };
  assert.deepEqual(info.cli, { version: FLEETBAN_VERSION, protocol: PROTOCOL_VERSION });
  assert.deepEqual(info.daemons.map((d) => [d.kind, d.name, d.version, d.protocol, d.alive]),
    [['agent', 'h1', FLEETBAN_VERSION, PROTOCOL_VERSION, true], ['coordinator', 'h1', FLEETBAN_VERSION, PROTOCOL_VERSION, true]]);
  const text = await cli('version');
  assert.match(text.stdout, new RegExp(`^fleetban ${FLEETBAN_VERSION} \\(protocol ${PROTOCOL_VERSION}\\)\\nKIND `));
});

test('ban takes several addresses; banned ADDR names the ban, a covering network included; unban says what still covers it', async () => {
  const b = await cli('ban', '198.51.100.5', '203.0.113.0/24', '--wait');
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /^banned 198\.51\.100\.5 in jail manual .*\nbanned 203\.0\.113\.0\/24 in jail manual .*\napplied by all 1 live host\n$/);
  const q = await cli('banned', '203.0.113.9', '198.51.100.5', '198.51.100.6');
  assert.equal(q.code, 0, q.stderr);
  const lines = q.stdout.trim().split('\n');
  assert.match(lines[0]!, /^203\.0\.113\.9 is banned by 203\.0\.113\.0\/24 in jail manual until \S+ \(origin cli:/);
  assert.match(lines[1]!, /^198\.51\.100\.5 is banned in jail manual until /);
  assert.equal(lines[2], '198.51.100.6 is not banned');
  const j = JSON.parse((await cli('--json', 'banned', '203.0.113.9')).stdout) as Array<{ addr: string; banned: boolean; bans: Array<{ addr: string }> }>;
  assert.deepEqual(j.map((a) => [a.addr, a.banned, a.bans.map((x) => x.addr)]), [['203.0.113.9', true, ['203.0.113.0/24']]]);

  const u = await cli('unban', '203.0.113.9');
  assert.equal(u.code, 1);
  assert.match(u.stderr, /^203\.0\.113\.9 is still banned: covered by 203\.0\.113\.0\/24 in jail manual \(unban 203\.0\.113\.0\/24 to lift it\)\n/);
  assert.match(u.stderr, /fleetban: nothing was unbanned: 203\.0\.113\.9 is covered by 203\.0\.113\.0\/24\n$/);
  const both = await cli('unban', '198.51.100.5', '203.0.113.0/24');
  assert.equal(both.code, 0, both.stderr);
  assert.match(both.stdout, /unbanned 198\.51\.100\.5 in jail manual\nunbanned 203\.0\.113\.0\/24 in jail manual/);
});

test('--jail must name a configured jail or manual; the shipped ignoreip protects 127.0.0.1 from a manual ban', async () => {
  const typo = await cli('ban', '198.51.100.8', '--jail', 'shd');
  assert.equal(typo.code, 1);
  assert.equal(typo.stderr, "fleetban: no jail 'shd' is configured (known: manual, sshd)\n");
  assert.equal((await cli('--json', 'banned', '198.51.100.8')).stdout.includes('"banned":false'), true, 'nothing was banned');
  const ok = await cli('ban', '198.51.100.8', '--jail', 'sshd');
  assert.equal(ok.code, 0, ok.stderr);
  const unbanTypo = await cli('unban', '198.51.100.8', '--jail', 'shd');
  assert.equal(unbanTypo.code, 1);
  assert.match(unbanTypo.stderr, /no jail 'shd' is configured/);

  const local = await cli('ban', '127.0.0.1');
  assert.equal(local.code, 1);
  assert.equal(local.stderr, 'fleetban: refusing to ban 127.0.0.1: jail [manual] whitelists it (ignoreip); use --force to ban it anyway\n');
  const several = await cli('ban', '198.51.100.9', '::1');
  assert.equal(several.code, 1);
  assert.match(several.stderr, /refusing to ban ::1: .*\(nothing was banned\)/);
  assert.match((await cli('banned', '198.51.100.9')).stdout, /is not banned/, 'all or nothing');
});

test('status from a host without jail files shows the jails the coordinators run', async () => {
  const bare = config('admin', cluster, false);
  const s = await runCli(['--config', bare, 'status']);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /Jail list:\t.*sshd/);
});

test('hosts --forget removes a dead host, refuses a live one', async () => {
  const keys = clusterKeys(cluster);
  const c = redis.client();
  // A host that died an hour ago: still registered, its last heartbeat and acknowledgement still there.
  await c.sadd(keys.registry, 'gone');
  await c.set(keys.host('gone').heartbeat, JSON.stringify({ v: PROTOCOL_VERSION, host: 'gone', addrs: [], version: '0.0.9', backend: 'nftables', jails: [], pid: 1, startedAt: 1, seenAt: Date.now() - 3_600_000, bansApplied: 0, lastDecision: '0-0' }));
  await c.set(keys.host('gone').ack, '0-0');
  const live = await cli('hosts', '--forget', 'h1');
  assert.equal(live.code, 1);
  assert.match(live.stderr, /^fleetban: host 'h1' is alive \(seen .*\): stop its agent first/);
  const f = await cli('hosts', '--forget', 'gone');
  assert.equal(f.code, 0, f.stderr);
  assert.equal(f.stdout, 'forgot host gone\n');
  assert.equal(await c.sismember(keys.registry, 'gone'), 0);
  assert.equal(await c.exists(keys.host('gone').heartbeat, keys.host('gone').ack), 0);
  const again = await cli('hosts', '--forget', 'gone');
  assert.equal(again.code, 1);
  assert.equal(again.stderr, "fleetban: no host 'gone' is registered\n");
});

test('--wait with no live agent fails instead of reporting success', async () => {
  const empty = config('lonely', randomCluster());
  const r = await runCli(['--config', empty, 'ban', '198.51.100.10', '--wait']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'fleetban: published, but no live agent in the cluster applies it (see `fleetban hosts`)\n');
});

test('usage errors are one line; with --json every error is JSON', async () => {
  const usage = await cli('ban');
  assert.equal(usage.code, 1);
  assert.equal(usage.stderr, "fleetban: missing required argument 'addr' (see 'fleetban ban --help')\n");
  assert.equal(usage.stdout, '');
  const unknown = await cli('unbna');
  assert.equal(unknown.stderr.split('\n').length, 2, 'one line');
  const json = await cli('--json', 'ban', '198.51.100.300');
  assert.equal(json.code, 1);
  const e = JSON.parse(json.stderr) as { error: string; exitCode: number };
  assert.equal(e.exitCode, 1);
  assert.match(e.error, /^invalid address '198\.51\.100\.300'/);
  const jsonUsage = JSON.parse((await cli('--json', 'hosts', '--frob')).stderr) as { error: string };
  assert.equal(jsonUsage.error, "unknown option '--frob' (see 'fleetban hosts --help')");
});

test('shell completion and the man page come from the command definitions', async () => {
  const comp = await runCli(['completion', 'bash']);
  assert.equal(comp.code, 0, comp.stderr);
  const syntax = spawnSync('bash', ['-n'], { input: comp.stdout, encoding: 'utf8' });
  assert.equal(syntax.status, 0, `bash -n: ${syntax.stderr}`);
  // Run it: completing `fleetban ba` offers ban and banned; `fleetban hosts --f` offers --forget.
  const complete = (words: string[]) => spawnSync('bash', ['-c', `${comp.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _fleetban; echo "\${COMPREPLY[*]}"`], { encoding: 'utf8' }).stdout.trim();
  assert.equal(complete(['fleetban', 'ba']), 'ban banned');
  assert.equal(complete(['fleetban', '--json', 'hosts', '--f']), '--forget');
  const man = await runCli(['man']);
  assert.equal(man.code, 0, man.stderr);
  assert.match(man.stdout, /^\.TH FLEETBAN 8 /);
  for (const cmd of ['agent', 'coordinator', 'up', 'ban', 'unban', 'banned', 'hosts', 'ping', 'version', 'import-fail2ban', 'check-config', 'regex']) {
    assert.match(man.stdout.replace(/\\-/g, '-'), new RegExp(`^${cmd} `, 'm'), `man page documents ${cmd}`);
  }
  assert.match(man.stdout, /^\.B \\-\\-forget <host>$/m);
});
