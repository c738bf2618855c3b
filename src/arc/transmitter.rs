//! The DC-09 transmitter: the outbox records written with alert changes, one deliverer per
//! configured receiver (alarms in order, each until its ACK, retried with backoff, failed over
//! to the backup), link supervision, and what the status, `/readyz` and `/metrics` show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codes;
use super::dc09::{self, AesKey, Message, ReceiverReply, Token};
use super::link::Path;
use crate::alerts::{Alert, AlertType, Priority};
use crate::clock::now_millis;
use crate::config::{ArcFormat, ArcReceiver, ArcSettings};
use crate::store::{Change, Record, Records, Store, StoreError};

/// Retry backoff when no path answers: from the first to the longest wait.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));
/// How often a deliverer looks at the outbox without being woken.
const POLL: Duration = Duration::from_secs(1);
/// In cluster mode one node delivers a receiver's alarms at a time, under a lease this long.
const LEASE: Duration = Duration::from_secs(15);
/// `DUH` answers from every path after which an alarm is a dead letter (the receiver does not
/// understand it: the same message will never do).
pub const MAX_REFUSALS: u32 = 3;
/// After a failure, the primary path is tried again first after this long (sooner when a
/// supervision message to it is acknowledged).
const PRIMARY_RETRY: Duration = Duration::from_secs(30);
/// A receiver's acknowledgement timestamp may differ from this transmitter's clock (plus the
/// offset a NAK taught it) by this much before the ACK is taken for a replay.
const ACK_WINDOW: i64 = 60;
/// Latencies kept per receiver for the percentiles.
const LATENCIES: usize = 1024;

/// An alarm or restoral waiting for its receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The receiver's name.
    receiver: String,
    org: String,
    alert: String,
    /// The event's place in its alert's history: the order of delivery.
    index: u32,
    /// When the alert changed (ms since the Unix epoch): the start of the latency.
    at: u64,
    #[serde(rename = "type")]
    kind: AlertType,
    /// The alert was resolved: the restoral.
    restore: bool,
    /// The account, as sent.
    account: String,
    /// The guard concerned.
    user: String,
    #[serde(default)]
    position: Option<(f64, f64)>,
    /// `DUH` answers so far.
    #[serde(default)]
    refusals: u32,
    /// Refused for good: kept, not delivered.
    #[serde(default)]
    dead: bool,
}

impl Entry {
    fn id(&self) -> String {
        format!(
            "{}-{:013}-{}-{:05}",
            self.receiver, self.at, self.alert, self.index
        )
    }
}

/// One path's state.
#[derive(Debug, Default)]
struct PathState {
    /// Known answering (its last exchange was acknowledged).
    up: AtomicBool,
    /// Whether anything was tried on it yet.
    tried: AtomicBool,
    /// Its last acknowledgement, ms since the Unix epoch.
    last_ack: AtomicU64,
    /// Its last failure, ms since the Unix epoch.
    last_failure: AtomicU64,
}

struct Receiver {
    config: ArcReceiver,
    key: Option<AesKey>,
    /// `host:port` of the primary and, if configured, the backup.
    addresses: Vec<String>,
    paths: Vec<PathState>,
    delivered: AtomicU64,
    failures: AtomicU64,
    supervision_acks: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
    /// Alarm to ACK, ms, the latest [`LATENCIES`].
    latencies: parking_lot::Mutex<std::collections::VecDeque<u64>>,
}

/// What the status, `/readyz` and the dashboard show of one path.
#[derive(Debug, Clone, Serialize)]
pub struct PathStatus {
    /// `primary` or `backup`.
    pub role: &'static str,
    /// `host:port`.
    pub address: String,
    /// `up`, `down` or `unknown` (nothing sent yet).
    pub state: &'static str,
    /// The last acknowledgement, ms since the Unix epoch.
    pub last_ack: Option<u64>,
}

/// What `GET /api/v1/arc/status` says of one receiver.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverStatus {
    /// Its name.
    pub name: String,
    /// `SIA-DCS` or `ADM-CID`.
    pub format: &'static str,
    /// Whether messages are encrypted.
    pub encrypted: bool,
    /// Up when a path answers.
    pub up: bool,
    /// Its paths.
    pub paths: Vec<PathStatus>,
    /// Alarms waiting for it.
    pub pending: usize,
    /// Alarms it refused for good, kept.
    pub dead_letters: usize,
    /// Acknowledged since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Supervision (`NULL`) messages acknowledged since start.
    pub supervision_acks: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// Alarm to ACK, ms: median and 99th percentile of the latest deliveries.
    pub latency_ms: Option<(u64, u64)>,
}

/// The configured receivers and their outbox.
pub struct Transmitter {
    receivers: Vec<Receiver>,
    store: Arc<dyn Store>,
    max_outbox: usize,
    /// Records in the outbox per org (dead letters included: they hold space too), as of the
    /// deliverers' last look plus what was written and less what was delivered since.
    depth_per_org: parking_lot::Mutex<HashMap<String, u64>>,
    /// Alarms not written because the org's outbox was full.
    pub dropped: AtomicU64,
    wake: Notify,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("receivers", &self.receivers.len())
            .finish_non_exhaustive()
    }
}

/// Why a message was not acknowledged.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// No path acknowledged it: tried again after a backoff.
    #[error("{0}")]
    Retry(String),
    /// Every path that answered said `DUH`.
    #[error("the receiver does not understand the message (DUH)")]
    Refused,
}

/// A deliverer's state that is not shared: the paths' sockets, the sequence number, the
/// clock offset a NAK taught.
struct Session {
    paths: Vec<Path>,
    seq: u16,
    /// Seconds to add to this clock for the receiver's (from its NAK's timestamp).
    offset: i64,
    /// When each path was last sent anything (for supervision).
    last_sent: Vec<Instant>,
}

impl Session {
    fn next_seq(&mut self) -> u16 {
        self.seq = if self.seq >= 9999 { 1 } else { self.seq + 1 };
        self.seq
    }
}

fn now_secs_i64() -> i64 {
    i64::try_from(now_millis() / 1000).unwrap_or(i64::MAX)
}

/// A guard's id as DC-09's alarm text carries it: printable, no brackets, bars or
/// underscores, at most 64 characters.
fn alarm_text(user: &str) -> String {
    user.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '@' | ':' | '/'))
        .take(64)
        .collect()
}

impl crate::alerts::AlertOutbox for Transmitter {
    fn outbox(
        &self,
        event: &str,
        alert: &Alert,
        index: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Transmitter::outbox(self, event, alert, index)
    }

    fn written(&self, org: &str, records: usize) {
        Transmitter::written(self, org, records)
    }
}

impl Transmitter {
    /// The receivers of `settings`, writing their outbox to `store`.
    pub fn new(settings: &ArcSettings, store: Arc<dyn Store>) -> Arc<Transmitter> {
        let receivers = settings
            .receivers
            .iter()
            .map(|config| {
                let mut addresses = vec![format!("{}:{}", config.host, config.port)];
                addresses.extend(config.backup.clone());
                Receiver {
                    // Checked with the configuration: a key that does not parse is none
                    // here only if the checks were skipped, and then the receiver NAKs.
                    key: config.key.as_deref().and_then(|k| AesKey::from_hex(k).ok()),
                    paths: addresses.iter().map(|_| PathState::default()).collect(),
                    addresses,
                    config: config.clone(),
                    delivered: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    supervision_acks: AtomicU64::new(0),
                    last_error: parking_lot::Mutex::new(None),
                    latencies: parking_lot::Mutex::new(Default::default()),
                }
            })
            .collect();
        Arc::new(Transmitter {
            receivers,
            store,
            max_outbox: settings.max_outbox,
            depth_per_org: Default::default(),
            dropped: AtomicU64::new(0),
            wake: Notify::new(),
        })
    }

    /// The outbox records for `event` of `alert` (the `index`-th of its history), one per
    /// receiver that takes it, to be written with the alert change: the alarm when the alert
    /// reaches the receiver's `min_level` (raised at level 1, escalated to 2 or 3), its
    /// restoral on `alert.resolved` if the alarm went. Each is `(record id, encoded)`.
    pub fn outbox(
        &self,
        event: &str,
        alert: &Alert,
        index: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if !matches!(
            event,
            "alert.created" | "alert.escalated" | "alert.resolved"
        ) {
            return Ok(Vec::new());
        }
        let restore = event == "alert.resolved";
        let mut out = Vec::new();
        let waiting = self
            .depth_per_org
            .lock()
            .get(&alert.org)
            .copied()
            .unwrap_or(0) as usize;
        let kind_name = serde_json::to_value(alert.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // The level before this change (its audit entry is the last).
        let before = alert
            .audit
            .iter()
            .rev()
            .nth(1)
            .map_or(0, |entry| entry.level);
        for r in &self.receivers {
            let c = &r.config;
            if !c.types.is_empty() && !c.types.contains(&kind_name) {
                continue;
            }
            if c.min_priority.as_deref() == Some("CRITICAL") && alert.priority != Priority::Critical
            {
                continue;
            }
            let level = c.min_level.unwrap_or(1);
            let goes = match event {
                "alert.created" => alert.level >= level,
                // The change that took it to the level or past it (a restart may fire two
                // escalations at once): the alarm goes once.
                "alert.escalated" => alert.level >= level && before < level,
                _ => alert.level >= level,
            };
            if !goes {
                continue;
            }
            let Some(account) = c.account_of(&alert.org, alert.site.as_deref()) else {
                continue;
            };
            if waiting + out.len() >= self.max_outbox {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(alert = %alert.id, org = %alert.org, receiver = %c.name, "arc.max_outbox reached for the org: an alarm to the ARC is dropped");
                continue;
            }
            let entry = Entry {
                receiver: c.name.clone(),
                org: alert.org.clone(),
                alert: alert.id.clone(),
                index: u32::try_from(index).unwrap_or(u32::MAX),
                at: alert.updated_at,
                kind: alert.kind,
                restore,
                account,
                user: alert.user.clone(),
                position: alert.position.map(|p| (p.lat, p.lon)),
                refusals: 0,
                dead: false,
            };
            out.push((entry.id(), crate::store::records::encode(&entry)?));
        }
        Ok(out)
    }

    /// Records the outbox writes made with an alert change of `org` (after its commit) and
    /// wakes the deliverers.
    pub fn written(&self, org: &str, records: usize) {
        if records > 0 {
            *self
                .depth_per_org
                .lock()
                .entry(org.to_string())
                .or_default() += records as u64;
            self.wake.notify_waiters();
        }
    }

    /// Alarms waiting, all receivers together.
    pub fn depth(&self) -> u64 {
        self.depth_per_org.lock().values().sum()
    }

    /// Whether any receiver is configured.
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    async fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        let mut entries: Vec<Entry> = self.store.load_all(Records::ArcOutbox).await?;
        entries.sort_by(|a, b| (a.at, &a.alert, a.index).cmp(&(b.at, &b.alert, b.index)));
        Ok(entries)
    }

    fn counted(&self, all: &[Entry]) {
        let mut per_org = HashMap::new();
        for e in all {
            *per_org.entry(e.org.clone()).or_default() += 1;
        }
        *self.depth_per_org.lock() = per_org;
    }

    /// Each receiver's state, with what waits for it now (of `org` only, when given).
    pub async fn status(&self, org: Option<&str>) -> Result<Vec<ReceiverStatus>, StoreError> {
        let mut entries = self.entries().await?;
        if let Some(org) = org {
            entries.retain(|e| e.org == org);
        }
        Ok(self
            .receivers
            .iter()
            .map(|r| {
                let mine = entries.iter().filter(|e| e.receiver == r.config.name);
                let (dead, pending): (Vec<&Entry>, Vec<&Entry>) = mine.partition(|e| e.dead);
                self.receiver_status(r, pending.len(), dead.len())
            })
            .collect())
    }

    /// Each receiver's state without reading the store (for `/readyz` and `/metrics`).
    pub fn links(&self) -> Vec<ReceiverStatus> {
        self.receivers
            .iter()
            .map(|r| self.receiver_status(r, 0, 0))
            .collect()
    }

    fn receiver_status(&self, r: &Receiver, pending: usize, dead: usize) -> ReceiverStatus {
        let paths: Vec<PathStatus> = r
            .addresses
            .iter()
            .zip(&r.paths)
            .enumerate()
            .map(|(i, (address, p))| PathStatus {
                role: if i == 0 { "primary" } else { "backup" },
                address: address.clone(),
                state: match (
                    p.tried.load(Ordering::Relaxed),
                    p.up.load(Ordering::Relaxed),
                ) {
                    (false, _) => "unknown",
                    (true, true) => "up",
                    (true, false) => "down",
                },
                last_ack: Some(p.last_ack.load(Ordering::Relaxed)).filter(|t| *t > 0),
            })
            .collect();
        let latency_ms = {
            let l = r.latencies.lock();
            if l.is_empty() {
                None
            } else {
                let mut v: Vec<u64> = l.iter().copied().collect();
                v.sort_unstable();
                let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
                Some((at(0.5), at(0.99)))
            }
        };
        ReceiverStatus {
            name: r.config.name.clone(),
            format: match r.config.format {
                ArcFormat::SiaDcs => "SIA-DCS",
                ArcFormat::AdmCid => "ADM-CID",
            },
            encrypted: r.key.is_some(),
            up: paths.iter().any(|p| p.state == "up"),
            paths,
            pending,
            dead_letters: dead,
            delivered: r.delivered.load(Ordering::Relaxed),
            failures: r.failures.load(Ordering::Relaxed),
            supervision_acks: r.supervision_acks.load(Ordering::Relaxed),
            last_error: r.last_error.lock().clone(),
            latency_ms,
        }
    }

    /// Delivers until `stop`: one deliverer per receiver.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        // Alarms for a receiver no longer configured wait for it to be configured again (they
        // still count against their org's budget): said once, at start.
        if let Ok(all) = self.entries().await {
            let orphans = all
                .iter()
                .filter(|e| !self.receivers.iter().any(|r| r.config.name == e.receiver))
                .count();
            if orphans > 0 {
                tracing::error!(orphans, "alarms wait in the ARC outbox for a receiver no longer configured (arc.receivers: its name)");
            }
        }
        let mut deliverers = tokio::task::JoinSet::new();
        for i in 0..self.receivers.len() {
            deliverers.spawn(self.clone().deliver(i, stop.clone()));
        }
        while deliverers.join_next().await.is_some() {}
    }

    async fn holds_lease(&self, r: &Receiver) -> bool {
        let Some(cluster) = self.store.cluster() else {
            return true;
        };
        match cluster
            .lease(&format!("arc:{}", r.config.name), LEASE)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "taking the ARC delivery lease");
                false
            }
        }
    }

    async fn deliver(self: Arc<Self>, i: usize, stop: CancellationToken) {
        let r = &self.receivers[i];
        let mut session = Session {
            paths: r
                .addresses
                .iter()
                .map(|a| Path::new(a.clone(), r.config.transport))
                .collect(),
            // A restart does not start again at 1: a receiver may take a repeated sequence
            // number for a retransmission.
            seq: rand::random_range(1..=9999u16),
            offset: 0,
            last_sent: r.addresses.iter().map(|_| Instant::now()).collect(),
        };
        let supervision = r.config.supervision;
        let mut backoff = BACKOFF.0;
        let mut next_try = Instant::now();
        // Supervision starts at once: the dashboard knows the link's state from the start.
        let mut supervised_once = vec![false; r.addresses.len()];
        loop {
            let wake = self.wake.notified();
            let pending: Vec<Entry> = match self.entries().await {
                Ok(all) => {
                    self.counted(&all);
                    all.into_iter()
                        .filter(|e| e.receiver == r.config.name && !e.dead)
                        .collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the ARC outbox");
                    Vec::new()
                }
            };
            let now = Instant::now();
            let leased = self.holds_lease(r).await;
            if leased && !pending.is_empty() && now >= next_try {
                for (n, entry) in pending.iter().enumerate() {
                    if stop.is_cancelled() {
                        return;
                    }
                    // Renewed before each message after the first: a long run never outlasts
                    // the lease (two nodes sending would double and reorder alarms).
                    if n > 0 && !self.holds_lease(r).await {
                        break;
                    }
                    // Stopping does not wait for an answer: the record stays, and the message
                    // goes again after the restart.
                    let sent = tokio::select! {
                        sent = self.send_alarm(r, &mut session, entry) => sent,
                        _ = stop.cancelled() => return,
                    };
                    match sent {
                        Ok(()) => {
                            backoff = BACKOFF.0;
                        }
                        Err(Failure::Refused) => {
                            // A dead letter no longer holds the ones after it; until then the
                            // order is kept and it goes again soon.
                            if !self.refused(r, entry).await {
                                next_try = Instant::now() + BACKOFF.0;
                                break;
                            }
                        }
                        Err(Failure::Retry(e)) => {
                            tracing::warn!(receiver = %r.config.name, alert = %entry.alert, error = %e, "alarm to the ARC not acknowledged; retrying");
                            next_try = Instant::now() + backoff;
                            backoff = (backoff * 2).min(BACKOFF.1);
                            break;
                        }
                    }
                }
            } else if leased && !supervision.is_zero() {
                for (p, once) in supervised_once.iter_mut().enumerate() {
                    let due = !*once || session.last_sent[p].elapsed() >= supervision;
                    if due {
                        *once = true;
                        tokio::select! {
                            _ = self.supervise(r, &mut session, p) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
            let mut wait = POLL;
            if !pending.is_empty() {
                wait = wait.min(next_try.saturating_duration_since(Instant::now()));
            }
            if !supervision.is_zero() {
                for sent in &session.last_sent {
                    wait = wait.min(supervision.saturating_sub(sent.elapsed()));
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            }
        }
    }

    /// The order in which to try the paths: the primary first unless it failed lately and
    /// was not acknowledged since.
    fn path_order(r: &Receiver) -> Vec<usize> {
        let mut order: Vec<usize> = (0..r.addresses.len()).collect();
        if order.len() > 1 {
            let p = &r.paths[0];
            let failed = p.last_failure.load(Ordering::Relaxed);
            let recent = now_millis().saturating_sub(failed) < PRIMARY_RETRY.as_millis() as u64;
            if p.tried.load(Ordering::Relaxed) && !p.up.load(Ordering::Relaxed) && recent {
                order.rotate_left(1);
            }
        }
        order
    }

    async fn send_alarm(
        &self,
        r: &Receiver,
        session: &mut Session,
        entry: &Entry,
    ) -> Result<(), Failure> {
        let sia = r.config.format == ArcFormat::SiaDcs;
        let data = codes::data(sia, &entry.account, entry.kind, entry.restore);
        let mut xdata: Vec<(char, String)> = Vec::new();
        if let Some([x, y]) = entry
            .position
            .and_then(|(lat, lon)| codes::position(lat, lon))
        {
            xdata.push(x);
            xdata.push(y);
        }
        let text = alarm_text(&entry.user);
        if !text.is_empty() {
            xdata.push(('I', text));
        }
        let token = if sia { Token::SiaDcs } else { Token::AdmCid };
        let seq = session.next_seq();
        let mut refused = 0;
        let mut last = String::from("no path");
        for p in Self::path_order(r) {
            match self
                .exchange(r, session, p, token, seq, &entry.account, &data, &xdata)
                .await
            {
                Ok(()) => {
                    let latency = now_millis().saturating_sub(entry.at);
                    let id = entry.id();
                    if let Err(e) = self
                        .store
                        .commit(&[Change::Delete(Record::ArcOutbox { id: &id })])
                        .await
                    {
                        // Sent again after a restart: at least once.
                        tracing::warn!(error = %e, "removing an acknowledged ARC alarm");
                    }
                    if let Some(n) = self.depth_per_org.lock().get_mut(&entry.org) {
                        *n = n.saturating_sub(1);
                    }
                    r.delivered.fetch_add(1, Ordering::Relaxed);
                    *r.last_error.lock() = None;
                    let mut l = r.latencies.lock();
                    if l.len() >= LATENCIES {
                        l.pop_front();
                    }
                    l.push_back(latency);
                    drop(l);
                    tracing::info!(receiver = %r.config.name, path = p, alert = %entry.alert, restore = entry.restore, latency_ms = latency, "alarm acknowledged by the ARC");
                    return Ok(());
                }
                Err(Failure::Refused) => {
                    refused += 1;
                    last = "DUH".into();
                }
                Err(Failure::Retry(e)) => last = e,
            }
        }
        r.failures.fetch_add(1, Ordering::Relaxed);
        *r.last_error.lock() = Some(last.clone());
        if refused > 0 && refused == r.addresses.len() {
            Err(Failure::Refused)
        } else {
            Err(Failure::Retry(last))
        }
    }

    /// A `NULL` message on path `p`: marks it up or down.
    async fn supervise(&self, r: &Receiver, session: &mut Session, p: usize) {
        let account = r
            .config
            .account
            .clone()
            .or_else(|| r.config.accounts.values().next().cloned())
            .unwrap_or_else(|| "000".into())
            .to_ascii_uppercase();
        let seq = session.next_seq();
        match self
            .exchange(r, session, p, Token::Null, seq, &account, "", &[])
            .await
        {
            Ok(()) => {
                r.supervision_acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(receiver = %r.config.name, path = %r.addresses[p], error = %e, "ARC link supervision failed");
                *r.last_error.lock() = Some(e.to_string());
            }
        }
    }

    /// One message on path `p` until its ACK: a NAK with the receiver's time sets the clock
    /// offset and the message goes again once, with the same sequence number.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        r: &Receiver,
        session: &mut Session,
        p: usize,
        token: Token,
        seq: u16,
        account: &str,
        data: &str,
        xdata: &[(char, String)],
    ) -> Result<(), Failure> {
        let state = &r.paths[p];
        state.tried.store(true, Ordering::Relaxed);
        let mut result = Err(Failure::Retry("not sent".into()));
        for _attempt in 0..2 {
            let at = now_secs_i64().saturating_add(session.offset);
            let message = Message {
                token,
                seq,
                receiver: r.config.receiver_number.as_deref(),
                line: &r.config.line_number,
                account,
                data,
                xdata,
                at,
            };
            let frame = match dc09::encode(&message, r.key.as_ref(), &mut rand::random::<u8>) {
                Ok(frame) => frame,
                Err(e) => {
                    result = Err(Failure::Retry(e.to_string()));
                    break;
                }
            };
            session.last_sent[p] = Instant::now();
            let reply = session.paths[p]
                .exchange(&frame, r.config.ack_timeout)
                .await;
            result = match reply {
                Err(e) => {
                    state.up.store(false, Ordering::Relaxed);
                    state.last_failure.store(now_millis(), Ordering::Relaxed);
                    Err(Failure::Retry(format!("{}: {e}", r.addresses[p])))
                }
                Ok(bytes) => match dc09::decode_reply(&bytes, r.key.as_ref()) {
                    Ok(ReceiverReply::Ack { seq: acked, at }) if acked == seq => {
                        let now = now_secs_i64().saturating_add(session.offset);
                        match at {
                            Some(t) if r.key.is_some() && (t - now).abs() > ACK_WINDOW => {
                                Err(Failure::Retry(format!(
                                    "{}: acknowledgement timestamp out of window",
                                    r.addresses[p]
                                )))
                            }
                            _ => {
                                state.up.store(true, Ordering::Relaxed);
                                state.last_ack.store(now_millis(), Ordering::Relaxed);
                                return Ok(());
                            }
                        }
                    }
                    Ok(ReceiverReply::Ack { .. }) => Err(Failure::Retry(format!(
                        "{}: acknowledgement of another sequence number",
                        r.addresses[p]
                    ))),
                    Ok(ReceiverReply::Nak { at: Some(t) }) => {
                        // The receiver's clock: this transmitter's timestamps follow it.
                        let offset = t - now_secs_i64();
                        let retry = (offset - session.offset).abs() > 2;
                        session.offset = offset;
                        // The receiver answers: the path is up, the message was refused.
                        state.up.store(true, Ordering::Relaxed);
                        let e = Err(Failure::Retry(format!("{}: NAK", r.addresses[p])));
                        if retry {
                            result = e;
                            continue;
                        }
                        e
                    }
                    Ok(ReceiverReply::Nak { at: None }) => {
                        state.up.store(true, Ordering::Relaxed);
                        Err(Failure::Retry(format!("{}: NAK", r.addresses[p])))
                    }
                    Ok(ReceiverReply::Duh { .. }) => {
                        state.up.store(true, Ordering::Relaxed);
                        Err(Failure::Refused)
                    }
                    Err(e) => {
                        // Something answered that is not a DC-09 receiver's reply to this key.
                        session.paths[p].reset();
                        Err(Failure::Retry(format!("{}: {e}", r.addresses[p])))
                    }
                },
            };
            break;
        }
        result
    }

    /// Counts a `DUH` from every path; after [`MAX_REFUSALS`] the alarm is a dead letter
    /// (true).
    async fn refused(&self, r: &Receiver, entry: &Entry) -> bool {
        let mut entry = entry.clone();
        entry.refusals += 1;
        entry.dead = entry.refusals >= MAX_REFUSALS;
        let id = entry.id();
        let written = match Change::put(Record::ArcOutbox { id: &id }, &entry) {
            Ok(change) => self.store.commit(&[change]).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "counting an ARC refusal");
            return false;
        }
        if entry.dead {
            tracing::error!(receiver = %r.config.name, alert = %entry.alert, "the ARC refused an alarm {MAX_REFUSALS} times (DUH): kept as a dead letter");
        }
        entry.dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_text_is_safe() {
        assert_eq!(alarm_text("guard-7"), "guard-7");
        assert_eq!(alarm_text("a]b[c|d_e"), "abcde");
        assert_eq!(alarm_text(&"x".repeat(100)).len(), 64);
    }
}
