//! Alert notifications out: webhooks (`[[notify.webhooks]]`) fed from a durable outbox.
//!
//! An alert change puts one outbox record per webhook that asked for its event in the same
//! atomic write as the alert itself ([`Hooks::outbox`]), so a crash between the change and the
//! delivery loses nothing. One deliverer per webhook POSTs the records in order, signed with
//! the webhook's secret (`X-Lookout-Signature: sha256=<HMAC of the body>`), retries with
//! backoff until a 2xx, and only then deletes the record: at least once, in order per alert.
//! A notification the receiver refuses ([`MAX_REJECTIONS`] 4xx answers) becomes a dead letter:
//! kept (the newest [`MAX_DEAD`] per webhook and org), shown in the status, and no longer in
//! the way of the ones after it. Each org's waiting notifications have a budget of their own
//! (`notify.max_outbox`): one org's alert flood never drops another org's notifications.
//!
//! A receiver's URL is never logged or shown with its query or credentials, where tokens live.
//!
//! In cluster mode the outbox is shared and one node at a time delivers each webhook's, under
//! a lease in the store's cluster engine.
//!
//! Knows nothing of alerts beyond an event's name, level, alert id and order: the caller gives
//! the JSON body. Reaches durable state only through the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{NotifySettings, Webhook};
use crate::store::{Change, Record, Records, Store, StoreError};

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry backoff: from the first to the longest wait.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// How often a deliverer looks at the outbox without being woken.
const POLL: Duration = Duration::from_secs(1);
/// In cluster mode one node delivers a webhook's outbox at a time, under a lease this long
/// (renewed at every look, so it lapses only when the node stops looking).
const LEASE: Duration = Duration::from_secs(15);
/// 4xx answers (other than 408 and 429) after which a notification is a dead letter.
pub const MAX_REJECTIONS: u32 = 5;
/// Dead letters kept per webhook and org; beyond, the oldest are removed.
pub const MAX_DEAD: usize = 1000;

/// A notification waiting for its webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The webhook's tag (a hash of its URL): entries of a webhook no longer configured stay
    /// until it is configured again.
    hook: String,
    /// `alert.created`, …
    event: String,
    /// Unique per event: `<alert id>.<its audit entry>`; receivers dedupe by it.
    event_id: String,
    alert: String,
    /// The event's place in its alert's history: the order of delivery.
    index: u32,
    /// When the change was made, ms since the Unix epoch.
    at: u64,
    /// The JSON body, as signed.
    body: String,
    /// The alert's org, whose outbox budget the entry uses.
    #[serde(default)]
    org: String,
    /// 4xx answers so far.
    #[serde(default)]
    rejections: u32,
    /// Refused for good: kept, not delivered.
    #[serde(default)]
    dead: bool,
}

impl Entry {
    fn id(&self) -> String {
        format!(
            "{}-{:013}-{}-{:05}",
            self.hook, self.at, self.alert, self.index
        )
    }
}

/// What `GET /api/v1/notify/status` says of one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct HookStatus {
    /// Scheme, host and path of the URL (no credentials, no query).
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// Notifications waiting for it.
    pub pending: usize,
    /// Delivered since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Notifications the receiver refused for good, kept.
    pub dead_letters: usize,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

struct Hook {
    config: Webhook,
    tag: String,
    key: hmac::Key,
    delivered: AtomicU64,
    failures: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
}

/// The configured webhooks and their outbox.
pub struct Hooks {
    hooks: Vec<Hook>,
    store: Arc<dyn Store>,
    max_outbox: usize,
    /// Records waiting in the outbox, per org (the budget is each org's): as of the
    /// deliverers' last look, plus what was written and less what was delivered since.
    depth_per_org: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
    /// Notifications not written because the outbox was full.
    pub dropped: AtomicU64,
    wake: Notify,
    client: Result<reqwest::Client, String>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("webhooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// The webhooks of `settings`, writing their outbox to `store`.
    pub fn new(settings: &NotifySettings, store: Arc<dyn Store>) -> Arc<Hooks> {
        let hooks = settings
            .webhooks
            .iter()
            .map(|config| Hook {
                tag: tag(&config.url),
                key: hmac::Key::new(hmac::HMAC_SHA256, config.secret.as_bytes()),
                config: config.clone(),
                delivered: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                last_error: parking_lot::Mutex::new(None),
            })
            .collect();
        // A client that cannot be built (no usable TLS roots) fails every POST, which the
        // status and the metrics show; the alert path never depends on it.
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("no HTTP client: {e}"));
        Arc::new(Hooks {
            hooks,
            store,
            max_outbox: settings.max_outbox,
            depth_per_org: Default::default(),
            dropped: AtomicU64::new(0),
            wake: Notify::new(),
            client,
        })
    }

    /// The outbox records for `event` of alert `alert` of `org` (at `level`, the `index`-th
    /// event of its history), one per webhook that asked for it, to be written with the alert
    /// change; each is `(record id, encoded record)`. `alert_json` is the alert as the body
    /// carries it.
    #[allow(clippy::too_many_arguments)]
    pub fn outbox(
        &self,
        org: &str,
        event: &str,
        level: u8,
        alert: &str,
        index: usize,
        at: u64,
        alert_json: &serde_json::Value,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        let event_id = format!("{alert}.{index}");
        let waiting = self.depth_per_org.lock().get(org).copied().unwrap_or(0) as usize;
        for hook in &self.hooks {
            if !hook.config.events.iter().any(|e| e == event)
                || hook.config.min_level.is_some_and(|min| level < min)
            {
                continue;
            }
            if waiting + out.len() >= self.max_outbox {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%alert, org, event, "notify.max_outbox reached for the org: a webhook notification is dropped");
                continue;
            }
            let body = serde_json::json!({
                "id": event_id,
                "event": event,
                "at": at,
                "alert": alert_json,
            })
            .to_string();
            let entry = Entry {
                hook: hook.tag.clone(),
                event: event.to_string(),
                event_id: event_id.clone(),
                alert: alert.to_string(),
                index: u32::try_from(index).unwrap_or(u32::MAX),
                at,
                body,
                org: org.to_string(),
                rejections: 0,
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

    /// Sets the depths from what the outbox holds (dead letters wait for nobody).
    fn counted(&self, all: &[Entry]) {
        let mut per_org = std::collections::HashMap::new();
        for e in all.iter().filter(|e| !e.dead) {
            *per_org.entry(e.org.clone()).or_default() += 1;
        }
        *self.depth_per_org.lock() = per_org;
    }

    /// Notifications waiting, all webhooks together.
    pub fn depth(&self) -> u64 {
        self.depth_per_org.lock().values().sum()
    }

    /// Failed attempts and deliveries since start, all webhooks together.
    pub fn totals(&self) -> (u64, u64) {
        self.hooks.iter().fold((0, 0), |(d, f), h| {
            (
                d + h.delivered.load(Ordering::Relaxed),
                f + h.failures.load(Ordering::Relaxed),
            )
        })
    }

    /// Each webhook's state, with what waits for it now.
    pub async fn status(&self) -> Result<Vec<HookStatus>, StoreError> {
        let entries = self.entries().await?;
        Ok(self
            .hooks
            .iter()
            .map(|h| HookStatus {
                url: shown_url(&h.config.url),
                events: h.config.events.clone(),
                pending: entries
                    .iter()
                    .filter(|e| e.hook == h.tag && !e.dead)
                    .count(),
                delivered: h.delivered.load(Ordering::Relaxed),
                failures: h.failures.load(Ordering::Relaxed),
                dead_letters: entries.iter().filter(|e| e.hook == h.tag && e.dead).count(),
                last_error: h.last_error.lock().clone(),
            })
            .collect())
    }

    /// Delivers until `stop`: one deliverer per webhook.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.hooks.is_empty() {
            return;
        }
        // Each deliverer's first look at the outbox sets the depth.
        let mut deliverers = tokio::task::JoinSet::new();
        for i in 0..self.hooks.len() {
            deliverers.spawn(self.clone().deliver(i, stop.clone()));
        }
        while deliverers.join_next().await.is_some() {}
    }

    async fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        let mut entries: Vec<Entry> = self.store.load_all(Records::Outbox).await?;
        entries.sort_by(|a, b| (a.at, &a.alert, a.index).cmp(&(b.at, &b.alert, b.index)));
        Ok(entries)
    }

    async fn deliver(self: Arc<Self>, i: usize, stop: CancellationToken) {
        let hook = &self.hooks[i];
        // Per org: when its next attempt may be made, and the wait after another failure. One
        // org's failing notifications back off alone; the others' go out as they come.
        let mut backoff: std::collections::HashMap<String, (tokio::time::Instant, Duration)> =
            std::collections::HashMap::new();
        loop {
            let wake = self.wake.notified();
            let pending: Vec<Entry> = match self.entries().await {
                Ok(all) => {
                    // What the outbox holds (in a cluster: every node's writes).
                    self.counted(&all);
                    let (dead, waiting): (Vec<Entry>, Vec<Entry>) = all
                        .into_iter()
                        .filter(|e| e.hook == hook.tag)
                        .partition(|e| e.dead);
                    self.forget_oldest_dead(dead).await;
                    waiting
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the notification outbox");
                    Vec::new()
                }
            };
            if !pending.is_empty() && !self.holds_lease(hook).await {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => continue,
                }
            }
            // An org whose notification failed waits until its backoff has passed (its alerts'
            // order is kept); the other orgs' go on: one org's trouble never holds another's.
            let now = tokio::time::Instant::now();
            let mut waiting_orgs: Vec<&str> = Vec::new();
            for entry in &pending {
                let due = backoff.get(&entry.org).is_none_or(|(at, _)| *at <= now);
                if !due || waiting_orgs.contains(&entry.org.as_str()) {
                    continue;
                }
                // Renewed before each POST: a long run never outlasts the lease.
                if stop.is_cancelled() || !self.holds_lease(hook).await {
                    break;
                }
                match self.post(hook, entry).await {
                    Ok(()) => {
                        let id = entry.id();
                        if let Err(e) = self
                            .store
                            .commit(&[Change::Delete(Record::Outbox { id: &id })])
                            .await
                        {
                            // Delivered again after a restart: at least once.
                            tracing::warn!(error = %e, "removing a delivered notification");
                        }
                        if let Some(n) = self.depth_per_org.lock().get_mut(&entry.org) {
                            *n = n.saturating_sub(1);
                        }
                        hook.delivered.fetch_add(1, Ordering::Relaxed);
                        *hook.last_error.lock() = None;
                        backoff.remove(&entry.org);
                    }
                    Err(failure) => {
                        hook.failures.fetch_add(1, Ordering::Relaxed);
                        let e = failure.to_string();
                        if let Failure::Rejected(_) = failure {
                            if self.rejected(entry).await {
                                tracing::warn!(url = %shown_url(&hook.config.url), event = %entry.event_id, error = %e, "webhook refused a notification {MAX_REJECTIONS} times: kept as a dead letter");
                                *hook.last_error.lock() = Some(e);
                                continue;
                            }
                        }
                        tracing::info!(url = %shown_url(&hook.config.url), event = %entry.event_id, error = %e, "webhook delivery failed; retrying");
                        // A refusal is not the receiver being down: tried again soon,
                        // without backing off.
                        let refused = matches!(failure, Failure::Rejected(_));
                        *hook.last_error.lock() = Some(e);
                        waiting_orgs.push(&entry.org);
                        let (_, last) = backoff
                            .get(&entry.org)
                            .copied()
                            .unwrap_or((now, BACKOFF.0 / 2));
                        let wait = if refused {
                            BACKOFF.0
                        } else {
                            (last * 2).min(BACKOFF.1)
                        };
                        backoff.insert(entry.org.clone(), (now + wait, wait));
                    }
                }
            }
            // Orgs no longer waiting for anything are forgotten.
            backoff.retain(|org, _| pending.iter().any(|e| e.org == *org));
            let soonest = backoff.values().map(|(at, _)| *at).min();
            let wait = soonest.map_or(POLL, |at| {
                at.saturating_duration_since(tokio::time::Instant::now())
                    .min(POLL)
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether this node delivers `hook`'s notifications now: always on an appliance; in
    /// cluster mode while it holds the hook's lease (two nodes posting the same outbox would
    /// double every delivery and could reorder them).
    async fn holds_lease(&self, hook: &Hook) -> bool {
        let Some(cluster) = self.store.cluster() else {
            return true;
        };
        match cluster.lease(&format!("notify:{}", hook.tag), LEASE).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "taking the webhook delivery lease");
                false
            }
        }
    }

    /// Counts a 4xx answer to `entry`; true once it made the entry a dead letter.
    async fn rejected(&self, entry: &Entry) -> bool {
        let mut entry = entry.clone();
        entry.rejections += 1;
        entry.dead = entry.rejections >= MAX_REJECTIONS;
        let id = entry.id();
        let written = match Change::put(Record::Outbox { id: &id }, &entry) {
            Ok(change) => self.store.commit(&[change]).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "counting a webhook's refusal");
            return false;
        }
        entry.dead
    }

    /// Removes a webhook's oldest dead letters beyond [`MAX_DEAD`] of each org (`dead` in
    /// outbox order): one org's refused notifications never push out another's.
    async fn forget_oldest_dead(&self, dead: Vec<Entry>) {
        let mut per_org: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for entry in &dead {
            *per_org.entry(&entry.org).or_default() += 1;
        }
        let mut extra: std::collections::HashMap<&str, usize> = per_org
            .into_iter()
            .map(|(org, n)| (org, n.saturating_sub(MAX_DEAD)))
            .collect();
        let oldest = dead.iter().filter(|e| match extra.get_mut(e.org.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        });
        for entry in oldest {
            let id = entry.id();
            if let Err(e) = self
                .store
                .commit(&[Change::Delete(Record::Outbox { id: &id })])
                .await
            {
                tracing::warn!(error = %e, "removing an old dead letter");
                return;
            }
            tracing::warn!(event = %entry.event_id, "an old dead letter was removed (more than {MAX_DEAD})");
        }
    }

    async fn post(&self, hook: &Hook, entry: &Entry) -> Result<(), Failure> {
        let signature = hmac::sign(&hook.key, entry.body.as_bytes());
        let client = self
            .client
            .as_ref()
            .map_err(|e| Failure::Retry(e.clone()))?;
        let response = client
            .post(&hook.config.url)
            .header("content-type", "application/json")
            .header("x-lookout-event", &entry.event)
            .header("x-lookout-delivery", &entry.event_id)
            .header(
                "x-lookout-signature",
                format!("sha256={}", hex::encode(signature.as_ref())),
            )
            .body(entry.body.clone())
            .send()
            .await
            // reqwest's errors name the URL, query and all: never logged or shown.
            .map_err(|e| Failure::Retry(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Rejected(status.as_u16()))
        } else {
            Err(Failure::Retry(format!("answered {status}")))
        }
    }
}

/// Why a POST did not deliver.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Worth trying again (no answer, 5xx, 408, 429).
    #[error("{0}")]
    Retry(String),
    /// The receiver refused this notification (4xx).
    #[error("answered {0}")]
    Rejected(u16),
}

/// A short stable name for a webhook, from its URL.
fn tag(url: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    hex::encode(&digest.as_ref()[..6])
}

/// The URL without credentials or query (which may carry a token).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "(unparsable)".into(),
    }
}
