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
