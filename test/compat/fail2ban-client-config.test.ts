import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { loadJails } from '../../common/config/jails.js';
import { parseTimeSpec } from '../../common/config/time-spec.js';
import { parsePorts, parseProtocols } from '../../common/config/ports.js';
import { installFail2ban, FAIL2BAN_CLIENT, FAIL2BAN_PYTHON } from '../helpers/fail2ban-install.js';
import { runCli } from '../helpers/spawn.js';

/**
 * Exact migration: Debian's stock /etc/fail2ban plus a realistic jail.local (and jail.d files that
 * test the reading order) give the same enabled jails, ports, protocols, maxretry, findtime and
 * bantime in fleetban as `fail2ban-client -d` prints. fail2ban is Debian's package, installed at
 * test time; its service is never started.
 */
const installed = await installFail2ban();
if (!installed.ok && process.env.CI) throw new Error(`CI must run the fail2ban compatibility test: ${installed.reason}`);

interface F2bJail {
  maxretry?: number;
  findtime?: string;
  bantime?: string;
  port?: string;
  protocol?: string;
}

/** `fail2ban-client -c DIR -d`, its Python-literal lines read by Python itself. */
async function fail2banDump(dir: string): Promise<Map<string, F2bJail>> {
  const dump = await execa(FAIL2BAN_CLIENT, ['-c', dir, '-d']);
  const json = await execa(FAIL2BAN_PYTHON, ['-c', 'import sys, ast, json; print(json.dumps([ast.literal_eval(l) for l in sys.stdin if l.startswith("[")]))'], { input: dump.stdout });
  const jails = new Map<string, F2bJail>();
  for (const cmd of JSON.parse(json.stdout) as unknown[][]) {
    const [verb, name, key, value, params] = cmd as [string, string, string, unknown, unknown];
    if (verb === 'add') jails.set(name, {});
    const j = jails.get(name);
    if (!j) continue;
    if (verb === 'set' && key === 'maxretry') j.maxretry = Number(value);
    if (verb === 'set' && key === 'findtime') j.findtime = String(value);
    if (verb === 'set' && key === 'bantime') j.bantime = String(value);
    // The first action's parameters are the jail's firewall scope, as fleetban reads them.
    if (verb === 'multi-set' && key === 'action' && j.port === undefined) {
      const p = new Map(params as Array<[string, string]>);
      j.port = p.get('port');
      j.protocol = p.get('protocol');
    }
  }
  return jails;
}

test("Debian's /etc/fail2ban with a jail.local: the jails fail2ban-client -d runs, with the same numbers", async (t) => {
  if (!installed.ok) return t.skip(installed.reason);
  const work = mkdtempSync(join(tmpdir(), 'fleetban-f2b-compat-'));
  try {
    const dir = join(work, 'fail2ban');
    // The package's tree, without any .local an administrator of this machine may have added.
    cpSync('/etc/fail2ban', dir, { recursive: true, filter: (src) => !src.endsWith('.local') });
    const log = (name: string) => {
      const p = join(work, name);
      writeFileSync(p, '');
      return p;
    };
    writeFileSync(join(dir, 'jail.local'), [
      '[DEFAULT]', 'bantime = 1h', 'findtime = 15m', 'maxretry = 3', 'ignoreip = 127.0.0.1/8 ::1 192.0.2.0/24', 'banaction = nftables-multiport',
      '[sshd]', 'port = 2222', `logpath = ${log('auth.log')}`,
      '[nginx-http-auth]', 'enabled = true', `logpath = ${log('nginx-error.log')}`,
      '[postfix]', 'enabled = true', 'mode = aggressive', `logpath = ${log('mail.log')}`, 'maxretry = 5',
      '[dovecot]', 'enabled = true', `logpath = ${join(work, 'mail.log')}`, 'bantime = 2h',
      '[recidive]', 'enabled = true', `logpath = ${log('fail2ban.log')}`,
      '[pure-ftpd]', 'enabled = false',
      '',
    ].join('\n'));
    // Read before jail.local (so it loses there), and after it (so it wins).
    writeFileSync(join(dir, 'jail.d', '50-ftp.conf'), `[pure-ftpd]\nenabled = true\nlogpath = ${log('ftp.log')}\n[nginx-http-auth]\nmaxretry = 9\n`);
    writeFileSync(join(dir, 'jail.d', '60-web.local'), '[nginx-http-auth]\nmaxretry = 4\nport = 8080,8443\n');

    const f2b = await fail2banDump(dir);
    const ours = loadJails(dir).jails;
    assert.deepEqual(ours.map((j) => j.name).sort(), [...f2b.keys()].sort(), 'the same enabled jails');
    assert.deepEqual([...f2b.keys()].sort(), ['dovecot', 'nginx-http-auth', 'postfix', 'recidive', 'sshd'], 'the test exercises what it means to');
    for (const j of ours) {
      const f = f2b.get(j.name)!;
      assert.equal(j.maxretry, f.maxretry, `${j.name} maxretry`);
      assert.equal(j.findtime, parseTimeSpec(f.findtime!), `${j.name} findtime`);
      assert.equal(j.bantime, parseTimeSpec(f.bantime!), `${j.name} bantime`);
      // fail2ban's allports actions block 0:65535; fleetban says all.
      const ports = f.port === '0:65535' ? 'all' : parsePorts(f.port!);
      assert.deepEqual(j.ports, ports, `${j.name} ports (${f.port})`);
      assert.deepEqual(j.protocols, parseProtocols(f.protocol!), `${j.name} protocol`);
    }
    assert.equal(ours.find((j) => j.name === 'nginx-http-auth')!.maxretry, 4);

    // And the whole directory passes fleetban's check, with Debian's filters, naming what differs.
    const check = await runCli(['--config', dir, 'check-config']);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /warning: jail \[recidive\]: logpath .*fail2ban\.log is fail2ban's own log.*backend = bans/);
    assert.match(check.stdout, /OK: .*5 enabled jails/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
