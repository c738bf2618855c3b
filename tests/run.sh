#!/usr/bin/env bash
# Runs every Lookout test on a fresh machine: formatting, lints, unit and integration tests
# against real servers. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
# Each step's heading carries the time since the start, so a slow run shows where it went.
step() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }

if ! need cargo; then
    echo "tests/run.sh: cargo is required (install Rust with rustup)" >&2
    exit 1
fi
# rustfmt and clippy come with the toolchain profile; add them if this one lacks them.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    need rustup && rustup component add rustfmt clippy
fi

# Real JavaScript clients (stomp.js, sockjs-client, the lookout-client package) run under Node.js.
if ! need node || ! need npm; then
    step "installing Node.js and npm (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nodejs npm
fi
# The dashboard test drives Debian's Chromium (headless, through playwright-core).
if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
    step "installing Chromium (Debian package)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium
fi
# Cluster mode's tests start Debian's redis-server themselves (a Unix socket in a temp dir, no
# TCP port); the package's own service is never started.
if ! need redis-server || ! need redis-sentinel; then
    step "installing redis-server and redis-sentinel (Debian packages; their services are not started)"
    bash .ci/apt-install-quiet "redis-server redis-sentinel" redis-server redis-sentinel
fi
# The RabbitMQ integration test starts Debian's rabbitmq-server itself (every listener on
# 127.0.0.1, a directory of its own); the package's own service is never started.
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    step "installing rabbitmq-server (Debian package; its service is not started)"
    bash .ci/apt-install-quiet "rabbitmq-server epmd.socket epmd.service" rabbitmq-server
fi
# The systemd unit is checked with systemd-analyze.
if ! need systemd-analyze; then
    step "installing systemd (for systemd-analyze)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq systemd
fi
# The shift report's test reads its PDF back with pdftotext and renders page 1 with pdftoppm.
if ! need pdftotext || ! need pdftoppm; then
    step "installing poppler-utils (for pdftotext and pdftoppm)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq poppler-utils
fi
# The Debian package's install test (tests/install.rs) boots a minimal Debian with systemd in a
# container: debootstrap makes the tree, systemd-nspawn boots it, dpkg-dev's dpkg-shlibdeps
# names the package's library dependencies, curl plays the phone.
if ! need debootstrap || ! need systemd-nspawn || ! need dpkg-shlibdeps || ! need curl; then
    step "installing debootstrap, systemd-container, dpkg-dev and curl (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq debootstrap systemd-container dpkg-dev curl
fi
# The tree takes a minute to download and unpack: started now, in its own process group, so it
# is ready when the test comes (the test waits for it, or makes it if this did not), and
# stopped by that group's id if this run ends first.
install_test_dir="${CARGO_TARGET_DIR:-target}/install-test"
mkdir -p "$install_test_dir"
setsid bash tests/install/rootfs.sh "$install_test_dir/debian" \
    >"$install_test_dir/rootfs.log" 2>&1 &
rootfs_pid=$!
trap 'kill -- -"$rootfs_pid" 2>/dev/null || true' EXIT

# `npm ci` when the lock file changed since the last install (or there is none).
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.package-lock.json.installed; then
    step "npm ci (tests/node)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/node/package-lock.json tests/node/node_modules/.package-lock.json.installed
fi

# Autobahn|Testsuite's wstest needs Python 2.7: unpacked from Debian bullseye's packages into
# target/autobahn, the system untouched (see the script). Not a LOOKOUT_ variable: the binary
# refuses unknown ones.
step "Autobahn|Testsuite (wstest)"
AUTOBAHN_WSTEST="$(bash tests/autobahn/setup.sh)"
export AUTOBAHN_WSTEST

# The ARC tests' DC-09 receiver is pysiaalarm (PyPI), in a venv under target/pysiaalarm; the
# system's Python untouched. Not a LOOKOUT_ variable: the binary refuses unknown ones.
step "pysiaalarm (DC-09 receiver for tests/arc.rs)"
PYSIAALARM_PYTHON="$(bash tests/arc/setup.sh)"
export PYSIAALARM_PYTHON

# Supply chain: cargo audit against the RustSec database; exceptions, each with its reason, are
# in .cargo/audit.toml. Offline against a snapshot when one is at hand (machines without
# internet have ../shared/advisory-db), else the live database.
if ! cargo audit --version >/dev/null 2>&1; then
    step "installing cargo-audit"
    cargo install cargo-audit --locked --quiet
fi
step "cargo audit"
AUDIT_DB="${AUDIT_DB:-}"
for candidate in ../shared/advisory-db /work/shared/advisory-db; do
    if [ -z "$AUDIT_DB" ] && [ -d "$candidate/crates" ]; then AUDIT_DB="$candidate"; fi
done
if [ -n "$AUDIT_DB" ]; then
    cargo audit --deny warnings --db "$AUDIT_DB" --no-fetch
else
    cargo audit --deny warnings
fi

# A CI run builds once, so incremental state only costs disk (2.4 GB for this suite). The free
# space is printed first so that a linker killed by a full disk is recognisable as such.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi
step "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free where the build goes"

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets -- -D warnings
# The tests spend most of their time waiting on real servers, timers and other processes (a
# run used a quarter of two cores), so cargo-nextest runs the tests of every binary in one pool,
# six at a time, instead of one binary after another. The benchmarks' smoke runs have harnesses
# of their own and run under cargo test.
if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest"
    cargo install cargo-nextest --locked --quiet
fi
step "cargo nextest (unit and integration tests)"
cargo nextest run --lib --bins --tests --no-fail-fast --test-threads "${TEST_THREADS:-6}"
step "cargo test --benches (the benchmarks' smoke runs)"
cargo test --benches
# The same behaviour on cluster mode's engine: these suites' in-process servers keep their
# state in a real redis-server instead of sled (tests/common/redis.rs).
step "cargo test on the Redis engine (TEST_STORE=redis)"
TEST_STORE=redis cargo nextest run --no-fail-fast --test-threads "${TEST_THREADS:-6}" \
    --test durability --test authorization --test field --test idempotency --test stomp \
    --test enrollment --test budgets --test operations --test lone_worker --test arc \
    --test patrols --test incidents --test shift_report
# The authorization matrix and the patrols' window timers against a cluster: every in-process
# server is three nodes on one Redis and the clients connect to them in turn.
step "cargo test on a three-node cluster (TEST_CLUSTER=3)"
TEST_CLUSTER=3 cargo nextest run --no-fail-fast --test-threads "${TEST_THREADS:-6}" --test authorization \
    --test patrols --test incidents
step "all tests passed"
