import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyFiles } from '../../common/config/keys.js';

/** A key pair made for this test process: every daemon a test starts signs with it and trusts it. */
export interface TestKeys {
  readonly dir: string;
  readonly keyFile: string;
  readonly pubFile: string;
  readonly kid: string;
}

let made: TestKeys | undefined;

/** The test process' key pair (made on first use, removed when the process exits). */
export function testKeys(): TestKeys {
  if (!made) {
    const dir = mkdtempSync(join(tmpdir(), 'fleetban-keys-'));
    made = { dir, ...generateKeyFiles(dir, 'test') };
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return made;
}

/** Another key pair, not trusted by anyone unless a test says so (forgeries, rotation). */
export function otherKeys(name: string): TestKeys {
  const dir = mkdtempSync(join(tmpdir(), `fleetban-keys-${name}-`));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return { dir, ...generateKeyFiles(dir, name) };
}

/** fleetban.local lines for a set-up without keys, whose agents apply unsigned decisions (benchmarks' "signing off"). */
export function unsignedConfig(): string {
  return '[agent]\nallow_unsigned = true\n';
}

/**
 * fleetban.local lines that make a configuration directory sign with and trust the test key:
 * the defaults are secure (an agent without trusted keys does not start), and tests run that way.
 */
export function signingConfig(keys: TestKeys = testKeys()): string {
  return ['[agent]', `trusted_keys = ${keys.pubFile}`, '[coordinator]', `signing_key = ${keys.keyFile}`, '[cli]', `signing_key = ${keys.keyFile}`].join('\n') + '\n';
}
