// tsc emits only .js; the Lua scripts are loaded from dist at run time. The target is replaced,
// not merged: a script renamed or removed in the source must not linger in dist.
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
const assets = [['common/scripts', 'dist/common/scripts']];
for (const [from, to] of assets) {
  if (!existsSync(from)) continue;
  // Only the .lua files: the compiled .js of loader.ts and index.ts live in the same folder.
  for (const f of existsSync(to) ? readdirSync(to) : []) if (f.endsWith('.lua')) rmSync(`${to}/${f}`);
  rmSync(`${to}/includes`, { recursive: true, force: true });
  cpSync(from, to, { recursive: true, filter: (p) => !p.endsWith('.ts') });
}
