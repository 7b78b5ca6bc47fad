import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { waitUntil } from '../helpers/wait.js';

/**
 * The package, the units and the Ansible roles on real hosts: Debian 12 containers booted with
 * systemd as PID 1 (systemd-nspawn --boot), each in a network namespace of its own: one for Redis
 * and the coordinator, three agents; the controller (Ansible), an attacker and a bystander are
 * plain namespaces. Deployed with ansible-playbook over SSH (one jail option taken from an
 * existing /etc/fail2ban) with signed decisions: each coordinator signs with a key made on it, the
 * admin with one made on the control machine, the agents trust exactly their public keys. Then:
 * wrong SSH passwords against one host drop the attacker on all three while the bystander still
 * connects; a ban written with the admin's Redis password but no signing key is refused by every
 * agent; `systemctl reload` keeps
 * the agent and its bans; a rebooted host re-applies the active bans; a second run changes
 * nothing (also in --check --diff); the rolling-upgrade play moves every host to a newer package
 * without losing the ban; the unban play, signed on the control machine, lifts it everywhere.
 */
const ROOT = resolve('.');
const tools = ['systemd-nspawn', 'mmdebstrap', 'ansible-playbook', 'sshpass', 'ssh', 'ssh-keygen', 'dpkg-deb'];
const missing = tools.filter((t) => !['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => existsSync(join(d, t))));
const net = netnsAvailable();
const skip = !net.ok ? net.reason : missing.length ? `needs ${missing.join(', ')}` : false;
if (skip && process.env.CI) throw new Error(`CI must run the fleet test: ${skip}`);

const ADDR = { ctl: '203.0.113.1', r: '203.0.113.10', h1: '203.0.113.11', h2: '203.0.113.12', h3: '203.0.113.13', atk: '203.0.113.66', good: '203.0.113.77' };
type Name = keyof typeof ADDR;
const CONTAINERS = ['r', 'h1', 'h2', 'h3'] as const;
type Container = (typeof CONTAINERS)[number];
const AGENTS = ['h1', 'h2', 'h3'] as const;
const ROOT_PASSWORD = `fleet-${randomBytes(6).toString('hex')}`;
const run = `f${randomBytes(3).toString('hex')}`;
const work = join(ROOT, '.cache', 'fleet-runs', run);
const version1 = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const version2 = `${version1}+fleet2`;
const debs: Record<string, string> = {};
let fleet: Fleet;
const boots = new Map<Container, ChildProcess>();
const timings: string[] = [];
const started = Date.now();

const key = join(work, 'id_ed25519');
/** The control machine's admin keys: made here by the operator, only admin.pub goes to the hosts. */
const adminKeys = join(work, 'admin-keys');
const CLI_MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const sshOpts = ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=3', '-o', 'LogLevel=ERROR'];

/** Run a shell command on a container as root, over SSH from the controller namespace. */
async function onHost(h: Container, command: string, reject = true): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await fleet.exec('ctl', 'ssh', [...sshOpts, `root@${ADDR[h]}`, command], { reject: false });
  if (reject && r.exitCode !== 0) throw new Error(`${h}: '${command}' exited ${r.exitCode}: ${r.stderr.trim()}\n${r.stdout.trim()}`);
  return r;
}

/** The nftables ruleset of a host: the container and its namespace share one network stack. */
const ruleset = async (h: Container): Promise<string> => (await fleet.exec(h, 'nft', ['list', 'ruleset'], { reject: false })).stdout;

async function ansible(playbook: string, extra: string[] = []): Promise<{ out: string; recap: Map<string, Record<string, number>> }> {
  const t0 = Date.now();
  const r = await execa('ip', ['netns', 'exec', fleet.host('ctl').ns, 'ansible-playbook', '-i', join(work, 'inventory.ini'),
    '-e', `@${join(work, 'vars.json')}`, ...extra, join(ROOT, 'deploy', 'ansible', playbook)], {
    reject: false,
    all: true,
    cwd: join(ROOT, 'deploy', 'ansible'),
    env: {
      ANSIBLE_CONFIG: join(ROOT, 'deploy', 'ansible', 'ansible.cfg'),
      ANSIBLE_HOST_KEY_CHECKING: 'False',
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_PIPELINING: 'True',
      ANSIBLE_HOME: join(work, 'ansible-home'),
      ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
      ANSIBLE_RETRY_FILES_ENABLED: 'False',
    },
  });
  const out = r.all ?? '';
  writeFileSync(join(work, `ansible-${playbook}-${Date.now()}.log`), out);
  timings.push(`${playbook} ${extra.join(' ')}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  assert.equal(r.exitCode, 0, `ansible-playbook ${playbook} failed:\n${out.slice(-6000)}`);
  const recap = new Map<string, Record<string, number>>();
  for (const m of out.matchAll(/^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$/gm)) {
    recap.set(m[1]!, Object.fromEntries([...m[2]!.matchAll(/(\w+)=(\d+)/g)].map((x) => [x[1]!, Number(x[2])])));
  }
  return { out, recap };
}

function boot(h: Container): ChildProcess {
  const console = openSync(join(work, `${h}.console`), 'a');
  const child = spawn('setsid', ['systemd-nspawn', '-q', '-D', join(work, h), '--boot', `--network-namespace-path=/run/netns/${fleet.host(h).ns}`,
    '--register=no', '--keep-unit', '--capability=CAP_NET_ADMIN,CAP_NET_RAW', `--machine=${run}-${h}`], { stdio: ['ignore', console, console] });
  closeSync(console);
  boots.set(h, child);
  return child;
}

async function shutdown(h: Container): Promise<void> {
  const child = boots.get(h);
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // nspawn turns SIGTERM into an orderly shutdown of the container's systemd.
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
  boots.delete(h);
}

async function waitBooted(h: Container): Promise<void> {
  await waitUntil(async () => {
    const r = await onHost(h, 'systemctl is-system-running --wait', false);
    return ['running', 'degraded'].includes(r.stdout.trim());
  }, 120_000, `${h} booted`, 1000);
}

/** Wrong passwords from the attacker's namespace; each attempt is one "Failed password". */
async function failPasswords(h: Container, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    // The ban drops an open session too: without a time limit the last attempt would hang.
    await fleet.exec('atk', 'timeout', ['15', 'sshpass', '-p', 'wrong-password', 'ssh', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1', '-o', 'ConnectTimeout=3',
      `root@${ADDR[h]}`, 'true'], { reject: false });
  }
}

/** The unit's last log lines, for an assertion's message: a unit that fails says why. */
const unitLog = async (h: Container, unit: string): Promise<string> =>
  (await onHost(h, `systemctl status --no-pager ${unit}; journalctl -u ${unit} --no-pager -o cat -n 40`, false)).stdout;

/**
 * Wait until a unit is active; fail with its log when it is not (crash loop, refused start).
 * Waiting, not one look: site.yml's handlers restart and then reload the agent within seconds,
 * and one run saw h3's agent 'activating' right after the play (its log was gone; the likely
 * cause, a SIGHUP landing before node had a handler, is closed by the launcher's preload,
 * cli/early-hup.cts). A unit that stays down still fails here, with its log.
 */
async function assertActive(h: Container, unit: string): Promise<void> {
  try {
    await waitUntil(async () => (await onHost(h, `systemctl is-active ${unit}`, false)).stdout.trim() === 'active', 20_000, `${unit} active on ${h}`, 500);
  } catch {
    assert.fail(`${unit} is not active on ${h}:\n${await unitLog(h, unit)}`);
  }
}

const reaches = (from: Name, h: Container) => fleet.tcpConnects(from, ADDR[h], 22, 1500);
const mainPid = async (h: Container) => (await onHost(h, 'systemctl show -p MainPID --value fleetban-agent')).stdout.trim();

before(async () => {
  if (skip) return;
  mkdirSync(work, { recursive: true });
  const t0 = Date.now();
  const rootfs = (await execa('bash', [join(ROOT, 'test', 'fleet', 'rootfs.sh')], { stderr: 'inherit' })).stdout.trim();
  timings.push(`root filesystem: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  // What docs/deploy.md tells the operator to run once on the control machine.
  await execa(process.execPath, [CLI_MAIN, 'keygen', 'admin', '--dir', adminKeys]);
  fleet = await createFleet(Object.entries(ADDR).map(([name, a]) => ({ name, addrs: [`${a}/24`] })));

  // The package, built the way `npm run package` does, and a newer version of it for the upgrade.
  const packaging = (async () => {
    const t1 = Date.now();
    await execa(process.execPath, [join(ROOT, 'scripts', 'package.mjs'), '--out', work], { cwd: ROOT });
    debs[version1] = join(work, `fleetban_${version1}_amd64.deb`);
    const tree = join(work, 'deb2');
    await execa('dpkg-deb', ['-R', debs[version1]!, tree]);
    const control = join(tree, 'DEBIAN', 'control');
    writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${version2}`));
    debs[version2] = join(work, `fleetban_${version2}_amd64.deb`);
    await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '-b', tree, debs[version2]!]);
    rmSync(tree, { recursive: true, force: true });
    timings.push(`packages: ${((Date.now() - t1) / 1000).toFixed(0)} s`);
  })();

  for (const h of CONTAINERS) {
    const dir = join(work, h);
    mkdirSync(dir);
    await execa('tar', ['-xf', rootfs, '-C', dir]);
    writeFileSync(join(dir, 'etc', 'hostname'), `${h}\n`);
    writeFileSync(join(dir, 'etc', 'hosts'), `127.0.0.1 localhost\n127.0.1.1 ${h}\n`);
    mkdirSync(join(dir, 'root', '.ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'root', '.ssh', 'authorized_keys'), readFileSync(`${key}.pub`), { mode: 0o600 });
    writeFileSync(join(dir, 'etc', 'ssh', 'sshd_config.d', 'test.conf'), 'PasswordAuthentication yes\nLogLevel VERBOSE\nUseDNS no\n');
    await execa('chroot', [dir, 'chpasswd'], { input: `root:${ROOT_PASSWORD}\n` });
    // h1 "ran fail2ban": the roles take its jail.local (maxretry 3 where the variables say 5).
    if (h === 'h1') {
      mkdirSync(join(dir, 'etc', 'fail2ban'));
      writeFileSync(join(dir, 'etc', 'fail2ban', 'jail.local'), '[sshd-journal]\nenabled = true\nmaxretry = 3\n');
    }
    boot(h);
  }
  await Promise.all(CONTAINERS.map((h) => waitBooted(h)));
  timings.push(`containers unpacked and booted: ${((Date.now() - t0) / 1000).toFixed(0)} s after start`);
  await packaging;

  writeFileSync(join(work, 'inventory.ini'), [
    '[fleetban_redis]', `r ansible_host=${ADDR.r}`,
    '[fleetban_coordinators]', 'r',
    '[fleetban_agents]', ...AGENTS.map((h) => `${h} ansible_host=${ADDR[h]}`),
    '[all:vars]', 'ansible_user=root', `ansible_ssh_private_key_file=${key}`,
    "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'",
    '',
  ].join('\n'));
  writeVars(debs[version1]!);
});

function writeVars(deb: string): void {
  writeFileSync(join(work, 'vars.json'), JSON.stringify({
    fleetban_package: deb,
    fleetban_cluster: run,
    fleetban_credentials_dir: join(work, 'credentials'),
    fleetban_ignoreip: ['127.0.0.1/8', '::1', ADDR.ctl],
    fleetban_jail_defaults: { bantime: '1h', findtime: '10m', maxretry: 5 },
    fleetban_jails_from_fail2ban: true,
    fleetban_fail2ban_host: 'h1',
    fleetban_extra_config: { agent: { heartbeat: '2s', reconcile: '5s' } },
    // fleetban_signed_decisions is on by default; the admin's key and command on the control machine:
    fleetban_admin_keys_dir: adminKeys,
    fleetban_admin_command: [process.execPath, CLI_MAIN],
  }));
}

after(async () => {
  if (skip) return;
  await Promise.all([...boots.keys()].map((h) => shutdown(h)));
  await fleet?.destroy();
  if (!process.env.FLEETBAN_KEEP_FLEET) rmSync(work, { recursive: true, force: true });
  console.log(`fleet test timings:\n  ${timings.join('\n  ')}\n  total: ${((Date.now() - started) / 1000).toFixed(0)} s`);
});

const ATTACKER = ADDR.atk;
/** Each test builds on the one before; after a failure the rest fail at once instead of timing out. */
let healthy = true;
function step(name: string, fn: () => Promise<void>): void {
  test(name, { skip }, async () => {
    assert.ok(healthy, 'an earlier step of the fleet test failed');
    healthy = false;
    await fn();
    healthy = true;
  });
}

step('ansible deploys Redis, the coordinator and three agents; the units run hardened', async () => {
  await ansible('site.yml');
  for (const h of AGENTS) {
    await assertActive(h, 'fleetban-agent');
    assert.equal((await onHost(h, 'ps -o user= -p $(systemctl show -p MainPID --value fleetban-agent)')).stdout.trim(), 'fleetban');
  }
  await assertActive('r', 'fleetban-coordinator');
  assert.equal((await onHost('r', 'dpkg-query -W -f=\'${Version}\' fleetban')).stdout, version1);
  // The agent's Redis identity is its own: the default user is off.
  const anon = await onHost('r', 'redis-cli -h 203.0.113.10 ping', false);
  assert.doesNotMatch(anon.stdout, /PONG/);
  for (const unit of ['fleetban-agent', 'fleetban-coordinator']) {
    const host: Container = unit === 'fleetban-agent' ? 'h1' : 'r';
    const out = (await onHost(host, `systemd-analyze security --no-pager ${unit}.service`)).stdout;
    const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(out)?.[1]);
    timings.push(`systemd-analyze security ${unit}: ${level}`);
    assert.ok(level <= 2.0, `${unit} exposure ${level} > 2.0:\n${out}`);
  }
  // Signed decisions: every agent trusts the coordinator's and the admin's public keys and holds
  // no private key; the coordinator's private key is on the coordinator only, the admin's on the
  // control machine only.
  for (const h of AGENTS) {
    assert.equal((await onHost(h, 'ls /etc/fleetban/keys')).stdout.trim().split('\n').sort().join(' '), 'admin.pub coordinator-r.pub', h);
    assert.equal((await onHost(h, 'grep -c allow_unsigned /etc/fleetban/fleetban.local', false)).stdout.trim(), '0', `${h} allows no unsigned decision`);
    assert.match((await onHost(h, 'journalctl -u fleetban-agent --no-pager -o cat')).stdout, /decisions must be signed by one of these keys/);
  }
  assert.equal((await onHost('r', 'ls /etc/fleetban/keys')).stdout.trim().split('\n').sort().join(' '), 'coordinator-r.key coordinator-r.pub');
  assert.equal((await onHost('r', 'stat -c %a /etc/fleetban/keys/coordinator-r.key')).stdout.trim(), '600');
  assert.doesNotMatch((await onHost('r', 'journalctl -u fleetban-coordinator --no-pager -o cat')).stdout, /no \[coordinator\] signing_key/);
  // Every agent reported in: the fleet is ready to ban.
  try {
    await waitUntil(async () => {
      const r = await onHost('r', 'fleetban --config /etc/fleetban/admin --json hosts', false);
      if (r.exitCode !== 0) return false;
      const rows = JSON.parse(r.stdout) as Array<{ host: string; alive: boolean; backend: string }>;
      return AGENTS.every((h) => rows.some((x) => x.host === h && x.alive && x.backend === 'nftables'));
    }, 60_000, 'three live agents on nftables', 1000);
  } catch (err) {
    assert.fail(`${(err as Error).message}\n${await unitLog('r', 'fleetban-coordinator')}\n${await unitLog('h1', 'fleetban-agent')}`);
  }
});

step('wrong SSH passwords against one host drop the attacker on all three; the bystander still connects', async () => {
  for (const h of AGENTS) assert.ok(await reaches('atk', h), `attacker reaches ${h} before the attack`);
  // Four failures: a ban only because maxretry 3 came from h1's /etc/fail2ban/jail.local.
  for (const h of CONTAINERS) assert.match((await onHost(h, 'cat /etc/fleetban/jail.d/fail2ban-jail.local')).stdout, /maxretry = 3/);
  await failPasswords('h1', 4);
  await waitUntil(async () => {
    const sets = await Promise.all(AGENTS.map((h) => ruleset(h)));
    return sets.every((s) => s.includes(ATTACKER));
  }, 60_000, 'the ban in every agent host\'s nftables', 1000);
  for (const h of AGENTS) {
    assert.equal(await reaches('atk', h), false, `attacker dropped on ${h}`);
    assert.ok(await reaches('good', h), `bystander still reaches ${h}`);
  }
});

step('a ban written with the admin Redis password but no signing key is refused by every agent', async () => {
  const UNSIGNED = '198.51.100.99';
  const refused = async (): Promise<Map<string, number>> => {
    const r = await onHost('r', 'fleetban --config /etc/fleetban/admin --json hosts');
    return new Map((JSON.parse(r.stdout) as Array<{ host: string; decisionsRefused: number }>).map((x) => [x.host, x.decisionsRefused]));
  };
  const before = await refused();
  // /etc/fleetban/admin on the coordinator host has the admin's Redis login but no signing key.
  const ban = await onHost('r', `fleetban --config /etc/fleetban/admin ban ${UNSIGNED}`, false);
  assert.equal(ban.exitCode, 0, ban.stderr);
  assert.match(ban.stderr, /no signing key/);
  await waitUntil(async () => {
    const now = await refused();
    return AGENTS.every((h) => (now.get(h) ?? 0) > (before.get(h) ?? 0));
  }, 30_000, 'every agent counted the unsigned decision as refused', 1000);
  for (const h of AGENTS) {
    assert.equal((await ruleset(h)).includes(UNSIGNED), false, `${h} did not apply the unsigned ban`);
    assert.match((await onHost(h, 'journalctl -u fleetban-agent --no-pager -o cat')).stdout, /decision refused: not signed by a trusted key/);
  }
});

step('systemctl reload keeps the agent process and its bans', async () => {
  const pid = await mainPid('h2');
  await onHost('h2', 'systemctl reload fleetban-agent');
  await waitUntil(async () => (await onHost('h2', 'journalctl -u fleetban-agent --no-pager -o cat', false)).stdout.includes('agent reloaded'), 20_000, 'agent reloaded', 500);
  assert.equal((await onHost('h2', 'systemctl is-active fleetban-agent')).stdout.trim(), 'active');
  assert.equal(await mainPid('h2'), pid, 'same process after reload');
  assert.ok((await ruleset('h2')).includes(ATTACKER));
  assert.equal(await reaches('atk', 'h2'), false);
});

step('a host stopped and booted again re-applies the active bans', async () => {
  await shutdown('h3');
  // The namespace outlives the container: empty its firewall so only the agent can bring the ban back.
  await fleet.exec('h3', 'nft', ['flush', 'ruleset']);
  assert.equal((await ruleset('h3')).includes(ATTACKER), false);
  boot('h3');
  await waitBooted('h3');
  await waitUntil(async () => (await ruleset('h3')).includes(ATTACKER), 60_000, 'ban back on h3 after boot', 1000);
  assert.equal(await reaches('atk', 'h3'), false);
  assert.ok(await reaches('good', 'h3'));
});

step('a second run changes nothing, also in --check --diff', async () => {
  for (const extra of [[], ['--check', '--diff']]) {
    const { recap, out } = await ansible('site.yml', extra);
    assert.equal(recap.size, CONTAINERS.length, out.slice(-3000));
    for (const [h, counts] of recap) assert.equal(counts.changed, 0, `${h} changed on ${extra.join(' ') || 'second run'}:\n${out.slice(-6000)}`);
  }
});

step('the rolling-upgrade play moves every host to the new package without losing the ban', async () => {
  const before = await Promise.all(AGENTS.map((h) => mainPid(h)));
  writeVars(debs[version2]!);
  const { out } = await ansible('upgrade.yml');
  // serial: 1 upgrades one host per play batch.
  assert.equal([...out.matchAll(/^PLAY \[Upgrade fleetban host by host\]/gm)].length, CONTAINERS.length);
  for (const h of CONTAINERS) assert.equal((await onHost(h, 'dpkg-query -W -f=\'${Version}\' fleetban')).stdout, version2, h);
  const afterPids = await Promise.all(AGENTS.map((h) => mainPid(h)));
  AGENTS.forEach((h, i) => assert.notEqual(afterPids[i], before[i], `${h}'s agent restarted with the new package`));
  for (const h of AGENTS) {
    assert.ok((await ruleset(h)).includes(ATTACKER), `${h} still holds the ban`);
    assert.equal(await reaches('atk', h), false);
  }
});

step('the unban play, signed with the admin key on the control machine, lifts the ban on every host', async () => {
  const { out } = await ansible('unban.yml', ['-e', `fleetban_unban_addr=${ATTACKER}`]);
  assert.match(out, /unbanned 203\.0\.113\.66/);
  await waitUntil(async () => (await Promise.all(AGENTS.map((h) => reaches('atk', h)))).every(Boolean), 30_000, 'attacker reaches every host again', 1000);
});

step('purge stops the agent and removes its state and configuration; installing again works with the user kept', async () => {
  await onHost('h3', 'apt-get purge -y -q fleetban');
  assert.notEqual((await onHost('h3', 'systemctl is-active fleetban-agent', false)).stdout.trim(), 'active');
  for (const path of ['/var/lib/fleetban', '/etc/fleetban', '/usr/lib/fleetban']) {
    assert.notEqual((await onHost('h3', `test -e ${path}`, false)).exitCode, 0, `${path} removed by purge`);
  }
  assert.equal((await onHost('h3', 'getent passwd fleetban', false)).exitCode, 0, 'the system user stays');
  await onHost('h3', `apt-get install -y -q /var/cache/fleetban/fleetban_${version2}_amd64.deb`);
  assert.equal((await onHost('h3', 'stat -c %U:%a /var/lib/fleetban /etc/fleetban/secrets')).stdout.trim(), 'fleetban:750\nroot:700');
});
