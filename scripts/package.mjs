#!/usr/bin/env node
// Builds fleetban_<version>_<arch>.deb: a self-contained package for a plain Debian 12 (no Node,
// no npm, no network on the target). It carries this machine's Node 20 binary (the official
// nodejs.org/NodeSource build, which needs only glibc >= 2.28 and libstdc++), the compiled code
// and the production node_modules under /usr/lib/fleetban.
//
//   node scripts/package.mjs [--version V] [--out DIR]
//
// Run `npm run build` first (`npm run package` does). Packaging layout and maintainer scripts live
// in deploy/debian/; this script only assembles the tree and calls dpkg-deb.
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { values: opts } = parseArgs({ options: { version: { type: 'string' }, out: { type: 'string' } } });
const version = opts.version ?? pkg.version;
if (!/^[0-9][A-Za-z0-9.+~-]*$/.test(version)) throw new Error(`not a Debian version: '${version}'`);
const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch];
if (!arch) throw new Error(`no Debian architecture for node's ${process.arch}`);
if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
const major = Number(process.versions.node.split('.')[0]);
if (major !== 20) throw new Error(`package with Node 20, not ${process.version}`);

const out = resolve(opts.out ?? root);
const stage = join(root, '.cache', 'package', `fleetban_${version}_${arch}`);
rmSync(stage, { recursive: true, force: true });
const at = (p) => join(stage, p);
const run = (cmd, args, options = {}) => String(execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...options }) ?? '');

// --- /usr/lib/fleetban: runtime, code, production dependencies, built-in defaults ---------------
const lib = at('usr/lib/fleetban');
mkdirSync(lib, { recursive: true });
cpSync(process.execPath, join(lib, 'node'));
// The official binary carries ~50 MB of debug information nobody on a server uses.
run('strip', ['--strip-unneeded', join(lib, 'node')]);
cpSync(join(root, 'dist'), join(lib, 'dist'), {
  recursive: true,
  filter: (p) => !/\/dist\/(test|bench)(\/|$)/.test(p) && !p.endsWith('.map'),
});
// builtinFilterDir() and `fleetban up`'s defaults resolve deploy/etc/fleetban next to dist/.
cpSync(join(root, 'deploy', 'etc', 'fleetban'), join(lib, 'deploy', 'etc', 'fleetban'), { recursive: true });
const runtimePkg = { name: pkg.name, version, type: pkg.type, license: pkg.license, private: true, dependencies: pkg.dependencies };
writeFileSync(join(lib, 'package.json'), JSON.stringify(runtimePkg, null, 2) + '\n');
cpSync(join(root, 'package-lock.json'), join(lib, 'package-lock.json'));
// From npm's cache when the tests ran `npm ci` before; the lock file pins every version.
run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: lib });
rmSync(join(lib, 'package-lock.json'));
pruneModules(join(lib, 'node_modules'));

// --- commands, units, configuration, docs ------------------------------------------------------
const deb = join(root, 'deploy', 'debian');
mkdirSync(at('usr/bin'), { recursive: true });
cpSync(join(deb, 'fleetban'), at('usr/bin/fleetban'));
mkdirSync(at('lib/systemd/system'), { recursive: true });
for (const unit of readdirSync(join(root, 'deploy', 'systemd'))) cpSync(join(root, 'deploy', 'systemd', unit), at(`lib/systemd/system/${unit}`));
// Redis settings and the reference ACL (deploy/redis), for `include` from redis.conf.
cpSync(join(root, 'deploy', 'redis'), at('usr/share/fleetban/redis'), { recursive: true });
mkdirSync(at('usr/lib/tmpfiles.d'), { recursive: true });
cpSync(join(deb, 'tmpfiles.conf'), at('usr/lib/tmpfiles.d/fleetban.conf'));
cpSync(join(root, 'deploy', 'etc', 'fleetban'), at('etc/fleetban'), { recursive: true });
mkdirSync(at('etc/fleetban/jail.d'), { recursive: true });
const doc = at('usr/share/doc/fleetban');
mkdirSync(doc, { recursive: true });
cpSync(join(root, 'README.md'), join(doc, 'README.md'));
if (existsSync(join(root, 'docs', 'deploy.md'))) cpSync(join(root, 'docs', 'deploy.md'), join(doc, 'deploy.md'));
// Node's licence (MIT plus the notices of what it bundles) must travel with its binary.
const nodeLicense = ['/usr/share/doc/nodejs/LICENSE', join(process.execPath, '..', '..', 'LICENSE')].find((p) => existsSync(p));
if (!nodeLicense) throw new Error('Node.js LICENSE file not found: it must ship with the binary');
cpSync(join(deb, 'copyright'), join(doc, 'copyright'));
cpSync(nodeLicense, join(doc, 'LICENSE.node'));
const date = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? Math.floor(Date.now() / 1000)) * 1000).toUTCString().replace('GMT', '+0000');
const changelog = `fleetban (${version}) unstable; urgency=medium\n\n  * Built from the fleetban repository with scripts/package.mjs.\n\n -- fleetban maintainers <fleetban@example.org>  ${date}\n`;
writeFileSync(join(doc, 'changelog.gz'), gzipSync(changelog, { level: 9 }));

// --- modes: files 0644, directories and executables 0755 ---------------------------------------
const walk = (dir, fn) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    fn(p, st);
    if (st.isDirectory()) walk(p, fn);
  }
};
walk(stage, (p, st) => chmodSync(p, st.isDirectory() || (st.mode & 0o111) !== 0 ? 0o755 : 0o644));
for (const p of ['usr/bin/fleetban', 'usr/lib/fleetban/node']) chmodSync(at(p), 0o755);

// --- DEBIAN/ -------------------------------------------------------------------------------------
const control = at('DEBIAN');
mkdirSync(control);
const md5 = [];
const conffiles = [];
walk(stage, (p, st) => {
  if (lstatSync(p).isSymbolicLink()) return;
  const rel = relative(stage, p);
  if (!st.isFile() || rel.startsWith('DEBIAN')) return;
  md5.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${rel}`);
  if (rel.startsWith('etc/')) conffiles.push(`/${rel}`);
});
writeFileSync(join(control, 'md5sums'), md5.join('\n') + '\n');
writeFileSync(join(control, 'conffiles'), conffiles.sort().join('\n') + '\n');
const kib = Number(run('du', ['-sk', '--exclude=DEBIAN', stage]).split('\t')[0]);
const template = readFileSync(join(deb, 'control'), 'utf8');
writeFileSync(join(control, 'control'), template.replace('@VERSION@', version).replace('@ARCH@', arch).replace('@SIZE@', String(kib)).replace('@NODE@', process.versions.node));
for (const script of ['postinst', 'prerm', 'postrm']) {
  cpSync(join(deb, script), join(control, script));
  chmodSync(join(control, script), 0o755);
}

mkdirSync(out, { recursive: true });
const file = join(out, `fleetban_${version}_${arch}.deb`);
// --root-owner-group: every file root:root without fakeroot; xz keeps the download small.
run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, file], { stdio: ['ignore', 'ignore', 'inherit'] });
rmSync(stage, { recursive: true, force: true });
const size = statSync(file).size;
console.log(`${relative(process.cwd(), file) || file}: ${(size / 1048576).toFixed(1)} MiB (installed ${(kib / 1024).toFixed(0)} MiB)`);

/**
 * What npm installs but nothing runs: npm's bin links and bookkeeping, tests, docs, linters'
 * settings, the modules' own command-line tools.
 */
function pruneModules(dir) {
  const junkDirs = new Set(['.bin', '.github', 'test', 'tests', 'docs', 'benchmarks', 'bench', 'example', 'examples']);
  const junkFiles = /^(\.package-lock\.json|\.eslintrc.*|\.npmignore|\.gitattributes|\.editorconfig|\.prettierrc.*|\.travis\.yml|.*\.md|index\.html|tsconfig\.json)$/i;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) {
      if (junkDirs.has(name)) rmSync(p, { recursive: true, force: true });
      else pruneModules(p);
    } else if (junkFiles.test(name) && !/^(license|licence|copying)/i.test(name)) {
      rmSync(p);
    } else if (st.isFile() && (st.mode & 0o111) !== 0) {
      // A module's own command-line tool (pino's, which's): npm would link it, fleetban never runs it.
      if (readFileSync(p, 'utf8').startsWith('#!/usr/bin/env node')) rmSync(p);
    }
  }
}
