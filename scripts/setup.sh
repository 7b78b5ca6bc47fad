#!/usr/bin/env bash
# Installs what `npm start` / `npm test` need on a fresh Debian 12 with Node 20, then builds.
#   setup.sh          packages for running fleetban
#   setup.sh --test   plus what the test suite drives (sshd, sshpass, iptables, ipset)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(redis-server nftables iproute2)
bins=(redis-server nft ip)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(sqlite3 openssh-server openssh-client sshpass iptables ipset systemd-journal-remote shorewall shorewall6 redis-sentinel openssl msmtp-mta whois)
  # systemd-journal-remote writes real journal files for the journald source tests (no systemd runs here).
  # redis-sentinel: the failover test runs three real sentinels. openssl: the TLS tests make their CA and certificates.
  # sqlite3: fleetban import-fail2ban reads fail2ban's database with it (the tests install fail2ban itself).
  # msmtp-mta (/usr/sbin/sendmail) and whois: the notification tests mail through a real sendmail.
  bins+=(sqlite3 sshd ssh sshpass iptables ipset /lib/systemd/systemd-journal-remote /sbin/shorewall /sbin/shorewall6 redis-sentinel openssl msmtp whois)
  # npm run test:fleet: booted Debian 12 containers deployed with Ansible; binutils' strip for npm run package.
  pkgs+=(systemd-container mmdebstrap ansible-core binutils)
  bins+=(systemd-nspawn mmdebstrap ansible-playbook strip)
fi

echo "setup: checking Debian packages (${pkgs[*]})"
missing=()
for i in "${!bins[@]}"; do
  b=${bins[$i]}
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || [ -x "$b" ] || missing+=("${pkgs[$i]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing packages (${missing[*]}); install them as root with apt-get" >&2
  fi
fi

# npm ci only when the lock file changed since the last install: a re-run costs nothing.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: compiling TypeScript into dist/ (about half a minute on a fresh clone)"
npm run --silent build
echo "setup: done"

