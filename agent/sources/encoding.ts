import { ConfigError } from '../../common/errors.js';

/** The decodings the file follower supports; both keep `\n` a single byte, so lines split on bytes. */
export type LineEncoding = 'utf8' | 'latin1';

/**
 * Map fail2ban's `logencoding` to a Buffer encoding. `auto` means the locale's encoding in
 * fail2ban; agents run under systemd with a UTF-8 locale, so it is UTF-8 here. Invalid UTF-8
 * bytes become U+FFFD rather than dropping the line, so an address in the rest of it still matches.
 * ASCII is read as Latin-1: identical for valid input, and stray high bytes survive as characters.
 * @param value the option as written, case-insensitive
 * @param jail jail name for the error
 * @returns the Buffer encoding to decode with
 * @throws ConfigError for encodings whose newline is not the single byte 0x0A (UTF-16) or unknown names
 */
export function lineEncoding(value: string, jail?: string): LineEncoding {
  const v = value.trim().toLowerCase().replace(/_/g, '-');
  if (v === '' || v === 'auto' || v === 'utf-8' || v === 'utf8') return 'utf8';
  if (['latin-1', 'latin1', 'iso-8859-1', 'iso8859-1', 'l1', 'ascii', 'us-ascii'].includes(v)) return 'latin1';
  throw new ConfigError(
    `unsupported logencoding '${value}'${jail ? ` in jail ${jail}` : ''} (supported: auto, utf-8, latin-1/iso-8859-1, ascii)`,
    undefined,
    undefined,
    'logencoding',
  );
}
