import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePorts, parseProtocols } from '../../../../common/config/ports.js';
import { parseActions } from '../../../../common/config/actions.js';

test('ports, protocols and actions', () => {
  assert.deepEqual(parsePorts('ssh'), [[22, 22]]);
  assert.deepEqual(parsePorts('http,https, 8080'), [[80, 80], [443, 443], [8080, 8080]]);
  assert.deepEqual(parsePorts('1000:2000'), [[1000, 2000]]);
  assert.deepEqual(parsePorts('ftp-data'), [[20, 20]]);
  assert.equal(parsePorts('0:65535'), 'all');
  assert.throws(() => parsePorts('70000'), /above 65535/);
  assert.deepEqual(parseProtocols('tcp'), ['tcp']);
  assert.equal(parseProtocols('all'), 'all');
  assert.throws(() => parseProtocols('icmp'), /not tcp, udp, sctp or all/);
  const acts = parseActions('iptables-multiport[name=SSH, port="ssh,2222", protocol=tcp]\n  sendmail-whois[dest=a@b.c]\nshorewall');
  assert.deepEqual(acts.map((a) => a.name), ['iptables-multiport', 'sendmail-whois', 'shorewall']);
  assert.equal(acts[0]!.params.get('port'), 'ssh,2222');
  assert.throws(() => parseActions('iptables[name'), /cannot parse action|has no '='/);
});
