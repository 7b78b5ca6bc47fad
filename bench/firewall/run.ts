/**
 * Firewall backend benchmark (root only). Creates its own network namespace, and per backend:
 *  1. loads 100,000 bans into a fresh host with one sync() and times it;
 *  2. applies single bans one after another on top of that (add + commit each), p50/p99 latency,
 *     once through the backend's long-lived tool process (the default) and once with one
 *     process per batch (`persistent: false`, the `… one-shot` rows), side by side;
 * then times fail2ban's iptables-multiport way (one `iptables -I f2b-x 1 -s ADDR -j REJECT`
 * process per address) for a sample and extrapolates to 100,000.
 *
 * The script re-runs itself inside the namespace (`ip netns exec ns node run.js --in-ns …`), so
 * every command, ours and fail2ban-style alike, is spawned directly, as an agent on a real host
 * spawns it; going through `ip netns exec` per command would add about 2 ms of namespace setup to
 * each. Ban targets are generated from 2001:db8::/32 (documentation range); no packet
 * is sent to them.
 *
 * Usage (root): node dist/bench/firewall/run.js [--bans 100000] [--singles 200] [--f2b 1000]
 *   [--backends nftables,nftables-oneshot,ipset,ipset-oneshot,iptables,iptables-oneshot]
 */
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import type { FirewallBackend, FirewallBan } from '../../agent/firewall/backend.js';
import { IpsetBackend } from '../../agent/firewall/ipset.js';
import { IptablesBackend } from '../../agent/firewall/iptables.js';
import { NftablesBackend } from '../../agent/firewall/nftables.js';
import { createFleet, netnsAvailable } from '../../test/helpers/netns.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const BANS = Number(arg('bans', '100000'));
const SINGLES = Number(arg('singles', '200'));
const F2B = Number(arg('f2b', '1000'));
const WHICH = arg('backends', 'nftables,nftables-oneshot,ipset,ipset-oneshot,iptables,iptables-oneshot').split(',');

/** The i-th benchmark address: 2001:db8:HHHH:LLLL::1, unique for i below 2^32. */
function addr(i: number, salt = 0): string {
  return `2001:db8:${((i >>> 16) + salt * 0x1000).toString(16)}:${(i & 0xffff).toString(16)}::1`;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Row {
  method: string;
  bulk: string;
  bulkNote: string;
  p50: number;
  p99: number;
  singles: number;
}

async function benchBackend(name: string, make: () => FirewallBackend): Promise<Row> {
  const fw = make();
  const jail = { jail: 'bench', ports: [[22, 22]] as Array<[number, number]>, protocols: ['tcp' as const] };
  await fw.init([jail]);
  const until = Date.now() + 3_600_000;
  const bans: FirewallBan[] = [];
  for (let i = 0; i < BANS; i++) bans.push({ jail: 'bench', addr: addr(i), family: 6, until });
  const t0 = performance.now();
  await fw.sync(bans);
  const bulkMs = performance.now() - t0;
  const listed = (await fw.list()).length;
  if (listed !== BANS) throw new Error(`${name}: kernel holds ${listed} bans after sync, expected ${BANS}`);
  const lat: number[] = [];
  for (let i = 0; i < SINGLES; i++) {
    fw.add({ jail: 'bench', addr: addr(i, 1), family: 6, until });
    const s = performance.now();
    await fw.commit();
    lat.push(performance.now() - s);
  }
  lat.sort((a, b) => a - b);
  await fw.shutdown({ cleanup: true });
  return { method: name, bulk: `${(bulkMs / 1000).toFixed(2)} s`, bulkNote: `one sync of ${BANS}`, p50: pct(lat, 50), p99: pct(lat, 99), singles: SINGLES };
}

/** fail2ban iptables-multiport: actionban is one `iptables -I f2b-<name> 1 -s <ip> -j <blocktype>` per address. */
async function benchFail2banStyle(pre: string[]): Promise<Row> {
  const run = (argv: string[]) => execa(argv[0]!, argv.slice(1));
  await run([...pre, 'ip6tables', '-w', '-N', 'f2b-bench']);
  await run([...pre, 'ip6tables', '-w', '-I', 'INPUT', '-p', 'tcp', '-m', 'multiport', '--dports', '22', '-j', 'f2b-bench']);
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < F2B; i++) {
    const s = performance.now();
    await run([...pre, 'ip6tables', '-w', '-I', 'f2b-bench', '1', '-s', addr(i, 2), '-j', 'REJECT']);
    lat.push(performance.now() - s);
  }
  const total = performance.now() - t0;
  lat.sort((a, b) => a - b);
  await run([...pre, 'ip6tables', '-w', '-D', 'INPUT', '-p', 'tcp', '-m', 'multiport', '--dports', '22', '-j', 'f2b-bench']);
  await run([...pre, 'ip6tables', '-w', '-F', 'f2b-bench']);
  await run([...pre, 'ip6tables', '-w', '-X', 'f2b-bench']);
  const extrapolated = (total / F2B) * BANS;
  return {
    method: 'fail2ban-style (ip6tables -I per ban)',
    bulk: `~${(extrapolated / 1000).toFixed(0)} s`,
    bulkNote: `linear extrapolation from ${F2B} timed (${(total / 1000).toFixed(1)} s)`,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    singles: F2B,
  };
}

async function main(): Promise<void> {
  if (!process.argv.includes('--in-ns')) {
    const avail = netnsAvailable();
    if (!avail.ok) {
      console.error(`firewall bench: ${avail.reason}`);
      process.exit(2);
    }
    const fleet = await createFleet([{ name: 'bench', addrs: ['198.51.100.10/24', '2001:db8::10/64'] }]);
    try {
      const r = await execa(fleet.prefix('bench')[0]!, [...fleet.prefix('bench').slice(1), process.execPath, process.argv[1]!, ...process.argv.slice(2), '--in-ns'], {
        stdio: 'inherit',
        reject: false,
      });
      process.exitCode = r.exitCode ?? 1;
    } finally {
      await fleet.destroy();
    }
    return;
  }
  const rows: Row[] = [];
  const common = { commandPrefix: [] as string[], maxBans: BANS + SINGLES + 1000 };
  const oneShot = { ...common, persistent: false };
  const makers: Record<string, () => FirewallBackend> = {
    nftables: () => new NftablesBackend(common),
    'nftables-oneshot': () => new NftablesBackend(oneShot),
    ipset: () => new IpsetBackend(common),
    'ipset-oneshot': () => new IpsetBackend(oneShot),
    iptables: () => new IptablesBackend({ ...common, expireIntervalMs: 3_600_000 }),
    'iptables-oneshot': () => new IptablesBackend({ ...oneShot, expireIntervalMs: 3_600_000 }),
  };
  for (const name of WHICH) {
    const make = makers[name];
    if (!make) throw new Error(`unknown backend '${name}' (have ${Object.keys(makers).join(', ')})`);
    process.stderr.write(`benchmarking ${name}…\n`);
    rows.push(await benchBackend(name.replace('-oneshot', ' (one-shot process per batch)'), make));
  }
  process.stderr.write('benchmarking fail2ban-style…\n');
  rows.push(await benchFail2banStyle([]));
  const { stdout: kernel } = await execa('uname', ['-r']);
  const { stdout: load } = await execa('cat', ['/proc/loadavg']);
  console.log(`\nfirewall backends: ${BANS} bans bulk, ${SINGLES} single bans (kernel ${kernel}, node ${process.version}, loadavg ${load.split(' ').slice(0, 3).join(' ')})\n`);
  const head = ['method', `${BANS} bans`, 'single ban p50', 'p99', 'n', 'note'];
  const body = rows.map((r) => [r.method, r.bulk, `${r.p50.toFixed(1)} ms`, `${r.p99.toFixed(1)} ms`, String(r.singles), r.bulkNote]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  console.log(line(head));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const b of body) console.log(line(b));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
