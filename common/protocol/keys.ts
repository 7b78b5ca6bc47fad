/**
 * The only place that spells Redis key names. Every key of a cluster shares the hash tag
 * `{cluster}` so that the Lua scripts, which touch several keys at once, work on Redis Cluster.
 */

/** Consumer group of coordinators on every host's failure stream. */
export const COORDINATOR_GROUP = 'coordinators';

/** Cluster names become part of every key; keep them to characters that need no quoting anywhere. */
export const CLUSTER_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Redis keys of one cluster. */
export interface ClusterKeys {
  readonly prefix: string;
  /** Stream: ban / unban / flush decisions, read by every agent. */
  readonly decisions: string;
  /** Hash: `jail|addr` -> JSON ban record (active bans). */
  readonly bans: string;
  /** Sorted set: `jail|addr` scored by expiry time in ms (permanent bans are not in it). */
  readonly banExpiry: string;
  /** Hash: counters such as `sshd:failed` and `sshd:banned`. */
  readonly stats: string;
  /**
   * Prefix of the per-jail failure windows: one hash per jail, field = address, value = the
   * window's failures as `<time ms>,<event id>,<host>;` entries (written by recordFailures).
   */
  readonly failureWindowPrefix: string;
  /** Prefix of the per-jail sets of addresses with failures in their window (fail2ban "currently failed"). */
  readonly failingPrefix: string;
  /** Prefix of the per-(jail, address) hashes of reporting hosts, kept for jails with minhosts. */
  readonly windowHostsPrefix: string;
  /** Prefix of the per-address ban histories: sorted sets of `jail|since|until|origin|reason` by time. */
  readonly historyPrefix: string;
  /** Hash: coordinator name -> JSON registration (liveness, policy hash, last reload). */
  readonly coordinators: string;
  /** Pub/sub channel of operator commands to every coordinator (reload). */
  readonly control: string;
  /**
   * Set: names of the hosts of the cluster. Written by admins (`fleetban acl --apply`) and
   * coordinators (from the ACL's agent users), never by agents: a host cannot add or remove
   * another. Coordinators read the hosts' failure streams and heartbeats through it.
   */
  readonly registry: string;
  /** Prefix of every key one host owns (its agent identity may write these and no others). */
  readonly hostPrefix: string;
  /** The keys one host owns. */
  host(name: string): HostKeys;
  /** The ban history of one address. */
  history(addr: string): string;
  /** The hash of one jail's failure windows (field = address). */
  failureWindows(jail: string): string;
  /** The key of one jail's set of currently failing addresses. */
  failing(jail: string): string;
}

/** Keys written by one host's agent alone; the ACL gives its identity write access to nothing else. */
export interface HostKeys {
  /** Stream: this host's failure reports, read by the coordinators' group; only coordinators trim it. */
  readonly failures: string;
  /** String: this host's heartbeat (JSON), with a TTL so a host that stops beating disappears. */
  readonly heartbeat: string;
  /** String: id of the newest decision this host has applied (its acknowledgement). */
  readonly ack: string;
}

/**
 * @param cluster cluster name (validated by the config loader against CLUSTER_NAME_RE)
 * @returns the key names of that cluster
 */
export function clusterKeys(cluster: string): ClusterKeys {
  const prefix = `fb:{${cluster}}`;
  const failureWindowPrefix = `${prefix}:win:`;
  const failingPrefix = `${prefix}:failing:`;
  return {
    prefix,
    decisions: `${prefix}:decisions`,
    bans: `${prefix}:bans`,
    banExpiry: `${prefix}:ban-expiry`,
    stats: `${prefix}:stats`,
    failureWindowPrefix,
    failingPrefix,
    windowHostsPrefix: `${prefix}:winhosts:`,
    historyPrefix: `${prefix}:history:`,
    coordinators: `${prefix}:coordinators`,
    control: `${prefix}:control`,
    registry: `${prefix}:registry`,
    hostPrefix: `${prefix}:host:`,
    host: (name) => ({
      failures: `${prefix}:host:${name}:failures`,
      heartbeat: `${prefix}:host:${name}:hb`,
      ack: `${prefix}:host:${name}:ack`,
    }),
    history: (addr) => `${prefix}:history:${addr}`,
    failureWindows: (jail) => `${failureWindowPrefix}${jail}`,
    failing: (jail) => `${failingPrefix}${jail}`,
  };
}

/** The field of a ban in the bans hash and expiry set: jail and address joined by `|`. */
export function banId(jail: string, addr: string): string {
  return `${jail}|${addr}`;
}

/**
 * The host a per-host key belongs to (the part between the host prefix and the next ':'), or
 * undefined for any other key. Host names cannot hold ':' (HOST_NAME_RE).
 */
export function hostOfKey(keys: ClusterKeys, key: string): string | undefined {
  if (!key.startsWith(keys.hostPrefix)) return undefined;
  const rest = key.slice(keys.hostPrefix.length);
  const end = rest.indexOf(':');
  return end > 0 ? rest.slice(0, end) : undefined;
}

/** ACL key and channel patterns of one cluster, by role (see common/acl.ts and docs/security.md). */
export interface AclPatterns {
  /** Every key of the cluster (coordinators, admins). */
  readonly allKeys: string;
  /** Every channel of the cluster. */
  readonly allChannels: string;
  /** Keys an agent may read and not write. */
  readonly agentReads: string[];
  /**
   * Keys one host's agent may read and write: exactly its three keys, not a glob, so that it
   * cannot create keys of its own to fill Redis' memory.
   */
  agentOwn(host: string): string[];
}

/** @returns the ACL glob patterns of a cluster's keys (cluster and host names hold no glob characters) */
export function aclPatterns(cluster: string): AclPatterns {
  const k = clusterKeys(cluster);
  return {
    allKeys: `${k.prefix}:*`,
    allChannels: `${k.prefix}:*`,
    agentReads: [k.decisions, k.bans, k.registry],
    agentOwn: (host) => Object.values(k.host(host)),
  };
}
