import type { MatchEntry } from './matches.js';

/** What a notification tells about one cluster ban: the cluster's view, not one host's. */
export interface BanEvent {
  readonly cluster: string;
  readonly jail: string;
  readonly addr: string;
  /** Epoch ms. */
  readonly since: number;
  /** Epoch ms, or -1 for permanent. */
  readonly until: number;
  readonly reason: string;
  /** Host whose failure completed the count, or `cli:<user>`. */
  readonly origin: string;
  /** Failures counted when the ban was decided (0 for manual bans or when unknown). */
  readonly failures: number;
  /** Hosts that reported the address, sorted. */
  readonly hosts: readonly string[];
  /** The newest matched lines, oldest first (empty when none were kept). */
  readonly matches: readonly MatchEntry[];
  /** Name of the coordinator's host (fail2ban's `<fq-hostname>`). */
  readonly from: string;
}

/** Sends one kind of notification; throws to have it retried later. */
export interface NotificationSender {
  send(event: BanEvent): Promise<void>;
}

/**
 * Attacker-controlled text (log lines, whois answers) made safe to show: every control
 * character but tab becomes `\xNN`, so nothing can end a line, rewrite a terminal or hide text.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
