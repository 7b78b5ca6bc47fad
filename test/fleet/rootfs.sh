#!/usr/bin/env bash
# Builds (once) the Debian 12 root filesystem the fleet test boots, and prints its path.
# The containers have no route to any registry, so everything a host needs is baked in here;
# the cache file name carries a hash of the package list, so changing the list rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/../.."

pkgs=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,nftables,iptables,sudo,adduser,redis-server,procps
mirror=${FLEETBAN_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The mirror this machine's apt uses (the only one reachable in CI).
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v security | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
hash=$(printf '%s' "$pkgs" | sha256sum | cut -c1-12)
out=.cache/fleet-rootfs-bookworm-$hash.tar
if [ ! -s "$out" ]; then
  mkdir -p .cache
  mmdebstrap --quiet --format=tar --variant=apt --include="$pkgs" bookworm "$out.tmp" "$mirror" >&2
  mv "$out.tmp" "$out"
fi
echo "$PWD/$out"
