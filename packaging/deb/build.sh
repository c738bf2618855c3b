#!/usr/bin/env bash
# Builds Lookout's Debian package: `bash packaging/deb/build.sh` writes
# target/debian/lookout_VERSION_ARCH.deb and prints its path. Install it with
# `sudo apt install ./target/debian/lookout_*.deb`, then `sudo systemctl start lookout`.
#
# --binary PATH packages a lookout binary built already instead of building the release one
# (the install test packages the debug build its run compiled, to spare CI a release build; the
# package's layout and scripts are the same). Needs cargo, dpkg-dev and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        *) echo "build.sh: unknown argument $1 (the only option is --binary PATH)" >&2; exit 2 ;;
    esac
done

target="${CARGO_TARGET_DIR:-target}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
arch="$(dpkg --print-architecture)"
if [ -z "$binary" ]; then
    cargo build --locked --release --bin lookout >&2
    binary="$target/release/lookout"
    compress=(-Zxz)
else
    # A test's package is never shipped: compress it fast.
    compress=(-Zgzip -z1)
fi

stage="$target/debian/lookout_${version}_${arch}"
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/lookout" \
    "$stage/usr/share/doc/lookout/docs"
install -m 0755 "$binary" "$stage/usr/bin/lookout"
install -m 0644 systemd/lookout.service "$stage/lib/systemd/system/lookout.service"
install -m 0640 packaging/deb/lookout.toml "$stage/etc/lookout/lookout.toml"
install -m 0644 README.md LICENSE "$stage/usr/share/doc/lookout/"
install -m 0644 docs/*.md "$stage/usr/share/doc/lookout/docs/"
gzip -9n -c CHANGELOG.md > "$stage/usr/share/doc/lookout/changelog.gz"
# The third-party licence texts are long: they go beside the plain copyright file Debian wants.
python3 packaging/deb/licenses.py "$PWD" 2>/dev/null | gzip -9n \
    > "$stage/usr/share/doc/lookout/third-party.txt.gz"
printf 'Lookout %s\nCopyright: the Lookout authors\nLicense: Apache-2.0 (see LICENSE here)\n\nThird-party software linked into the binary and its licences: third-party.txt.gz\n' \
    "$version" > "$stage/usr/share/doc/lookout/copyright"

install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
echo /etc/lookout/lookout.toml > "$stage/DEBIAN/conffiles"

# The shared libraries the binary links, as dpkg-shlibdeps names them (libc6, libgcc-s1).
shlib_dir="$(mktemp -d)"
trap 'rm -rf "$shlib_dir"' EXIT
mkdir "$shlib_dir/debian"
echo "Source: lookout" > "$shlib_dir/debian/control"
binary_in_stage="$(realpath "$stage/usr/bin/lookout")"
libs="$(cd "$shlib_dir" && dpkg-shlibdeps -O -e "$binary_in_stage" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')"
[ -n "$libs" ] || { echo "build.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: lookout
Version: $version
Architecture: $arch
Maintainer: Lookout <lookout@localhost>
Installed-Size: $size
Depends: $libs, adduser
Section: net
Priority: optional
Description: real-time hub for security field teams
 One self-contained server for a site's LAN: guards' phones stream locations, video and
 emergency alerts over TLS WebSocket; supervisors work in the bundled dashboard. Alerts and
 their escalation timers survive restarts. Runs as the systemd service lookout.
CONTROL

deb="$target/debian/lookout_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >&2
echo "$deb"
