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
# The binaries built once, run directly: `cargo fuzz run` would rebuild when the tree changes.
bin="tests/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
for target in "${targets[@]}"; do
    corpus="tests/fuzz/corpus/$target"
    artifacts="tests/fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    echo "== fuzz $target for ${seconds}s"
    # -rss_limit_mb: a runaway allocation is a finding; -max_len: frames are small.
    log="$(mktemp)"
    if ! "$bin/$target" "$corpus" -artifact_prefix="$artifacts/" -max_total_time="$seconds" \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "== $target FAILED: the input is in $artifacts/" >&2
        exit 1
    fi
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|#[0-9]+ *DONE" "$log" || true
    rm -f "$log"
done
echo "== all targets ran ${seconds}s each without a failure"
