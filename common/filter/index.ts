import { fileURLToPath } from 'node:url';
import { loadFilterFrom } from './filter-loader.js';
import type { Filter } from './types.js';

export type { Filter, LineMatcher, FailureMatch, LongLines } from './types.js';
export { CompiledFilter, DetailedMatcher, type LineResult, type MultiLineState } from './filter-engine.js';
export { parseFilterSpec } from './filter-loader.js';

/**
 * Load a fail2ban-style filter.
 * @param spec 'sshd', 'sshd[mode=aggressive, publickey=invalid]', or a path to a .conf file
 * @param options dirs: searched in order for NAME.conf (+ NAME.local);
 *   jail: the jail's own options (lower-case keys) that fail2ban lets override filter values
 *   (logtype, maxlines, datepattern, usedns, journalmatch, ...)
 * @returns the compiled filter
 * @throws ConfigError naming file, line and key (e.g. an untranslatable regex)
 */
export function loadFilter(spec: string, options: { dirs: string[]; jail?: ReadonlyMap<string, string> }): Filter {
  return loadFilterFrom(spec, options);
}

/**
 * @returns absolute path of the filter.d shipped with fleetban (deploy/etc/fleetban/filter.d),
 *   found relative to the compiled module (dist/common/filter/)
 */
export function builtinFilterDir(): string {
  return fileURLToPath(new URL('../../../deploy/etc/fleetban/filter.d', import.meta.url));
}
