import { closeSync, fstatSync, openSync, readSync, constants } from 'node:fs';

/** Size limits of the small files fleetban reads: a secret, a PEM file, a configuration file. */
export const FILE_LIMITS = {
  /** A password file: one line. */
  secret: 4096,
  /** A PEM key or certificate (a CA bundle can hold a few hundred certificates). */
  pem: 1024 * 1024,
  /** A configuration file (jail.conf with every jail of fail2ban is ~30 KB). */
  conf: 4 * 1024 * 1024,
} as const;

/** Why a file was not read; the message is the whole story for an operator. */
export class FileRefusedError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
    readonly code?: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'FileRefusedError';
  }
}

/**
 * Read a small file that configures or authenticates fleetban (a password file, a key, a
 * certificate, a configuration include) and nothing else: it must be a regular file of at most
 * `maxBytes`. A device, FIFO or directory is refused before it is read: `/dev/zero` as an include
 * made check-config read 5.5 GB, a FIFO would hang the daemon at start. The file is opened
 * without following a FIFO's writer (O_NONBLOCK) and checked on the open descriptor, so the file
 * checked is the file read, and it is read only up to the limit even if it grows meanwhile.
 * @param path the file
 * @param maxBytes largest size accepted
 * @returns the content as UTF-8
 * @throws FileRefusedError naming the file and the reason (`code` is the errno code when the file could not be opened)
 */
export function readBoundedFile(path: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new FileRefusedError(path, `cannot open: ${e.message.replace(/, open '.*'$/, '')}`, e.code);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileRefusedError(path, `not a regular file (${kindOf(st)})`);
    if (st.size > maxBytes) throw new FileRefusedError(path, `${st.size} bytes is over the ${maxBytes} byte limit for this file`);
    const buf = Buffer.alloc(Math.min(maxBytes + 1, st.size + 1));
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
      if (got > maxBytes) throw new FileRefusedError(path, `grew over the ${maxBytes} byte limit while being read`);
      if (got === buf.length) break;
    }
    return buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * A password or similar one-line secret: the file's content, surrounding white space removed.
 * @throws FileRefusedError (not a regular file, too big, unreadable, empty)
 */
export function readSecretFile(path: string): string {
  const value = readBoundedFile(path, FILE_LIMITS.secret).trim();
  if (value === '') throw new FileRefusedError(path, 'is empty');
  return value;
}

function kindOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}
