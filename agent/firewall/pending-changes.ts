import type { FirewallBan } from './backend.js';
import { banKey } from './jail-rules.js';

/** One buffered change. */
export type PendingChange =
  | { readonly kind: 'add'; readonly ban: FirewallBan }
  | { readonly kind: 'delete'; readonly jail: string; readonly addr: string };

/**
 * The add()/delete() buffer every backend shares. Per (jail, address) only the change that
 * matters survives: a later unban replaces a ban, and of two bans the longer one wins, so a flood
 * of repeated decisions still costs one element per address in the batch.
 */
export class PendingChanges {
  private changes = new Map<string, PendingChange>();

  /** Number of distinct (jail, address) pairs waiting. */
  get size(): number {
    return this.changes.size;
  }

  /** Buffer a ban; keeps the longer of two bans of the same pair (-1, permanent, is longest). */
  add(ban: FirewallBan): void {
    const key = banKey(ban.jail, ban.addr);
    const prev = this.changes.get(key);
    if (prev?.kind === 'add' && !outlasts(ban.until, prev.ban.until)) return;
    this.changes.set(key, { kind: 'add', ban });
  }

  /** Buffer an unban; it replaces any ban of the same pair buffered before it. */
  delete(jail: string, addr: string): void {
    this.changes.set(banKey(jail, addr), { kind: 'delete', jail, addr });
  }

  /** @returns every buffered change, emptying the buffer */
  take(): PendingChange[] {
    const out = [...this.changes.values()];
    this.changes = new Map();
    return out;
  }

  /**
   * Put back changes whose commit failed, so nothing is lost; a change buffered meanwhile for the
   * same pair is newer and wins.
   */
  restore(changes: readonly PendingChange[]): void {
    const newer = this.changes;
    this.changes = new Map();
    for (const c of changes) this.changes.set(keyOf(c), c);
    for (const [k, c] of newer) this.changes.set(k, c);
  }
}

function keyOf(c: PendingChange): string {
  return c.kind === 'add' ? banKey(c.ban.jail, c.ban.addr) : banKey(c.jail, c.addr);
}

/** @returns true when expiry `a` is later than `b` (-1 means never). */
export function outlasts(a: number, b: number): boolean {
  if (a === -1) return b !== -1;
  if (b === -1) return false;
  return a > b;
}
