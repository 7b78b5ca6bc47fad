import type { Fleet } from './netns.js';
import { pino, type Logger } from 'pino';
import type { FirewallBan, JailRule } from '../../agent/firewall/backend.js';

/** Addresses of the firewall tests' host, attacker and bystander namespaces (documentation ranges). */
export const HOST4 = '198.51.100.10';
export const HOST6 = '2001:db8::10';
export const ATK4 = '198.51.100.66';
export const ATK6 = '2001:db8::66';
export const GOOD4 = '198.51.100.77';

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
  const script = `const s=require('net').connect(${port},'${addr}');s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});` +
    `s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(0)});`;
  return (await fleet.exec(from, process.execPath, ['-e', script])).stdout.trim();
}
