//! The `lookout` binary: everything lives in the library.

// jemalloc, not glibc's malloc: under the field load (10,000 guards at 1 Hz) glibc's arena
// locks, consolidation and fresh pages were a fifth of the server's CPU; with jemalloc the
// server acknowledges 9,861 locations/s instead of 6,696 and its RSS ends at 359 MiB instead
// of 1,383 (benches/compare, field scenario). mimalloc did less well on both counts.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    lookout::cli::main()
}
