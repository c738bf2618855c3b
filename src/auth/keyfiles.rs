//! Key material on disk: where the generated HS256 secret lives, reading key and secret files,
//! creating the secret, and writing any private file (0600, never overwritten).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::AuthError;
use crate::config::Config;

/// Where the generated HS256 secret lives.
pub fn default_secret_path(config: &Config) -> PathBuf {
    config.data_dir.join("jwt.secret")
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, AuthError> {
    fs::read(path).map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))
}

pub(super) fn read_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    let raw = read_file(path)?;
    let trimmed = String::from_utf8_lossy(&raw).trim().as_bytes().to_vec();
    if trimmed.len() < 32 {
        return Err(AuthError::Key(format!(
            "{}: an HS256 secret must be at least 32 bytes",
            path.display()
        )));
    }
    Ok(trimmed)
}

pub(super) fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    if path.exists() {
        return read_secret(path);
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private_file(path, secret.as_bytes())
        .map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a new HS256 secret");
    Ok(secret.into_bytes())
}

/// Writes a file readable by its owner only (0600), creating parent directories.
/// Fails rather than overwrite: a secret or key is never replaced silently.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
