import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BanLedger } from '../../../../agent/firewall/ban-ledger.js';
import { componentLogger } from '../../../../common/log.js';

test('at the cap, expired entries make room only where the kernel expires them itself', () => {
  const log = componentLogger('test');
  log.level = 'silent';
  for (const kernelExpires of [true, false]) {
    const ledger = new BanLedger(2, log, kernelExpires);
    ledger.set('sshd\u0000192.0.2.1', 1000);
    ledger.set('sshd\u0000192.0.2.2', -1);
    const room = ledger.room(5000);
    if (kernelExpires) {
      assert.equal(room, 1, 'the expired element is gone from the kernel: its place is free');
      assert.equal(ledger.get('sshd\u0000192.0.2.1'), undefined);
    } else {
      assert.equal(room, 0, 'an expired iptables rule is still there until the sweeper deletes it');
      assert.equal(ledger.get('sshd\u0000192.0.2.1'), 1000, 'kept, so the sweeper still deletes its rule');
    }
  }
});
