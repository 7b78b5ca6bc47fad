import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJails } from '../../../common/config/jails.js';
import { loadFleetbanConfig } from '../../../common/config/fleetban-config.js';

function configDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'fb-jails-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

test("the Arch wiki's ssh-iptables block loads unchanged and protects sshd", () => {
  const dir = configDir({
    'jail.conf': `[ssh-iptables]
enabled  = true
filter   = sshd
action   = iptables[name=SSH, port=ssh, protocol=tcp]
           sendmail-whois[name=SSH, dest=your@mail.org, sender=fail2ban@mail.com]
logpath  = /var/log/auth.log
maxretry = 5
`,
  });
  const { jails, warnings } = loadJails(dir);
  assert.equal(jails.length, 1);
  const j = jails[0]!;
  assert.equal(j.name, 'ssh-iptables');
  assert.equal(j.filter, 'sshd');
  assert.deepEqual(j.logpath, ['/var/log/auth.log']);
  assert.deepEqual(j.ports, [[22, 22]]);
  assert.deepEqual(j.protocols, ['tcp']);
  assert.equal(j.enforce, true);
  assert.equal(j.actionName, 'SSH', "iptables[name=SSH] names the chain f2b-SSH on iptables hosts");
  assert.equal(j.maxretry, 5);
  assert.equal(j.findtime, 600);
  assert.equal(j.bantime, 600);
  assert.deepEqual(j.actions.map((a) => a.name), ['iptables', 'sendmail-whois']);
  assert.equal(j.actions[1]!.params.get('dest'), 'your@mail.org');
  assert.deepEqual(warnings, [], 'sendmail-whois is run by the coordinator once per cluster ban');
});

test('jail.local, jail.d/*.conf and jail.d/*.local override in order; DEFAULT is inherited', () => {
  const dir = configDir({
    'jail.conf': '[DEFAULT]\nbantime = 1h\nfindtime = 5m\n[sshd]\nenabled = true\nport = ssh\nlogpath = /var/log/auth.log\nmaxretry = 3\n[web]\nlogpath = /x\n',
    'jail.local': '[DEFAULT]\nbantime = 2h\n[sshd]\nmaxretry = 4\n',
    'jail.d/10-web.conf': '[web]\nenabled = true\nport = http,https\nbantime = -1\n',
    'jail.d/10-web.local': '[web]\nport = 8000:8080\n',
  });
  const { jails } = loadJails(dir);
  const sshd = jails.find((j) => j.name === 'sshd')!;
  const web = jails.find((j) => j.name === 'web')!;
  assert.equal(sshd.maxretry, 4);
  assert.equal(sshd.bantime, 7200);
  assert.equal(sshd.findtime, 300);
  assert.equal(web.bantime, -1);
  assert.deepEqual(web.ports, [[8000, 8080]]);
});

test('a jail without port blocks every port and protocol', () => {
  const { jails } = loadJails(configDir({ 'jail.conf': '[x]\nenabled = true\nlogpath = /l\n' }));
  assert.equal(jails[0]!.ports, 'all');
  assert.equal(jails[0]!.protocols, 'all');
});

test('bad values are refused with file, line and key', () => {
  const dir = configDir({ 'jail.conf': '[sshd]\nenabled = true\nlogpath = /l\n', 'jail.local': '[sshd]\n\nmaxretry = many\n' });
  assert.throws(() => loadJails(dir), (err: Error) => {
    assert.equal(err.name, 'ConfigError');
    assert.match(err.message, /jail\.local:3, key 'maxretry': jail \[sshd\]: 'many' is not a whole number/);
    return true;
  });
  const d2 = configDir({ 'jail.conf': '[sshd]\nenabled = true\nlogpath = /l\nbantime = 10 fortnights\n' });
  assert.throws(() => loadJails(d2), /jail\.conf:4, key 'bantime'.*unknown time unit 'fortnights'/);
  const d3 = configDir({ 'jail.conf': '[sshd]\nenabled = true\nlogpath = /l\nport = notaservice\n' });
  assert.throws(() => loadJails(d3), /jail\.conf:4, key 'port'.*'notaservice' is not a port number or a service name/);
  const d4 = configDir({ 'jail.conf': '[sshd]\nenabled = maybe\n' });
  assert.throws(() => loadJails(d4), /jail\.conf:2, key 'enabled'/);
});

test('disabled jails are not validated', () => {
  const { jails } = loadJails(configDir({ 'jail.conf': '[broken]\nmaxretry = many\n' }));
  assert.equal(jails.length, 0);
});

test('fleetban.conf: defaults, overrides from fleetban.local, unknown keys refused', () => {
  const empty = loadFleetbanConfig(configDir({}));
  assert.equal(empty.cluster, 'default');
  assert.equal(empty.redis.private, true);
  assert.match(empty.redis.url, /^unix:\/\/.*\/redis\/redis\.sock$/);
  const dir = configDir({
    'fleetban.conf': '[cluster]\nname = prod\n[redis]\nurl = redis://127.0.0.1:7777/2\n[agent]\nbanaction = dry-run\nheartbeat = 2s\n',
    'fleetban.local': '[cluster]\nname = staging\n',
  });
  const c = loadFleetbanConfig(dir);
  assert.equal(c.cluster, 'staging');
  assert.equal(c.redis.url, 'redis://127.0.0.1:7777/2');
  assert.equal(c.redis.private, false);
  assert.equal(c.agent.heartbeat, 2);
  assert.throws(() => loadFleetbanConfig(configDir({ 'fleetban.conf': '[agent]\nbanacton = nftables\n' })), /fleetban\.conf:2, key 'banacton': unknown option in \[agent\]/);
  assert.throws(() => loadFleetbanConfig(configDir({ 'fleetban.conf': '[cluster]\nname = a b\n' })), /key 'name'/);
  assert.throws(() => loadFleetbanConfig(configDir({ 'fleetban.conf': '[redis]\nurl = http://x\n' })), /must start with redis:\/\//);
});
