/**
 * One journal entry as `journalctl --output=json` prints it. A field is a string, an array of byte
 * values when it is not valid UTF-8 or has control characters, an array of those when the field is
 * repeated, or null when it is too large (we pass `--all`, so it is not).
 */
export type JournalEntry = Record<string, unknown>;

/**
 * The text fail2ban's systemd backend matches for an entry, laid out like a syslog line:
 * `<time> <_HOSTNAME> <SYSLOG_IDENTIFIER>[<SYSLOG_PID or _PID>]: <MESSAGE>`.
 *
 * As fail2ban does: the identifier falls back to `_COMM`; hostname, identifier and pid are left out
 * when absent; kernel messages get the `[seconds.micro]` monotonic stamp after `kernel:`; the time
 * is `_SOURCE_REALTIME_TIMESTAMP` (when the message was made) else `__REALTIME_TIMESTAMP`; newlines
 * in the message become the two characters `\n`, so one entry stays one line.
 * fail2ban passes the time beside the line; our filters find it in the line, so it is written first
 * as ISO 8601 in local time with microseconds and the UTC offset (`2025-11-26T10:53:16.373732+01:00`):
 * a date detector that honours the offset and one that assumes local time read the same instant.
 * @param entry parsed JSON of one entry
 * @returns the line, or undefined when the entry has no MESSAGE
 */
export function formatJournalEntry(entry: JournalEntry): string | undefined {
  const message = fieldText(entry.MESSAGE);
  if (message === undefined) return undefined;
  const parts: string[] = [formatTime(entry)];
  const host = fieldText(entry._HOSTNAME);
  if (host) parts.push(host);
  const ident = fieldText(entry.SYSLOG_IDENTIFIER) || fieldText(entry._COMM);
  if (ident) {
    const pid = fieldText(entry.SYSLOG_PID) || fieldText(entry._PID);
    const tag = `${ident}${pid ? `[${/^\d+$/.test(pid) ? String(Number(pid)) : pid}]` : ''}:`;
    parts.push(tag);
    if (tag === 'kernel:') {
      const mono = Number(fieldText(entry._SOURCE_MONOTONIC_TIMESTAMP) ?? fieldText(entry.__MONOTONIC_TIMESTAMP));
      if (Number.isFinite(mono)) parts.push(`[${(mono / 1e6).toFixed(6).padStart(12, ' ')}]`);
    }
  }
  parts.push(message.includes('\n') ? message.replace(/\r?\n/g, '\\n') : message);
  return parts.join(' ');
}

/**
 * A field's value as text: strings as they are, byte arrays decoded as UTF-8 (invalid bytes become
 * U+FFFD, NUL bytes are kept), the first value of a repeated field.
 * @returns undefined for a missing or null field
 */
export function fieldText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return '';
    if (typeof v[0] === 'number') return Buffer.from(v as number[]).toString('utf8');
    return fieldText(v[0]);
  }
  return undefined;
}

function formatTime(entry: JournalEntry): string {
  const us = Number(fieldText(entry._SOURCE_REALTIME_TIMESTAMP) ?? fieldText(entry.__REALTIME_TIMESTAMP));
  const micros = Number.isFinite(us) ? us : Date.now() * 1000;
  const ms = Math.floor(micros / 1000);
  const d = new Date(ms);
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const abs = Math.abs(off);
  return (
    `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}T${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}` +
    `.${String(Math.floor(micros % 1e6)).padStart(6, '0')}${sign}${p2(Math.floor(abs / 60))}:${p2(abs % 60)}`
  );
}
