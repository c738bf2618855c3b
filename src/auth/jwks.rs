//! An identity provider's key set (JWKS): the public keys, by `kid`, that verify tokens when
//! `jwt.jwks_url` or `jwt.jwks_file` is set. Fetched again every `jwt.jwks_refresh` and when a
//! token names a `kid` it does not hold (at most every `jwt.jwks_min_interval`); the last good
//! set is kept in `<data_dir>/jwks.json` so that a restart works while the provider is down.
//!
//! Each key verifies with exactly one algorithm, fixed here from the key itself (its `alg`, or
//! RSA → RS256, EC P-256 → ES256) and only when `jwt.algorithms` allows it: a token's header
//! never chooses. Nothing here reads a token's claims.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, JwtAlgorithm};

/// Why the key set could not be loaded or fetched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwksError(String);

/// A key set larger than this is refused (a JWKS holds a handful of keys).
const MAX_BYTES: usize = 1 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many keys are kept from one set.
const MAX_KEYS: usize = 64;

#[derive(serde::Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// One key of the set and the one algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    /// The algorithm a token signed with this key must name.
    pub algorithm: Algorithm,
    /// The public key.
    pub decoding: DecodingKey,
}

enum Source {
    Url(String),
    File(PathBuf),
}

/// The key set, shared by every verification; swapped whole at each good refresh.
pub struct KeySet {
    source: Source,
    cache: PathBuf,
    allowed: Vec<Algorithm>,
    refresh_every: Duration,
    min_interval: Duration,
    keys: parking_lot::RwLock<Arc<HashMap<String, Key>>>,
    /// When the last fetch was tried (good or not): what rate-limits unknown-`kid` fetches.
    last_try: parking_lot::Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    client: reqwest::Client,
    /// Fetches that failed (network, status, size or content), for `/metrics`.
    pub failures: AtomicU64,
    /// Fetches that replaced the set.
    pub refreshes: AtomicU64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys.read().len())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// The key set the configuration names, or `None` without one. A file is read now; for a
    /// URL the cached set (if any) is loaded, and [`KeySet::refresh`] fetches the live one.
    pub fn from_config(config: &Config) -> Result<Option<KeySet>, JwksError> {
        let jwt = &config.jwt;
        let source = match (&jwt.jwks_url, &jwt.jwks_file) {
            (Some(url), _) => Source::Url(url.clone()),
            (None, Some(file)) => Source::File(file.clone()),
            (None, None) => return Ok(None),
        };
        let allowed = jwt
            .algorithms
            .iter()
            .filter_map(|a| match a {
                JwtAlgorithm::RS256 => Some(Algorithm::RS256),
                JwtAlgorithm::ES256 => Some(Algorithm::ES256),
                JwtAlgorithm::HS256 => None,
            })
            .collect();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| JwksError(format!("jwt.jwks_url: {e}")))?;
        let set = KeySet {
            source,
            cache: config.data_dir.join("jwks.json"),
            allowed,
            refresh_every: jwt.jwks_refresh,
            min_interval: jwt.jwks_min_interval,
            keys: Default::default(),
            last_try: Default::default(),
            fetching: Default::default(),
            client,
            failures: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        };
        match &set.source {
            Source::File(file) => {
                let bytes = std::fs::read(file)
                    .map_err(|e| JwksError(format!("{}: {e}", file.display())))?;
                let keys = set
                    .parse(&bytes)
                    .map_err(|e| JwksError(format!("{}: {e}", file.display())))?;
                *set.keys.write() = Arc::new(keys);
            }
            Source::Url(_) => match std::fs::read(&set.cache) {
                Ok(bytes) => match set.parse(&bytes) {
                    Ok(keys) => *set.keys.write() = Arc::new(keys),
                    Err(e) => tracing::warn!(
                        file = %set.cache.display(),
                        error = %e,
                        "the cached key set is unusable; waiting for the identity provider"
                    ),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(JwksError(format!("{}: {e}", set.cache.display())));
                }
            },
        }
        Ok(Some(set))
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<Key> {
        self.keys.read().get(kid).cloned()
    }

    /// How many keys the set holds now.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    /// Whether the set holds no key (nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches (or reads) the set again and swaps it in; on failure the last good set stays.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _one = self.fetching.lock().await;
        self.refresh_now().await
    }

    /// [`KeySet::refresh`], the caller holding `fetching`.
    async fn refresh_now(&self) -> Result<usize, JwksError> {
        *self.last_try.lock() = Some(Instant::now());
        let result = match &self.source {
            Source::Url(url) => self.fetch(url).await,
            Source::File(file) => tokio::fs::read(file)
                .await
                .map_err(|e| format!("{}: {e}", file.display())),
        }
        .and_then(|bytes| Ok((self.parse(&bytes)?, bytes)));
        // The interval runs from when the answer came: a slow provider is not asked again by
        // those who waited for it.
        *self.last_try.lock() = Some(Instant::now());
        match result {
            Ok((keys, bytes)) => {
                let n = keys.len();
                *self.keys.write() = Arc::new(keys);
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                if matches!(self.source, Source::Url(_)) {
                    if let Err(e) = write_atomically(&self.cache, &bytes).await {
                        tracing::warn!(file = %self.cache.display(), error = %e, "keeping the key set for restarts");
                    }
                }
                Ok(n)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(JwksError(format!("key set: {e}")))
            }
        }
    }

    /// A token named a `kid` the set lacks: fetches again unless that was tried less than
    /// `jwt.jwks_min_interval` ago. `true` when a fetch replaced the set.
    /// Single flight: the interval is checked once this caller holds the fetch, so a burst of
    /// requests naming unknown keys (any client can send one, before any authentication) makes
    /// one fetch, and the rest find it just made.
    pub async fn refresh_for_unknown(&self) -> bool {
        let _one = self.fetching.lock().await;
        let recent = self
            .last_try
            .lock()
            .is_some_and(|at| at.elapsed() < self.min_interval);
        if recent {
            return false;
        }
        match self.refresh_now().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "fetching the key set for an unknown kid");
                false
            }
        }
    }

    /// Refreshes every `jwt.jwks_refresh` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.refresh_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, keys = self.len(), "refreshing the key set; the last good one stays");
                    }
                }
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(format!("{url}: larger than {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The usable keys of a JWKS document; an error when there is none.
    fn parse(&self, bytes: &[u8]) -> Result<HashMap<String, Key>, String> {
        // Key by key: a set may hold kinds this version cannot read (they are skipped).
        let set: JwksDocument =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        let readable = set
            .keys
            .into_iter()
            .take(MAX_KEYS)
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok());
        for jwk in &readable.collect::<Vec<_>>() {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(ec))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(ec))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => continue,
            };
            // An encryption key (`use: enc`) never verifies a signature.
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            if !self.allowed.contains(&algorithm) {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(decoding) => {
                    keys.insert(
                        kid,
                        Key {
                            algorithm,
                            decoding,
                        },
                    );
                }
                Err(e) => tracing::warn!(kid = %kid, error = %e, "skipping an unusable key"),
            }
        }
        if keys.is_empty() {
            return Err("no key usable with jwt.algorithms (each needs a kid)".into());
        }
        Ok(keys)
    }
}

/// The error and what caused it (reqwest's own message leaves out the TLS reason).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::File::open(&tmp).await?.sync_all().await?;
    tokio::fs::rename(&tmp, path).await
}
