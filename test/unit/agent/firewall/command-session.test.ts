/**
 * How a session tells one batch's answer from the next: the marker parsing of each tool's
 * interactive output, on output captured from nft 1.0.6, ipset 7.17 and iptables-restore 1.8.9
 * (the netns tests drive the real tools).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SESSION_PROTOCOLS } from '../../../../agent/firewall/command-session.js';

test('nft: a batch becomes one line (one transaction); its errors are what precedes the marker', () => {
  const p = SESSION_PROTOCOLS.nft;
  assert.equal(p.frame('add element inet t s { 192.0.2.1 }\ndelete element inet t s { 192.0.2.2 }\n'), 'add element inet t s { 192.0.2.1 }; delete element inet t s { 192.0.2.2 }\n');
  const err = 'Error: Could not process rule: Numerical result out of range\nadd element inet t s { 192.0.2.2 timeout 1000000d }\n                       ^^^^^^^^^\n';
  const mark = 'Error: syntax error, unexpected newline, expecting string\nfleetban_ack_7\n              ^\n';
  assert.equal(p.findAck(err + 'Error: syntax error, unexpected newline, expecting string\nfleetban_ack_7\n', 7), undefined, 'waits for the caret line');
  const ack = p.findAck(err + mark, 7)!;
  assert.equal(ack.start, err.length);
  assert.equal(ack.end, err.length + mark.length);
  assert.equal(p.failed(err), true);
  assert.equal(p.failed(''), false);
  assert.equal(p.findAck(mark.replace('_7', '_6'), 7), undefined, "an earlier batch's marker is not this one's");
  assert.equal(p.findAck(mark.replace('_7', '_71'), 7), undefined, 'nor is a longer number');
});

test('ipset: the marker echo ends the batch, warnings do not fail it, a late hint line is dropped', () => {
  const p = SESSION_PROTOCOLS.ipset;
  const err = "ipset v7.17: Syntax error: '9999999' is out of range 0-2147483\n";
  const mark = "ipset v7.17: Unknown settype: `fleetban-ack-3'\n";
  const ack = p.findAck(err + mark + "Try `ipset help' for more information.\n", 3)!;
  assert.equal(ack.start, err.length);
  assert.equal(p.failed(p.clean(err)), true);
  assert.equal(p.failed(p.clean("Try `ipset help' for more information.\nWarning: 192.0.2.3 is in set s1.\n")), false);
  assert.equal(p.findAck("ipset v7.17: Unknown settype: `fleetban-ack-31'\n", 3), undefined);
});

test('iptables-restore: the echoed comment on stdout confirms every COMMIT before it', () => {
  const p = SESSION_PROTOCOLS.iptablesRestore;
  assert.equal(p.marker(5), '# fleetban-ack-5\n');
  assert.deepEqual(p.findAck('# fleetban-ack-4\n# fleetban-ack-5\n', 5), { start: 17, end: 34 });
  assert.equal(p.findAck('# fleetban-ack-4\n', 5), undefined);
});
