/**
 * fail2ban's mail actions (`sendmail`, `sendmail-whois`, `sendmail-whois-lines`), run without a
 * shell: the message is built here and written to the mail program's stdin, the program and its
 * arguments are a fixed list. Attacker-controlled text (log lines, whois answers, which in
 * fail2ban reached `mail`'s tilde escapes, CVE-2021-32749, and the shell, CVE-2012-5642) only ever
 * goes into the body, made printable and quoted-printable encoded; header values are fleetban's
 * own or validated configuration, and are stripped of line breaks anyway.
 */
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import type { MailAction } from '../../common/config/notify-actions.js';
import { FLEETBAN_VERSION } from '../../common/protocol/version.js';
import { printable, type BanEvent, type NotificationSender } from './event.js';

/** A whois answer is cut to this many characters. */
const WHOIS_CHARS = 32 * 1024;
/** How long the mail program may take. */
const MAIL_TIMEOUT_MS = 30_000;

/** @returns the whois answer, or a line saying why there is none (the mail goes out either way) */
export async function runWhois(action: MailAction, addr: string): Promise<string> {
  const argv = action.whoisCommand.map((w) => w.replaceAll('<ip>', addr));
  const r = await execa(argv[0]!, argv.slice(1), {
    reject: false, timeout: action.whoisTimeoutMs, stdin: 'ignore', maxBuffer: 4 * WHOIS_CHARS, encoding: 'utf8', killSignal: 'SIGKILL',
  });
  const out = typeof r.stdout === 'string' ? r.stdout : '';
  if (r.timedOut) return `(whois gave no answer within ${action.whoisTimeoutMs / 1000} s)${out ? `\n${out.slice(0, WHOIS_CHARS)}` : ''}`;
  if (r.failed && !out.trim()) {
    const why = (typeof r.stderr === 'string' && r.stderr.trim()) || r.shortMessage || `exit code ${r.exitCode}`;
    return `(whois failed: ${why.slice(0, 500)})`;
  }
  return out.length > WHOIS_CHARS ? `${out.slice(0, WHOIS_CHARS)}\n(whois answer cut at ${WHOIS_CHARS} characters)` : out;
}

/** One header line: no line breaks or controls, non-ASCII as an RFC 2047 encoded word. */
function header(name: string, value: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this removes
  const clean = value.replace(/[\u0000-\u001f\u007f]+/g, ' ');
   
  const text = /^[\x20-\x7e]*$/.test(clean) ? clean : `=?UTF-8?B?${Buffer.from(clean, 'utf8').toString('base64')}?=`;
  return `${name}: ${text}\r\n`;
}

/** A display name as an RFC 5322 quoted string (or an encoded word when not ASCII). */
function displayName(name: string): string {
   
  if (!/^[\x20-\x7e]*$/.test(name)) return `=?UTF-8?B?${Buffer.from(name, 'utf8').toString('base64')}?=`;
  return `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Quoted-printable (RFC 2045) of UTF-8 text: lines of at most 76 characters, only printable ASCII on the wire. */
export function quotedPrintable(text: string): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    let encoded = '';
    const bytes = Buffer.from(line, 'utf8');
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      const last = i === bytes.length - 1;
      const plain = (b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !last);
      encoded += plain ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
    }
    // Soft line breaks, never inside an =XX escape.
    while (encoded.length > 76) {
      let cut = 75;
      if (encoded[cut - 1] === '=') cut -= 1;
      else if (encoded[cut - 2] === '=') cut -= 2;
      out.push(`${encoded.slice(0, cut)}=`);
      encoded = encoded.slice(cut);
    }
    out.push(encoded);
  }
  return out.join('\r\n');
}

function when(ms: number): string {
  return ms === -1 ? 'never (permanent ban)' : new Date(ms).toISOString();
}

/** @returns the mail's body text (before encoding) */
export function mailBody(action: MailAction, event: BanEvent, whois: string | undefined): string {
  const parts: string[] = [];
  const hosts = event.hosts.length > 0 ? event.hosts.join(', ') : event.origin;
  const failures = event.failures > 0 ? `${event.failures} failure${event.failures === 1 ? '' : 's'}` : 'failures';
  parts.push('Hi,', '');
  parts.push(`The address ${event.addr} has been banned in jail ${action.name} of cluster ${event.cluster}, on every host,`);
  parts.push(event.origin.startsWith('cli:')
    ? `by hand (${printable(event.origin)}).`
    : `after ${failures} reported by ${event.hosts.length || 1} host${event.hosts.length > 1 ? 's' : ''}: ${printable(hosts)}.`);
  parts.push('', `Banned since: ${when(event.since)}`, `Banned until: ${when(event.until)}`);
  if (event.reason) parts.push(`Reason:       ${printable(event.reason)}`);
  if (whois !== undefined) {
    parts.push('', `Here is more information about ${event.addr}:`, '');
    parts.push(...whois.split(/\r?\n/).map(printable));
  }
  if (action.lines) {
    const shown = event.matches.slice(-action.grepmax);
    parts.push('', `Lines containing failures of ${event.addr} (host, time, line; the newest ${shown.length}):`, '');
    if (shown.length === 0) parts.push('(no matched lines were kept for this ban)');
    for (const m of shown) parts.push(`${printable(m.host)}  ${new Date(m.time).toISOString()}  ${printable(m.line)}`);
  }
  parts.push('', 'Regards,', '', `fleetban ${FLEETBAN_VERSION} on ${event.from}`);
  return parts.join('\n');
}

/** @returns the whole message as the mail program reads it (CRLF line ends) */
export function buildMail(action: MailAction, event: BanEvent, whois: string | undefined): string {
  const domain = action.sender.includes('@') ? action.sender.slice(action.sender.indexOf('@') + 1) : 'fleetban.invalid';
  let head = '';
  head += header('Subject', `[Fail2Ban] ${action.name}: banned ${event.addr} from ${event.from}`);
  head += `From: ${displayName(action.sendername)} <${action.sender}>\r\n`;
  head += header('To', action.dest.join(', '));
  head += header('Date', new Date().toUTCString().replace('GMT', '+0000'));
  head += header('Message-ID', `<${randomBytes(12).toString('hex')}@${domain}>`);
  head += 'Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n';
  return `${head}\r\n${quotedPrintable(mailBody(action, event, whois))}\r\n`;
}

/** The argument list of the mail program for one action. */
export function mailArgv(action: MailAction): string[] {
  const argv: string[] = [];
  for (const w of action.mailCommand) {
    if (w === '<dest>') argv.push(...action.dest);
    else argv.push(w.replaceAll('<sender>', action.sender).replaceAll('<dest>', action.dest.join(',')));
  }
  return argv;
}

/** Sends a ban's mail through the mail program (Debian: /usr/sbin/sendmail from any MTA, or msmtp-mta). */
export class MailSender implements NotificationSender {
  constructor(private readonly action: MailAction) {}

  async send(event: BanEvent): Promise<void> {
    const whois = this.action.whois ? await runWhois(this.action, event.addr) : undefined;
    const argv = mailArgv(this.action);
    const r = await execa(argv[0]!, argv.slice(1), {
      input: buildMail(this.action, event, whois), reject: false, timeout: MAIL_TIMEOUT_MS, killSignal: 'SIGKILL', encoding: 'utf8',
    });
    if (r.failed) {
      const why = (typeof r.stderr === 'string' && r.stderr.trim()) || r.shortMessage || `exit code ${r.exitCode}`;
      throw new Error(`${argv[0]} failed: ${why.slice(0, 500)}`);
    }
  }
}
