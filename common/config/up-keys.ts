import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyFiles } from './keys.js';

/** The key pair `fleetban up` signs and verifies with, in its state directory. */
export function upKeyFiles(stateDir: string): { keyFile: string; pubFile: string } {
  const dir = join(stateDir, 'keys');
  return { keyFile: join(dir, 'up.key'), pubFile: join(dir, 'up.pub') };
}

/**
 * The all-in-one set-up signs its decisions like a fleet does, with a key pair of its own made on
 * first start, so `npm start` needs no set-up and still runs an agent that refuses unsigned
 * decisions.
 */
export function ensureUpKeys(stateDir: string): { keyFile: string; pubFile: string } {
  const files = upKeyFiles(stateDir);
  if (!existsSync(files.keyFile)) generateKeyFiles(join(stateDir, 'keys'), 'up');
  return files;
}
