import { FirewallError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { CommandRunner } from './command-runner.js';
import type { CommandSession } from './command-session.js';

/**
 * A batch the tool refused even after the repair (or with repair off): the tool ran and said no,
 * so the cause is in the batch, not in the tool or the table layout.
 */
export class BatchRefusedError extends FirewallError {
  constructor(operation: string, stderr: string, options?: { cause?: unknown }) {
    super(operation, stderr, options);
    this.name = 'BatchRefusedError';
  }
}

/**
 * Batches larger than this go to a one-shot process even where a session runs: start-up is
 * noise next to their cost, and `nft -i` reads a long line several times slower than `nft -f`
 * (100,000 elements: 3.2 s against 1.2 s).
 */
export const SESSION_MAX_BYTES = 64 * 1024;

/** A batch built for one attempt; onSuccess records in memory what the batch put in the kernel. */
export interface Batch {
  readonly onSuccess: () => void;
}

/** A batch that one tool reads on stdin (`nft -f -`, `ipset restore`). */
export interface ScriptBatch extends Batch {
  /** Empty when there is nothing to apply. */
  readonly script: string;
}

/** How a backend applies and repairs, for {@link applyWithRepair}. */
export interface RepairSteps<B extends Batch> {
  /**
   * Apply a batch.
   * @returns undefined when it applied (or held nothing to apply), the tool's trimmed stderr when
   *   it failed and `allowFail` was set
   * @throws FirewallError when it failed and `allowFail` was not set
   */
  apply(operation: string, batch: B, allowFail: boolean): Promise<string | undefined>;
  /** Recreate what batches rely on (tables, sets, chains, jumps) and re-read what the kernel holds. */
  repair(): Promise<void>;
  readonly log: Logger;
  /** Logged when the first attempt fails, saying what the repair does. */
  readonly warning: string;
}

/**
 * Apply a batch; when it fails, repair and apply a freshly built batch once more (fail2ban's
 * actioncheck/actionrepair). Someone may have flushed the ruleset or deleted a set; the second
 * batch is built anew because the repair changes what exists (a recreated set is empty, a
 * re-read chain refills the ledger).
 * @param operation names the attempt in logs and errors (`nft commit`)
 * @param build makes the batch from the backend's current state
 * @param steps see {@link RepairSteps}
 * @param repair false: one attempt only (used to find which change of a refused batch is at fault)
 * @throws FirewallError when the repair fails (with the first stderr); BatchRefusedError when the
 *   last attempt fails
 */
export async function applyWithRepair<B extends Batch>(operation: string, build: () => B, steps: RepairSteps<B>, repair = true): Promise<void> {
  const first = build();
  const stderr = await steps.apply(operation, first, true);
  if (stderr === undefined) return first.onSuccess();
  if (!repair) throw new BatchRefusedError(operation, stderr);
  steps.log.warn({ operation, stderr: stderr.slice(0, 500) }, steps.warning);
  try {
    await steps.repair();
  } catch (err) {
    throw new FirewallError(operation, `${stderr}\nrepair failed too: ${(err as Error).message}`, { cause: err });
  }
  const second = build();
  const again = await steps.apply(operation, second, true);
  if (again !== undefined) throw new BatchRefusedError(operation, again);
  second.onSuccess();
}

/**
 * The {@link RepairSteps.apply} of a backend whose batch is one tool reading it on stdin.
 * @param run runs the tool
 * @param argv the tool and its arguments, e.g. `['nft','-f','-']`
 * @param session where given, batches up to {@link SESSION_MAX_BYTES} go to this long-lived
 *   process; when it is broken (died, hung) the batch runs once more on a one-shot process
 * @returns an apply step that runs nothing for an empty script
 */
export function applyOnStdin(run: CommandRunner, argv: readonly string[], session?: CommandSession): RepairSteps<ScriptBatch>['apply'] {
  return async (operation, batch, allowFail) => {
    if (!batch.script) return undefined;
    if (session && batch.script.length <= SESSION_MAX_BYTES) {
      const r = await applyInSession(run, session, operation, batch.script);
      if (r !== 'broken') {
        if (r === undefined || allowFail) return r;
        throw new BatchRefusedError(operation, r);
      }
    }
    const r = await run.run(operation, argv, batch.script, { allowFail });
    return r.exitCode === 0 ? undefined : r.stderr.trim();
  };
}

/**
 * One batch through a session.
 * @returns undefined when the kernel took it, the tool's errors when it refused, or 'broken' when
 *   the session could not answer (logged; the caller falls back to a one-shot process)
 */
export async function applyInSession(run: CommandRunner, session: CommandSession, operation: string, script: string): Promise<string | undefined | 'broken'> {
  run.logCommand(operation, ['session', String(session.pid ?? 'new')], script);
  const r = await session.apply(script);
  if (r.kind === 'broken') {
    run.log.warn({ operation, reason: r.reason }, 'firewall session broke; retrying the batch on a one-shot process');
    return 'broken';
  }
  return r.ok ? undefined : r.errors || 'refused without error output';
}
