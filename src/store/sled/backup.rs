//! `lookout backup` / `lookout restore`: one streaming file that moves an appliance — every
//! key of the store plus the certificate, key and JWT secret of the data directory.
//!
//! Format: the magic line, then records (`F` file: name, bytes; `K`: key, value), then `E` with
//! the record count and a SHA-256 of everything before it. A restore writes into a fresh
//! directory beside the target and moves it into place only once the checksum matched, so a
//! truncated or damaged backup never leaves a half-restored store.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{SledStore, StoreOptions, LOCK_FILE, STORE_DIR};
use crate::store::error::StoreError;

const MAGIC: &[u8] = b"LOOKOUT-BACKUP 1\n";
/// Files of the data directory carried along with the store: with the local CA, so phones that
/// trust it accept the restored appliance.
const FILES: [&str; 7] = [
    "tls/ca.pem",
    "tls/ca-key.pem",
    "tls/issued.json",
    "tls/cert.pem",
    "tls/key.pem",
    "jwt.secret",
    super::EPOCH_FILE,
];

/// What a backup or restore moved.
#[derive(Debug, Clone, Copy)]
pub struct Moved {
    /// Store entries.
    pub entries: u64,
    /// Files.
    pub files: u64,
}

struct Hashing<W> {
    inner: W,
    digest: ring::digest::Context,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.digest.update(bytes);
        self.inner.write_all(bytes)
    }
    fn put_blob(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| std::io::Error::other("record larger than 4 GiB"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

/// Writes a backup of the (stopped) data directory `data_dir` to `to`.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Moved, StoreError> {
    if !data_dir.join(STORE_DIR).exists() {
        return Err(StoreError::Foreign(data_dir.join(STORE_DIR)));
    }
    let (store, _) = SledStore::open(data_dir, StoreOptions::default())?;
    let partial = to.with_extension("partial");
    let file = private_create(&partial)?;
    let mut out = Hashing {
        inner: BufWriter::new(file),
        digest: ring::digest::Context::new(&ring::digest::SHA256),
    };
    out.put(MAGIC)?;
    let mut moved = Moved {
        entries: 0,
        files: 0,
    };
    for name in FILES {
        let path = data_dir.join(name);
        if path.exists() {
            out.put(b"F")?;
            out.put_blob(name.as_bytes())?;
            out.put_blob(&std::fs::read(&path)?)?;
            moved.files += 1;
        }
    }
    for entry in store.entries() {
        let (k, v) = entry?;
        out.put(b"K")?;
        out.put_blob(&k)?;
        out.put_blob(&v)?;
        moved.entries += 1;
    }
    out.put(b"E")?;
    out.put(&(moved.entries + moved.files).to_be_bytes())?;
    let digest = out.digest.finish();
    let mut inner = out.inner;
    inner.write_all(digest.as_ref())?;
    inner.flush()?;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, to)?;
    Ok(moved)
}

fn private_create(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

struct Verifying<R> {
    inner: R,
    digest: ring::digest::Context,
}

impl<R: Read> Verifying<R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; n];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| damaged("the backup ends early"))?;
        self.digest.update(&buf);
        Ok(buf)
    }
    fn blob(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        let len = self.take(4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > max {
            return Err(damaged("a record is implausibly large"));
        }
        self.take(len)
    }
}

fn damaged(message: &str) -> StoreError {
    StoreError::Corrupt {
        path: PathBuf::from("backup"),
        message: message.to_string(),
    }
}

/// Restores the backup `from` into `data_dir`, which must not hold a store yet.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Moved, StoreError> {
    if data_dir.join(STORE_DIR).exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} already holds a store; restore into an empty data directory",
                data_dir.display()
            ),
        )));
    }
    let staging = staging_dir(data_dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let result = restore_into(from, &staging);
    match result {
        Ok(moved) => {
            std::fs::create_dir_all(data_dir)?;
            for name in FILES {
                let src = staging.join(name);
                if src.exists() {
                    let dst = data_dir.join(name);
                    if let Some(parent) = dst.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::rename(src, dst)?;
                }
            }
            std::fs::rename(staging.join(STORE_DIR), data_dir.join(STORE_DIR))?;
            let _ = std::fs::remove_dir_all(&staging);
            Ok(moved)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn staging_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".restoring");
    data_dir.with_file_name(name)
}

fn restore_into(from: &Path, staging: &Path) -> Result<Moved, StoreError> {
    const MAX_RECORD: usize = 64 << 20;
    let mut input = Verifying {
        inner: BufReader::new(File::open(from)?),
        digest: ring::digest::Context::new(&ring::digest::SHA256),
    };
    if input.take(MAGIC.len())? != MAGIC {
        return Err(damaged("not a Lookout backup"));
    }
    std::fs::create_dir_all(staging)?;
    let db = sled::Config::new().path(staging.join(STORE_DIR)).open()?;
    let mut moved = Moved {
        entries: 0,
        files: 0,
    };
    loop {
        match input.take(1)?[0] {
            b'F' => {
                let name = String::from_utf8(input.blob(1024)?)
                    .map_err(|_| damaged("file name is not UTF-8"))?;
                if !FILES.contains(&name.as_str()) {
                    return Err(damaged("unexpected file in backup"));
                }
                let bytes = input.blob(MAX_RECORD)?;
                let path = staging.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                private_create(&path)?.write_all(&bytes)?;
                moved.files += 1;
            }
            b'K' => {
                let key = input.blob(MAX_RECORD)?;
                let value = input.blob(MAX_RECORD)?;
                db.insert(key, value)?;
                moved.entries += 1;
            }
            b'E' => {
                let count = input.take(8)?;
                let count =
                    u64::from_be_bytes(count.try_into().map_err(|_| damaged("bad trailer"))?);
                let expected = input.digest.clone().finish();
                let mut stored = [0u8; 32];
                input
                    .inner
                    .read_exact(&mut stored)
                    .map_err(|_| damaged("the backup ends early"))?;
                if stored != expected.as_ref() || count != moved.entries + moved.files {
                    return Err(damaged("checksum mismatch"));
                }
                db.flush()?;
                drop(db);
                // The lock file is recreated by whoever opens the restored directory.
                let _ = std::fs::remove_file(staging.join(LOCK_FILE));
                return Ok(moved);
            }
            _ => return Err(damaged("unknown record")),
        }
    }
}
