import { existsSync } from 'node:fs';
import { execa } from 'execa';

/**
 * Real systemd journal files without a running systemd: `systemd-journal-remote --output=F.journal -`
 * turns journal export format on stdin into entries appended to F.journal, which
 * `journalctl --file F.journal --follow` then reads like the system journal.
 */

const CANDIDATES = ['/lib/systemd/systemd-journal-remote', '/usr/lib/systemd/systemd-journal-remote'];

/** @returns the systemd-journal-remote binary, or undefined when the package is not installed */
export function journalRemoteBin(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

/** One entry: field name to text or bytes (bytes use export format's binary encoding). */
export type ExportEntry = Record<string, string | Buffer>;

/** A boot id shared by the entries a test writes (journal-remote needs one to place entries). */
export const TEST_BOOT_ID = '0123456789abcdef0123456789abcdef';

let seq = 0;

/**
 * Encode entries in journal export format. Time fields are filled in when missing.
 * @param entries fields per entry
 * @returns the export stream
 */
export function exportFormat(entries: ExportEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const fields: ExportEntry = {
      __REALTIME_TIMESTAMP: String(Date.now() * 1000 + (seq % 1000)),
      __MONOTONIC_TIMESTAMP: String(++seq),
      _BOOT_ID: TEST_BOOT_ID,
      ...e,
    };
    for (const [k, v] of Object.entries(fields)) {
      if (typeof v === 'string' && !v.includes('\n')) {
        parts.push(Buffer.from(`${k}=${v}\n`));
      } else {
        const bytes = typeof v === 'string' ? Buffer.from(v) : v;
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(bytes.length));
        parts.push(Buffer.from(`${k}\n`), len, bytes, Buffer.from('\n'));
      }
    }
    parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Append entries to a journal file (created when missing).
 * @param file absolute path ending in `.journal`
 * @param entries fields per entry
 */
export async function appendJournal(file: string, entries: ExportEntry[]): Promise<void> {
  const bin = journalRemoteBin();
  if (!bin) throw new Error('systemd-journal-remote is not installed');
  await execa(bin, [`--output=${file}`, '-'], { input: exportFormat(entries), timeout: 20_000 });
}
