import { execa } from 'execa';
import { FirewallError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

/** Result of one firewall command. */
export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

/**
 * Runs firewall tools with an argument array (never a shell string), optionally inside a network
 * namespace through a prefix like `['ip', 'netns', 'exec', ns]`, and turns failures into
 * FirewallError naming the operation and carrying stderr.
 */
export class CommandRunner {
  /**
   * @param prefix argv placed before every command, e.g. `['ip','netns','exec','h1']`
   * @param log debug lines for each command go here
   */
  constructor(
    private readonly prefix: readonly string[],
    readonly log: Logger,
  ) {}

  /** The command prefix (`ip netns exec ns`), for long-lived processes started elsewhere. */
  get commandPrefix(): readonly string[] {
    return this.prefix;
  }

  /**
   * Log a command at debug level, with the batch's size and first line (it can be megabytes).
   * @param operation what it does
   * @param argv what runs (for a session: `session <pid>`)
   * @param input the batch
   */
  logCommand(operation: string, argv: readonly string[], input?: string): void {
    if (!this.log.isLevelEnabled('debug')) return;
    this.log.debug({ operation, argv, stdinBytes: input?.length, stdinHead: input?.slice(0, 200).split('\n')[0] }, 'firewall command');
  }

  /**
   * @param operation what this command does, for the error message (`nft commit`)
   * @param argv the tool and its arguments
   * @param input a batch written to stdin
   * @param opts.allowFail return a non-zero exit instead of throwing
   * @returns the command's output
   * @throws FirewallError when the tool cannot start or exits non-zero (unless allowFail)
   */
  async run(operation: string, argv: readonly string[], input?: string, opts: { allowFail?: boolean } = {}): Promise<CommandResult> {
    const full = [...this.prefix, ...argv];
    this.logCommand(operation, full, input);
    let r;
    try {
      r = await execa(full[0]!, full.slice(1), { input, reject: false, stripFinalNewline: false, maxBuffer: 512 * 1024 * 1024 });
    } catch (err) {
      throw new FirewallError(operation, `cannot run ${full[0]}: ${(err as Error).message}`, { cause: err });
    }
    if (r.failed && r.exitCode === undefined) {
      throw new FirewallError(operation, `cannot run ${full.join(' ')}: ${r.message}`);
    }
    const out = { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? -1 };
    if (out.exitCode !== 0 && !opts.allowFail) {
      throw new FirewallError(operation, `${argv.join(' ')} exited ${out.exitCode}: ${out.stderr.trim()}`);
    }
    return out;
  }
}
