import type { JailRule } from './backend.js';

/** multiport takes at most 15 ports, a range counting as two. */
const MULTIPORT_SLOTS = 15;

/**
 * The iptables match arguments that select a jail's traffic: one argument list per rule needed
 * (multiport wants one protocol per rule and at most 15 port slots). An empty list inside means
 * "every packet". Ports are validated integers, so the text is safe to put in a restore file.
 * @param rule the jail
 * @returns argument lists such as `['-p','tcp','-m','multiport','--dports','22,80:90']`
 */
export function iptablesMatches(rule: JailRule): string[][] {
  if (rule.ports === 'all') {
    return rule.protocols === 'all' ? [[]] : rule.protocols.map((p) => ['-p', p]);
  }
  const groups: string[][] = [];
  let current: string[] = [];
  let used = 0;
  for (const [lo, hi] of rule.ports) {
    const cost = lo === hi ? 1 : 2;
    if (used + cost > MULTIPORT_SLOTS) {
      groups.push(current);
      current = [];
      used = 0;
    }
    current.push(lo === hi ? String(lo) : `${lo}:${hi}`);
    used += cost;
  }
  groups.push(current);
  const protocols = rule.protocols === 'all' ? (['tcp', 'udp', 'sctp'] as const) : rule.protocols;
  return protocols.flatMap((p) => groups.map((g) => ['-p', p, '-m', 'multiport', '--dports', g.join(',')]));
}

/**
 * The rules that refuse a jail's banned packets selected by `match`: one with `-j DROP`, or for
 * blocktype = reject one with fail2ban's `REJECT --reject-with icmp(6)-port-unreachable`. For
 * tcp-reset the kernel takes `--reject-with tcp-reset` only in a rule that itself matches
 * `-p tcp`, so a match without a protocol becomes two rules: TCP gets the reset, the rest
 * port unreachable.
 * @param rule the jail
 * @param family the address family of the rules
 * @param match the match arguments (`-s ADDR`, `-p udp -m multiport …`, …), at most one `-p`
 * @returns one argument list per rule, match then target
 */
export function iptablesVerdicts(rule: JailRule, family: 4 | 6, match: readonly string[]): string[][] {
  const unreachable = ['-j', 'REJECT', '--reject-with', family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable'];
  const reset = ['-j', 'REJECT', '--reject-with', 'tcp-reset'];
  if (rule.blocktype === 'reject') return [[...match, ...unreachable]];
  if (rule.blocktype !== 'tcp-reset') return [[...match, '-j', 'DROP']];
  const p = match.indexOf('-p');
  if (p !== -1) return [[...match, ...(match[p + 1] === 'tcp' ? reset : unreachable)]];
  return [[...match, '-p', 'tcp', ...reset], [...match, ...unreachable]];
}
