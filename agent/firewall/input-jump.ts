import { InvalidInputError } from '../../common/errors.js';
import type { CommandRunner } from './command-runner.js';

const CHAIN = /^[A-Za-z][A-Za-z0-9_-]{0,27}$/;

/**
 * The jump from the top of INPUT to our own chain, for the backends whose rules are iptables rules
 * (ipset, iptables). Our rules live in our chain so that rebuilding them never touches INPUT,
 * where other software keeps its rules.
 */
export class InputJump {
  /**
   * @param run runs iptables / ip6tables
   * @param chain our chain's name
   * @throws InvalidInputError when the name is not one iptables accepts
   */
  constructor(
    private readonly run: CommandRunner,
    readonly chain: string,
  ) {
    if (!CHAIN.test(chain)) throw new InvalidInputError(`iptables chain '${chain}' must match ${CHAIN}`);
  }

  /** Insert the jump first in INPUT unless INPUT already has it (wherever an operator moved it). */
  async ensure(family: 4 | 6): Promise<void> {
    const tool = family === 4 ? 'iptables' : 'ip6tables';
    const has = await this.run.run(`${tool} check jump`, [tool, '-w', '-C', 'INPUT', '-j', this.chain], undefined, { allowFail: true });
    if (has.exitCode !== 0) await this.run.run(`${tool} insert jump`, [tool, '-w', '-I', 'INPUT', '1', '-j', this.chain]);
  }

  /** Delete every jump to our chain from INPUT (a bounded number: copies may have piled up). */
  async remove(family: 4 | 6): Promise<void> {
    const tool = family === 4 ? 'iptables' : 'ip6tables';
    for (let i = 0; i < 16; i++) {
      const r = await this.run.run(`${tool} cleanup`, [tool, '-w', '-D', 'INPUT', '-j', this.chain], undefined, { allowFail: true });
      if (r.exitCode !== 0) break;
    }
  }
}
