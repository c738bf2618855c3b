#!/usr/bin/env bash
# Installs Autobahn|Testsuite's `wstest` into a folder of its own, without touching the system:
# Python 2.7 from Debian bullseye's packages (bookworm has none), fetched with a private apt
# state and unpacked with `dpkg -x`, then pip/setuptools/wheel and autobahntestsuite for it.
#
#   bash tests/autobahn/setup.sh [DIR]     # default: target/autobahn; prints the wstest path
#
# Idempotent: a finished install is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="$(realpath -m "${1:-target/autobahn}")"
WSTEST="$DIR/bin/wstest"
if [ -x "$WSTEST" ] && "$WSTEST" --help >/dev/null 2>&1; then
    echo "$WSTEST"
    exit 0
fi
mkdir -p "$DIR"/{apt/lists/partial,apt/cache/archives/partial,debs,root,wheels,bin}

# The system's Debian mirror, with bullseye instead of the system's release.
MIRROR="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]*debian/?' | grep -v security | head -1 || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
echo "deb [trusted=yes] ${MIRROR%/} bullseye main" >"$DIR/apt/sources.list"
APT=(-o Dir::Etc::SourceList="$DIR/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$DIR/apt/lists" -o Dir::Cache="$DIR/apt/cache"
     -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${APT[@]}" -qq update >&2
PACKAGES=(python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7
          libpython2.7-dev python2.7-dev libssl1.1 libffi7)
(cd "$DIR/debs" && apt-get "${APT[@]}" -qq download "${PACKAGES[@]}" >&2)
for deb in "$DIR"/debs/*.deb; do
    dpkg -x "$deb" "$DIR/root"
done

PY="$DIR/root/usr/bin/python2.7"
LIBS="$DIR/root/usr/lib/x86_64-linux-gnu"
cat >"$DIR/bin/python2.7" <<WRAP
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONHOME="$DIR/root/usr"
export PYTHONUSERBASE="$DIR/user"
exec "$PY" "\$@"
WRAP
chmod +x "$DIR/bin/python2.7"

# pip for Python 2.7: the last releases that support it, as wheels fetched by the system's pip.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 2.7 \
    --implementation py --abi none --platform any -d "$DIR/wheels" \
    pip==20.3.4 setuptools==44.1.1 wheel==0.37.1 >&2
"$DIR/bin/python2.7" "$DIR/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install -q --user \
    --no-index --find-links "$DIR/wheels" pip==20.3.4 setuptools==44.1.1 wheel==0.37.1 >&2
# Some dependencies build C extensions: against the unpacked headers.
CFLAGS="-I$DIR/root/usr/include/python2.7 -I$DIR/root/usr/include" \
    "$DIR/bin/python2.7" -m pip install -q --user --disable-pip-version-check --no-warn-script-location \
    autobahntestsuite==25.10.1 >&2

cat >"$WSTEST" <<WRAP
#!/usr/bin/env bash
exec "$DIR/bin/python2.7" "$DIR/user/bin/wstest" "\$@"
WRAP
chmod +x "$WSTEST"
"$WSTEST" --help >/dev/null
echo "$WSTEST"
