#!/usr/bin/env bash
# A minimal Debian tree with systemd for the package's install test (tests/install.rs), made
# with debootstrap from Debian's mirror: the host's own release, so the binary's glibc matches.
# Usage: rootfs.sh DIR. Idempotent and safe to run twice at once (tests/run.sh starts it in the
# background early; the test runs it again and waits for it): DIR/.complete marks a finished tree.
set -euo pipefail
dir="${1:?usage: rootfs.sh DIR}"
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ -e "$dir/.complete" ]; then
    exit 0
fi
rm -rf "$dir"
# shellcheck source=/dev/null
. /etc/os-release
# sudo: the docs' admin recipes (`sudo -u lookout lookout token …`) run as written.
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,iproute2,ca-certificates,adduser,sudo \
    "$VERSION_CODENAME" "$dir" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
touch "$dir/.complete"
