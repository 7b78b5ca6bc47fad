import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { aclPatterns } from './protocol/keys.js';
import { HOST_NAME_RE } from './protocol/messages.js';
import { InvalidInputError } from './errors.js';

/**
 * Redis ACL users of a cluster, one per role (see docs/security.md, "Roles and identities").
 * Rules are evaluated left to right by Redis, so each user starts from nothing (`resetkeys
 * resetchannels -@all`) and is given exactly what its role's code sends, directly or from inside
 * the Lua scripts (Redis checks a script's calls against the caller's ACL too).
 */

/** Fixed user names of the shared roles; agents are `fleetban-agent-<host>`. */
export const ACL_USERS = {
  coordinator: 'fleetban-coordinator',
  admin: 'fleetban-admin',
  reader: 'fleetban-reader',
} as const;

/** @returns the ACL user of one host's agent */
export function agentUser(host: string): string {
  return `fleetban-agent-${host}`;
}

/** What every connection sends on its own: ioredis' ready check (INFO), its name, SELECT of a URL's db, QUIT. */
const CONNECTION = ['+ping', '+info', '+client|setname', '+select', '+quit', '+time'];

/**
 * An agent: append to its own failure stream, write its own heartbeat and acknowledgement, read
 * decisions and the bans snapshot (a MULTI of reads), check its registration. No script command
 * at all, nothing that deletes or trims, no write outside its own keys.
 */
const AGENT_COMMANDS = [...CONNECTION, '+xadd', '+xread', '+xrevrange', '+hgetall', '+set', '+get', '+sismember', '+multi', '+exec', '+discard'];

/**
 * Coordinators and admins run the Lua scripts, which write every kind of cluster key; what they
 * must not do is touch other clusters, the server's settings or its other users, or block it.
 * `-@dangerous` drops KEYS, FLUSH*, CONFIG, DEBUG, SHUTDOWN, ACL, CLIENT KILL and the like;
 * INFO (ready check) and ACL USERS (coordinators find the hosts' agent users) come back after it.
 */
const TRUSTED_COMMANDS = [
  '+@read', '+@write', '+@stream', '+@hash', '+@set', '+@sortedset', '+@string', '+@keyspace', '+@transaction',
  '+@pubsub', '+@connection', '+@scripting', ...CONNECTION,
  '-@dangerous', '-script|flush', '-script|kill', '-function|flush', '-function|load', '-function|delete', '-function|restore',
  '-migrate', '-keys', '+info',
];

/** Read-only: status, banned, hosts, history, metrics. */
const READER_COMMANDS = [...CONNECTION, '+@read', '-@dangerous', '+info'];

/** One ACL user as it appears in an ACL file: `user NAME on #<sha256> rules...`. */
export interface AclUser {
  readonly name: string;
  /** The rules after the password: keys, channels, commands. */
  readonly rules: string[];
}

/**
 * The users of a cluster.
 * @param cluster cluster name (validated by the caller like the config loader does)
 * @param hosts the agents' host names
 */
export function clusterAclUsers(cluster: string, hosts: readonly string[]): AclUser[] {
  const p = aclPatterns(cluster);
  const base = ['resetkeys', 'resetchannels', '-@all'];
  const users: AclUser[] = [
    { name: ACL_USERS.coordinator, rules: [...base, `~${p.allKeys}`, `&${p.allChannels}`, ...TRUSTED_COMMANDS, '+acl|users'] },
    { name: ACL_USERS.admin, rules: [...base, `~${p.allKeys}`, `&${p.allChannels}`, ...TRUSTED_COMMANDS] },
    { name: ACL_USERS.reader, rules: [...base, `%R~${p.allKeys}`, ...READER_COMMANDS] },
  ];
  for (const host of hosts) {
    if (!HOST_NAME_RE.test(host)) throw new InvalidInputError(`invalid host name '${host}': letters, digits, '_', '.', '-' only`);
    users.push({ name: agentUser(host), rules: [...base, ...p.agentReads.map((k) => `%R~${k}`), ...p.agentOwn(host).map((k) => `~${k}`), ...AGENT_COMMANDS] });
  }
  return users;
}

/** @returns the SHA-256 a Redis ACL stores for a password (`#<hex>`) */
export function aclPasswordHash(password: string): string {
  return createHash('sha256').update(password).digest('hex');
}

/** @returns the ACL-file line of a user with that password */
export function aclFileLine(user: AclUser, password: string): string {
  return ['user', user.name, 'on', `#${aclPasswordHash(password)}`, ...user.rules].join(' ');
}

/**
 * The password of a user from `dir/<user>.password`, created (random, mode 0600, in a 0700
 * directory) when absent, so that the same command run again keeps every password.
 * @returns the password and whether it was just created
 */
export function userPassword(dir: string, user: string): { password: string; created: boolean; file: string } {
  const file = join(dir, `${user}.password`);
  if (existsSync(file)) {
    const password = readFileSync(file, 'utf8').trim();
    if (password === '') throw new InvalidInputError(`${file} is empty; delete it to have a new password made`);
    return { password, created: false, file };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const password = randomBytes(24).toString('base64url');
  writeFileSync(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { password, created: true, file };
}
