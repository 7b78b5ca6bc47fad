/**
 * Notification actions of a jail's `action =` list: fail2ban's mail actions (`sendmail`,
 * `sendmail-whois`, `sendmail-whois-lines`, and their `mail-*` twins, which differ in fail2ban only
 * by the mail program) and fleetban's `webhook`. The coordinator runs them once per cluster ban.
 * Parameters are checked here, when the jails load, so a mistake names its file and line.
 */
import type { ActionRef } from './actions.js';
import { parseTimeSpec } from './time-spec.js';
import { InvalidInputError } from '../errors.js';

/** A mail notification. */
export interface MailAction {
  readonly kind: 'mail';
  /** The action as written (`sendmail-whois`), for logs and metrics labels. */
  readonly action: string;
  readonly whois: boolean;
  readonly lines: boolean;
  /** Recipients; each one a plain address, never starting with '-'. */
  readonly dest: readonly string[];
  readonly sender: string;
  readonly sendername: string;
  /** fail2ban's `name`: the jail's name unless set, shown in the subject. */
  readonly name: string;
  /** Matched lines put in the mail at most (fail2ban's `grepmax`). */
  readonly grepmax: number;
  /** The whois command as arguments, `<ip>` replaced per argument (never through a shell). */
  readonly whoisCommand: readonly string[];
  readonly whoisTimeoutMs: number;
  /**
   * The mail program and its arguments (fail2ban's `mailcmd`): `<sender>` is replaced, a word
   * `<dest>` becomes one argument per recipient. Both were validated, so neither reads as an option.
   */
  readonly mailCommand: readonly string[];
}

/** A JSON POST per ban. */
export interface WebhookAction {
  readonly kind: 'webhook';
  readonly action: 'webhook';
  readonly url: string;
  readonly name: string;
  readonly timeoutMs: number;
  /** Matched lines sent at most (0: none). */
  readonly lines: number;
}

export type NotifyAction = MailAction | WebhookAction;

const MAIL_ACTIONS: Record<string, { whois: boolean; lines: boolean }> = {
  sendmail: { whois: false, lines: false },
  'sendmail-whois': { whois: true, lines: false },
  'sendmail-whois-lines': { whois: true, lines: true },
  mail: { whois: false, lines: false },
  'mail-whois': { whois: true, lines: false },
  'mail-whois-lines': { whois: true, lines: true },
};

/** What a mail address may hold here: no spaces, quotes, brackets or controls, and no leading '-' (an option to sendmail). */
const MAIL_ADDRESS_RE = /^[A-Za-z0-9._%+=~!#$&*/?^`{|}'][A-Za-z0-9._%+=~!#$&*/?^`{|}'-]{0,63}(?:@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))?$/;

/** Matched lines kept per address at most, whatever an action asks for: the record lives in Redis. */
export const MAX_MATCHED_LINES = 100;

/** @returns true when fleetban runs this action as a notification */
export function isNotificationAction(name: string): boolean {
  return name in MAIL_ACTIONS || name === 'webhook';
}

/**
 * The notification actions of a jail, validated.
 * @param jail the jail's name (fail2ban's default `name` parameter)
 * @throws Error naming the action and parameter that is wrong
 */
export function notificationActions(jail: string, actions: readonly ActionRef[]): NotifyAction[] {
  const out: NotifyAction[] = [];
  for (const a of actions) {
    if (!isNotificationAction(a.name)) continue;
    const param = (key: string): string | undefined => {
      const v = a.params.get(key)?.trim();
      return v === undefined || v === '' ? undefined : v;
    };
    const bad = (key: string, why: string): never => {
      throw new InvalidInputError(`action '${a.name}' parameter ${key}: ${why}`);
    };
    const plain = (key: string, value: string): string => {
      // Header text: one line of printable characters, so nothing can start a header of its own.
      if (/[\u0000-\u001f\u007f]/.test(value)) bad(key, 'must not contain control characters or line breaks');
      if (value.length > 200) bad(key, 'is longer than 200 characters');
      return value;
    };
    const time = (key: string, fallback: string): number => {
      try {
        const s = parseTimeSpec(param(key) ?? fallback);
        if (s <= 0) throw new InvalidInputError('must be positive');
        return s * 1000;
      } catch (err) {
        return bad(key, (err as Error).message);
      }
    };
    const count = (key: string, fallback: number): number => {
      const text = param(key);
      if (text === undefined) return fallback;
      const n = Number(text);
      if (!Number.isInteger(n) || n < 0) bad(key, `'${text}' is not a whole number`);
      return Math.min(n, MAX_MATCHED_LINES);
    };
    const name = plain('name', param('name') ?? jail);
    if (a.name === 'webhook') {
      const url = param('url') ?? bad('url', 'is required (webhook[url=https://…])');
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        return bad('url', `'${url}' is not a URL`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') bad('url', `'${url}' must be http:// or https://`);
      out.push({ kind: 'webhook', action: 'webhook', url, name, timeoutMs: time('timeout', '10s'), lines: count('lines', 20) });
      continue;
    }
    const kind = MAIL_ACTIONS[a.name]!;
    const dest = (param('dest') ?? 'root').split(/[\s,]+/).filter(Boolean);
    for (const d of dest) if (!MAIL_ADDRESS_RE.test(d)) bad('dest', `'${d}' is not a mail address`);
    const sender = param('sender') ?? 'fail2ban';
    if (!MAIL_ADDRESS_RE.test(sender)) bad('sender', `'${sender}' is not a mail address`);
    const words = (key: string, fallback: string): string[] => {
      const w = splitWords(param(key) ?? fallback);
      if (w.length === 0) bad(key, 'is empty');
      return w;
    };
    out.push({
      kind: 'mail',
      action: a.name,
      whois: kind.whois,
      lines: kind.lines,
      dest,
      sender,
      sendername: plain('sendername', param('sendername') ?? 'Fail2Ban'),
      name,
      grepmax: count('grepmax', 20),
      whoisCommand: words('whois', 'whois <ip>'),
      whoisTimeoutMs: time('whoistimeout', '10s'),
      mailCommand: words('mailcmd', '/usr/sbin/sendmail -i -f <sender> <dest>'),
    });
  }
  return out;
}

/** Split a command into words as a shell would for quotes only: no variables, globs or operators. */
function splitWords(text: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const m of text.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}
