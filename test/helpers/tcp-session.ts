/**
 * A long-lived TCP connection between two namespaces, to prove that a ban cuts connections that
 * were open before it: an echo server that reports every line it receives, and a client that sends
 * lines on demand and reports every line echoed back. Both are small node processes run with
 * `ip netns exec`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Echo each line; print `got <line>` for each, `listening` once bound. */
const ECHO_SERVER = `
const net = require('net');
const [addr, port] = process.argv.slice(1);
const srv = net.createServer((s) => {
  s.on('error', () => {});
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      console.log('got ' + line);
      s.write(line + '\\n');
    }
  });
});
srv.on('error', (e) => { console.error(e.message); process.exit(2); });
srv.listen({ host: addr, port: Number(port) }, () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;

/** Connect, print `connected`; write each stdin line to the socket; print `echo <line>` for each line back. */
const CLIENT = `
const net = require('net');
const readline = require('readline');
const [addr, port] = process.argv.slice(1);
const s = net.connect({ host: addr, port: Number(port) });
s.on('connect', () => console.log('connected'));
s.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
s.on('close', () => { console.log('closed'); process.exit(0); });
let buf = '';
s.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) { console.log('echo ' + buf.slice(0, i)); buf = buf.slice(i + 1); }
});
readline.createInterface({ input: process.stdin }).on('line', (l) => s.write(l + '\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

/** Lines a child printed, and a way to wait for one. */
class Lines {
  readonly seen: string[] = [];
  private waiters: Array<() => void> = [];
  constructor(child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      this.seen.push(l);
      for (const w of this.waiters.splice(0)) w();
    });
  }
  /** @returns true when `line` was printed within `ms` */
  async waitFor(line: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.seen.includes(line)) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }
}

function run(prefix: readonly string[], script: string, args: string[]): { child: ChildProcess; lines: Lines; stop(): Promise<void> } {
  const child = spawn(prefix[0]!, [...prefix.slice(1), process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    lines: new Lines(child),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** An echo server; `received` holds the lines it got. */
export interface EchoServer {
  readonly received: readonly string[];
  stop(): Promise<void>;
}

/**
 * Start an echo server inside a namespace.
 * @param prefix e.g. `fleet.prefix('host')`
 * @returns once it listens
 */
export async function startEchoServer(prefix: readonly string[], addr: string, port: number): Promise<EchoServer> {
  const p = run(prefix, ECHO_SERVER, [addr, String(port)]);
  if (!(await p.lines.waitFor('listening', 10_000))) {
    await p.stop();
    throw new Error(`echo server on ${addr}:${port} did not start`);
  }
  return {
    get received() {
      return p.lines.seen.filter((l) => l.startsWith('got ')).map((l) => l.slice(4));
    },
    stop: () => p.stop(),
  };
}

/** One open connection. */
export interface TcpSession {
  /**
   * Send `text` and wait for its echo.
   * @returns true when the echo came back within `ms`
   */
  roundTrip(text: string, ms: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Open a connection from a namespace and prove it carries data.
 * @throws when it cannot connect or the first round trip fails
 */
export async function openSession(prefix: readonly string[], addr: string, port: number): Promise<TcpSession> {
  const p = run(prefix, CLIENT, [addr, String(port)]);
  if (!(await p.lines.waitFor('connected', 5000))) {
    await p.stop();
    throw new Error(`could not connect to ${addr}:${port}: ${p.lines.seen.join('; ')}`);
  }
  const session: TcpSession = {
    async roundTrip(text, ms) {
      p.child.stdin!.write(`${text}\n`);
      return p.lines.waitFor(`echo ${text}`, ms);
    },
    close: () => p.stop(),
  };
  if (!(await session.roundTrip('hello', 3000))) {
    await p.stop();
    throw new Error(`connection to ${addr}:${port} carries no data before any ban`);
  }
  return session;
}
