// tsc emits only .js; the coordinator's Lua scripts are loaded from dist at run time.
import { cpSync, existsSync } from 'node:fs';
const assets = [['coordinator/scripts', 'dist/coordinator/scripts']];
for (const [from, to] of assets) {
  if (existsSync(from)) cpSync(from, to, { recursive: true, filter: (p) => !p.endsWith('.ts') });
}
