/**
 * @packageDocumentation
 * The one interface every firewall backend implements (nftables, ipset, iptables, shorewall,
 * dry-run). The agent buffers changes with add()/delete() and applies them with one commit() per
 * batch, so a flood of decisions costs one firewall transaction, not one process per address.
 */

/** Which traffic a jail's bans drop. */
export interface JailRule {
  /** Jail name, `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 64 characters. */
  readonly jail: string;
  /** Port ranges (inclusive) to block, or 'all' for every port. */
  readonly ports: ReadonlyArray<readonly [number, number]> | 'all';
  /** Protocols the ports apply to; with ports 'all' and protocols 'all' every packet is dropped. */
  readonly protocols: ReadonlyArray<'tcp' | 'udp' | 'sctp'> | 'all';
  /**
   * Name for the jail's own kernel objects where a backend names them after the jail, with the
   * jail name's syntax; fail2ban's `iptables[name=SSH]` makes chain `f2b-SSH`, and a host moving
   * from fail2ban keeps that name. Only the iptables backend uses it; optional, so existing rules
   * keep their names.
   */
  readonly label?: string;
  /**
   * fail2ban's `blocktype`: `reject` answers banned packets with ICMP port unreachable,
   * `tcp-reset` answers TCP with a reset and the rest with port unreachable (Shorewall's `reject`
   * does that for both); absent or `drop` drops them silently.
   */
  readonly blocktype?: 'drop' | 'reject' | 'tcp-reset';
}

/** One ban as a backend sees it. */
export interface FirewallBan {
  readonly jail: string;
  /** Canonical address or CIDR network (`198.51.100.7`, `2001:db8::1`, `203.0.113.0/24`). */
  readonly addr: string;
  readonly family: 4 | 6;
  /** Expiry in epoch ms, or -1 for permanent. Backends with kernel timeouts use the time left. */
  readonly until: number;
}

/**
 * A host firewall as the agent's `Enforcer` drives it: the only code that changes the kernel.
 *
 * The contract every implementation keeps:
 * - **Order of calls.** `init()` first, with every jail later bans name; `add()`/`delete()` only
 *   buffer (checked at once: an unusable ban throws there, and the rest of the batch goes on);
 *   `commit()` applies the buffer as one transaction where the tool allows it. The Enforcer never
 *   calls a backend concurrently, but a backend must still run kernel operations in call order.
 * - **Buffer semantics.** Per (jail, address) only the last change counts: an unban replaces a
 *   buffered ban, and of two buffered bans the longer wins (-1, permanent, is longest).
 * - **Failure.** A commit that fails throws a `FirewallError` naming the operation and the
 *   tool's stderr, and puts its changes back in the buffer so the next commit retries them;
 *   kernel backends first repair their tables and retry (fail2ban's actioncheck/actionrepair),
 *   and drop, with a log line, single changes the kernel refuses on their own, which would
 *   otherwise fail every later batch.
 * - **State.** `list()` reports the kernel, not the buffer: it is how reconcile finds bans someone
 *   else removed. `sync()` makes the kernel hold exactly the given bans; `init()` again must keep
 *   elements already there, so a reload or reconcile never lifts a ban.
 * - **Expiry.** Bans end at `until` without another call (kernel timeouts, or the backend's own
 *   timer), clamped to `maxTimeoutMs`.
 *
 * To add a backend: subclass `KernelBackend` (kernel-backend.ts) with its commands, register its
 * name in index.ts (`FIREWALL_BACKENDS`, `createFirewallBackend`); `DryRunBackend` is the smallest
 * complete implementation.
 */
export interface FirewallBackend {
  /** Short name shown in heartbeats and logs: `nftables`, `dry-run`, … */
  readonly name: string;
  /**
   * Longest timeout this backend gives a kernel element, ms (nftables: NFT_MAX_TIMEOUT_MS); a
   * longer ban is clamped to it. Infinity where the backend has no such limit (it lifts bans itself).
   */
  readonly maxTimeoutMs: number;
  /**
   * Bans the kernel refused on their own (each one alone, after the batch was halved down to it)
   * and this backend dropped since start; 0 where nothing can refuse. Travels in heartbeats.
   */
  readonly kernelRefused: number;
  /** Create tables, sets, chains and rules for these jails. Idempotent; safe to call again with a changed list. */
  init(jails: readonly JailRule[]): Promise<void>;
  /** Buffer a ban (a repeated ban of the same address replaces the earlier one's expiry). */
  add(ban: FirewallBan): void;
  /** Buffer an unban. Deleting an address that is not banned is not an error. */
  delete(jail: string, addr: string): void;
  /** Apply everything buffered as one batch. Throws FirewallError naming the operation and stderr. */
  commit(): Promise<void>;
  /** Make the kernel hold exactly these bans (start-up, reconnect, reconciliation), as one batch where possible. */
  sync(bans: readonly FirewallBan[]): Promise<void>;
  /** Bans the kernel holds now, for reconciliation; `until` may be approximate. */
  list(): Promise<FirewallBan[]>;
  /** Stop; with cleanup, remove everything this backend created on the host. */
  shutdown(options?: { cleanup?: boolean }): Promise<void>;
}
