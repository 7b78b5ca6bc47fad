import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { aclServer, addIdentityLines } from '../helpers/redis-server.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { startDaemon, writeConfig, CLI, type Daemon } from '../helpers/spawn.js';

/**
 * The whole product on a fleet of network namespaces: Redis and a coordinator on one host, agents
 * with real nftables on two hosts running real sshd, an attacker and a bystander. Wrong passwords
 * against host 1 only get the attacker dropped on port 22 of BOTH hosts; the bystander still
 * connects; `fleetban unban` lets the attacker in again.
 */
const available = netnsAvailable();
const missing = ['/usr/sbin/sshd', '/usr/bin/sshpass', '/usr/sbin/nft', '/usr/bin/redis-server'].filter((p) => !existsSync(p));
const skip = !available.ok ? available.reason : missing.length ? `needs ${missing.join(', ')}` : false;
if (skip && process.env.CI) throw new Error(`CI must run the namespace tests: ${skip}`);

const ADDR = { r: '198.51.100.1', h1: '198.51.100.11', h2: '198.51.100.12', atk: '198.51.100.66', good: '198.51.100.77' };
const REDIS_PORT = 16390;
const PASSWORD = 'fleetban-test-secret';
const work = mkdtempSync(join(tmpdir(), 'fleetban-netns-'));
let fleet: Fleet;
const children: ChildProcess[] = [];
const daemons: Daemon[] = [];
const agents: Record<string, Daemon> = {};
let coordDir = '';

/** sshd in a namespace, its stderr turned into syslog-style lines in a log file the agent follows. */
function startSshd(host: 'h1' | 'h2', log: string): void {
  const dir = join(work, `sshd-${host}`);
  mkdirSync(dir, { recursive: true });
  const key = join(dir, 'host_ed25519');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const cfg = join(dir, 'sshd_config');
  writeFileSync(cfg, [
    `ListenAddress ${ADDR[host]}`, 'Port 22', `HostKey ${key}`, `PidFile ${join(dir, 'sshd.pid')}`, 'LogLevel VERBOSE',
    'PasswordAuthentication yes', 'KbdInteractiveAuthentication no', 'UsePAM no', 'PermitRootLogin yes', 'MaxAuthTries 6',
  ].join('\n') + '\n');
  const proc = spawn('ip', ['netns', 'exec', fleet.host(host).ns, '/usr/sbin/sshd', '-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  createInterface({ input: proc.stderr! }).on('line', (line) => {
    const d = new Date();
    const p = (n: number) => String(n).padStart(2, '0');
    appendFileSync(log, `${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${host} sshd[${proc.pid}]: ${line}\n`);
  });
}

async function wrongPassword(target: string): Promise<void> {
  await fleet.exec('atk', 'sshpass', ['-p', 'wrong-password', 'ssh', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1', '-o', 'ConnectTimeout=3',
    `root@${target}`, 'true'], { reject: false });
}

async function cli(args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  return fleet.exec('r', process.execPath, [CLI, '--config', coordDir, ...args], { reject: false });
}

before(async () => {
  if (skip) return;
  fleet = await createFleet(Object.entries(ADDR).map(([name, a]) => ({ name, addrs: [`${a}/24`] })));
  mkdirSync('/run/sshd', { recursive: true });
  // The shipped Redis settings and ACL users: every daemon and CLI call logs in as its role.
  const acl = aclServer(work, PASSWORD, 'netns', ['r', 'h1', 'h2']);
  const redis = spawn('ip', ['netns', 'exec', fleet.host('r').ns, 'redis-server', ...acl.args, '--bind', ADDR.r, '--port', String(REDIS_PORT),
    '--save', '', '--dir', work], { stdio: 'ignore' });
  children.push(redis);
  const url = `redis://${ADDR.r}:${REDIS_PORT}`;
  const conf = (host: string, log: string, banaction: string) => writeConfig({
    'fleetban.conf': addIdentityLines(`[cluster]\nname = netns\n[redis]\nurl = ${url}\n[agent]\nhost = ${host}\nbanaction = ${banaction}\nstate_dir = ${join(work, host)}\nheartbeat = 1s\n`, acl.roles(host)),
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${log}\nmaxretry = 5\nfindtime = 10m\nbantime = 1h\n`,
  });
  coordDir = conf('r', join(work, 'none.log'), 'dry-run');
  for (let i = 0; i < 100 && !(await fleet.tcpConnects('r', ADDR.r, REDIS_PORT, 200)); i++) await new Promise((r) => setTimeout(r, 50));
  const coordinator = startDaemon(['--config', coordDir, 'coordinator'], {}, fleet.prefix('r'));
  daemons.push(coordinator);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  for (const h of ['h1', 'h2'] as const) {
    const log = join(work, `${h}-auth.log`);
    writeFileSync(log, '');
    startSshd(h, log);
    agents[h] = startDaemon(['--config', conf(h, log, 'nftables'), 'agent'], {}, fleet.prefix(h));
    daemons.push(agents[h]!);
  }
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start')));
  for (const h of ['h1', 'h2'] as const) {
    for (let i = 0; i < 100 && !(await fleet.tcpConnects('good', ADDR[h], 22, 200)); i++) await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  for (const c of children) c.kill('SIGTERM');
  await fleet?.destroy();
});

test('wrong passwords against host 1 get the attacker dropped on both hosts; unban lets it back', { skip }, async () => {
  for (const h of ['h1', 'h2'] as const) {
    assert.equal(await fleet.tcpConnects('atk', ADDR[h], 22, 2000), true, `attacker reaches ${h} before the attack`);
  }
  for (let i = 0; i < 5; i++) await wrongPassword(ADDR.h1);
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'ban applied' && l.addr === ADDR.atk, 15_000, 'ban applied')));

  for (const h of ['h1', 'h2'] as const) {
    assert.equal(await fleet.tcpConnects('atk', ADDR[h], 22, 1500), false, `attacker dropped by ${h}`);
    assert.equal(await fleet.tcpConnects('good', ADDR[h], 22, 2000), true, `bystander still reaches ${h}`);
  }
  // The table really is in each host's kernel, with the attacker in the jail's set.
  const ruleset = await fleet.exec('h2', 'nft', ['list', 'ruleset']);
  assert.match(ruleset.stdout, new RegExp(ADDR.atk.replace(/\./g, '\\.')));

  const r = await cli(['unban', ADDR.atk]);
  assert.equal(r.exitCode, 0, r.stderr);
  await Promise.all(Object.values(agents).map((a) => a.waitFor((l) => l.msg === 'unban applied' && l.addr === ADDR.atk, 15_000, 'unban applied')));
  for (const h of ['h1', 'h2'] as const) {
    assert.equal(await fleet.tcpConnects('atk', ADDR[h], 22, 2000), true, `attacker reaches ${h} again after unban`);
  }
});
