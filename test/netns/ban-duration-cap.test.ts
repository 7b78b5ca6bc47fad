import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { NftablesBackend } from '../../agent/firewall/nftables.js';
import { Enforcer } from '../../agent/enforcer.js';
import { MAX_BAN_MS, type Decision } from '../../common/protocol/messages.js';
import { createFleet, netnsAvailable, type Fleet } from '../helpers/netns.js';
import { ATK4, HOST4, SSH, captureLogger } from '../helpers/firewall.js';

/**
 * `fleetban ban X --bantime 1000y` wedged every nftables agent: nft refuses timeouts over
 * ~213,503 days, the element stayed in the pending batch, and every later batch failed. With the
 * cap (MAX_BAN_MS, 100 years) the agent applies such a ban, and the next one, in a real nftables
 * inside a network namespace; the uncapped timeout is shown to be refused by this nft.
 */
const avail = netnsAvailable();
let fleet: Fleet;

before(async () => {
  if (!avail.ok) return;
  fleet = await createFleet([{ name: 'host', addrs: [`${HOST4}/24`] }]);
});

after(async () => {
  await fleet?.destroy();
});

test('a 1000-year ban is cut to 100 years, nft takes it, and later bans still apply', async (t) => {
  if (!avail.ok) return t.skip(avail.reason);
  const { logger } = captureLogger();
  // The kernel's own limit, asked of nft directly (the backend clamps to it, so it cannot show it):
  // without the caps, a 1000-year ban is an element nft refuses.
  const probe = 'add table inet fbprobe\nadd set inet fbprobe s { type ipv4_addr; flags timeout; }\nadd element inet fbprobe s { 198.51.100.201 timeout 365000d }\n';
  const refused = await fleet.exec('host', 'nft', ['-f', '-'], { input: probe, reject: false });
  assert.notEqual(refused.exitCode, 0, 'nft refuses the uncapped timeout');
  assert.match(refused.stderr, /Numerical result out of range|out of range/i);
  await fleet.exec('host', 'nft', ['delete', 'table', 'inet', 'fbprobe'], { reject: false });

  const fw = new NftablesBackend({ commandPrefix: fleet.prefix('host') });
  const enforcer = new Enforcer(fw, [SSH], logger);
  await enforcer.init();
  const now = Date.now();
  const long: Decision = { op: 'ban', jail: SSH.jail, addr: ATK4, since: now, until: now + 1000 * 365 * 86_400_000, reason: 'signed with 1000y', origin: 'cli:root' };
  await enforcer.apply([long]);
  const next: Decision = { op: 'ban', jail: SSH.jail, addr: '198.51.100.202', since: now, until: now + 60_000, reason: 'next', origin: 'web1' };
  await enforcer.apply([next]);
  const listed = await fw.list();
  assert.deepEqual(listed.map((b) => b.addr).sort(), [ATK4, '198.51.100.202'].sort());
  const capped = listed.find((b) => b.addr === ATK4)!;
  assert.ok(Math.abs(capped.until - (now + MAX_BAN_MS)) < 60_000, `held until ${new Date(capped.until).toISOString()}`);
  await enforcer.shutdown(true);
});
