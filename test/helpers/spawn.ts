import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { signingConfig } from './keys.js';
import { withIdentities } from './redis-server.js';

/** The compiled CLI entry point. */
export const CLI = resolve('dist/cli/main.js');

/** A fleetban daemon started as a real process, with its JSON log lines collected. */
export interface Daemon {
  readonly proc: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  /** Resolve with the first log line (already seen or future) that satisfies pred. */
  waitFor(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<Record<string, unknown>>;
  /** Lines matching pred seen so far. */
  count(pred: (line: Record<string, unknown>) => boolean): number;
  /** SIGTERM and wait for exit (SIGKILL after 5 s). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Start `node dist/cli/main.js ARGS`.
 * @param prefix argv run before node, e.g. ['ip','netns','exec',ns]
 */
export function startDaemon(args: string[], env: Record<string, string> = {}, prefix: string[] = []): Daemon {
  // FLEETBAN_DAEMON_NODE_ARGS: node flags for the daemons only (e.g. --cpu-prof for a benchmark profile).
  const argv = [...prefix, process.execPath, ...(process.env.FLEETBAN_DAEMON_NODE_ARGS?.split(" ").filter(Boolean) ?? []), CLI, ...args];
  const proc = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FLEETBAN_LOG_LEVEL: 'info', ...env },
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { msg: text, raw: true };
    }
    lines.push(parsed);
    for (const w of [...waiters]) {
      if (w.pred(parsed)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(parsed);
      }
    }
  });
  createInterface({ input: proc.stderr! }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    lines,
    waitFor(pred, timeoutMs = 10_000, what = 'log line') {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(() => {
          const tail = lines.slice(-15).map((l) => JSON.stringify(l)).join('\n');
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} from '${args.join(' ')}'\nlast lines:\n${tail}\nstderr:\n${stderr.slice(-10).join('\n')}`));
        }, timeoutMs);
        waiters.push({ pred, resolve: (l) => { clearTimeout(timer); resolvePromise(l); } });
        exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`'${args.join(' ')}' exited (${code}) before ${what}\nstderr:\n${stderr.join('\n')}\nlast lines:\n${lines.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`));
        });
      });
    },
    count: (pred) => lines.filter(pred).length,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Start a coordinator, then an agent, on one configuration directory; resolves once both said they started. */
export async function startCoordinatorAndAgent(dir: string): Promise<{ coordinator: Daemon; agent: Daemon }> {
  const coordinator = startDaemon(['--config', dir, 'coordinator']);
  await coordinator.waitFor((l) => l.msg === 'coordinator started', 15_000, 'coordinator start');
  const agent = startDaemon(['--config', dir, 'agent']);
  try {
    await agent.waitFor((l) => l.msg === 'agent started', 15_000, 'agent start');
  } catch (err) {
    // The caller never gets the handles to clean up: stop both here.
    await Promise.all([agent.stop(), coordinator.stop()]);
    throw err;
  }
  return { coordinator, agent };
}

/** Run the CLI to completion. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/**
 * Write a configuration directory for one host. A fleetban.conf that points at a test Redis gets
 * per-role identities on it (agent, coordinator, admin for the CLI; see withIdentities), and a
 * fleetban.local that signs with and trusts the test key pair (test/helpers/keys.ts), unless the
 * test writes its own fleetban.local.
 */
export function writeConfig(files: Record<string, string>, dir = mkdtempSync(join(tmpdir(), 'fleetban-conf-'))): string {
  const all = 'fleetban.conf' in files && !('fleetban.local' in files) ? { ...files, 'fleetban.local': signingConfig() } : files;
  for (const [name, text] of Object.entries(all)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), name === 'fleetban.conf' ? withIdentities(text, () => hostname().split('.')[0]!) : text);
  }
  return dir;
}

/** An sshd log line in syslog form, dated now, for an attacker address. */
export function sshdFailure(addr: string, host = 'h1', user = 'root', date = new Date()): string {
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${months[date.getMonth()]} ${String(date.getDate()).padStart(2, ' ')} ${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
  return `${stamp} ${host} sshd[${1000 + Math.floor(Math.random() * 9000)}]: Failed password for ${user} from ${addr} port ${40000 + Math.floor(Math.random() * 20000)} ssh2\n`;
}
