//! The engine behind the store interface: `impl Store for SledStore` — appends, reads,
//! retention, acknowledgements, cursors, the user directory, jobs, records and timers, and the
//! flusher thread (`start`).
//!
//! How a write is made is `engine.rs`'s; how it is made durable, `flusher.rs`'s.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::engine::{ChannelHead, SledStore, TRIM_BATCH};
use super::keys;
use super::sealed::{seal, unseal};
use super::values::{
    corrupt, damaged, message, sealed_insert, ChannelRecord, LogRecord, UserRecord,
};
use crate::counters::Latency;
use crate::store::error::{Result, StoreError};
use crate::store::interface::{
    Appended, Background, Draft, Messages, Remembered, RetentionOf, Store, StoredMessage, Ticket,
};
use crate::store::records::{decode, encode, Change, Record, Records, Timer};

#[async_trait::async_trait]
impl Store for SledStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn healthy(&self) -> bool {
        self.commits.healthy()
    }

    fn failed(&self) -> &CancellationToken {
        &self.commits.fatal
    }

    fn commit_latency(&self) -> &Latency {
        &self.commits.latency
    }

    fn start(self: Arc<Self>) -> Background {
        let stop = CancellationToken::new();
        let (finished, done) = tokio::sync::oneshot::channel();
        let thread_stop = stop.clone();
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("lookout-flush".into())
            .spawn(move || {
                store.commits.run_blocking(&thread_stop);
                // The store (and its lock on the data directory) goes before `stop` returns.
                drop(store);
                let _ = finished.send(());
            });
        if let Err(e) = spawned {
            self.commits.fail(&format!("cannot start the flusher: {e}"));
        }
        Background::new(stop, done)
    }

    async fn size(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn head(&self, channel: &str) -> u64 {
        self.channel_record(channel).map_or(0, |r| r.head)
    }

    async fn append(&self, channel: &str, draft: Draft) -> Result<(Arc<StoredMessage>, Ticket)> {
        match self.append_keyed(channel, draft, None)? {
            Appended::New(message, ticket) => Ok((message, ticket)),
            Appended::Repeat(..) => Err(StoreError::Engine(
                "an append without a key was taken for a repeat".into(),
            )),
        }
    }

    async fn append_once(&self, channel: &str, draft: Draft, key: &str) -> Result<Appended> {
        self.append_keyed(channel, draft, Some(key))
    }

    async fn count_channels(&self, prefix: &str) -> Result<usize> {
        let channels = self.channels.read();
        Ok(channels.keys().filter(|k| k.starts_with(prefix)).count())
    }

    async fn first_retained(&self, channel: &str) -> Result<Option<u64>> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(None);
        };
        match self
            .db
            .scan_prefix(keys::log_prefix(record.id))
            .keys()
            .next()
        {
            Some(k) => Ok(keys::seq_of(&k?)),
            None => Ok(None),
        }
    }

    async fn read(&self, channel: &str, after: u64, upto: u64, limit: usize) -> Result<Messages> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(Vec::new());
        };
        if upto <= after {
            return Ok(Vec::new());
        }
        let range = keys::log(record.id, after + 1)..=keys::log(record.id, upto);
        if limit.min((upto - after) as usize) <= READ_INLINE {
            return read_range(&self.db, &self.path, range, limit);
        }
        // A page of history or replay reads the disk: not on an async worker.
        let (db, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || read_range(&db, &path, range, limit))
            .await
            .map_err(|e| StoreError::Engine(format!("history read stopped: {e}")))?
    }

    async fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(None);
        };
        match self.get(&keys::log(record.id, seq))? {
            Some(v) => Ok(Some(Arc::new(self.message(seq, &v)?))),
            None => Ok(None),
        }
    }

    async fn trim(&self, rule: RetentionOf) -> Result<u64> {
        let channels: Vec<(String, ChannelHead)> = self
            .channels
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), *v.lock()))
            .collect();
        let mut deleted = 0;
        for (name, record) in channels {
            let (keep, older_than) = rule(&name);
            let mut batch = sled::Batch::default();
            // The floor keeps the head when every message of the log is trimmed.
            let floor = ChannelRecord {
                id: record.id,
                floor: record.head,
            };
            sealed_insert(&mut batch, &keys::channel(&name), &encode(&floor)?);
            let mut in_batch = 0;
            for entry in self.db.scan_prefix(keys::log_prefix(record.id)) {
                let (k, v) = entry?;
                let Some(seq) = keys::seq_of(&k) else {
                    continue;
                };
                let too_many = record.head.saturating_sub(seq) >= keep as u64;
                let v = unseal(&k, v).map_err(|d| damaged(&self.path, d))?;
                let too_old = decode::<LogRecord>(&v).is_ok_and(|r| r.ts < older_than);
                if !(too_many || too_old) {
                    break;
                }
                batch.remove(k);
                batch.remove(&keys::ack_required(record.id, seq));
                in_batch += 1;
                if in_batch == TRIM_BATCH {
                    self.apply(std::mem::take(&mut batch))?;
                    deleted += in_batch as u64;
                    in_batch = 0;
                    tokio::task::yield_now().await;
                }
            }
            deleted += in_batch as u64;
            self.apply(batch)?;
            self.forget_keys_before(record.id).await?;
        }
        Ok(deleted)
    }

    async fn unacknowledged(&self, user: &str, channel: &str, upto: u64) -> Result<Vec<u64>> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for key in self
            .db
            .scan_prefix(keys::ack_required_prefix(record.id))
            .keys()
        {
            let Some(seq) = keys::seq_of(&key?) else {
                continue;
            };
            if seq > upto {
                break;
            }
            if !self.db.contains_key(keys::acked(user, record.id, seq))? {
                out.push(seq);
            }
        }
        Ok(out)
    }

    async fn acknowledge(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let Some(id) = self.known_seq(channel, seq) else {
            return Ok(None);
        };
        self.put(&keys::acked(user, id, seq), &[])?;
        Ok(Some(self.commits.applied()))
    }

    async fn advance_cursor(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let Some(id) = self.known_seq(channel, seq) else {
            return Ok(None);
        };
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        let key = keys::cursor(user, id);
        let mut damage = None;
        self.db
            .fetch_and_update(&key, |old| {
                let old = match old.map(|v| unseal(&key, sled::IVec::from(v))) {
                    None => 0,
                    Some(Ok(v)) => <[u8; 8]>::try_from(v.as_ref()).map_or(0, u64::from_be_bytes),
                    // Left as it is, and reported below.
                    Some(Err(d)) => {
                        damage = Some(d);
                        return old.map(<[u8]>::to_vec);
                    }
                };
                Some(seal(&key, &old.max(seq).to_be_bytes()))
            })
            .map_err(|e| self.write_failed(e.into()))?;
        if let Some(d) = damage {
            return Err(damaged(&self.path, d));
        }
        Ok(Some(self.commits.applied()))
    }

    async fn cursor(&self, user: &str, channel: &str) -> Result<u64> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(0);
        };
        Ok(self
            .get(&keys::cursor(user, record.id))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    async fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered> {
        if let Some(known) = self.user_record(user)? {
            if known.org != org {
                return Ok(Remembered::Conflict(Arc::from(known.org)));
            }
        }
        let record = UserRecord {
            org: org.to_string(),
            last_seen: now,
        };
        self.put(&keys::user(user), &encode(&record)?)?;
        self.commits.applied();
        Ok(Remembered::Same)
    }

    async fn user_org(&self, user: &str) -> Result<Option<Arc<str>>> {
        Ok(self.user_record(user)?.map(|r| Arc::from(r.org)))
    }

    async fn last_seen(&self, user: &str) -> Result<Option<u64>> {
        Ok(self.user_record(user)?.map(|r| r.last_seen))
    }

    async fn job_owner(&self, job: &str) -> Result<Option<Arc<str>>> {
        Ok(self
            .get(&keys::job(job))?
            .map(|raw| Arc::from(String::from_utf8_lossy(&raw).as_ref())))
    }

    async fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>> {
        let key = keys::job(job);
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        let result = self
            .db
            .compare_and_swap(
                &key,
                None as Option<&[u8]>,
                Some(seal(&key, owner.as_bytes())),
            )
            .map_err(|e| self.write_failed(e.into()))?;
        let stored = match result {
            Ok(()) => {
                self.commits.applied();
                owner.to_string()
            }
            Err(current) => match current.current {
                Some(v) => {
                    let v = unseal(&key, v).map_err(|d| damaged(&self.path, d))?;
                    String::from_utf8_lossy(&v).into_owned()
                }
                None => String::new(),
            },
        };
        Ok(Arc::from(stored))
    }

    async fn record(&self, key: Record<'_>) -> Result<Option<Vec<u8>>> {
        Ok(self.get(&keys::record(&key))?.map(|v| v.to_vec()))
    }

    async fn records(&self, set: Records<'_>) -> Result<Vec<Vec<u8>>> {
        self.db
            .scan_prefix(keys::records(&set))
            .map(|entry| {
                let (k, v) = entry?;
                Ok(unseal(&k, v).map_err(|d| damaged(&self.path, d))?.to_vec())
            })
            .collect()
    }

    async fn write(&self, changes: &[Change<'_>]) -> Result<Ticket> {
        // One change is atomic by itself, and a sled batch costs the next flush ~130 µs.
        if let [single] = changes {
            match single {
                Change::Put(key, value) => self.put(&keys::record(key), value)?,
                Change::Delete(key) => self.delete(&keys::record(key))?,
            };
            return Ok(self.commits.applied());
        }
        let mut batch = sled::Batch::default();
        for change in changes {
            match change {
                Change::Put(key, value) => sealed_insert(&mut batch, &keys::record(key), value),
                Change::Delete(key) => batch.remove(keys::record(key)),
            }
        }
        self.apply(batch)?;
        Ok(self.commits.applied())
    }

    async fn write_if(
        &self,
        guard: Record<'_>,
        expected: Option<&[u8]>,
        changes: &[Change<'_>],
    ) -> Result<Option<Ticket>> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let guard = keys::record(&guard);
        let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = changes
            .iter()
            .map(|change| match change {
                Change::Put(key, value) => {
                    let key = keys::record(key);
                    let sealed = seal(&key, value);
                    (key, Some(sealed))
                }
                Change::Delete(key) => (keys::record(key), None),
            })
            .collect();
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        // A transaction: sled serialises it with every other write, and its read of the guard
        // is checked again when it commits.
        let outcome = self.db.transaction(|tx| {
            let current = match tx.get(&guard)? {
                Some(raw) => {
                    Some(unseal(&guard, raw).map_err(ConflictableTransactionError::Abort)?)
                }
                None => None,
            };
            if current.as_deref() != expected {
                return Ok(false);
            }
            for (key, value) in &changes {
                match value {
                    Some(sealed) => tx.insert(key.as_slice(), sealed.as_slice())?,
                    None => tx.remove(key.as_slice())?,
                };
            }
            Ok(true)
        });
        match outcome {
            Ok(true) => Ok(Some(self.commits.applied())),
            Ok(false) => Ok(None),
            Err(TransactionError::Abort(damage)) => Err(damaged(&self.path, damage)),
            Err(TransactionError::Storage(e)) => Err(self.write_failed(e.into())),
        }
    }

    async fn put_new(&self, key: Record<'_>, value: Vec<u8>) -> Result<Option<Ticket>> {
        let key = keys::record(&key);
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        let sealed = seal(&key, &value);
        match self
            .db
            .compare_and_swap(&key, None as Option<&[u8]>, Some(sealed))
            .map_err(|e| self.write_failed(e.into()))?
        {
            Ok(()) => Ok(Some(self.commits.applied())),
            Err(_) => Ok(None),
        }
    }

    async fn due_timers(&self, now: u64) -> Result<Vec<Timer>> {
        let mut out = Vec::new();
        for key in self.db.scan_prefix([keys::TIMER]).keys() {
            let key = key?;
            let Some(timer) = keys::timer_of(&key) else {
                continue;
            };
            if timer.due > now {
                break;
            }
            out.push(timer);
        }
        Ok(out)
    }

    async fn next_timer(&self) -> Result<Option<u64>> {
        match self.db.scan_prefix([keys::TIMER]).keys().next() {
            Some(k) => Ok(keys::timer_of(&k?).map(|t| t.due)),
            None => Ok(None),
        }
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        self.commits.is_durable(ticket)
    }

    async fn durable(&self, ticket: Ticket) -> Result<()> {
        self.commits.durable(ticket).await
    }

    async fn flush(&self) -> Result<()> {
        self.commits.flush().await
    }
}

/// Reads of up to this many messages run inline; larger ones on the blocking pool.
const READ_INLINE: usize = 16;

fn read_range(
    db: &sled::Db,
    path: &Path,
    range: std::ops::RangeInclusive<[u8; 17]>,
    limit: usize,
) -> Result<Messages> {
    let mut out = Vec::new();
    for entry in db.range(range).take(limit) {
        let (k, v) = entry?;
        let seq = keys::seq_of(&k).ok_or_else(|| corrupt(path, "bad log key"))?;
        let v = unseal(&k, v).map_err(|d| damaged(path, d))?;
        out.push(Arc::new(message(seq, &v)?));
    }
    Ok(out)
}
