// The README's quick start, as `npm start` runs it after scripts/setup.sh: `bin/fleetban up` (the
// shell launcher, not node directly) on the shipped configuration, which finds its directory the
// way every command does (here through FLEETBAN_CONFIG), with no [redis] url, so `up` runs its
// private redis-server. Then the commands the README lists beside it, and a clean stop on
// SIGTERM and on a terminal's Ctrl-C (SIGINT to the process group).
//
// The shipped defaults are copied to a temporary directory with a fleetban.local/jail.local that
// change only the state directory, the host name and the sshd jail's log file, so nothing under
// the host's /etc or /var is read or written. As root `up` enforces with nftables: it then runs
// inside a network namespace of its own, where a real attacker's connection proves the ban; as
// another user it runs in dry-run, as it says it does.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { sshdFailure } from '../helpers/spawn.js';
import { waitUntil } from '../helpers/wait.js';

const BIN = resolve('bin/fleetban');
const net = netnsAvailable();
const SRV = '198.51.100.10';
const ATK = '198.51.100.66';

let work = '';
let dir = '';
let logFile = '';
let fleet: Fleet | undefined;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'fleetban-npm-start-'));
  dir = join(work, 'etc');
  cpSync(resolve('deploy/etc/fleetban'), dir, { recursive: true });
  logFile = join(work, 'auth.log');
  writeFileSync(logFile, '');
  writeFileSync(join(dir, 'fleetban.local'), `[agent]\nhost = solo\nstate_dir = ${join(work, 'state')}\n`);
  writeFileSync(join(dir, 'jail.local'), `[sshd]\nlogpath = ${logFile}\n`);
  if (net.ok) {
    fleet = await createFleet([{ name: 'srv', addrs: [`${SRV}/24`] }, { name: 'atk', addrs: [`${ATK}/24`] }]);
    await fleet.listen('srv', SRV, 2222);
  }
});

after(async () => {
  await fleet?.destroy();
  rmSync(work, { recursive: true, force: true });
});

/** Environment of every command: the configuration the way a user points at it. */
const env = (): NodeJS.ProcessEnv => ({ ...process.env, FLEETBAN_CONFIG: dir, FLEETBAN_LOG_LEVEL: 'info', FLEETBAN_LOG_FORMAT: 'json' });

interface Up {
  readonly proc: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

/** Start `bin/fleetban up` (in the server namespace when there is one), leading its own process group as a shell's job does. */
function startUp(): Up {
  const argv = [...(fleet ? fleet.prefix('srv') : []), BIN, 'up'];
  const proc = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: env() });
  const lines: Array<Record<string, unknown>> = [];
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      lines.push({ msg: l, raw: true });
    }
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  return { proc, lines, exited, stderr: () => err };
}

async function waitLine(up: Up, pred: (l: Record<string, unknown>) => boolean, ms: number, what: string): Promise<Record<string, unknown>> {
  await waitUntil(() => up.lines.some(pred) || up.proc.exitCode !== null, ms, what);
  const l = up.lines.find(pred);
  assert.ok(l, `${what}: up exited ${up.proc.exitCode}: ${up.stderr()} ${JSON.stringify(up.lines.slice(-5))}`);
  return l;
}

/** Run `bin/fleetban ARGS` to completion, as a user would beside the running `up`. */
function fleetban(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env() });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => done({ code, stdout, stderr }));
  });
}

/** Signal the group, wait for the exit (SIGKILL after 20 s), and check the stop was quiet. */
async function stopUp(up: Up, signal: 'SIGTERM' | 'SIGINT'): Promise<void> {
  process.kill(-up.proc.pid!, signal);
  const code = await Promise.race([up.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
  if (code === 'hung') process.kill(-up.proc.pid!, 'SIGKILL');
  assert.equal(code, 0, `up exits 0 on ${signal}: ${up.stderr()}`);
  const stopping = up.lines.findIndex((l) => l.msg === 'stopping' && l.signal === signal);
  assert.ok(stopping >= 0, `it says it is stopping on ${signal}`);
  assert.deepEqual(up.lines.slice(stopping).filter((l) => Number(l.level) >= 40), [], 'no warning or error while stopping');
  assert.equal(existsSync(join(work, 'state', 'redis', 'redis.sock')), false, 'the private Redis stopped with it');
}

test('npm start path: bin/fleetban up on the shipped configuration, then status, ban, banned, a log-driven ban, and SIGTERM', async () => {
  const up = startUp();
  try {
    await waitLine(up, (l) => String(l.msg).startsWith('fleetban is up'), 60_000, 'fleetban is up');
    assert.ok(existsSync(join(work, 'state', 'redis', 'redis.sock')), 'the private Redis listens in the state directory');
    const backend = fleet ? 'nftables' : 'dry-run';
    if (!fleet) assert.ok(up.lines.some((l) => /bans are only logged \(dry-run\)/.test(String(l.msg))), 'not root: it says bans are only logged');

    const status = await fleetban('status');
    assert.equal(status.code, 0, status.stderr);
    assert.equal(status.stdout, 'Status (cluster default)\n|- Number of jail:\t1\n`- Jail list:\tsshd\n', 'the running jails, as fail2ban-client status');

    const hosts = await fleetban('hosts');
    assert.match(hosts.stdout, new RegExp(`^solo\\s+yes\\s.*\\b${backend}\\b`, 'm'), `the agent is alive with ${backend}: ${hosts.stdout}`);

    const loop = await fleetban('ban', '127.0.0.1');
    assert.equal(loop.code, 1, 'the shipped ignoreip is honoured');
    assert.match(loop.stderr, /^fleetban: refusing to ban 127\.0\.0\.1: .*--force/);

    if (fleet) assert.equal(await fleet.tcpConnects('atk', SRV, 2222, 1500), true, 'the attacker connects before the ban');
    const ban = await fleetban('ban', ATK, '--wait');
    assert.equal(ban.code, 0, ban.stderr);
    assert.match(ban.stdout, new RegExp(`^banned ${ATK.replace(/\./g, '\\.')} in jail manual for 10m`, 'm'));
    assert.match(ban.stdout, /applied by all 1 live host/);
    const banned = await fleetban('banned');
    assert.match(banned.stdout, /^ADDRESS\s+JAIL\s+SINCE\s+UNTIL\s+ORIGIN\s+REASON$/m);
    assert.match(banned.stdout, new RegExp(`^${ATK.replace(/\./g, '\\.')}\\s+manual\\s.*manual ban$`, 'm'));
    const one = await fleetban('banned', ATK);
    assert.match(one.stdout, new RegExp(`^${ATK.replace(/\./g, '\\.')} is banned in jail manual until `));
    if (fleet) {
      assert.equal(await fleet.tcpConnects('atk', SRV, 2222, 1500), false, 'the kernel drops the banned attacker');
      const set = await fleet.exec('srv', 'nft', ['list', 'table', 'inet', 'fleetban']);
      assert.match(set.stdout, new RegExp(ATK.replace(/\./g, '\\.')));
    }

    // The shipped sshd jail: maxretry 5 in findtime 10m, here on the test's log file.
    for (let i = 0; i < 5; i++) appendFileSync(logFile, sshdFailure('203.0.113.9', 'solo'));
    await waitLine(up, (l) => l.msg === '[sshd] Ban 203.0.113.9', 20_000, 'the log-driven ban');
    const sshd = await fleetban('status', 'sshd');
    assert.match(sshd.stdout, /Currently banned:\t1\n/);
    assert.match(sshd.stdout, /Banned IP list:\t203\.0\.113\.9\n/);
  } finally {
    if (up.proc.exitCode === null) await stopUp(up, 'SIGTERM');
  }
  const down = await fleetban('status');
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach Redis .*fleetban up` is not running/);
});

test('npm start path: started again on the same state, the bans are still there, and Ctrl-C (SIGINT to the group) stops it cleanly', async () => {
  const up = startUp();
  try {
    await waitLine(up, (l) => String(l.msg).startsWith('fleetban is up'), 60_000, 'fleetban is up');
    // The private Redis keeps its data (AOF) in the state directory.
    const banned = await fleetban('banned', ATK);
    assert.match(banned.stdout, /is banned in jail manual/);
    if (fleet) await waitUntil(async () => !(await fleet!.tcpConnects('atk', SRV, 2222, 700)), 10_000, 'the ban enforced after the restart');
  } finally {
    if (up.proc.exitCode === null) await stopUp(up, 'SIGINT');
  }
});
