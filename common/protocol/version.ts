/**
 * Wire protocol version carried in every stream entry (field `v`) and in the names of the Lua
 * commands, so two releases running side by side during a rolling upgrade never misread each
 * other's messages or call each other's scripts. Bump on any incompatible change.
 */
export const PROTOCOL_VERSION = 3;

/** fleetban's release, reported by agents in their heartbeats. */
export const FLEETBAN_VERSION = '0.1.0';
