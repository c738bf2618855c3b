//! In-memory store: seqs, bounded logs and the directory, lost on restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Remembered, Replay, Store, StoreError, StoredMessage};
use crate::hub::channel::Directory;

#[derive(Default)]
struct Log {
    head: u64,
    messages: VecDeque<Arc<StoredMessage>>,
}

/// Keeps at most `history` messages per channel.
pub struct MemoryStore {
    epoch: String,
    history: usize,
    // One lock per map: every operation is a short, non-blocking critical section.
    logs: Mutex<HashMap<String, Log>>,
    users: Mutex<HashMap<String, Arc<str>>>,
    jobs: Mutex<HashMap<String, Arc<str>>>,
}

impl MemoryStore {
    /// A store with a fresh random epoch that keeps `history` messages per channel.
    pub fn new(history: usize) -> Self {
        MemoryStore {
            epoch: hex::encode(rand::random::<[u8; 8]>()),
            history,
            logs: Mutex::default(),
            users: Mutex::default(),
            jobs: Mutex::default(),
        }
    }
}

impl Directory for MemoryStore {
    fn user_org(&self, user: &str) -> Option<Arc<str>> {
        self.users.lock().get(user).cloned()
    }
    fn job_owner(&self, job: &str) -> Option<Arc<str>> {
        self.jobs.lock().get(job).cloned()
    }
}

impl Store for MemoryStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn append(
        &self,
        channel: &str,
        logged: bool,
        timestamp: u64,
        data: rmpv::Value,
        ack_required: bool,
    ) -> Result<Arc<StoredMessage>, StoreError> {
        let mut logs = self.logs.lock();
        let log = logs.entry(channel.to_string()).or_default();
        log.head += 1;
        let msg = Arc::new(StoredMessage {
            seq: log.head,
            timestamp,
            data,
            ack_required,
        });
        if logged && self.history > 0 {
            if log.messages.len() == self.history {
                log.messages.pop_front();
            }
            log.messages.push_back(msg.clone());
        }
        Ok(msg)
    }

    fn head(&self, channel: &str) -> u64 {
        self.logs.lock().get(channel).map_or(0, |l| l.head)
    }

    fn read_after(&self, channel: &str, since: u64, limit: usize) -> Result<Replay, StoreError> {
        let logs = self.logs.lock();
        let Some(log) = logs.get(channel) else {
            return Ok(Replay {
                messages: Vec::new(),
                complete: since == 0,
                head: 0,
            });
        };
        let first_kept = log.messages.front().map_or(log.head + 1, |m| m.seq);
        let messages: Vec<_> = log
            .messages
            .iter()
            .filter(|m| m.seq > since)
            .take(limit)
            .cloned()
            .collect();
        let complete = since >= log.head
            || (since + 1 >= first_kept && messages.last().is_some_and(|m| m.seq == log.head));
        Ok(Replay {
            messages,
            complete,
            head: log.head,
        })
    }

    fn remember_user(&self, user: &str, org: &str) -> Result<Remembered, StoreError> {
        let mut users = self.users.lock();
        match users.get(user) {
            Some(known) if &**known != org => Ok(Remembered::Conflict(known.clone())),
            Some(_) => Ok(Remembered::Same),
            None => {
                users.insert(user.to_string(), Arc::from(org));
                Ok(Remembered::Same)
            }
        }
    }

    fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>, StoreError> {
        Ok(self
            .jobs
            .lock()
            .entry(job.to_string())
            .or_insert_with(|| Arc::from(owner))
            .clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_start_at_one_without_gaps_and_replay_says_when_trimmed() {
        let s = MemoryStore::new(3);
        for i in 1..=5u64 {
            let m = s
                .append("/topic/system", true, 0, rmpv::Value::from(i), false)
                .expect("append");
            assert_eq!(m.seq, i);
        }
        let r = s.read_after("/topic/system", 2, 100).expect("read");
        assert_eq!(
            r.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(r.complete);
        let r = s.read_after("/topic/system", 1, 100).expect("read");
        assert!(!r.complete, "seq 2 was trimmed");
        let r = s.read_after("/topic/system", 5, 100).expect("read");
        assert!(r.complete && r.messages.is_empty());
    }
}
