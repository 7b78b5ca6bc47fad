import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { keyId, type SigningKey } from '../protocol/signing.js';
import { FILE_LIMITS, readBoundedFile } from './secret-file.js';
import { ConfigError, InvalidInputError } from '../errors.js';

/**
 * Ed25519 key files: private keys as PKCS#8 PEM, public keys as SPKI PEM (what
 * `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write).
 */

/** Where `fleetban keygen` writes unless told otherwise. */
export const DEFAULT_KEY_DIR = '/etc/fleetban/keys';

/**
 * Read a private signing key.
 * @throws ConfigError naming the file and what is wrong with it
 */
export function loadSigningKey(path: string): SigningKey {
  const pem = readBoundedFile(path, FILE_LIMITS.pem);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(`not a PEM private key (${(err as Error).message})`, path);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`a ${key.asymmetricKeyType} key; fleetban signs with Ed25519 (fleetban keygen)`, path);
  return { kid: keyId(createPublicKey(key)), key };
}

/**
 * Read the public keys an agent trusts. Each entry is a file or a pattern whose last part holds
 * `*` or `?` (`/etc/fleetban/keys/*.pub`); several keys at once let a key be rotated without a
 * moment where one side is not trusted.
 * @returns key id -> key, and the files read
 * @throws ConfigError naming the file or pattern that gave no usable key
 */
export function loadTrustedKeys(entries: readonly string[]): { keys: Map<string, KeyObject>; files: string[] } {
  const keys = new Map<string, KeyObject>();
  const files: string[] = [];
  for (const entry of entries) {
    const matched = /[*?]/.test(basename(entry)) ? expandBasename(entry) : [entry];
    if (matched.length === 0) throw new ConfigError('no file matches', entry);
    for (const file of matched) {
      const pem = readBoundedFile(file, FILE_LIMITS.pem);
      let key: KeyObject;
      try {
        key = createPublicKey(pem);
      } catch (err) {
        throw new ConfigError(`not a PEM public key (${(err as Error).message})`, file);
      }
      if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`a ${key.asymmetricKeyType} key; fleetban verifies Ed25519 signatures`, file);
      keys.set(keyId(key), key);
      files.push(file);
    }
  }
  return { keys, files };
}

function expandBasename(pattern: string): string[] {
  const dir = dirname(pattern);
  const re = new RegExp(`^${basename(pattern).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new ConfigError((err as Error).message, pattern);
  }
  return names.filter((n) => re.test(n)).sort().map((n) => join(dir, n));
}

/**
 * Write a new key pair as `DIR/NAME.key` (0600) and `DIR/NAME.pub` (0644).
 * @throws InvalidInputError for a bad name, or when either file exists already (a key is never overwritten)
 * @returns the paths and the key id
 */
export function generateKeyFiles(dir: string, name: string): { keyFile: string; pubFile: string; kid: string } {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new InvalidInputError(`key name '${name}' may hold only letters, digits, '_', '.', '-'`);
  const keyFile = join(dir, `${name}.key`);
  const pubFile = join(dir, `${name}.pub`);
  for (const f of [keyFile, pubFile]) if (existsSync(f)) throw new InvalidInputError(`${f} exists; refusing to overwrite a key`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // `wx`: fail rather than overwrite a file that appeared since the check.
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  writeFileSync(pubFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
  return { keyFile, pubFile, kid: keyId(publicKey) };
}
