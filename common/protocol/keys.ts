/**
 * The only place that spells Redis key names. Every key of a cluster shares the hash tag
 * `{cluster}` so that the Lua scripts, which touch several keys at once, work on Redis Cluster.
 */

/** Consumer group of coordinators on the failures stream. */
export const COORDINATOR_GROUP = 'coordinators';

/** Consumer group of coordinators on the decisions stream: each ban is notified (mail, webhook) by one of them. */
export const NOTIFIER_GROUP = 'notifiers';

/** Cluster names become part of every key; keep them to characters that need no quoting anywhere. */
export const CLUSTER_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Redis keys of one cluster. */
export interface ClusterKeys {
  readonly prefix: string;
  /** Stream: failures reported by agents, read by the coordinator group. */
  readonly failures: string;
  /** Stream: ban / unban / flush decisions, read by every agent. */
  readonly decisions: string;
  /** Hash: `jail|addr` -> JSON ban record (active bans). */
  readonly bans: string;
  /** Sorted set: `jail|addr` scored by expiry time in ms (permanent bans are not in it). */
  readonly banExpiry: string;
  /** Hash: host name -> JSON heartbeat. */
  readonly hosts: string;
  /** Hash: host name -> id of the newest decision that host has applied (its acknowledgement). */
  readonly acks: string;
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
   * Prefix of the matched-line records kept for notifications: `<prefix><jail>|<addr>` is a list of
   * JSON `[time, host, line]`, and `<prefix><jail>` a sorted set of the jail's recorded addresses
   * by last update (what bounds the whole record). Written only for jails that notify.
   */
  readonly matchesPrefix: string;
  /** The ban history of one address. */
  history(addr: string): string;
  /** The matched-line record of one address in one jail (see matchesPrefix). */
  matches(jail: string, addr: string): string;
  /** The hash of one jail's failure windows (field = address). */
  failureWindows(jail: string): string;
  /** The key of one jail's set of currently failing addresses. */
  failing(jail: string): string;
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
    failures: `${prefix}:failures`,
    decisions: `${prefix}:decisions`,
    bans: `${prefix}:bans`,
    banExpiry: `${prefix}:ban-expiry`,
    hosts: `${prefix}:hosts`,
    acks: `${prefix}:acks`,
    stats: `${prefix}:stats`,
    failureWindowPrefix,
    failingPrefix,
    windowHostsPrefix: `${prefix}:winhosts:`,
    historyPrefix: `${prefix}:history:`,
    coordinators: `${prefix}:coordinators`,
    matchesPrefix: `${prefix}:matches:`,
    control: `${prefix}:control`,
    history: (addr) => `${prefix}:history:${addr}`,
    matches: (jail, addr) => `${prefix}:matches:${jail}|${addr}`,
    failureWindows: (jail) => `${failureWindowPrefix}${jail}`,
    failing: (jail) => `${failingPrefix}${jail}`,
  };
}

/** The field of a ban in the bans hash and expiry set: jail and address joined by `|`. */
export function banId(jail: string, addr: string): string {
  return `${jail}|${addr}`;
}
