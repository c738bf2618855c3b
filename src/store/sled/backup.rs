//! `lookout backup` / `lookout restore`: one streaming file that moves an appliance — every
//! key of the store plus the certificate, key and JWT secret of the data directory.
//!
//! Format: the magic line, then records (`F` file: name, bytes; `S` sealed file: name, salt,
//! nonce and AES-256-GCM ciphertext; `K`: key, value), then `E` with the record count and a
//! SHA-256 of everything before it. A restore writes into a fresh directory beside the target
//! and moves it into place only once the checksum matched, so a truncated or damaged backup
//! never leaves a half-restored store.
//!
//! The local CA's key is left out unless asked for: whoever holds it could make certificates
//! every phone that trusts the CA accepts. Asked for, it travels sealed with a key derived
//! from a passphrase (PBKDF2-HMAC-SHA256, 600,000 rounds) and is restored only with it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::datadir::{EPOCH_FILE, LOCK_FILE, STORE_DIR};
use super::engine::SledStore;
use super::open::StoreOptions;
use crate::store::error::StoreError;

const MAGIC: &[u8] = b"LOOKOUT-BACKUP 1\n";
/// Files of the data directory carried along with the store: the CA's certificate and the
/// server's certificate, so phones that trust it accept the restored appliance.
const FILES: [&str; 6] = [
    "tls/ca.pem",
    "tls/issued.json",
    "tls/cert.pem",
    "tls/key.pem",
    "jwt.secret",
    EPOCH_FILE,
];
/// Carried only when asked for, sealed with a passphrase.
const SEALED_FILES: [&str; 1] = ["tls/ca-key.pem"];
/// PBKDF2 rounds for the passphrase.
const ROUNDS: u32 = 600_000;

/// A key from `passphrase` and `salt`.
fn sealing_key(passphrase: &[u8], salt: &[u8]) -> Result<ring::aead::LessSafeKey, StoreError> {
    let mut key = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(ROUNDS).ok_or_else(|| damaged("no rounds"))?;
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        passphrase,
        &mut key,
    );
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key)
        .map_err(|_| damaged("no sealing key"))?;
    Ok(ring::aead::LessSafeKey::new(unbound))
}

/// `file`'s bytes sealed with `passphrase`: salt (16), nonce (12), ciphertext and tag. The
/// file's name is authenticated with it.
fn seal_file(name: &str, bytes: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, StoreError> {
    use ring::rand::SecureRandom;
    let mut salt_nonce = [0u8; 28];
    ring::rand::SystemRandom::new()
        .fill(&mut salt_nonce)
        .map_err(|_| damaged("no randomness"))?;
    let (salt, nonce) = salt_nonce.split_at(16);
    let key = sealing_key(passphrase, salt)?;
    let mut sealed = bytes.to_vec();
    let nonce =
        ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| damaged("bad nonce"))?;
    key.seal_in_place_append_tag(nonce, ring::aead::Aad::from(name.as_bytes()), &mut sealed)
        .map_err(|_| damaged("sealing failed"))?;
    Ok([salt_nonce.as_slice(), &sealed].concat())
}

fn open_file(name: &str, blob: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, StoreError> {
    if blob.len() < 28 + 16 {
        return Err(damaged("a sealed file is too short"));
    }
    let (salt, rest) = blob.split_at(16);
    let (nonce, sealed) = rest.split_at(12);
    let key = sealing_key(passphrase, salt)?;
    let nonce =
        ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| damaged("bad nonce"))?;
    let mut bytes = sealed.to_vec();
    let opened = key
        .open_in_place(nonce, ring::aead::Aad::from(name.as_bytes()), &mut bytes)
        .map_err(|_| {
            StoreError::Backup(format!("{name}: wrong passphrase (or a damaged backup)"))
        })?;
    Ok(opened.to_vec())
}

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

/// Writes a backup of the (stopped) data directory `data_dir` to `to`; with `ca_key_sealed_by`
/// a passphrase, the local CA's key too, sealed with it.
pub fn backup(
    data_dir: &Path,
    to: &Path,
    ca_key_sealed_by: Option<&[u8]>,
) -> Result<Moved, StoreError> {
    if !data_dir.join(STORE_DIR).exists() {
        return Err(StoreError::Foreign(data_dir.join(STORE_DIR)));
    }
    let (store, _) = SledStore::open(data_dir, StoreOptions::default())?;
    let partial = to.with_extension("partial");
    // A file left by an earlier attempt may have other permissions: never written into.
    match std::fs::remove_file(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
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
    if let Some(passphrase) = ca_key_sealed_by {
        for name in SEALED_FILES {
            let path = data_dir.join(name);
            if path.exists() {
                out.put(b"S")?;
                out.put_blob(name.as_bytes())?;
                out.put_blob(&seal_file(name, &std::fs::read(&path)?, passphrase)?)?;
                moved.files += 1;
            }
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
    // Created here, 0600 from its first byte.
    options.write(true).create_new(true);
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

/// Restores the backup `from` into `data_dir`, which must not hold a store yet; a sealed CA key
/// needs the `passphrase` it was sealed with.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    passphrase: Option<&[u8]>,
) -> Result<Moved, StoreError> {
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
    let result = restore_into(from, &staging, passphrase);
    match result {
        Ok(moved) => {
            std::fs::create_dir_all(data_dir)?;
            for name in FILES.iter().chain(&SEALED_FILES) {
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

fn restore_into(
    from: &Path,
    staging: &Path,
    passphrase: Option<&[u8]>,
) -> Result<Moved, StoreError> {
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
                // Backups made before the CA key was left out carry it plain: restored as it
                // came, so that they still restore.
                if !FILES.contains(&name.as_str()) && !SEALED_FILES.contains(&name.as_str()) {
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
            b'S' => {
                let name = String::from_utf8(input.blob(1024)?)
                    .map_err(|_| damaged("file name is not UTF-8"))?;
                if !SEALED_FILES.contains(&name.as_str()) {
                    return Err(damaged("unexpected sealed file in backup"));
                }
                let blob = input.blob(MAX_RECORD)?;
                let passphrase = passphrase.ok_or_else(|| {
                    StoreError::Backup(format!(
                        "the backup holds {name} sealed with a passphrase: give it (--passphrase-file)"
                    ))
                })?;
                let bytes = open_file(&name, &blob, passphrase)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup as versions before the sealed CA key wrote it: the key as a plain file.
    fn legacy_backup(path: &Path, ca_key: &[u8]) {
        let mut out = Hashing {
            inner: Vec::new(),
            digest: ring::digest::Context::new(&ring::digest::SHA256),
        };
        out.put(MAGIC).expect("magic");
        out.put(b"F").expect("tag");
        out.put_blob(b"tls/ca-key.pem").expect("name");
        out.put_blob(ca_key).expect("bytes");
        out.put(b"E").expect("end");
        out.put(&1u64.to_be_bytes()).expect("count");
        let digest = out.digest.finish();
        let mut bytes = out.inner;
        bytes.extend_from_slice(digest.as_ref());
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_backup_from_before_the_sealed_ca_key_still_restores_with_its_key() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("old.backup");
        legacy_backup(&file, b"-----BEGIN PRIVATE KEY-----");
        let data = dir.path().join("data");
        let moved = restore(&file, &data, None).expect("restore");
        assert_eq!(moved.files, 1);
        assert_eq!(
            std::fs::read(data.join("tls/ca-key.pem")).expect("key"),
            b"-----BEGIN PRIVATE KEY-----"
        );
    }
}
