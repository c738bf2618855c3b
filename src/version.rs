//! What release this binary is: the one version string that `lookout --version`, `/metrics`
//! (`lookout_build_info`), the stats the dashboard shows and STOMP's `server` header carry.
//! Cargo's package version, so a release changes it in `Cargo.toml` alone.

/// This binary's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
