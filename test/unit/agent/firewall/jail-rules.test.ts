import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JailRule } from '../../../../agent/firewall/backend.js';
import { IptablesBackend } from '../../../../agent/firewall/iptables.js';
import { validateJailRules } from '../../../../agent/firewall/jail-rules.js';

const SSH: JailRule = { jail: 'sshd', ports: [[22, 22]], protocols: ['tcp'] };

test('a jail label is optional and checked like a jail name', () => {
  assert.equal(validateJailRules([SSH]).get('sshd')!.label, undefined);
  assert.equal(validateJailRules([{ ...SSH, label: 'SSH' }]).get('sshd')!.label, 'SSH');
  for (const label of ['', 'SSH -j ACCEPT', 'SSH\n-F', 'x'.repeat(65), '-SSH']) {
    assert.throws(() => validateJailRules([{ ...SSH, label }]), (err: Error) => err.name === 'InvalidInputError' && /jail 'sshd': label/.test(err.message), JSON.stringify(label));
  }
  assert.throws(() => validateJailRules([{ ...SSH, label: 42 as unknown as string }]), /label '42' must match/);
});

// The prefix makes every command fail, so if a refused config ever reached the kernel step the
// test would see that failure instead of the expected refusal; no host firewall is touched.
const offline = () => new IptablesBackend({ commandPrefix: ['/bin/false'] });

test('iptables refuses jails whose labels or names would share a chain, before running anything', async () => {
  await assert.rejects(offline().init([{ ...SSH, label: 'SSH' }, { jail: 'SSH', ports: 'all', protocols: 'all' }]), /jails 'sshd' and 'SSH' would share iptables chain 'f2b-SSH'/);
  await assert.rejects(offline().init([{ ...SSH, label: 'web' }, { jail: 'apache', ports: 'all', protocols: 'all', label: 'web' }]), /jails 'sshd' and 'apache' would share iptables chain 'f2b-web'/);
  await assert.rejects(new IptablesBackend({ commandPrefix: ['/bin/false'], namePrefix: 'IN' }).init([{ ...SSH, label: 'PUT' }]), /chain would be 'INPUT', which is not ours/);
  await assert.rejects(new IptablesBackend({ commandPrefix: ['/bin/false'], namePrefix: 'fleet' }).init([{ ...SSH, label: 'ban' }]), /chain would be 'fleetban', which is not ours/);
  // Distinct labels pass the check and reach the (failing) kernel step.
  await assert.rejects(offline().init([{ ...SSH, label: 'SSH' }, { jail: 'apache', ports: 'all', protocols: 'all' }]), (err: Error) => err.name === 'FirewallError');
});
