//! Private conversations: the messages a user exchanged with others on `/user/queue/messages`,
//! both ways, in order. A message sent lives in its recipient's queue only; a conversation is
//! read from the caller's queue (what others sent it) and from each peer's queue (what the
//! caller sent there, and nothing else of it), with the peer's delivery cursor as its read
//! state. Everything is within the caller's org: a peer is named without its org and resolves
//! in the caller's, like every user channel.

use serde::Serialize;

use super::error::HubError;
use super::requests::{response_size, HistoryMessage, ResponseBudget};
use super::Hub;
use crate::auth::{principal_key, Identity};
use crate::channel::{self, Target};

/// The queue conversations live on.
pub const MESSAGES: &str = "/user/queue/messages";
/// The newest messages of one queue read at most for one answer: what a conversation shows is
/// the recent past, and a request never walks a long log.
pub const WINDOW: u64 = 1000;
/// The peers read at most when no peer is named (the most recent senders).
pub const MAX_PEERS: usize = 16;
/// The messages one answer carries at most.
pub const MAX_MESSAGES: usize = 1000;

/// One message of a conversation.
#[derive(Debug, Serialize)]
pub struct ConversationMessage {
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// Its seq on the recipient's queue.
    pub seq: u64,
    /// Publish time, ms since the Unix epoch.
    pub timestamp: u64,
    /// Whether the recipient has acknowledged it (its queue's delivery cursor is past it).
    pub read: bool,
    /// The message as published (`from` set by the server).
    #[serde(skip)]
    pub message: HistoryMessage,
}

/// A conversation page: oldest first, the newest `limit` messages.
#[derive(Debug)]
pub struct Conversation {
    /// The messages, oldest first.
    pub messages: Vec<ConversationMessage>,
    /// Whether older messages (or bigger ones) were left out.
    pub truncated: bool,
}

fn sender(data: &rmpv::Value) -> Option<&str> {
    data.as_map()?
        .iter()
        .find_map(|(k, v)| (k.as_str() == Some("from")).then(|| v.as_str()).flatten())
}

/// Newest first (while the page is filled; it is turned oldest first at the end).
fn newest_first(messages: &mut [ConversationMessage]) {
    messages.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(b.seq.cmp(&a.seq)));
}

/// Keeps the newest of `messages` that fit `cap` bytes (at least one); whether any went.
fn keep_newest(messages: &mut Vec<ConversationMessage>, cap: usize) -> bool {
    let held: usize = messages.iter().map(|m| response_size(&m.message)).sum();
    if held <= cap {
        return false;
    }
    newest_first(messages);
    let mut room = cap;
    let fit = messages
        .iter()
        .take_while(|m| {
            let size = response_size(&m.message);
            let fits = size <= room;
            room = room.saturating_sub(size);
            fits
        })
        .count()
        .max(1);
    messages.truncate(fit);
    true
}

impl Hub {
    /// Of the last [`WINDOW`] messages of `user`'s message queue in `org`, the newest that
    /// `keep` accepts and that fit `cap` bytes (older ones are let go while reading, so a
    /// request never holds more than `cap` and a page), oldest first; with that user's cursor
    /// and whether any were left out.
    async fn recent_queue(
        &self,
        org: &str,
        user: &str,
        keep: impl Fn(&HistoryMessage) -> bool,
        cap: usize,
    ) -> Result<(Vec<HistoryMessage>, u64, bool), HubError> {
        let target = Target::parse(MESSAGES, Some(org), Some(user))?;
        let stored = target.stored_name();
        let head = self.durable_head(&stored).await?;
        let mut after = head.saturating_sub(WINDOW);
        let mut older = after > 0;
        let mut out = std::collections::VecDeque::new();
        let mut held = 0usize;
        while after < head {
            let page = self.store.read(&stored, after, head, 64).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for m in page.into_iter().map(HistoryMessage).filter(|m| keep(m)) {
                held = held.saturating_add(response_size(&m));
                out.push_back(m);
                while held > cap && out.len() > 1 {
                    if let Some(oldest) = out.pop_front() {
                        held = held.saturating_sub(response_size(&oldest));
                        older = true;
                    }
                }
            }
        }
        let cursor = self
            .store
            .cursor(&principal_key(Some(org), user), &stored)
            .await?;
        Ok((out.into(), cursor, older))
    }

    /// `who`'s private messages with `with` (or with its most recent correspondents), both
    /// ways, oldest first: the newest `limit` of them that fit `budget`.
    pub async fn conversation(
        &self,
        who: &Identity,
        with: Option<&str>,
        limit: usize,
        budget: &mut ResponseBudget,
    ) -> Result<Conversation, HubError> {
        let org = who.org.as_deref().ok_or_else(|| {
            channel::Denied::BadRequest("conversations are within an org: name one".into())
        })?;
        let me = &*who.user;
        if let Some(peer) = with {
            // A bad name is a bad request before anything is read.
            Target::parse(MESSAGES, Some(org), Some(peer))?;
        }
        // What one answer can carry at most is what any queue read may hold.
        let cap = self.limits().max_response_bytes;
        let (mine, my_cursor, mut truncated) = self
            .recent_queue(
                org,
                me,
                |m| sender(&m.data).is_some_and(|from| with.is_none_or(|p| p == from)),
                cap,
            )
            .await?;
        let mut messages: Vec<ConversationMessage> = Vec::new();
        let mut peers: Vec<String> = Vec::new();
        for m in mine.into_iter().rev() {
            let Some(from) = sender(&m.data).map(str::to_string) else {
                continue;
            };
            if with.is_some_and(|p| p != from) {
                continue;
            }
            if !peers.contains(&from) {
                if peers.len() >= MAX_PEERS {
                    truncated = true;
                    continue;
                }
                peers.push(from.clone());
            }
            messages.push(ConversationMessage {
                from,
                to: me.to_string(),
                seq: m.seq,
                timestamp: m.timestamp,
                read: m.seq <= my_cursor,
                message: m,
            });
        }
        if let Some(peer) = with {
            peers = vec![peer.to_string()];
        }
        for peer in peers.iter().filter(|p| p.as_str() != me) {
            let (theirs, cursor, older) = self
                .recent_queue(org, peer, |m| sender(&m.data) == Some(me), cap)
                .await?;
            truncated |= older;
            for m in theirs {
                messages.push(ConversationMessage {
                    from: me.to_string(),
                    to: peer.clone(),
                    seq: m.seq,
                    timestamp: m.timestamp,
                    read: m.seq <= cursor,
                    message: m,
                });
            }
            // Across peers too, no more than `cap` is held: the newest.
            truncated |= keep_newest(&mut messages, cap);
        }
        newest_first(&mut messages);
        let limit = limit.clamp(1, MAX_MESSAGES);
        if messages.len() > limit {
            messages.truncate(limit);
            truncated = true;
        }
        let mut kept = Vec::with_capacity(messages.len());
        for m in messages {
            if !budget.take(&m.message) {
                truncated = true;
                break;
            }
            kept.push(m);
        }
        kept.reverse();
        Ok(Conversation {
            messages: kept,
            truncated,
        })
    }
}
