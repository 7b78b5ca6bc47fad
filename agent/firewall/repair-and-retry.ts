import { FirewallError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { CommandRunner } from './command-runner.js';

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
 * @throws FirewallError when the repair fails (with the first stderr) or the second attempt fails
 */
export async function applyWithRepair<B extends Batch>(operation: string, build: () => B, steps: RepairSteps<B>): Promise<void> {
  const first = build();
  const stderr = await steps.apply(operation, first, true);
  if (stderr === undefined) return first.onSuccess();
  steps.log.warn({ operation, stderr: stderr.slice(0, 500) }, steps.warning);
  try {
    await steps.repair();
  } catch (err) {
    throw new FirewallError(operation, `${stderr}\nrepair failed too: ${(err as Error).message}`, { cause: err });
  }
  const second = build();
  await steps.apply(operation, second, false);
  second.onSuccess();
}

/**
 * The {@link RepairSteps.apply} of a backend whose batch is one tool reading it on stdin.
 * @param run runs the tool
 * @param argv the tool and its arguments, e.g. `['nft','-f','-']`
 * @returns an apply step that runs nothing for an empty script
 */
export function applyOnStdin(run: CommandRunner, argv: readonly string[]): RepairSteps<ScriptBatch>['apply'] {
  return async (operation, batch, allowFail) => {
    if (!batch.script) return undefined;
    const r = await run.run(operation, argv, batch.script, { allowFail });
    return r.exitCode === 0 ? undefined : r.stderr.trim();
  };
}
