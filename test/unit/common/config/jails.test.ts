import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJails } from '../../../../common/config/jails.js';
import { loadFleetbanConfig } from '../../../../common/config/fleetban-config.js';

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

test("fail2ban's reading order: jail.conf, jail.d/*.conf, jail.local, jail.d/*.local", () => {
  // Debian ships jail.d/defaults-debian.conf enabling sshd; the operator's jail.local must win over it.
  const dir = configDir({
    'jail.conf': '[sshd]\nlogpath = /l\nmaxretry = 1\n[web]\nlogpath = /w\n',
    'jail.d/defaults-debian.conf': '[sshd]\nenabled = true\nmaxretry = 2\n[web]\nenabled = true\nmaxretry = 2\n',
    'jail.local': '[sshd]\nenabled = false\n[web]\nmaxretry = 3\n',
    'jail.d/zz.local': '[web]\nfindtime = 1m\n',
  });
  const { jails, files } = loadJails(dir);
  assert.deepEqual(jails.map((j) => j.name), ['web'], 'jail.local disables the sshd jail jail.d enabled');
  assert.equal(jails[0]!.maxretry, 3, 'jail.local overrides jail.d/*.conf');
  assert.equal(jails[0]!.findtime, 60);
  assert.deepEqual(files.map((f) => f.slice(dir.length + 1)), ['jail.conf', 'jail.d/defaults-debian.conf', 'jail.local', 'jail.d/zz.local']);
});

test('a configuration directory that does not exist is refused', () => {
  assert.throws(() => loadJails('/nonexistent/fleetban-conf'), /^ConfigError: \/nonexistent\/fleetban-conf: configuration directory does not exist/);
});

test('backends: one list for the jail loader and the log sources', async () => {
  const { createLogSources } = await import('../../../../agent/sources/index.js');
  const dir = configDir({ 'jail.conf': '[sshd]\nenabled = true\nlogpath = /l\nbackend = inotify\n' });
  assert.throws(() => loadJails(dir), /jail\.conf:4, key 'backend': jail \[sshd\]: unknown backend 'inotify' \(fail2ban's name for it is pyinotify\)/);
  assert.throws(() => createLogSources({ name: 'sshd', backend: 'inotify', logpath: ['/l'], logencoding: 'auto', journalmatch: [] }), /unknown backend 'inotify'/);
  for (const b of ['auto', 'polling', 'pyinotify', 'gamin']) {
    const j = loadJails(configDir({ 'jail.conf': `[sshd]\nenabled = true\nlogpath = /l\nbackend = ${b}\n` })).jails[0]!;
    assert.equal(j.backendSpec.kind, 'files', b);
    assert.equal(createLogSources(j).length, 1, `${b}: the sources accept what the loader accepts`);
  }
  const bans = loadJails(configDir({ 'jail.conf': '[recidive]\nenabled = true\nbackend = bans\n' })).jails[0]!;
  assert.equal(bans.countsBans, true);
  assert.deepEqual(createLogSources(bans), []);
});

test('fail2ban options fleetban does not honour as such are named in a warning saying what it does instead', () => {
  const dir = configDir({
    'jail.conf': [
      '[DEFAULT]', 'usedns = yes', 'logtimezone = UTC',
      '[sshd]', 'enabled = true', 'logpath = /l', 'chain = INPUT', 'blocktype = REJECT --reject-with icmp-port-unreachable',
      '[web]', 'enabled = true', 'logpath = /w', 'action = nftables[blocktype=drop]',
      '[recidive]', 'enabled = true', 'logpath = /var/log/fail2ban.log',
    ].join('\n') + '\n',
  });
  const { jails, warnings } = loadJails(dir);
  const by = new Map(jails.map((j) => [j.name, j]));
  assert.equal(by.get('sshd')!.blocktype, 'reject');
  assert.equal(by.get('web')!.blocktype, 'drop');
  assert.equal(by.get('sshd')!.options.get('logtimezone'), 'UTC', 'logtimezone reaches the filter');
  assert.ok(!warnings.some((w) => /logtimezone/.test(w)), 'and is not called unknown');
  assert.ok(warnings.includes("jail [sshd]: option 'chain' is not used: fleetban's rules live in its own table/chain hooked into input, whatever chain names"));
  assert.ok(warnings.some((w) => /^jail \[sshd\]: usedns = yes: fleetban never resolves host names/.test(w)));
  assert.ok(warnings.some((w) => /^jail \[recidive\]: logpath \/var\/log\/fail2ban\.log is fail2ban's own log.*set backend = bans/.test(w)));
  assert.throws(() => loadJails(configDir({ 'jail.conf': '[a]\nenabled = true\nlogpath = /l\nblocktype = tarpit\n' })), /jail\.conf:4, key 'blocktype'.*neither drop nor reject/);
});

test("fail2ban.conf/fail2ban.local: dbpurgeage is read, settings without an equivalent are warned about", async () => {
  const { readFail2banSettings } = await import('../../../../common/config/fail2ban-settings.js');
  const dir = configDir({
    'fail2ban.conf': '[DEFAULT]\nloglevel = INFO\nlogtarget = /var/log/fail2ban.log\ndbfile = /var/lib/fail2ban/fail2ban.sqlite3\ndbpurgeage = 1d\n[Definition]\n',
    'fail2ban.local': '[Definition]\ndbpurgeage = 7d\nlogtarget = SYSLOG\n',
  });
  assert.equal(loadFleetbanConfig(dir).coordinator.dbpurgeage, 7 * 86400);
  const s = readFail2banSettings(dir);
  assert.equal(s.dbfile, '/var/lib/fail2ban/fail2ban.sqlite3');
  assert.deepEqual(s.warnings, ['fail2ban.conf: logtarget = SYSLOG is not used: fleetban logs to stdout/stderr (journald under systemd)']);
  writeFileSync(join(dir, 'fleetban.conf'), '[coordinator]\ndbpurgeage = 2d\n');
  assert.equal(loadFleetbanConfig(dir).coordinator.dbpurgeage, 2 * 86400, 'fleetban.conf wins');
});

test("blocktype: fail2ban's iptables, nftables and shorewall values map to drop, reject or tcp-reset", async () => {
  const { parseBlocktype } = await import('../../../../common/config/jails.js');
  const cases: Array<[string, string]> = [
    ['', 'drop'], ['DROP', 'drop'], ['drop', 'drop'],
    ['REJECT', 'reject'], ['reject', 'reject'], ['REJECT --reject-with icmp-port-unreachable', 'reject'],
    ['REJECT --reject-with icmp6-port-unreachable', 'reject'], ['reject with icmpx type port-unreachable', 'reject'],
    ['reject with icmp type port-unreachable', 'reject'],
    ['REJECT --reject-with tcp-reset', 'tcp-reset'], ['reject with tcp reset', 'tcp-reset'],
  ];
  for (const [text, want] of cases) {
    const r = parseBlocktype(text);
    assert.equal(r.blocktype, want, text);
    assert.equal(r.warning, undefined, text);
  }
  assert.deepEqual(parseBlocktype('REJECT --reject-with icmp-host-prohibited'),
    { blocktype: 'reject', warning: 'fleetban rejects with ICMP port unreachable, not icmp-host-prohibited' });
  assert.equal(parseBlocktype('reject with icmpx type host-unreachable').warning, 'fleetban rejects with ICMP port unreachable, not host-unreachable');
  assert.throws(() => parseBlocktype('redirect to 2222'), /neither drop nor reject: one of DROP, REJECT/);
  const dir = configDir({ 'jail.conf': '[a]\nenabled = true\nlogpath = /l\naction = iptables[blocktype="REJECT --reject-with tcp-reset"]\n' });
  assert.equal(loadJails(dir).jails[0]!.blocktype, 'tcp-reset', "the action's parameter is read");
});

test("fail2ban.conf loglevel: fail2ban's names and numbers map to pino levels; a bad value names file, line and key", async () => {
  const { readFail2banSettings, fail2banLogLevel } = await import('../../../../common/config/fail2ban-settings.js');
  const cases: Array<[string, string]> = [
    ['CRITICAL', 'fatal'], ['ERROR', 'error'], ['WARNING', 'warn'], ['warn', 'warn'], ['NOTICE', 'info'], ['INFO', 'info'],
    ['DEBUG', 'debug'], ['TRACEDEBUG', 'trace'], ['HEAVYDEBUG', 'trace'],
    ['50', 'fatal'], ['40', 'error'], ['30', 'warn'], ['25', 'info'], ['20', 'info'], ['10', 'debug'], ['5', 'trace'],
  ];
  for (const [text, want] of cases) assert.equal(fail2banLogLevel(text), want, text);
  const dir = configDir({ 'fail2ban.conf': '[Definition]\nloglevel = INFO\n', 'fail2ban.local': '[Definition]\nloglevel = DEBUG\n' });
  assert.deepEqual(readFail2banSettings(dir).loglevel, { level: 'debug', text: 'DEBUG' }, 'fail2ban.local wins, as in fail2ban');
  assert.deepEqual(readFail2banSettings(dir).warnings, [], 'loglevel is read, not warned about');
  writeFileSync(join(dir, 'fail2ban.local'), '[Definition]\n\nloglevel = LOUD\n');
  assert.throws(() => readFail2banSettings(dir), /fail2ban\.local:3, key 'loglevel'.*'LOUD' is not a log level: one of CRITICAL/);
});
