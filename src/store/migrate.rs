//! Moving a stopped appliance into cluster mode: everything its sled store holds — logs with
//! their seqs and the epoch they belong to, idempotency keys, acknowledgements and cursors,
//! the user directory and job owners, domain records and escalation timers — copied into an
//! empty Redis, so its clients resume on the cluster with `recovered: true`.
//!
//! The sled store is only read (its lock keeps a running server away); the Redis must hold no
//! Lookout store yet. Nothing here is done by halves: a failure leaves the sled store as it
//! was, and says what to clear in Redis before trying again.

use std::path::Path;

use super::error::{Result, StoreError};
use super::redis::{RedisOptions, RedisStore};
use super::Store;
use super::{dump_data_dir, Item};

/// What a migration moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrated {
    /// Channels.
    pub channels: u64,
    /// Retained messages.
    pub messages: u64,
    /// Everything written, all kinds together.
    pub items: u64,
}

/// Copies the sled store of `data_dir` into the Redis of `options`, under the same epoch.
pub async fn to_redis(data_dir: &Path, options: &RedisOptions) -> Result<(Migrated, String)> {
    let (epoch, items) = dump_data_dir(data_dir)?;
    let redis = std::sync::Arc::new(RedisStore::create(options, &epoch).await?);
    let items_written = redis.import(&items).await.map_err(|e| {
        StoreError::Engine(format!(
            "{e}; the Redis now holds part of the store: clear it (FLUSHDB) before trying again"
        ))
    })?;
    // A clean stop: the migration's background work ends and it leaves the cluster at once,
    // rather than when its heartbeat lapses.
    redis.start().stop().await;
    let count = |f: fn(&Item) -> bool| items.iter().filter(|i| f(i)).count() as u64;
    Ok((
        Migrated {
            channels: count(|i| matches!(i, Item::Channel { .. })),
            messages: count(|i| matches!(i, Item::Message { .. })),
            items: items_written,
        },
        epoch,
    ))
}
