import { readFileSync } from 'node:fs';
import { InvalidInputError } from '../errors.js';

/** Inclusive port ranges, or every port. */
export type PortSpec = Array<[number, number]> | 'all';
export type ProtocolSpec = Array<'tcp' | 'udp' | 'sctp'> | 'all';

let services: Map<string, number> | undefined;

/** Service names from /etc/services, with the few fail2ban configs rely on as a fallback when it is absent. */
function serviceTable(): Map<string, number> {
  if (services) return services;
  services = new Map([
    ['ssh', 22], ['ftp', 21], ['ftp-data', 20], ['smtp', 25], ['http', 80], ['https', 443], ['pop3', 110],
    ['pop3s', 995], ['imap', 143], ['imap2', 143], ['imaps', 993], ['submission', 587], ['submissions', 465],
    ['sieve', 4190], ['domain', 53], ['smtps', 465], ['sftp', 115], ['ftps', 990], ['www', 80],
  ]);
  try {
    for (const line of readFileSync('/etc/services', 'utf8').split('\n')) {
      const m = /^([A-Za-z0-9][\w.+-]*)\s+(\d+)\/\w+(.*)$/.exec(line.replace(/#.*/, ''));
      if (!m) continue;
      const port = Number(m[2]);
      for (const name of [m[1]!, ...m[3]!.trim().split(/\s+/).filter(Boolean)]) {
        if (!services.has(name)) services.set(name, port);
      }
    }
  } catch {
    // No /etc/services (minimal containers): the built-in names above still work.
  }
  return services;
}

/**
 * Parse fail2ban's `port` value: `ssh`, `22`, `ssh,sftp`, `1000:2000`, `1000-2000`, `0:65535`, `all`, `any`.
 * @returns port ranges, or 'all'
 * @throws Error naming the part that is not a port, range or known service name
 */
export function parsePorts(value: string): PortSpec {
  const parts = value.split(/[\s,]+/).map((p) => p.replace(/^["']|["']$/g, '')).filter(Boolean);
  if (parts.length === 0 || parts.some((p) => p === 'all' || p === 'any')) return 'all';
  const ranges: Array<[number, number]> = [];
  for (const part of parts) {
    const range = /^(\w[\w.+-]*)[:-](\w[\w.+-]*)$/.exec(part);
    if (range && !serviceTable().has(part)) {
      const lo = portNumber(range[1]!);
      const hi = portNumber(range[2]!);
      if (lo > hi) throw new InvalidInputError(`port range '${part}' runs backwards`);
      if (lo <= 1 && hi === 65535) return 'all';
      ranges.push([lo, hi]);
    } else {
      const p = portNumber(part);
      ranges.push([p, p]);
    }
  }
  return ranges;
}

function portNumber(text: string): number {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n > 65535) throw new InvalidInputError(`port ${n} is above 65535`);
    return n;
  }
  const n = serviceTable().get(text);
  if (n === undefined) throw new InvalidInputError(`'${text}' is not a port number or a service name in /etc/services`);
  return n;
}

/**
 * Parse fail2ban's `protocol` value: `tcp`, `udp`, `sctp`, lists of them, or `all`.
 * @throws Error for anything else
 */
export function parseProtocols(value: string): ProtocolSpec {
  const parts = value.split(/[\s,]+/).map((p) => p.replace(/^["']|["']$/g, '').toLowerCase()).filter(Boolean);
  if (parts.length === 0 || parts.includes('all')) return 'all';
  for (const p of parts) {
    if (p !== 'tcp' && p !== 'udp' && p !== 'sctp') throw new InvalidInputError(`protocol '${p}' is not tcp, udp, sctp or all`);
  }
  return [...new Set(parts)] as Array<'tcp' | 'udp' | 'sctp'>;
}
