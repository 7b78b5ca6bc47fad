// tsc emits only .js; the Lua scripts are loaded from dist at run time.
import { cpSync, existsSync } from 'node:fs';
const assets = [['common/scripts', 'dist/common/scripts']];
for (const [from, to] of assets) {
  if (existsSync(from)) cpSync(from, to, { recursive: true, filter: (p) => !p.endsWith('.ts') });
}
