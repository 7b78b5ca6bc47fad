import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readBoundedFile, readSecretFile, FileRefusedError } from '../../../../common/config/secret-file.js';
import { loadFleetbanConfig, redactUrl, roleRedis } from '../../../../common/config/fleetban-config.js';
import { generateKeyFiles, loadSigningKey, loadTrustedKeys } from '../../../../common/config/keys.js';
import { checkSignature, signDecision } from '../../../../common/protocol/signing.js';
import { decodeDecision, encodeDecision, type Decision } from '../../../../common/protocol/messages.js';
import { FailureSpool } from '../../../../agent/spool.js';
import { componentLogger } from '../../../../common/log.js';
import { ConfigError } from '../../../../common/errors.js';

const scratch = () => mkdtempSync(join(tmpdir(), 'fleetban-secfiles-'));

test('secret, key and config files must be regular files of bounded size', () => {
  const dir = scratch();
  assert.throws(() => readBoundedFile('/dev/zero', 1000), (e: unknown) => e instanceof FileRefusedError && /not a regular file \(a character device\)/.test(e.message));
  assert.throws(() => readBoundedFile(dir, 1000), /not a regular file \(a directory\)/);
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  // Opened without blocking for a writer, and refused.
  assert.throws(() => readBoundedFile(join(dir, 'fifo'), 1000), /not a regular file \(a FIFO\)/);
  writeFileSync(join(dir, 'big'), 'x'.repeat(5000));
  assert.throws(() => readBoundedFile(join(dir, 'big'), 4096), /5000 bytes is over the 4096 byte limit/);
  writeFileSync(join(dir, 'pw'), '  s3cret\n');
  assert.equal(readSecretFile(join(dir, 'pw')), 's3cret');
  writeFileSync(join(dir, 'empty'), '\n');
  assert.throws(() => readSecretFile(join(dir, 'empty')), /is empty/);
  rmSync(dir, { recursive: true, force: true });
});

test('an include of /dev/zero, or a password_file that is a device, is a config error naming the file, not a hang', () => {
  const dir = scratch();
  writeFileSync(join(dir, 'fleetban.conf'), '[INCLUDES]\nbefore = /dev/zero\n[cluster]\nname = x\n');
  const started = Date.now();
  assert.throws(() => loadFleetbanConfig(dir), (e: unknown) => e instanceof ConfigError && /^\/dev\/zero: not a regular file/.test(e.message));
  assert.ok(Date.now() - started < 1000);
  writeFileSync(join(dir, 'fleetban.conf'), '[redis]\nurl = redis://127.0.0.1:1\npassword_file = /dev/zero\n');
  assert.throws(() => roleRedis(loadFleetbanConfig(dir), 'agent'), (e: unknown) => e instanceof ConfigError && /key 'password_file': cannot read \/dev\/zero: not a regular file/.test(e.message));
  rmSync(dir, { recursive: true, force: true });
});

test('URL redaction hides a password holding / or @', () => {
  assert.equal(redactUrl('redis://fleetban:pa/ss@db.example:6379/0'), 'redis://fleetban:***@db.example:6379/0');
  assert.equal(redactUrl('rediss://:a@b/c@db.example:6380'), 'rediss://:***@db.example:6380');
  assert.equal(redactUrl('redis://db.example:6379'), 'redis://db.example:6379');
  assert.equal(redactUrl('sentinel://u:p/w@s1:26379,s2:26379/mymaster'), 'sentinel://u:***@s1:26379,s2:26379/mymaster');
});

test('the spool directory is 0700 and its files 0600, also when an older release left them open', () => {
  const dir = join(scratch(), 'spool');
  mkdirSync(dir, { mode: 0o755 });
  writeFileSync(join(dir, 'failures-0000000001.jsonl'), '', { mode: 0o644 });
  const spool = new FailureSpool(dir, componentLogger('test'));
  spool.append([{ jail: 'sshd', addr: '198.51.100.1', time: Date.now(), eid: 'e-1', host: 'h1', line: 'Failed password for invalid user MyS3cretPassw0rd' }]);
  spool.consume();
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o077, 0, `${f} is readable by others`);
});

test('keygen writes a 0600 private and a 0644 public key, never overwrites, and openssl keys work too', () => {
  const dir = scratch();
  const made = generateKeyFiles(join(dir, 'keys'), 'coord1');
  assert.equal(statSync(made.keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(made.pubFile).mode & 0o777, 0o644);
  assert.throws(() => generateKeyFiles(join(dir, 'keys'), 'coord1'), /exists; refusing to overwrite/);
  // Keys made by openssl, as INTERFACES.md promises.
  execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', join(dir, 'keys', 'ossl.key')]);
  execFileSync('openssl', ['pkey', '-in', join(dir, 'keys', 'ossl.key'), '-pubout', '-out', join(dir, 'keys', 'ossl.pub')]);
  const trusted = loadTrustedKeys([join(dir, 'keys', '*.pub')]);
  assert.equal(trusted.keys.size, 2, 'a glob trusts both keys (rotation)');
  const ossl = loadSigningKey(join(dir, 'keys', 'ossl.key'));
  assert.ok(trusted.keys.has(ossl.kid));
  // Not Ed25519: refused with the reason.
  writeFileSync(join(dir, 'rsa.pem'), generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  assert.throws(() => loadSigningKey(join(dir, 'rsa.pem')), /a rsa key; fleetban signs with Ed25519/);
  assert.throws(() => loadTrustedKeys([join(dir, 'nothing', '*.pub')]), /nothing/);
  rmSync(dir, { recursive: true, force: true });
});

test('a signature covers every field that matters, the cluster and the unban time; it survives the stream encoding', () => {
  const dir = scratch();
  const key = loadSigningKey(generateKeyFiles(dir, 'k').keyFile);
  const trusted = loadTrustedKeys([join(dir, 'k.pub')]).keys;
  const ban: Decision = { op: 'ban', jail: 'sshd', addr: '198.51.100.7', since: 1_700_000_000_000, until: 1_700_000_600_000, reason: '5 failures in 600s', origin: 'web1' };
  const wire = decodeDecision(encodeDecision({ ...ban, ...signDecision(key, 'prod', ban) }));
  assert.ok(wire.ok);
  assert.equal(checkSignature(trusted, 'prod', wire.value, wire.value), undefined);
  assert.equal(checkSignature(trusted, 'staging', wire.value, wire.value), 'bad signature');
  for (const change of [{ addr: '198.51.100.8' }, { until: -1 }, { since: 1 }, { jail: 'manual' }, { origin: 'cli:root' }]) {
    const altered = { ...wire.value, ...change } as Decision;
    assert.equal(checkSignature(trusted, 'prod', altered, wire.value), 'bad signature', JSON.stringify(change));
  }
  const unban: Decision = { op: 'unban', jail: '*', addr: '198.51.100.7', origin: 'cli:root', at: 1_700_000_100_000 };
  const u = decodeDecision(encodeDecision({ ...unban, ...signDecision(key, 'prod', unban) }));
  assert.ok(u.ok && u.value.op === 'unban');
  assert.equal(checkSignature(trusted, 'prod', u.value, u.value), undefined);
  assert.equal(checkSignature(trusted, 'prod', { ...u.value, at: u.value.at! + 3_600_000 } as Decision, u.value), 'bad signature', 'a later at would lift later bans');
  assert.equal(checkSignature(trusted, 'prod', ban, {}), 'unsigned');
  rmSync(dir, { recursive: true, force: true });
});
