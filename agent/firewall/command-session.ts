/**
 * One long-lived firewall tool process (`nft -i`, `ipset -`, `iptables-restore --noflush -v`)
 * that batches are written to, so a ban does not pay for a process start (3 to 10 ms here) each
 * time. Per batch the tool's own output tells whether the kernel took it: after the batch a
 * marker line with a sequence number goes in, and the tool echoes it back only after it has
 * processed everything before it. What the tool wrote to its error stream in between is the
 * batch's answer.
 *
 * How each tool behaves in interactive mode (found by trying nft 1.0.6, ipset 7.17, iptables
 * 1.8.9 nf_tables; see {@link SESSION_PROTOCOLS}):
 * - `nft -i` runs each input line as one transaction (so a batch is written as one line, its
 *   commands joined by `;`), prints errors on stderr with the failing line echoed, and goes on.
 *   A bare word is a syntax error that touches no kernel state: its error message, with the word
 *   echoed, is the marker.
 * - `ipset -exist -` runs each line on its own, prints errors on stderr and goes on; `help WORD`
 *   for a word that is no set type fails with the word echoed, on stderr, without a kernel call.
 *   Prompts go to a block-buffered stdout and are ignored.
 * - `iptables-restore --noflush -v` applies each COMMIT as it reads it, echoes `#` comment lines
 *   on stdout with -v, and exits at the first error, whose message is on stderr.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Logger } from '../../common/log.js';

/** How one tool is driven interactively. */
export interface SessionProtocol {
  /** Arguments after the tool (and command prefix) that start interactive mode. */
  readonly args: readonly string[];
  /** The batch as written to the tool (e.g. one line for nft); ends with a newline. */
  frame(script: string): string;
  /** The marker line for sequence number `seq`, newline included. */
  marker(seq: number): string;
  /** Stream the marker comes back on. */
  readonly ackStream: 'stdout' | 'stderr';
  /**
   * Find the echoed marker in what the ack stream holds since the batch was written.
   * @returns the index where the marker's own output starts and the index after it, or
   *   undefined while it has not (completely) arrived
   */
  findAck(text: string, seq: number): { start: number; end: number } | undefined;
  /** Whether the error output of a batch means the batch failed (not just a warning). */
  failed(errors: string): boolean;
  /** Drop what is noise in the error output (leftovers of an earlier marker). */
  clean(errors: string): string;
}

/** What a batch written to a session came to. */
export type SessionResult =
  /** The tool processed the batch; errors is empty when the kernel took it. */
  | { readonly kind: 'answered'; readonly ok: boolean; readonly errors: string }
  /** The process could not start, died without saying why, hung, or the pipe broke. */
  | { readonly kind: 'broken'; readonly reason: string };

const NFT_TOKEN = (seq: number) => `fleetban_ack_${seq}`;
const IPSET_TOKEN = (seq: number) => `fleetban-ack-${seq}`;

/** The interactive protocols of the tools the kernel backends use. */
export const SESSION_PROTOCOLS = {
  nft: {
    args: ['-i'],
    // Each line of `nft -i` is one transaction; `;` separates commands within it, as a newline
    // does in `nft -f`. Our scripts hold no comments or quoted newlines that could break this.
    frame: (script: string) => script.trimEnd().split('\n').join('; ') + '\n',
    marker: (seq: number) => `${NFT_TOKEN(seq)}\n`,
    ackStream: 'stderr',
    findAck(text: string, seq: number) {
      // "Error: syntax error, …\n<token>\n   ^\n": wait for the caret line too.
      const echo = text.indexOf(`\n${NFT_TOKEN(seq)}\n`);
      if (echo === -1) return undefined;
      const caretEnd = text.indexOf('\n', echo + NFT_TOKEN(seq).length + 2);
      if (caretEnd === -1) return undefined;
      const start = text.lastIndexOf('Error:', echo);
      return { start: start === -1 ? echo : start, end: caretEnd + 1 };
    },
    failed: (errors: string) => /(^|\n)Error:/.test(errors),
    clean: (errors: string) => errors,
  },
  ipset: {
    args: ['-exist', '-'],
    frame: (script: string) => (script.endsWith('\n') ? script : `${script}\n`),
    marker: (seq: number) => `help ${IPSET_TOKEN(seq)}\n`,
    ackStream: 'stderr',
    findAck(text: string, seq: number) {
      const echo = text.indexOf(`\`${IPSET_TOKEN(seq)}'\n`);
      if (echo === -1) return undefined;
      const lineStart = text.lastIndexOf('\n', echo) + 1;
      return { start: lineStart, end: echo + IPSET_TOKEN(seq).length + 3 };
    },
    // ipset prints "Warning: …" for harmless things (-exist keeps most of them quiet).
    failed: (errors: string) => errors.split('\n').some((l) => l.trim() !== '' && !l.startsWith('Warning:')),
    // The marker's hint line may arrive after the marker, in front of the next batch's output.
    clean: (errors: string) => errors.replace(/^Try `ipset help' for more information\.\n?/gm, ''),
  },
  iptablesRestore: {
    args: ['-w', '--noflush', '-v'],
    frame: (script: string) => (script.endsWith('\n') ? script : `${script}\n`),
    marker: (seq: number) => `# fleetban-ack-${seq}\n`,
    ackStream: 'stdout',
    findAck(text: string, seq: number) {
      const line = `# fleetban-ack-${seq}\n`;
      const at = text.indexOf(line);
      return at === -1 ? undefined : { start: at, end: at + line.length };
    },
    // It exits at the first error; the marker coming back means every COMMIT before it applied.
    failed: () => false,
    clean: (errors: string) => errors,
  },
} satisfies Record<string, SessionProtocol>;

/** Options of {@link CommandSession}. */
export interface CommandSessionOptions {
  /** argv before the tool, e.g. `['ip','netns','exec',ns]`. */
  readonly prefix: readonly string[];
  /** The tool, e.g. `nft`. */
  readonly tool: string;
  readonly protocol: SessionProtocol;
  readonly log: Logger;
  /** A batch not answered within this many ms means the process hangs; default 10,000. */
  readonly timeoutMs?: number;
}

/**
 * A long-lived tool process that applies one batch at a time; see the module comment. The process
 * starts on the first batch and again after it died or was killed for hanging. Callers serialise
 * their batches (the backends do); a second apply() while one runs is refused.
 */
export class CommandSession {
  private child: ChildProcessWithoutNullStreams | undefined;
  private stdout = '';
  private stderr = '';
  private seq = 0;
  private busy = false;
  /** Wakes the batch waiting for its marker when output arrives or the process ends. */
  private wake: (() => void) | undefined;
  private exited: string | undefined;
  private readonly timeoutMs: number;

  /** @param options see {@link CommandSessionOptions} */
  constructor(private readonly options: CommandSessionOptions) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Process id of the running tool, if one runs (tests kill it to prove replacement). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private start(): ChildProcessWithoutNullStreams {
    const argv = [...this.options.prefix, this.options.tool, ...this.options.protocol.args];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.stdout = '';
    this.stderr = '';
    this.exited = undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    // stdout of nft and ipset carries prompts and nothing we wait for: keep it only for iptables.
    const keepStdout = this.options.protocol.ackStream === 'stdout';
    child.stdout.on('data', (d: string) => {
      if (keepStdout) this.stdout += d;
      this.wake?.();
    });
    child.stderr.on('data', (d: string) => {
      this.stderr += d;
      this.wake?.();
    });
    child.stdin.on('error', () => undefined); // EPIPE after a death shows up as the exit below
    const gone = (why: string) => {
      if (this.child !== child) return;
      this.exited = why;
      this.child = undefined;
      this.wake?.();
    };
    child.on('error', (err) => gone(`cannot run ${argv[0]}: ${err.message}`));
    child.on('close', (code, signal) => gone(signal ? `killed by ${signal}` : `exited ${code}`));
    // An idle session must not keep the agent (or a test) alive; a running batch holds its timer.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
    this.child = child;
    this.options.log.debug({ argv, pid: child.pid }, 'firewall session started');
    return child;
  }

  /**
   * Write one batch and wait for the tool's answer.
   * @param script the batch in the tool's file syntax (as `nft -f` / `ipset restore` read it)
   * @returns answered (ok or with the tool's errors) or broken (the caller falls back to a
   *   one-shot process; the next apply starts a fresh process)
   */
  async apply(script: string): Promise<SessionResult> {
    if (this.busy) throw new Error('internal: CommandSession.apply while a batch is running');
    this.busy = true;
    try {
      return await this.applyOnce(script);
    } finally {
      this.busy = false;
    }
  }

  private async applyOnce(script: string): Promise<SessionResult> {
    const p = this.options.protocol;
    const child = this.child ?? this.start();
    const seq = ++this.seq;
    // Output left from an earlier batch (a late hint line) belongs to nobody: start clean.
    this.stdout = '';
    this.stderr = '';
    child.stdin.write(p.frame(script) + p.marker(seq));
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const ackText = p.ackStream === 'stdout' ? this.stdout : this.stderr;
      const ack = p.findAck(ackText, seq);
      if (ack) {
        const errors = p.clean(p.ackStream === 'stderr' ? ackText.slice(0, ack.start) : this.stderr);
        if (p.ackStream === 'stderr') this.stderr = this.stderr.slice(ack.end);
        else this.stdout = this.stdout.slice(ack.end);
        return { kind: 'answered', ok: !p.failed(errors), errors: errors.trim() };
      }
      if (this.exited !== undefined) {
        // A tool that stops at the first error (iptables-restore) gives its answer and exits.
        const errors = p.clean(this.stderr).trim();
        if (errors && !errors.startsWith('cannot run')) return { kind: 'answered', ok: false, errors };
        return { kind: 'broken', reason: this.exited };
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        this.kill();
        return { kind: 'broken', reason: `no answer within ${this.timeoutMs} ms` };
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /**
   * Start the process now, if it does not run, and wait until it answers an empty batch, so the
   * first ban does not pay for the start.
   * @returns undefined when it answers, else why not (the first batch will try again)
   */
  async warm(): Promise<string | undefined> {
    if (this.child || this.busy) return undefined;
    const r = await this.apply('');
    if (r.kind === 'broken') return r.reason;
    return r.ok ? undefined : r.errors;
  }

  /** Kill the process (hung, or shutting down); the next apply starts a new one. */
  kill(): void {
    const child = this.child;
    this.child = undefined;
    child?.kill('SIGKILL');
  }

  /** End the process: close its stdin, and kill it if it has not exited within a second. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 1000);
      child.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin.end();
    });
  }
}
