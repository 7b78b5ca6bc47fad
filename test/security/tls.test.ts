import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startRedis, freePort, randomCluster } from '../helpers/redis-server.js';
import { runCli, startDaemon, writeConfig } from '../helpers/spawn.js';
import { testProcesses } from '../helpers/cluster-procs.js';

/**
 * Redis over TLS with client certificates (mutual TLS), against Debian's redis-server, with a CA
 * and certificates made by openssl for this run: the right set-up connects; a wrong CA, a wrong
 * host name and a missing client certificate are refused, and the reason is in the CLI's one-line
 * error and in the daemon's warning (it used to be at debug level, and the CLI said only
 * `Connection is closed.`).
 */
const t = testProcesses('security-tls');
const cluster = randomCluster();
let tlsPort: number;
/** `user:password` of the server's default user (the harness' servers require a login). */
let login: string;
const pki = (name: string) => join(t.work, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: t.work, stdio: 'pipe' });
}

/** A CA, and a certificate it signs for `cn` with the given subjectAltName. */
function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-days', '1', '-subj', `/CN=fleetban test ${name}`);
}
function makeCert(name: string, ca: string, cn: string, ext: string): void {
  writeFileSync(pki(`${name}.ext`), `${ext}\n`);
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
}

before(async () => {
  makeCa('ca');
  makeCa('other-ca');
  makeCert('server', 'ca', 'localhost', 'subjectAltName=DNS:localhost');
  makeCert('client', 'ca', 'fleetban-agent', 'extendedKeyUsage=clientAuth');
  // The server presents its whole chain, as most deployments do.
  writeFileSync(pki('server-chain.crt'), readFileSync(pki('server.crt'), 'utf8') + readFileSync(pki('ca.crt'), 'utf8'));
  tlsPort = await freePort();
  const redis = await startRedis(['--tls-port', String(tlsPort), '--tls-cert-file', pki('server-chain.crt'), '--tls-key-file', pki('server.key'),
    '--tls-ca-cert-file', pki('ca.crt'), '--tls-auth-clients', 'yes']);
  t.servers.push(redis);
  const admin = new URL(redis.adminUrl);
  login = `${admin.username || 'default'}:${admin.password}`;
});

/** A configuration directory that reaches the TLS port with these settings. */
function config(o: { host?: string; ca?: string; cert?: boolean }): string {
  return writeConfig({
    'fleetban.conf': [
      '[cluster]', `name = ${cluster}`,
      '[redis]', `url = rediss://${login}@${o.host ?? 'localhost'}:${tlsPort}`, `tls_ca_file = ${pki(o.ca ?? 'ca.crt')}`,
      ...(o.cert === false ? [] : [`tls_cert_file = ${pki('client.crt')}`, `tls_key_file = ${pki('client.key')}`]),
      '[agent]', 'host = tls1', 'banaction = dry-run', `state_dir = ${join(t.work, 'state')}`,
    ].join('\n') + '\n',
    'jail.conf': `[sshd]\nenabled = true\nfilter = sshd\nport = ssh\nlogpath = ${join(t.work, 'none.log')}\n`,
  });
}

test('mutual TLS with the right CA, host name and client certificate connects', async () => {
  const out = await runCli(['--config', config({}), 'hosts']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /no agents have registered/);
});

test('a server certificate from another CA is refused, and the CLI says why', async () => {
  const out = await runCli(['--config', config({ ca: 'other-ca.crt' }), 'hosts']);
  assert.equal(out.code, 1);
  assert.match(out.stderr, /^fleetban: cannot reach Redis at rediss:\/\/default:\*\*\*@localhost:\d+: self-signed certificate in certificate chain\n$/);
});

test('a server certificate for another host name is refused, and the CLI says why', async () => {
  const out = await runCli(['--config', config({ host: '127.0.0.1' }), 'hosts']);
  assert.equal(out.code, 1);
  assert.match(out.stderr, /Hostname\/IP does not match certificate's altnames: IP: 127\.0\.0\.1 is not in the cert's list/);
});

test('a client without a certificate is refused by the server, and the CLI says why', async () => {
  const out = await runCli(['--config', config({ cert: false }), 'hosts']);
  assert.equal(out.code, 1);
  assert.doesNotMatch(out.stderr, /Connection is closed/);
  // With TLS 1.3 the client learns it from the server's alert, or (when the server closes first)
  // from a reset connection, for which the message names the likely cause.
  assert.match(out.stderr, /(tlsv13 alert certificate required:.*SSL alert number 116|ECONNRESET \(the server may require a client certificate: \[redis\] tls_cert_file and tls_key_file\))\n$/);
});

test('a daemon that cannot connect warns with the TLS reason', async () => {
  const agent = startDaemon(['--config', config({ ca: 'other-ca.crt' }), 'agent']);
  t.daemons.push(agent);
  const line = await agent.waitFor((l) => l.msg === 'Redis unreachable, retrying', 15_000, 'the warning');
  assert.equal(line.level, 40);
  assert.match(String(line.err), /self-signed certificate in certificate chain/);
});
