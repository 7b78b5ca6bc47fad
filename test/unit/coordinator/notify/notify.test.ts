import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseActions } from '../../../../common/config/actions.js';
import { notificationActions, type MailAction } from '../../../../common/config/notify-actions.js';
import { loadJails } from '../../../../common/config/jails.js';
import { buildMail, mailArgv, quotedPrintable } from '../../../../coordinator/notify/mail.js';
import { webhookBody } from '../../../../coordinator/notify/webhook.js';
import type { BanEvent } from '../../../../coordinator/notify/event.js';
import { decodeQuotedPrintable, parseMail } from '../../../helpers/smtp-server.js';

const mail = (text: string): MailAction => notificationActions('sshd', parseActions(text))[0] as MailAction;

const event: BanEvent = {
  cluster: 'c', jail: 'sshd', addr: '203.0.113.5', since: Date.UTC(2026, 0, 1), until: -1, reason: '3 failures in 600s',
  origin: 'h1', failures: 3, hosts: ['h1', 'h2'], from: 'coord1',
  matches: [{ time: Date.UTC(2026, 0, 1), host: 'h1', line: 'x\r\nBcc: a@b.c\u0000\u001b]0;t\u0007 ünïcode' }],
};

test("fail2ban's parameters and defaults: dest, sender, sendername, name", () => {
  const a = mail('sendmail-whois-lines[dest="a@example.org b@example.org", sender=f2b@example.org]');
  assert.deepEqual(a.dest, ['a@example.org', 'b@example.org']);
  assert.equal(a.sendername, 'Fail2Ban');
  assert.equal(a.name, 'sshd', 'name defaults to the jail');
  assert.equal(a.whois && a.lines, true);
  assert.deepEqual(mail('sendmail').dest, ['root']);
  assert.deepEqual(mailArgv(a), ['/usr/sbin/sendmail', '-i', '-f', 'f2b@example.org', 'a@example.org', 'b@example.org']);
  assert.deepEqual(mailArgv(mail('mail-whois[mailcmd="/usr/bin/msmtp -C /etc/x <dest>", dest=z@example.org]')), ['/usr/bin/msmtp', '-C', '/etc/x', 'z@example.org']);
});

test('parameters that could become options or headers are refused at load, naming file, line and key', () => {
  assert.throws(() => mail('sendmail[dest=-oQ/tmp/x]'), /dest: '-oQ\/tmp\/x' is not a mail address/);
  assert.throws(() => mail('sendmail[sender="a b@c"]'), /sender/);
  assert.throws(() => notificationActions('j', parseActions('webhook[url=file:///etc/passwd]')), /must be http/);
  assert.throws(() => notificationActions('j', parseActions('webhook')), /url: is required/);
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-notify-'));
  writeFileSync(join(dir, 'jail.conf'), '[sshd]\nenabled = true\nlogpath = /x\naction = sendmail[dest=-X]\n');
  assert.throws(() => loadJails(dir), /jail\.conf:4, key 'action': .*dest/);
});

test('hostile text stays in the body, printable, and the wire is short ASCII lines', () => {
  const raw = buildMail(mail('sendmail-whois-lines[sendername="Ops <x>\\"", dest=a@example.org]'), event, 'whois line\r\nX-Evil: 1\u001b[31m');
  const { headers, body } = parseMail(raw.replace(/\r\n$/, ''));
  assert.deepEqual(headers.map(([n]) => n), ['subject', 'from', 'to', 'date', 'message-id', 'auto-submitted', 'mime-version', 'content-type', 'content-transfer-encoding']);
  for (const line of raw.split('\r\n')) assert.ok(/^[\x20-\x7e]{0,998}$/.test(line), `ASCII line: ${JSON.stringify(line)}`);
  const text = decodeQuotedPrintable(body);
  assert.ok(text.includes('x\\x0d\\x0aBcc: a@b.c\\x00\\x1b]0;t\\x07 ünïcode'));
  assert.ok(text.includes('X-Evil: 1\\x1b[31m'));
  assert.match(text, /after 3 failures reported by 2 hosts: h1, h2\./);
  assert.match(text, /Banned until: never/);
});

test('quoted-printable round-trips and never splits an escape', () => {
  const s = `${'é'.repeat(60)} end \n=\t\n${'a'.repeat(200)}`;
  const qp = quotedPrintable(s);
  for (const l of qp.split('\r\n')) assert.ok(l.length <= 76);
  assert.equal(decodeQuotedPrintable(qp), s);
});

test('the webhook body is the cluster view as JSON', () => {
  const [hook] = notificationActions('sshd', parseActions('webhook[url=https://example.org/h, lines=1]'));
  const body = JSON.parse(webhookBody(hook as never, event)) as Record<string, unknown>;
  assert.deepEqual({ ...body, since: undefined }, {
    event: 'ban', name: 'sshd', cluster: 'c', jail: 'sshd', addr: '203.0.113.5', since: undefined, until: null, reason: '3 failures in 600s',
    origin: 'h1', failures: 3, hosts: ['h1', 'h2'], lines: [{ time: '2026-01-01T00:00:00.000Z', host: 'h1', line: event.matches[0]!.line }], coordinator: 'coord1',
  });
});

test("Debian jail.conf's %(action_mwl)s macro gives a sendmail-whois-lines with destemail and sender", () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-notify-'));
  writeFileSync(join(dir, 'jail.conf'), [
    '[DEFAULT]', 'destemail = sec@example.org', 'sender = f2b@example.org', 'mta = sendmail', 'protocol = tcp', 'chain = <known/chain>', 'port = 0:65535',
    'banaction = iptables-multiport',
    'action_ = %(banaction)s[port="%(port)s", protocol="%(protocol)s", chain="%(chain)s"]',
    'action_mwl = %(action_)s',
    '             %(mta)s-whois-lines[sender="%(sender)s", dest="%(destemail)s", logpath="%(logpath)s", chain="%(chain)s"]',
    'action = %(action_mwl)s', '',
    '[sshd]', 'enabled = true', 'port = ssh', 'logpath = /var/log/auth.log', '',
  ].join('\n'));
  const { jails, warnings } = loadJails(dir);
  assert.deepEqual(warnings, []);
  const [a] = notificationActions('sshd', jails[0]!.actions) as MailAction[];
  assert.equal(a!.action, 'sendmail-whois-lines');
  assert.deepEqual(a!.dest, ['sec@example.org']);
  assert.equal(a!.sender, 'f2b@example.org');
  assert.equal(jails[0]!.enforce, true);
});
