import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

/** Where Debian's fail2ban package is unpacked (git-ignored). */
export const CACHE_DIR = fileURLToPath(new URL('../../../.cache/fail2ban/', import.meta.url));
/** The unpacked package tree. */
export const PACKAGE_ROOT = join(CACHE_DIR, 'root');

/** Paths inside the unpacked package. */
export interface Fail2banFiles {
  readonly filterDir: string;
  readonly sampleDir: string;
  readonly python: string;
  readonly fail2banRegex: string;
}

/**
 * Get Debian's fail2ban package files without installing or running fail2ban:
 * `apt-get download fail2ban` then `dpkg-deb -x` into .cache/fail2ban/root (once).
 * @returns the paths, or a reason why they could not be obtained
 */
export async function obtainFail2ban(): Promise<Fail2banFiles | { missing: string }> {
  const files = locate();
  if (files) return files;
  mkdirSync(CACHE_DIR, { recursive: true });
  const debs = (): string[] => readdirSync(CACHE_DIR).filter((f) => /^fail2ban_.*\.deb$/.test(f));
  if (debs().length === 0) {
    let r = await execa('apt-get', ['download', 'fail2ban'], { cwd: CACHE_DIR, reject: false });
    if (r.exitCode !== 0 && process.getuid?.() === 0) {
      // A fresh machine may have no package lists yet.
      await execa('apt-get', ['update'], { reject: false });
      r = await execa('apt-get', ['download', 'fail2ban'], { cwd: CACHE_DIR, reject: false });
    }
    if (debs().length === 0) return { missing: `apt-get download fail2ban failed: ${String(r.stderr).trim().split('\n').pop()}` };
  }
  const r = await execa('dpkg-deb', ['-x', join(CACHE_DIR, debs()[0]!), PACKAGE_ROOT], { reject: false });
  if (r.exitCode !== 0) return { missing: `dpkg-deb -x failed: ${String(r.stderr).trim()}` };
  return locate() ?? { missing: `the package has no filter.d or no tests/files/logs under ${PACKAGE_ROOT}` };
}

function locate(): Fail2banFiles | undefined {
  const filterDir = join(PACKAGE_ROOT, 'etc/fail2ban/filter.d');
  // Debian ships the samples inside the Python module, not under /usr/share/doc.
  const pyRoot = join(PACKAGE_ROOT, 'usr/lib/python3/dist-packages');
  const sampleDir = join(pyRoot, 'fail2ban/tests/files/logs');
  if (!existsSync(filterDir) || !existsSync(sampleDir)) return undefined;
  return { filterDir, sampleDir, python: pyRoot, fail2banRegex: join(PACKAGE_ROOT, 'usr/bin/fail2ban-regex') };
}
