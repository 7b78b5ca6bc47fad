import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';

/** Debian's fail2ban, installed for real: its client, its Python modules and /etc/fail2ban. */
export const FAIL2BAN_CLIENT = '/usr/bin/fail2ban-client';
/** fail2ban's Python package, for scripts that use its own code (its database module). */
export const FAIL2BAN_PYTHON = '/usr/bin/python3';

const POLICY = '/usr/sbin/policy-rc.d';

/**
 * Install Debian's fail2ban package (and sqlite3) at test time, never starting its service: while
 * apt runs, /usr/sbin/policy-rc.d answers 101 ("action forbidden") to every start request, which
 * invoke-rc.d and deb-systemd-invoke obey. A policy file that was already there is left alone.
 * @returns ok, or why it could not be installed (not root, no apt)
 */
export async function installFail2ban(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (existsSync(FAIL2BAN_CLIENT) && existsSync('/usr/bin/sqlite3')) return { ok: true };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root to install Debian\'s fail2ban package' };
  const ours = !existsSync(POLICY);
  if (ours) writeFileSync(POLICY, '#!/bin/sh\n# written by the fleetban tests: no service starts while they install packages\nexit 101\n', { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => execa('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', '--no-install-recommends', 'fail2ban', 'sqlite3'], { env, reject: false });
    let r = await install();
    if (r.exitCode !== 0) {
      await execa('apt-get', ['update', '-qq'], { env, reject: false });
      r = await install();
    }
    if (r.exitCode !== 0) return { ok: false, reason: `apt-get install fail2ban failed: ${String(r.stderr).trim().split('\n').pop()}` };
  } finally {
    if (ours) rmSync(POLICY, { force: true });
  }
  return existsSync(FAIL2BAN_CLIENT) ? { ok: true } : { ok: false, reason: `${FAIL2BAN_CLIENT} missing after the install` };
}

/**
 * Create a fail2ban database with fail2ban's own code (fail2ban.server.database), holding bans.
 * @param path the sqlite3 file to create
 * @param bans [jail, ip, timeofban (epoch s), bantime (s, -1 permanent)]
 */
export async function createFail2banDb(path: string, bans: ReadonlyArray<readonly [string, string, number, number]>): Promise<void> {
  const script = `
import json, sys
from fail2ban.server.database import Fail2BanDb
from fail2ban.server.ticket import BanTicket
class Actions:
    # what addBan asks for when a ticket carries no ban time of its own
    def getBanTime(self): return 600
class Jail:
    def __init__(self, name): self.name, self.actions = name, Actions()
db = Fail2BanDb(sys.argv[1])
for jail, ip, t, bantime in json.loads(sys.argv[2]):
    j = Jail(jail)
    db.addJail(j)
    ticket = BanTicket(ip, t)
    ticket.setBanTime(bantime)
    db.addBan(j, ticket)
db.close()
`;
  await execa(FAIL2BAN_PYTHON, ['-c', script, path, JSON.stringify(bans)]);
}
