import { statSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { AddressMatcher } from '../address.js';
import { JAIL_NAME_RE, MAX_BAN_MS } from '../protocol/messages.js';
import { ConfSet, readConfName, type ConfValue } from './conf-reader.js';
import { parseBackend, type BackendSpec } from './backend-spec.js';
import { parseTimeSpec, PERMANENT } from './time-spec.js';
import { parsePorts, parseProtocols, type PortSpec, type ProtocolSpec } from './ports.js';
import { parseActions, isFirewallAction, type ActionRef } from './actions.js';
import { isNotificationAction, notificationActions } from './notify-actions.js';
import { banTimeTable, DEFAULT_FORMULA, type BanTimePolicy } from '../policy/ban-time.js';
import { splitCommand } from '../policy/whitelist.js';

/** A DNS name in ignoreip (at least one dot or a single label of letters), resolved at policy load. */
const HOSTNAME_RE = /^(?=.*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** One enabled jail, validated. Times are in seconds; bantime is PERMANENT (-1) for ever. */
export interface JailConfig {
  readonly name: string;
  /** Filter spec as fail2ban writes it: `sshd` or `sshd[mode=aggressive]`. */
  readonly filter: string;
  readonly logpath: string[];
  /** fail2ban `backend` as written: auto, polling, pyinotify, gamin, systemd[...], bans. */
  readonly backend: string;
  /** The backend parsed (common/config/backend-spec.ts decides what is valid). */
  readonly backendSpec: BackendSpec;
  readonly logencoding: string;
  readonly journalmatch: string[];
  readonly maxretry: number;
  readonly findtime: number;
  readonly bantime: number;
  readonly ignoreip: string[];
  readonly ports: PortSpec;
  readonly protocols: ProtocolSpec;
  /** False when the jail's actions include no firewall action: bans are recorded, not enforced. */
  readonly enforce: boolean;
  /**
   * What a banned packet meets: fail2ban's `blocktype` (the firewall action's parameter, else the
   * jail's option); see {@link parseBlocktype}.
   */
  readonly blocktype: Blocktype;
  /** The firewall action's `name` parameter (`iptables[name=SSH]`): iptables names the chain `f2b-SSH`. */
  readonly actionName: string | undefined;
  /** `bantime.*` escalation options. */
  readonly banTime: BanTimePolicy;
  /** Failures must come from at least this many distinct hosts before a ban (1: any host alone). */
  readonly minhosts: number;
  /** Never ban the fleet's own addresses (learned from agent heartbeats). */
  readonly ignoreself: boolean;
  /** Command run with `<ip>` replaced; exit 0 means "do not ban". */
  readonly ignorecommand: string | undefined;
  /**
   * `backend = bans`: the jail counts the cluster's bans in other jails instead of log lines
   * (a cluster-wide recidive). Agents follow no logs for it.
   */
  readonly countsBans: boolean;
  /** IPv6 failures are counted and banned per network of this prefix length (128: per address). */
  readonly ipv6prefix: number;
  readonly actions: ActionRef[];
  /** Every option of the jail (own and inherited), interpolated, for the filter engine. */
  readonly options: ReadonlyMap<string, string>;
  readonly file: string;
  readonly line: number;
}

export interface LoadedJails {
  readonly jails: JailConfig[];
  /** Things an operator must hear about at start-up (unimplemented actions, ignored entries). */
  readonly warnings: string[];
  readonly files: string[];
  /**
   * The [DEFAULT] whitelist, for bans in a jail no file defines (`fleetban ban` into `manual`):
   * the shipped ignoreip protects 127.0.0.1/8 there too.
   */
  readonly defaults: { readonly ignoreip: string[]; readonly ignoreself: boolean; readonly ignorecommand: string | undefined };
}

/** Defaults where neither the jail nor [DEFAULT] sets a value (fail2ban's own defaults). */
export const JAIL_DEFAULTS = Object.freeze({
  enabled: 'false',
  maxretry: '5',
  findtime: '10m',
  bantime: '10m',
  backend: 'auto',
  logencoding: 'auto',
  ignoreip: '',
});

/**
 * How banned packets are refused: dropped silently, rejected with ICMP port unreachable, or (for
 * TCP) answered with a reset, other protocols then getting port unreachable.
 */
export type Blocktype = 'drop' | 'reject' | 'tcp-reset';

/**
 * Read fail2ban's `blocktype`, which is a target of the action's own firewall: iptables'
 * `DROP`, `REJECT`, `REJECT --reject-with icmp-port-unreachable|icmp6-port-unreachable|tcp-reset`
 * (iptables-common.conf), nftables' `drop`, `reject`, `reject with icmp[x|v6] type
 * port-unreachable`, `reject with tcp reset` (nftables.conf), Shorewall's `reject`, `drop`
 * (shorewall.conf). Another ICMP type (`icmp-host-prohibited`, `icmpx type host-unreachable`, …)
 * is a rejection fleetban answers with port unreachable, named in the warning.
 * @param text the option as written (empty: the default, drop)
 * @returns the blocktype, and a warning when fleetban answers differently than written
 * @throws Error saying which values are accepted
 */
export function parseBlocktype(text: string): { blocktype: Blocktype; warning?: string } {
  const t = text.trim().replace(/\s+/g, ' ');
  if (t === '' || /^drop$/i.test(t)) return { blocktype: 'drop' };
  if (/^reject$/i.test(t)) return { blocktype: 'reject' };
  const iptables = /^REJECT --reject-with (\S+)$/i.exec(t);
  const nft = /^reject with (?:(tcp reset)|(icmp|icmpv6|icmpx) type (\S+))$/i.exec(t);
  if (/^tcp-reset$/i.test(iptables?.[1] ?? '') || nft?.[1]) return { blocktype: 'tcp-reset' };
  const icmp = iptables?.[1] ?? nft?.[3];
  if (icmp !== undefined) {
    if (/^icmp6?-port-unreachable$|^port-unreachable$/i.test(icmp)) return { blocktype: 'reject' };
    return { blocktype: 'reject', warning: `fleetban rejects with ICMP port unreachable, not ${icmp}` };
  }
  throw new Error(`'${text.trim()}' is neither drop nor reject: one of DROP, REJECT, REJECT --reject-with icmp-port-unreachable|icmp6-port-unreachable|tcp-reset, `
    + 'drop, reject, reject with icmpx type port-unreachable, reject with tcp reset');
}

/**
 * fail2ban options a jail may set that fleetban does not honour as such, each with what fleetban
 * does instead (named in a warning when the jail sets it itself).
 */
const NOT_HONOURED: Readonly<Record<string, string>> = {
  chain: "fleetban's rules live in its own table/chain hooked into input, whatever chain names",
  maxmatches: 'fleetban reports each failure with its own line; there is no per-ticket match list',
  fail2ban_agent: 'no fleetban action makes HTTP requests with a user agent',
  banaction: 'fleetban enforces every firewall action with the host\'s [agent] banaction',
  banaction_allports: 'fleetban enforces every firewall action with the host\'s [agent] banaction',
};

/** Options this implementation reads; others are passed to the filter or warned about once. */
const KNOWN_OPTIONS = new Set([
  'enabled', 'filter', 'logpath', 'backend', 'logencoding', 'journalmatch', 'maxretry', 'findtime', 'bantime',
  'ignoreip', 'port', 'protocol', 'action', 'banaction', 'banaction_allports', 'chain', 'mode', 'usedns',
  'ignoreself', 'ignorecommand', 'datepattern', 'maxlines', 'logtype', 'prefregex', 'failregex', 'ignoreregex',
  'maxmatches', 'timezone', 'mta', 'sender', 'destemail', 'sendername', 'dest', 'action_', 'action_mw', 'action_mwl',
  'action_xarf', 'action_cf_mwl', 'action_blocklist_de', 'action_abuseipdb', 'action_badips', 'action_badips_report',
  'fail2ban_agent', 'protocol', 'before', 'after', 'minhosts', 'bantime.increment', 'bantime.factor', 'bantime.formula',
  'bantime.multipliers', 'bantime.maxtime', 'bantime.rndtime', 'bantime.overalljails', 'journalfiles', 'journalpath',
  'ipv6prefix', 'logtimezone', 'blocktype',
]);

/**
 * Refuse a configuration directory that does not exist (fail2ban-client -t does too); reading
 * nothing and running no jail would look like success.
 * @throws ConfigError naming the directory
 */
export function requireConfigDir(dir: string): void {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    throw new ConfigError(`configuration directory does not exist (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, dir);
  }
  if (!isDir) throw new ConfigError('is not a directory', dir);
}

/**
 * Load jails in fail2ban's order: jail.conf, jail.d/*.conf, jail.local, jail.d/*.local.
 * Only enabled jails are validated and returned, as fail2ban does.
 * @param dir configuration directory
 * @throws ConfigError naming file, line and key
 */
export function loadJails(dir: string): LoadedJails {
  requireConfigDir(dir);
  const set = new ConfSet(readConfName(dir, 'jail'));

  const warnings: string[] = [];
  const jails: JailConfig[] = [];
  for (const name of set.sectionNames()) {
    const enabled = parseBool(set, name, 'enabled');
    if (!enabled) continue;
    jails.push(buildJail(set, name, warnings));
  }
  const dget = (key: string): string | undefined => (set.hasSection('DEFAULT') ? set.get('DEFAULT', key) : undefined);
  const dfail = (key: string) => (message: string): never => {
    const w = set.raw('DEFAULT', key);
    throw new ConfigError(`[DEFAULT]: ${message}`, w?.file, w?.line, key);
  };
  const selfText = (dget('ignoreself') ?? 'true').trim().toLowerCase();
  const defaults = {
    ignoreip: parseIgnoreip(dget('ignoreip') ?? '', dfail('ignoreip')),
    ignoreself: !['false', 'no', '0', 'off'].includes(selfText),
    ignorecommand: dget('ignorecommand')?.trim() || undefined,
  };
  return { jails, warnings, files: set.files, defaults };
}

function buildJail(set: ConfSet, name: string, warnings: string[]): JailConfig {
  const loc = set.sectionLocation(name)!;
  if (!JAIL_NAME_RE.test(name)) {
    throw new ConfigError(`jail name '${name}' may contain only letters, digits, '_', '.', '-' (at most 64)`, loc.file, loc.line);
  }
  const get = (key: string): string | undefined => set.get(name, key);
  const where = (key: string): ConfValue | undefined => set.raw(name, key);
  const fail = (key: string, message: string): never => {
    const w = where(key);
    throw new ConfigError(`jail [${name}]: ${message}`, w?.file ?? loc.file, w?.line ?? loc.line, key);
  };
  const value = (key: keyof typeof JAIL_DEFAULTS): string => get(key) ?? JAIL_DEFAULTS[key];

  const maxretry = Number(value('maxretry'));
  if (!Number.isInteger(maxretry) || maxretry < 1) fail('maxretry', `'${value('maxretry')}' is not a whole number of at least 1`);
  const findtime = time(value('findtime'), 'findtime', fail);
  if (findtime <= 0) fail('findtime', 'must be positive');
  // Longer than every firewall accepts (nft: ~213,503 days): cut to MAX_BAN_MS, as everywhere.
  const bantime = Math.min(time(value('bantime'), 'bantime', fail), MAX_BAN_MS / 1000);
  if (bantime === 0) fail('bantime', 'must be positive, or -1 for permanent');

  const actionText = get('action');
  let actions: ActionRef[] = [];
  if (actionText !== undefined) {
    try {
      actions = parseActions(actionText);
    } catch (err) {
      fail('action', (err as Error).message);
    }
  }
  const firewallActions = actions.filter((a) => isFirewallAction(a.name));
  try { notificationActions(name, actions); } catch (err) { fail('action', (err as Error).message); }
  for (const a of actions.filter((x) => !isFirewallAction(x.name) && !isNotificationAction(x.name))) {
    warnings.push(`jail [${name}]: action '${a.name}' is not implemented by fleetban and is ignored`);
  }
  const enforce = actionText === undefined || firewallActions.length > 0;
  if (!enforce) warnings.push(`jail [${name}]: no firewall action, so its bans are recorded but not enforced`);

  // The first firewall action's parameters win over the jail's own port/protocol, as in fail2ban.
  const primary = firewallActions[0];
  const primaryName = primary?.params.get('name')?.trim() || undefined;
  if (primaryName !== undefined && !JAIL_NAME_RE.test(primaryName)) {
    fail('action', `action parameter name='${primaryName}' may contain only letters, digits, '_', '.', '-'`);
  }
  const portText = primary?.params.get('port') ?? get('port');
  let ports: PortSpec = 'all';
  if (portText !== undefined && portText.trim() !== '') {
    try {
      ports = parsePorts(portText);
    } catch (err) {
      fail('port', (err as Error).message);
    }
  }
  const protocolText = primary?.params.get('protocol') ?? get('protocol');
  let protocols: ProtocolSpec = ports === 'all' ? 'all' : ['tcp'];
  if (protocolText !== undefined && protocolText.trim() !== '') {
    try {
      protocols = parseProtocols(protocolText);
    } catch (err) {
      fail('protocol', (err as Error).message);
    }
  }

  const blocktypeText = (primary?.params.get('blocktype') ?? get('blocktype') ?? '').trim();
  let blocktype: Blocktype = 'drop';
  try {
    const b = parseBlocktype(blocktypeText);
    blocktype = b.blocktype;
    if (b.warning) warnings.push(`jail [${name}]: blocktype '${blocktypeText}': ${b.warning}`);
  } catch (err) {
    fail('blocktype', (err as Error).message);
  }

  const ownKeys = set.ownKeys(name);
  for (const key of ownKeys) {
    if (NOT_HONOURED[key]) warnings.push(`jail [${name}]: option '${key}' is not used: ${NOT_HONOURED[key]}`);
  }
  const usedns = (get('usedns') ?? '').trim().toLowerCase();
  if (usedns === 'yes') {
    warnings.push(`jail [${name}]: usedns = yes: fleetban never resolves host names found in log lines (as usedns = warn/no); a line naming only a host is not counted`);
  }

  const ignoreip = parseIgnoreip(get('ignoreip') ?? '', (message) => fail('ignoreip', message));

  const number = (key: string, fallback: number, min: number): number => {
    const text = get(key);
    if (text === undefined || text.trim() === '') return fallback;
    const n = Number(text.trim());
    if (!Number.isFinite(n) || n < min) fail(key, `'${text.trim()}' is not a number of at least ${min}`);
    return n;
  };
  const flag = (key: string, fallback: boolean): boolean => {
    const text = (get(key) ?? '').trim().toLowerCase();
    if (text === '') return fallback;
    if (['true', 'yes', '1', 'on'].includes(text)) return true;
    if (['false', 'no', '0', 'off'].includes(text)) return false;
    return fail(key, `'${text}' is not true or false`);
  };
  const optionalTime = (key: string): number => {
    const text = get(key);
    if (text === undefined || text.trim() === '') return 0;
    const t = time(text, key, fail);
    if (t < 0) fail(key, 'must not be negative');
    return t;
  };
  const multipliers = (get('bantime.multipliers') ?? '').split(/[\s,]+/).filter(Boolean).map((m) => {
    const n = Number(m);
    if (!Number.isFinite(n) || n <= 0) fail('bantime.multipliers', `'${m}' is not a positive number`);
    return n;
  });
  const banTime: BanTimePolicy = {
    bantime,
    increment: flag('bantime.increment', false),
    factor: number('bantime.factor', 1, 0),
    formula: (get('bantime.formula') ?? DEFAULT_FORMULA).replace(/\s*\n\s*/g, ' ').trim(),
    multipliers,
    maxtime: optionalTime('bantime.maxtime'),
    rndtime: optionalTime('bantime.rndtime'),
    overalljails: flag('bantime.overalljails', false),
  };
  try {
    banTimeTable(banTime);
  } catch (err) {
    fail('bantime.formula', (err as Error).message);
  }
  const ignorecommand = get('ignorecommand')?.trim() || undefined;
  // Split here, not only when the coordinator's policy loads: check-config then names the line.
  if (ignorecommand) {
    try {
      splitCommand(ignorecommand);
    } catch (err) {
      fail('ignorecommand', (err as Error).message);
    }
  }
  const ipv6prefix = number('ipv6prefix', 128, 16);
  if (!Number.isInteger(ipv6prefix) || ipv6prefix > 128) fail('ipv6prefix', 'must be a whole number from 16 to 128');
  const minhosts = number('minhosts', 1, 1);
  if (!Number.isInteger(minhosts)) fail('minhosts', 'must be a whole number');

  const logpath = (get('logpath') ?? '')
    .split('\n')
    .map((l) => l.trim().replace(/\s+(?:head|tail)$/, ''))
    .filter(Boolean);
  const backend = (get('backend') ?? JAIL_DEFAULTS.backend).trim();
  const backendSpec = parseBackend(backend, name, where('backend') ?? loc);
  const countsBans = backendSpec.kind === 'bans';
  if (backendSpec.kind === 'files' && logpath.length === 0) fail('logpath', 'is required (or backend = systemd or bans)');
  if (backendSpec.kind === 'files' && logpath.some((p) => /(?:^|\/)fail2ban\.log$/.test(p))) {
    warnings.push(`jail [${name}]: logpath ${logpath.join(' ')} is fail2ban's own log, which nothing writes once fleetban replaces fail2ban; ` +
      'for a cluster-wide recidive set backend = bans (it counts the cluster\'s bans in every other jail)');
  }

  const options = new Map<string, string>();
  const keys = new Set([...set.ownKeys('DEFAULT'), ...set.ownKeys(name)]);
  for (const key of keys) {
    if (!KNOWN_OPTIONS.has(key) && set.ownKeys(name).includes(key)) {
      warnings.push(`jail [${name}]: unknown option '${key}' is passed to the filter only`);
    }
    try {
      const v = get(key);
      if (v !== undefined) options.set(key, v);
    } catch {
      // An option that does not interpolate and that this jail never uses (e.g. an unused action_ macro) is harmless.
    }
  }

  return {
    name,
    filter: (get('filter') ?? name).trim(),
    logpath,
    backend,
    backendSpec,
    logencoding: value('logencoding').trim(),
    journalmatch: (get('journalmatch') ?? '').split('\n').map((s) => s.trim()).filter(Boolean),
    maxretry,
    findtime,
    bantime,
    ignoreip,
    ports,
    protocols,
    enforce,
    blocktype,
    actionName: primaryName,
    banTime,
    minhosts,
    ignoreself: flag('ignoreself', true),
    ignorecommand,
    countsBans,
    ipv6prefix,
    actions,
    options,
    file: loc.file,
    line: loc.line,
  };
}

/** ignoreip entries: addresses and networks checked now; host names and file: lists kept for the whitelist to resolve. */
function parseIgnoreip(text: string, fail: (message: string) => never): string[] {
  const out: string[] = [];
  for (const entry of text.split(/[\s,]+/).filter(Boolean)) {
    if (entry.startsWith('file:') || HOSTNAME_RE.test(entry)) {
      // Resolved (names) and read (files) by the whitelist when the coordinator loads the policy.
      out.push(entry);
      continue;
    }
    try {
      new AddressMatcher([entry]);
      out.push(entry);
    } catch (err) {
      fail(`'${entry}' is not an address, network, host name or file:PATH (${(err as Error).message})`);
    }
  }
  return out;
}

function time(text: string, key: string, fail: (key: string, message: string) => never): number {
  try {
    return parseTimeSpec(text);
  } catch (err) {
    return fail(key, (err as Error).message);
  }
}

function parseBool(set: ConfSet, section: string, key: string): boolean {
  const text = (set.get(section, key) ?? JAIL_DEFAULTS.enabled).trim().toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(text)) return true;
  if (['false', 'no', '0', 'off'].includes(text)) return false;
  const w = set.raw(section, key);
  throw new ConfigError(`jail [${section}]: '${text}' is not true or false`, w?.file, w?.line, key);
}

export { PERMANENT };
