import { existsSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { loadSigningKey } from '../common/config/keys.js';
import { upKeyFiles } from '../common/config/up-keys.js';
import { signDecision } from '../common/protocol/signing.js';
import type { DecisionSigner } from '../common/scripts/index.js';
import { now } from '../common/clock.js';
import { CliError, type CliContext } from './context.js';

/**
 * The key that signs what an admin decides by hand: `--signing-key`, else FLEETBAN_SIGNING_KEY,
 * else `[cli] signing_key`, else the key `fleetban up` made for its private Redis.
 * @returns the signer, or undefined (with a warning on stderr) when there is no key: the decision
 *   is then published unsigned and only agents with `allow_unsigned = true` apply it
 */
export function cliSigner(ctx: CliContext, flag?: string): DecisionSigner | undefined {
  const c = ctx.config;
  const up = c.redis.private ? upKeyFiles(c.agent.stateDir).keyFile : undefined;
  const file = flag ?? (process.env.FLEETBAN_SIGNING_KEY || undefined) ?? c.cli.signingKey ?? (up && existsSync(up) ? up : undefined);
  if (!file) {
    process.stderr.write('fleetban: warning: no signing key ([cli] signing_key, --signing-key or FLEETBAN_SIGNING_KEY): the decision goes out unsigned and agents that trust keys refuse it\n');
    return undefined;
  }
  let key;
  try {
    key = loadSigningKey(file);
  } catch (err) {
    throw new CliError(`signing key: ${(err as Error).message}`);
  }
  return (d) => signDecision(key, c.cluster, d);
}

/**
 * The time an unban or a flush is decided, which it signs: it lifts bans that started no later.
 * Bans are dated by the coordinators on Redis' clock, so this host's clock running behind must
 * not make an unban miss a ban decided a moment ago: the later of the two clocks.
 */
export async function decisionTime(redis: Redis): Promise<number> {
  const [s, us] = (await redis.time()) as [string | number, string | number];
  return Math.max(now(), Number(s) * 1000 + Math.floor(Number(us) / 1000));
}
