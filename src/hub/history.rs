//! Reading a channel's log outside a subscription: history pages and long-poll, with the same
//! rights as subscribe.

use std::time::Duration;

/// How far a server's clock may step back (e.g. corrected by NTP) between two appends.
pub const CLOCK_STEP: Duration = Duration::from_secs(60);

/// How often a long-poll looks at its channels again in cluster mode.
const CLUSTER_POLL: Duration = Duration::from_secs(1);

/// Messages read from the store at once while a page is filled: what a page over its byte
/// budget holds beyond it, at most.
const READ_PAGE: usize = 32;

use super::error::HubError;
use super::facts::Facts;
use super::requests::{History, HistoryMessage, ResponseBudget};
use super::Hub;
use crate::auth::Identity;
use crate::channel::{self, Target};

impl Hub {
    /// Messages on `channel` after `since`, at most `limit` and as many as `budget` has room
    /// for, with the same rights as subscribe.
    pub async fn history(
        &self,
        who: &Identity,
        channel: &str,
        since: u64,
        limit: usize,
        budget: &mut ResponseBudget,
    ) -> Result<History, HubError> {
        let target = self.readable(who, channel).await?;
        let stored = target.stored_name();
        let head = self.durable_head(&stored).await?;
        let mut messages: Vec<HistoryMessage> = Vec::new();
        let mut after = since;
        'pages: while messages.len() < limit && after < head {
            let want = (limit - messages.len()).min(READ_PAGE);
            let page = self.store.read(&stored, after, head, want).await?;
            if page.is_empty() {
                break;
            }
            for m in page {
                if !budget.take(&m) {
                    self.stats.refused(crate::counters::Budget::ResponseBytes);
                    break 'pages;
                }
                after = m.seq;
                messages.push(HistoryMessage(m));
            }
        }
        // Judged by the page itself: retention may trim between reading where the log starts
        // and reading the page, and the answer must describe the messages it carries.
        let recovered = since >= head
            || match messages.first() {
                Some(m) => m.seq == since + 1,
                None => self
                    .store
                    .first_retained(&stored)
                    .await?
                    .is_some_and(|f| f <= since + 1),
            };
        Ok(History {
            channel: target.public_name(),
            epoch: self.store.epoch().to_string(),
            head,
            recovered,
            messages,
        })
    }

    /// A seq of `channel` such that every message stored at or after `timestamp` (server
    /// time, ms) comes after it: where a reader of a time range starts, found by bisection
    /// over the retained log instead of reading it from the start. Server clocks are assumed
    /// to step back by no more than [`CLOCK_STEP`].
    pub async fn seq_before(
        &self,
        who: &Identity,
        channel: &str,
        timestamp: u64,
    ) -> Result<u64, HubError> {
        let target = self.readable(who, channel).await?;
        let stored = target.stored_name();
        let timestamp = timestamp.saturating_sub(CLOCK_STEP.as_millis() as u64);
        let Some(first) = self.store.first_retained(&stored).await? else {
            return Ok(0);
        };
        // Invariant: everything up to `lo` is older than `timestamp`; `hi` is not.
        let (mut lo, mut hi) = (
            first.saturating_sub(1),
            self.durable_head(&stored).await? + 1,
        );
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let older = match self.store.get(&stored, mid).await? {
                Some(m) => m.timestamp < timestamp,
                // Trimmed meanwhile: older than anything retained.
                None => true,
            };
            if older {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Every page of `channel` after `since`, oldest first, passing each message to `each`
    /// until it returns false or the durable head is reached.
    pub async fn walk_history(
        &self,
        who: &Identity,
        channel: &str,
        since: u64,
        page: usize,
        mut each: impl FnMut(&HistoryMessage) -> bool,
    ) -> Result<(), HubError> {
        let mut since = since;
        loop {
            let mut budget = ResponseBudget::unlimited();
            let history = self.history(who, channel, since, page, &mut budget).await?;
            let Some(last) = history.messages.last() else {
                return Ok(());
            };
            since = last.seq;
            for m in &history.messages {
                if !each(m) {
                    return Ok(());
                }
            }
            if since >= history.head {
                return Ok(());
            }
        }
    }

    /// Long-poll: waits up to `wait` until any of `channels` (name, since) has messages, then
    /// returns what each has (at most `limit` per channel, `max_bytes` in all).
    pub async fn poll(
        &self,
        who: &Identity,
        channels: &[(String, u64)],
        wait: Duration,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<History>, HubError> {
        // Each round reads every channel through `history`, which checks the rights: a
        // forbidden channel fails the first round, before any wait.
        let deadline = tokio::time::Instant::now() + wait;
        let mut released = self.released.subscribe();
        loop {
            released.borrow_and_update();
            let mut out = Vec::with_capacity(channels.len());
            let mut budget = ResponseBudget::new(max_bytes);
            for (name, since) in channels {
                out.push(self.history(who, name, *since, limit, &mut budget).await?);
            }
            if out.iter().any(|h| !h.messages.is_empty()) {
                return Ok(out);
            }
            // In cluster mode another node may append to a channel this one does not watch:
            // look again every second.
            let until = match self.store.cluster() {
                Some(_) => deadline.min(tokio::time::Instant::now() + CLUSTER_POLL),
                None => deadline,
            };
            match tokio::time::timeout_at(until, released.changed()).await {
                Ok(Ok(())) => continue,
                Err(_) if until < deadline => continue,
                _ => return Ok(out),
            }
        }
    }

    /// Whether `who` may read `channel` (the same rights as subscribe): a request is refused
    /// before it takes any place of its own.
    pub async fn may_read(&self, who: &Identity, channel: &str) -> Result<(), HubError> {
        self.readable(who, channel).await.map(drop)
    }

    /// The channel `who` names, if it may read it.
    async fn readable(&self, who: &Identity, channel: &str) -> Result<Target, HubError> {
        let target = Target::parse(channel, who.org.as_deref(), Some(&who.user))?;
        let facts = Facts::about(&*self.store, &target).await?;
        channel::can_subscribe(who, &target, &facts)?;
        Ok(target)
    }
}
