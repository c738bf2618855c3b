//! The `lookout` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    lookout::cli::main()
}
