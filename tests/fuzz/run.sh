#!/usr/bin/env bash
# Runs every fuzz target for a set time (default 180 s each), one after another, on the stable
# toolchain: cargo-fuzz (libFuzzer) with RUSTC_BOOTSTRAP=1 for the -Z flags it passes, and no
# sanitizer (Rust code here is safe; libFuzzer still finds panics, overflows with debug
# assertions on, and runaway allocations).
#
#   bash tests/fuzz/run.sh                 # every target, 180 s each
#   FUZZ_SECONDS=30 bash tests/fuzz/run.sh jwt location
#
# A failing input is saved under tests/fuzz/artifacts/<target>/; turn it into a regression test
# in tests/fuzz_regressions.rs (see there) before fixing it.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
seconds="${FUZZ_SECONDS:-180}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(native_json native_msgpack stomp_frame sockjs_framing location video geofence jwt)
fi
export RUSTC_BOOTSTRAP=1
flags=(--fuzz-dir tests/fuzz --sanitizer none -O -a)
cargo fuzz build "${flags[@]}"
for target in "${targets[@]}"; do
    corpus="tests/fuzz/corpus/$target"
    mkdir -p "$corpus"
    echo "== fuzz $target for ${seconds}s"
    # -rss_limit_mb: a runaway allocation is a finding; -max_len: frames are small.
    cargo fuzz run "${flags[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        2>&1 | tail -n 14
done
