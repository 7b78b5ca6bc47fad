import { createFleet, type Fleet } from './netns.js';
import { pino, type Logger } from 'pino';
import type { FirewallBan, JailRule } from '../../agent/firewall/backend.js';

/** Addresses of the firewall tests' host, attacker and bystander namespaces (documentation ranges). */
export const HOST4 = '198.51.100.10';
export const HOST6 = '2001:db8::10';
export const ATK4 = '198.51.100.66';
export const ATK6 = '2001:db8::66';
export const GOOD4 = '198.51.100.77';

/**
 * The firewall tests' namespaces: the host (TCP listeners on 22 and 80), an attacker inside
 * 198.51.100.64/29 and a bystander outside it, over IPv4 and IPv6.
 * @returns the fleet and a stop() that closes the listeners and removes the namespaces
 */
export async function startFirewallFleet(): Promise<{ fleet: Fleet; stop(): Promise<void> }> {
  const fleet = await createFleet([
    { name: 'host', addrs: [`${HOST4}/24`, `${HOST6}/64`] },
    { name: 'atk', addrs: [`${ATK4}/24`, `${ATK6}/64`] },
    { name: 'good', addrs: [`${GOOD4}/24`, '2001:db8::77/64'] },
  ]);
  const stops: Array<() => Promise<void>> = [];
  for (const port of [22, 80]) stops.push((await fleet.listen('host', '::', port)).stop);
  return {
    fleet,
    async stop() {
      for (const s of stops) await s();
      await fleet.destroy();
    },
  };
}

/** A port-scoped jail whose name needs escaping in every backend, and an all-ports jail. */
export const SSH: JailRule = { jail: 'ssh-test.v1', ports: [[22, 22]], protocols: ['tcp'] };
export const ALL: JailRule = { jail: 'all_ports', ports: 'all', protocols: 'all' };

/** A logger whose lines land in an array, to assert on commands and warnings. */
export function captureLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

/** A ban of `addr` in `jail` for `ms` from now (-1: permanent). */
export const ban = (jail: string, addr: string, ms: number): FirewallBan => ({
  jail,
  addr,
  family: addr.includes(':') ? 6 : 4,
  until: ms === -1 ? -1 : Date.now() + ms,
});

/**
 * How a TCP connection from host `from` ends: `connected`, the error code of a refusal
 * (`ECONNREFUSED`: a RST or an ICMP port unreachable, i.e. blocktype = reject), or `timeout` (dropped).
 */
export async function connectOutcome(fleet: Fleet, from: string, addr: string, port: number): Promise<string> {
  return (await connectTimed(fleet, from, addr, port)).outcome;
}

/**
 * {@link connectOutcome} with how long the attempt took, measured inside the connecting process.
 * A TCP reset or an ICMP port unreachable ends an IPv4 attempt within milliseconds. Over IPv6
 * this kernel's TCP acts on the ICMPv6 error only once it retransmitted the SYN, about 1 s later
 * (measured here: 1010–1046 ms), where a reset still ends it at once; a drop waits the timeout.
 * @param timeoutMs how long a silent drop is waited for
 */
export async function connectTimed(fleet: Fleet, from: string, addr: string, port: number, timeoutMs = 1500): Promise<{ outcome: string; ms: number }> {
  const script = `const t=process.hrtime.bigint();const out=(o)=>{console.log(o+' '+Number((process.hrtime.bigint()-t)/1000000n));process.exit(0)};` +
    `const s=require('net').connect(${port},'${addr}');s.setTimeout(${timeoutMs},()=>out('timeout'));` +
    `s.on('connect',()=>out('connected'));s.on('error',(e)=>out(e.code));`;
  const [outcome = '', ms = 'NaN'] = (await fleet.exec(from, process.execPath, ['-e', script])).stdout.trim().split(' ');
  return { outcome, ms: Number(ms) };
}
