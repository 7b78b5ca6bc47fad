import { compareStreamIds } from '../common/protocol/messages.js';
import { isAlive, readFleet } from '../common/hosts.js';
import type { CliContext } from './context.js';

export { ALIVE_MS } from '../common/protocol/messages.js';


/** The later of an agent's acknowledgement and its heartbeat's copy (either may be missing or stale). */
export function latestId(a: string | undefined, b: string | undefined): string {
  if (!a) return b ?? '0-0';
  if (!b) return a;
  return compareStreamIds(a, b) >= 0 ? a : b;
}

export interface WaitResult {
  readonly applied: string[];
  readonly pending: string[];
}

/**
 * Wait until every live agent has acknowledged a decision (its ack id is at or after it).
 * Hosts that stop heartbeating while we wait are not waited for: a dead host cannot apply anything,
 * and `fleetban hosts` shows it as not alive.
 * @param decisionId the decision's stream id
 * @param timeoutMs give up after this long
 */
export async function waitForAgents(ctx: CliContext, decisionId: string, timeoutMs: number): Promise<WaitResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = await readFleet(ctx.redis, ctx.keys);
    const applied: string[] = [];
    const pending: string[] = [];
    for (const hb of view.heartbeats.values()) {
      if (!isAlive(hb, view.now)) continue;
      const ack = latestId(view.acks.get(hb.host), hb.lastDecision);
      (compareStreamIds(ack, decisionId) >= 0 ? applied : pending).push(hb.host);
    }
    if (pending.length === 0 || Date.now() >= deadline) return { applied: applied.sort(), pending: pending.sort() };
    await new Promise((r) => setTimeout(r, 50));
  }
}
