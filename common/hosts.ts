import type { Redis } from 'ioredis';
import type { ClusterKeys } from './protocol/keys.js';
import { ALIVE_MS, HOST_NAME_RE, decodeHeartbeat, type Heartbeat } from './protocol/messages.js';

/** Registered hosts read at most: beyond this the registry was not written by fleetban. */
export const MAX_HOSTS = 10_000;

/** What the cluster knows about its hosts, read in one round trip (plus Redis' time). */
export interface FleetView {
  /** Redis' clock when read, in epoch ms: what liveness is measured against, never a host's clock. */
  readonly now: number;
  /** Registered host names (valid ones, sorted). */
  readonly registered: string[];
  /** Valid heartbeats, by host. */
  readonly heartbeats: Map<string, Heartbeat>;
  /** Acknowledged decision ids, by host. */
  readonly acks: Map<string, string>;
  /** Hosts whose heartbeat was present but invalid, with the reason. */
  readonly invalid: Array<{ host: string; reason: string }>;
}

/** @returns Redis' time in epoch ms */
export async function redisTime(redis: Redis): Promise<number> {
  const [sec, usec] = await redis.time();
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
}

/**
 * Read the registry, every registered host's heartbeat and acknowledgement, and Redis' time.
 * A heartbeat that does not validate is reported in `invalid` and otherwise ignored.
 */
export async function readFleet(redis: Redis, keys: ClusterKeys): Promise<FleetView> {
  const [names, now] = await Promise.all([redis.smembers(keys.registry), redisTime(redis)]);
  const registered = names.filter((h) => HOST_NAME_RE.test(h)).sort().slice(0, MAX_HOSTS);
  const heartbeats = new Map<string, Heartbeat>();
  const acks = new Map<string, string>();
  const invalid: FleetView['invalid'] = [];
  if (registered.length > 0) {
    const [hbs, ackIds] = await Promise.all([
      redis.mget(registered.map((h) => keys.host(h).heartbeat)),
      redis.mget(registered.map((h) => keys.host(h).ack)),
    ]);
    registered.forEach((host, i) => {
      const json = hbs[i];
      if (json) {
        const d = decodeHeartbeat(json, host);
        if (d.ok) heartbeats.set(host, d.value);
        else invalid.push({ host, reason: d.reason });
      }
      const ack = ackIds[i];
      if (ack && /^\d{1,20}-\d{1,20}$/.test(ack)) acks.set(host, ack);
    });
  }
  return { now, registered, heartbeats, acks, invalid };
}

/**
 * @returns whether a heartbeat is recent on Redis' clock. Agents stamp seenAt with Redis' time,
 *   so one from the future was not stamped honestly: it does not keep a host alive.
 */
export function isAlive(hb: Heartbeat, now: number): boolean {
  return Math.abs(now - hb.seenAt) <= ALIVE_MS;
}

/** @returns every address the live hosts claim (what ignoreself exempts) */
export function liveFleetAddresses(view: FleetView): string[] {
  const out: string[] = [];
  for (const hb of view.heartbeats.values()) if (isAlive(hb, view.now)) out.push(...hb.addrs);
  return out;
}
