import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { startRedis, randomCluster, type TestRedis } from '../helpers/redis-server.js';
import { startDaemon, writeConfig, type Daemon } from '../helpers/spawn.js';
import { startSmtpServer, parseMail, decodeQuotedPrintable, type TestSmtpServer } from '../helpers/smtp-server.js';
import { waitUntil } from '../helpers/wait.js';
import { xaddFailures } from '../helpers/cluster-procs.js';
import { clusterKeys, NOTIFIER_GROUP } from '../../common/protocol/keys.js';
import { IMPORTED_REASON } from '../../common/protocol/messages.js';
import { ClusterScripts } from '../../common/scripts/index.js';

/**
 * Notifications end to end with real parts: coordinators as processes, Debian's
 * /usr/sbin/sendmail (msmtp-mta) relaying to an SMTP server on loopback, Debian's whois, and a
 * local HTTP server for the webhook. One mail and one POST per cluster ban however many
 * coordinators run; hostile log lines stay in the body; whois failing or hanging does not stop the
 * mail; a failing notification is retried and never delays the ban; a coordinator that dies with
 * notifications pending hands them to another.
 */
let redis: TestRedis;
let c: Redis;
let smtp: TestSmtpServer;
let http: HttpServer;
let httpPort = 0;
/** Status the webhook answers with next (then 200). */
const httpFailures: number[] = [];
const posts: Array<Record<string, unknown>> = [];
let hang: TcpServer;
let hangPort = 0;
const hangSockets = new Set<Socket>();
const cluster = randomCluster();
const keys = clusterKeys(cluster);
const work = mkdtempSync(join(tmpdir(), 'fleetban-notify-'));
const daemons: Daemon[] = [];
let seq = 0;

function config(consumer: string): string {
  return writeConfig({
    'fleetban.conf': `[cluster]\nname = ${cluster}\n[redis]\nurl = ${redis.url}\n[coordinator]\nconsumer = ${consumer}\nclaim_idle = 2s\n`,
    'jail.conf': [
      '[DEFAULT]', 'maxretry = 3', 'findtime = 10m', 'bantime = 1h', 'logpath = /dev/null', '',
      '[sshd]', 'enabled = true', 'port = ssh',
      'action = iptables[name=SSH, port=ssh, protocol=tcp]',
      `         sendmail-whois-lines[name=SSH, dest="ops@example.org, sec@example.org", sender=fleetban@example.org, sendername="Fleet's Ban", whois="whois -h 127.0.0.1 -p ${hangPort} <ip>", whoistimeout=1]`,
      `         webhook[url=http://127.0.0.1:${httpPort}/hook?token=secret]`, '',
      '[postfix]', 'enabled = true', 'filter = sshd',
      'action = sendmail-whois[dest=postmaster@example.org, sender=fleetban@example.org]', '',
      '[quiet]', 'enabled = true', 'filter = sshd', '',
    ].join('\n'),
  });
}

function coordinator(consumer: string): Daemon {
  // msmtp (Debian's msmtp-mta, /usr/sbin/sendmail) reads ~/.msmtprc: the daemon's HOME is the test's.
  const d = startDaemon(['--config', config(consumer), 'coordinator'], { HOME: work });
  daemons.push(d);
  return d;
}

/** Report failures of `addr` as if agents `hosts` had seen them (round robin), with the given lines. */
async function report(jail: string, addr: string, hosts: string[], lines: string[]): Promise<void> {
  for (let i = 0; i < lines.length; i++) {
    const host = hosts[i % hosts.length]!;
    await xaddFailures(c, keys, [{ eid: `t-${seq++}`, jail, addr, time: Date.now() - 1000, host, line: lines[i]! }]);
  }
}

const mailsTo = (rcpt: string) => smtp.mails.filter((m) => m.rcpt.includes(rcpt));

before(async () => {
  redis = await startRedis();
  c = redis.client();
  smtp = await startSmtpServer();
  writeFileSync(join(work, '.msmtprc'), `defaults\nauth off\ntls off\naccount default\nhost 127.0.0.1\nport ${smtp.port}\nfrom fleetban@example.org\n`);
  chmodSync(join(work, '.msmtprc'), 0o600);
  http = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      posts.push({ url: req.url, type: req.headers['content-type'], ...(JSON.parse(body) as Record<string, unknown>) });
      res.writeHead(httpFailures.shift() ?? 200).end();
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  httpPort = (http.address() as { port: number }).port;
  // A "whois server" that accepts and never answers: the whois client must be cut off.
  hang = createTcpServer((s) => { hangSockets.add(s); s.on('error', () => undefined); });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
  hangPort = (hang.address() as { port: number }).port;
});

after(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  c.disconnect();
  await redis.stop();
  await smtp.stop();
  for (const s of hangSockets) s.destroy();
  hang.close();
  http.close();
});

test('one mail and one webhook per cluster ban, with the hosts, the count and hostile lines kept in the body', async () => {
  const a = coordinator('c1');
  const b = coordinator('c2');
  await Promise.all([a, b].map((d) => d.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start')));
  const attacker = '203.0.113.5';
  const pwned = join(work, 'pwned');
  const hostile = [
    `Failed password for root from ${attacker}\r\nBcc: victim@example.net\r\nSubject: you are hacked`,
    `Failed password for x from ${attacker}\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<victim@example.net>\nDATA`,
    `Failed password for ~! touch ${pwned} $(touch ${pwned}) \`touch ${pwned}\` \u001b[2J from ${attacker}`,
  ];
  await report('sshd', attacker, ['h1', 'h2'], hostile);
  const mails = await smtp.waitForMail(1);
  await waitUntil(() => posts.length >= 1, 10_000, 'webhook POST');
  // Give a second coordinator every chance to send a duplicate.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(mailsTo('ops@example.org').length, 1, 'exactly one mail for the ban');
  assert.equal(posts.length, 1, 'exactly one POST for the ban');

  assert.deepEqual(mails.rcpt.sort(), ['ops@example.org', 'sec@example.org'], 'the configured recipients only');
  assert.equal(mails.from, 'fleetban@example.org');
  const { headers, body } = parseMail(mails.data);
  const names = headers.map(([n]) => n);
  assert.equal(names.filter((n) => n === 'subject').length, 1, 'one Subject');
  assert.ok(!names.includes('bcc'), 'no header injected from a log line');
  assert.match(headers.find(([n]) => n === 'subject')![1], /^\[Fail2Ban\] SSH: banned 203\.0\.113\.5 from /);
  assert.equal(headers.find(([n]) => n === 'from')![1], '"Fleet\'s Ban" <fleetban@example.org>');
  for (const line of body.split('\r\n')) assert.ok(line.length <= 76 && /^[\x20-\x7e]*$/.test(line), `wire line is short printable ASCII: ${line}`);
  const text = decodeQuotedPrintable(body);
  assert.match(text, /after 3 failures reported by 2 hosts: h1, h2\./);
  assert.match(text, /whois gave no answer within 1 s/, 'a hanging whois is cut off and the mail still goes out');
  assert.ok(text.includes('Bcc: victim@example.net'), 'the hostile text is shown...');
  assert.ok(text.includes('root from 203.0.113.5\\x0d\\x0aBcc: victim'), '...with its line breaks escaped');
  assert.ok(text.includes('\\x0a.\\x0aMAIL FROM'), 'a lone dot cannot end the message');
  assert.ok(text.includes('\\x1b[2J'), 'terminal escapes are made visible');
  assert.ok(!existsSync(pwned), 'nothing in a line was run');
  assert.equal(text.split('\n').filter((l) => l.includes(attacker) && /^h[12] {2}/.test(l)).length, 3, 'the three matched lines with their hosts');

  const post = posts[0]!;
  assert.equal(post.url, '/hook?token=secret');
  assert.equal(post.type, 'application/json');
  assert.equal(post.jail, 'sshd');
  assert.equal(post.addr, attacker);
  assert.equal(post.failures, 3);
  assert.deepEqual(post.hosts, ['h1', 'h2']);
  assert.deepEqual((post.lines as Array<{ line: string }>).map((l) => l.line).sort(), [...hostile].sort());
  await waitUntil(async () => Number((await c.xpending(keys.decisions, NOTIFIER_GROUP))[0]) === 0, 5000, 'notification acknowledged');
});

test('whois failing (no network here) still sends the mail; a jail without notifications sends none', async () => {
  const before = smtp.mails.length;
  await report('postfix', '198.51.100.9', ['h3'], ['a', 'b', 'c'].map((x) => `Failed password for ${x} from 198.51.100.9`));
  await report('quiet', '198.51.100.10', ['h3'], ['a', 'b', 'c'].map((x) => `Failed password for ${x} from 198.51.100.10`));
  const mail = await smtp.waitForMail(before + 1);
  assert.deepEqual(mail.rcpt, ['postmaster@example.org']);
  const text = decodeQuotedPrintable(parseMail(mail.data).body);
  assert.match(text, /whois failed: /, 'the whois failure is said in the mail');
  assert.ok(!text.includes('Lines containing failures'), 'sendmail-whois has no lines');
  assert.match(text, /after 3 failures reported by 1 host: h3\./);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(smtp.mails.length, before + 1, 'the quiet jail notified nobody');
  assert.ok(await c.hexists(keys.bans, 'quiet|198.51.100.10'), 'but banned');
});

test('a failing mail and webhook are retried later and never delay the ban', async () => {
  smtp.failWith = '451 4.3.0 try again later';
  httpFailures.push(503);
  const mailsBefore = mailsTo('ops@example.org').length;
  const postsBefore = posts.length;
  const attacker = '203.0.113.6';
  const started = Date.now();
  await report('sshd', attacker, ['h1'], ['x', 'y', 'z'].map((u) => `Failed password for ${u} from ${attacker}`));
  await waitUntil(async () => (await c.hexists(keys.bans, `sshd|${attacker}`)) === 1, 5000, 'ban recorded');
  const banAfter = Date.now() - started;
  await waitUntil(() => posts.length > postsBefore, 5000, 'first webhook attempt');
  await waitUntil(() => daemons.some((d) => d.count((l) => l.msg === 'notification failed; will retry' && l.addr === attacker) >= 2), 5000, 'both failures logged');
  smtp.failWith = undefined;
  // The first retry comes 5 s later.
  const mail = await smtp.waitForMail(smtp.mails.length + 1, 15_000);
  assert.ok(mail.rcpt.includes('ops@example.org'));
  await waitUntil(() => posts.filter((p) => p.addr === attacker).length === 2, 15_000, 'webhook retried');
  assert.ok(banAfter < 2000, `the ban did not wait for the notifications (${banAfter} ms)`);
  assert.equal(mailsTo('ops@example.org').length, mailsBefore + 1, 'the mail was sent once it could be');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(posts.filter((p) => p.addr === attacker).length, 2, 'the successful webhook is not sent again with the mail retry');
});

test('a coordinator that dies with notifications pending hands them to another', async () => {
  // Stop both, then run c3 alone while the webhook fails, kill it, and let c4 take over.
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
  const c3 = coordinator('c3');
  await c3.waitFor((l) => l.msg === 'coordinator started', 15_000, 'c3 start');
  httpFailures.push(503, 503, 503, 503, 503, 503);
  smtp.failWith = '451 4.3.0 try again later';
  const attacker = '203.0.113.7';
  await report('sshd', attacker, ['h2'], ['x', 'y', 'z'].map((u) => `Failed password for ${u} from ${attacker}`));
  await c3.waitFor((l) => l.msg === 'notification failed; will retry' && l.addr === attacker, 10_000, 'c3 fails to notify');
  await c3.stop('SIGKILL');
  httpFailures.length = 0;
  smtp.failWith = undefined;
  const before = mailsTo('ops@example.org').length;
  const c4 = coordinator('c4');
  await c4.waitFor((l) => l.msg === 'took over notifications of a coordinator that stopped', 15_000, 'c4 takes over');
  await waitUntil(() => mailsTo('ops@example.org').length === before + 1, 15_000, 'mail sent by c4');
  await waitUntil(() => posts.some((p) => p.addr === attacker) && posts.filter((p) => p.addr === attacker).length >= 2, 15_000, 'webhook sent by c4');
  await c4.waitFor((l) => l.addr === attacker && l.action === 'webhook' && String(l.msg).includes('notified'), 15_000, 'c4 notified');
});

test('bans imported from fail2ban are restored bans: not mailed, while a manual ban in the same jail is', async () => {
  const before = smtp.mails.length;
  const scripts = new ClusterScripts(c, keys);
  const t = Date.now();
  await scripts.ban({ jail: 'postfix', addr: '198.51.100.31', now: t, until: t + 600_000, reason: `${IMPORTED_REASON} (ban 1)`, origin: 'cli:root' });
  await scripts.ban({ jail: 'postfix', addr: '198.51.100.32', now: t, until: t + 600_000, reason: 'manual ban', origin: 'cli:root' });
  const mail = await smtp.waitForMail(before + 1);
  assert.match(mail.data, /198\.51\.100\.32/, 'the manual ban is mailed');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(smtp.mails.length, before + 1, 'the imported ban is not');
  assert.ok(!smtp.mails.some((m) => m.data.includes('198.51.100.31')));
});
