/**
 * A small fleet of "hosts" on one machine: each host is a network namespace with an `eth0` veth
 * plugged into one bridge that lives in its own namespace, so tests see real routing, real
 * firewalls (nftables/iptables/ipset state is per namespace) and real TCP.
 *
 * Every namespace name carries a per-run random prefix, so two test runs never collide, and
 * `destroy()` (plus a process-exit safety net) removes exactly the namespaces this run created.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';

/** One host of a fleet. */
export interface NetHost {
  /** The name the test gave it (`host`, `atk`, …). */
  name: string;
  /** The network namespace it lives in. */
  ns: string;
  /** Its addresses, without prefix length (`198.51.100.11`, `2001:db8::11`). */
  addrs: string[];
}

/** A set of namespaces joined by one bridge; see {@link createFleet}. */
export interface Fleet {
  /** @returns the host named `name`; throws for an unknown name */
  host(name: string): NetHost;
  /** argv prefix to run a command inside a host: ['ip','netns','exec',ns] */
  prefix(name: string): string[];
  /**
   * Run `file args…` inside host `name`.
   * @param opts.input text written to stdin; opts.reject false returns a non-zero exit instead of throwing
   */
  exec(
    name: string,
    file: string,
    args: string[],
    opts?: { input?: string; reject?: boolean },
  ): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** start a TCP listener (a small node process inside the ns) on addr:port; resolves when listening */
  listen(name: string, addr: string, port: number): Promise<{ stop(): Promise<void> }>;
  /** true when a TCP connection from host `from` to addr:port completes within timeoutMs */
  tcpConnects(from: string, addr: string, port: number, timeoutMs?: number): Promise<boolean>;
  /** Stop listeners and delete every namespace this fleet created. Safe to call twice. */
  destroy(): Promise<void>;
}

let availability: { ok: true } | { ok: false; reason: string } | undefined;

/**
 * Whether this process can build fleets: it must be root, have `ip`, and be allowed to create a
 * namespace (containers without CAP_SYS_ADMIN cannot). The answer is cached.
 * @returns ok, or the reason a test should print when it skips
 */
export function netnsAvailable(): { ok: true } | { ok: false; reason: string } {
  if (!availability) availability = probeNetns();
  // CI runs as root so that these tests run: there a missing capability is a failure of the run,
  // never a silent skip that would let every firewall test "pass" without running.
  if (!availability.ok && process.env.CI === 'true') {
    throw new Error(`CI=true but network-namespace tests cannot run: ${availability.reason}`);
  }
  return availability;
}

function probeNetns(): { ok: true } | { ok: false; reason: string } {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: 'needs root: network namespaces' };
  }
  const probe = `fbprobe${randomBytes(4).toString('hex')}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error) return { ok: false, reason: `needs iproute2: ${add.error.message}` };
  if (add.status !== 0) {
    return { ok: false, reason: `cannot create a network namespace: ${add.stderr.trim()}` };
  }
  spawnSync('ip', ['netns', 'del', probe]);
  return { ok: true };
}

// Namespaces still alive when the process exits (a crashed test, a forgotten destroy) are removed
// here, synchronously, because 'exit' handlers cannot await.
const liveNamespaces = new Set<string>();
let exitHookInstalled = false;
function trackNamespace(ns: string): void {
  liveNamespaces.add(ns);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const n of liveNamespaces) spawnSync('ip', ['netns', 'del', n]);
  });
}

const HOST_NAME = /^[a-z][a-z0-9]{0,11}$/;

/** A node script run inside a namespace: accept connections, say "listening" once bound. */
const LISTENER = `
const net = require('net');
const [addr, port] = process.argv.slice(1);
const srv = net.createServer((s) => { s.on('error', () => {}); s.end('ok\\n'); });
srv.on('error', (e) => { console.error(e.message); process.exit(2); });
srv.listen({ host: addr, port: Number(port) }, () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;

/** Exit 0 when the TCP handshake completes, 1 on error or timeout. */
const CONNECTOR = `
const net = require('net');
const [addr, port, ms] = process.argv.slice(1);
const s = net.connect({ host: addr, port: Number(port) });
const t = setTimeout(() => process.exit(1), Number(ms));
s.on('connect', () => { clearTimeout(t); s.destroy(); process.exit(0); });
s.on('error', () => process.exit(1));
`;

/**
 * Build a fleet: one namespace per host, each with `lo` up and an `eth0` on a shared bridge.
 * hosts on one bridge; addrs like '198.51.100.11/24', '2001:db8::11/64' (IPv6 with nodad)
 * @param hosts host names (`[a-z][a-z0-9]{0,11}`) and their addresses with prefix length
 * @returns the fleet; on any failure everything created so far is removed before the error is thrown
 */
export async function createFleet(hosts: Array<{ name: string; addrs: string[] }>): Promise<Fleet> {
  const runId = `fb${randomBytes(3).toString('hex')}`;
  const created: string[] = [];
  const byName = new Map<string, NetHost>();
  const children = new Set<ChildProcess>();

  const ip = async (args: string[]): Promise<void> => {
    const r = await execa('ip', args, { reject: false });
    if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`);
  };
  const addNs = async (ns: string): Promise<void> => {
    await ip(['netns', 'add', ns]);
    created.push(ns);
    trackNamespace(ns);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  };

  const destroy = async (): Promise<void> => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    children.clear();
    // Hosts first, bridge last; each deletion is independent so one failure does not leak the rest.
    for (const ns of created.splice(0).reverse()) {
      await execa('ip', ['netns', 'del', ns], { reject: false });
      liveNamespaces.delete(ns);
    }
  };

  try {
    const bridgeNs = `${runId}-br`;
    await addNs(bridgeNs);
    await ip(['-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', bridgeNs, 'link', 'set', 'br0', 'up']);
    let index = 0;
    for (const h of hosts) {
      if (!HOST_NAME.test(h.name)) throw new Error(`host name '${h.name}' must match ${HOST_NAME}`);
      if (byName.has(h.name)) throw new Error(`host name '${h.name}' given twice`);
      const ns = `${runId}-${h.name}`;
      await addNs(ns);
      const port = `p${index++}`;
      await ip(['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', bridgeNs]);
      await ip(['-n', bridgeNs, 'link', 'set', port, 'master', 'br0', 'up']);
      const bare: string[] = [];
      for (const a of h.addrs) {
        const v6 = a.includes(':');
        await ip(['-n', ns, v6 ? '-6' : '-4', 'addr', 'add', a, 'dev', 'eth0', ...(v6 ? ['nodad'] : [])]);
        bare.push(a.split('/')[0]!);
      }
      await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      byName.set(h.name, { name: h.name, ns, addrs: bare });
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  const host = (name: string): NetHost => {
    const h = byName.get(name);
    if (!h) throw new Error(`no host '${name}' in this fleet (have: ${[...byName.keys()].join(', ')})`);
    return h;
  };
  const prefix = (name: string): string[] => ['ip', 'netns', 'exec', host(name).ns];

  const spawnIn = (name: string, script: string, args: string[]): ChildProcess => {
    const child = spawn('ip', ['netns', 'exec', host(name).ns, process.execPath, '-e', script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };

  return {
    host,
    prefix,
    async exec(name, file, args, opts = {}) {
      const r = await execa('ip', ['netns', 'exec', host(name).ns, file, ...args], {
        input: opts.input,
        reject: false,
      });
      const out = { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? -1 };
      if (opts.reject !== false && out.exitCode !== 0) {
        throw new Error(`${file} ${args.join(' ')} in ${name} exited ${out.exitCode}: ${out.stderr.trim()}`);
      }
      return out;
    },
    listen(name, addr, port) {
      const child = spawnIn(name, LISTENER, [addr, String(port)]);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      return new Promise((resolve, reject) => {
        let stderr = '';
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`listener on ${addr}:${port} in ${name} did not start within 10 s`));
        }, 10_000);
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        child.stdout!.on('data', (d: Buffer) => {
          if (!d.toString().includes('listening')) return;
          clearTimeout(timer);
          resolve({
            async stop() {
              if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
              await exited;
            },
          });
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`listener on ${addr}:${port} in ${name} exited ${code}: ${stderr.trim()}`));
        });
      });
    },
    tcpConnects(from, addr, port, timeoutMs = 1000) {
      const child = spawnIn(from, CONNECTOR, [addr, String(port), String(timeoutMs)]);
      return new Promise((resolve) => child.once('exit', (code) => resolve(code === 0)));
    },
    destroy,
  };
}
