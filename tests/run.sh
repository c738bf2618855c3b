#!/usr/bin/env bash
# Runs every Lookout test on a fresh machine: formatting, lints, unit and integration tests
# against real servers. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
    echo "tests/run.sh: cargo is required (install Rust with rustup)" >&2
    exit 1
fi
# rustfmt and clippy come with the toolchain profile; add them if this one lacks them.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    need rustup && rustup component add rustfmt clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
