//! Positions: guards' location fixes on their way from the readers to the field, processed at
//! the pace the machine allows and never ahead of an emergency.
//!
//! A reader hands a plain fix over and reads on at once: it never waits for a position to be
//! stored, so an emergency behind a stream of fixes is read, stored and fanned out (on the
//! urgent lane) while those fixes still wait. Each guard's location channel has one slot: a fix
//! waits there while the channel's previous one is processed, and a newer fix replaces it; the
//! replaced one is answered `shed` (not stored, not fanned out), just before the fix that
//! replaced it is processed: under overload the readers do no more for a shed fix than put its
//! successor in the slot, and the answers leave together. So when fixes come faster than
//! the server can process them, only each guard's latest is processed, and the work waiting is
//! one fix per guard, whatever the guards send. At most `limits.positions_in_flight` fixes are
//! processed at once, by workers that start when fixes wait and end when none do, on the
//! position lane (`crate::lanes`): at a lower CPU priority than the readers, writers and the
//! urgent lane, so that positions take the CPU those leave and never the other way round.
//!
//! Only plain fixes come here (no idempotency key, no `ack`, no recipient, a frame of at most
//! [`MAX_FIX_BYTES`]), and from each connection for one location channel only (an admin's
//! fixes for others take the ordinary publish path): so the slots are at most one per
//! connection, `limits.max_connections` in all, and hold at most that many small fixes. This
//! module orders and sheds; what a location means is the field's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::field::Field;
use crate::hub::{ConnHandle, Hub, Outbound, Publish};
use crate::protocol::{Reply, ReplyFields, RequestId};

/// The largest frame a fix may be to wait in a slot: what slots hold stays bounded in bytes
/// (a fix with more in it takes the ordinary path).
pub const MAX_FIX_BYTES: usize = 2048;

/// One fix waiting for its turn.
pub struct Fix {
    /// Who sent it, and where its reply goes.
    pub conn: Arc<ConnHandle>,
    /// The request id its reply echoes.
    pub id: Option<RequestId>,
    /// The location channel, as the client named it.
    pub channel: String,
    /// The fix.
    pub data: rmpv::Value,
}

/// The answers one slot defers: beyond, a replaced fix is answered at once.
const DEFERRED: usize = 16;

/// A replaced fix, to be answered `shed`.
struct Shed {
    conn: Arc<ConnHandle>,
    id: Option<RequestId>,
}

/// A guard channel's slot.
#[derive(Default)]
struct Slot {
    /// The newest fix not yet taken by a worker.
    waiting: Option<Fix>,
    /// Fixes it replaced, answered when it is taken (at most [`DEFERRED`]).
    shed: Vec<Shed>,
    /// Whether a worker is processing one of this channel's fixes.
    busy: bool,
}

#[derive(Default)]
struct State {
    /// By publisher and channel.
    slots: HashMap<Arc<str>, Slot>,
    /// Slots with a fix waiting and no worker on them, in the order they filled.
    ready: VecDeque<Arc<str>>,
    /// Workers running.
    workers: usize,
}

/// The position pipeline; see the module doc.
pub struct Positions {
    state: Mutex<State>,
    field: Arc<Field>,
    hub: Arc<Hub>,
    /// Where the workers run.
    lane: tokio::runtime::Handle,
    /// Fixes answered `shed`.
    pub shed: AtomicU64,
    /// Fixes processed (stored, fanned out, checked against fences, or refused by the field).
    pub processed: AtomicU64,
}

impl Positions {
    /// A pipeline in front of `field` (`hub` for the limits in force), its workers on `lane`.
    pub fn new(field: Arc<Field>, hub: Arc<Hub>, lane: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Positions {
            state: Mutex::new(State::default()),
            field,
            hub,
            lane,
            shed: AtomicU64::new(0),
            processed: AtomicU64::new(0),
        })
    }

    /// Fixes waiting now (one per guard channel at most).
    pub fn waiting(&self) -> usize {
        let state = self.state.lock();
        state.ready.len()
    }

    /// Hands `fix` over; never waits. A fix of the same publisher and channel still waiting is
    /// replaced, and given back for [`answer_shed`] when its slot defers [`DEFERRED`] already.
    pub fn hand_over(self: &Arc<Self>, fix: Fix) -> Option<Fix> {
        let limits = self.hub.limits();
        let key: Arc<str> = Arc::from(format!("{}\n{}", fix.conn.identity.key, fix.channel));
        let (replaced, start_worker) = {
            let mut state = self.state.lock();
            let State { slots, ready, .. } = &mut *state;
            let slot = slots.entry(key.clone()).or_default();
            let replaced = match slot.waiting.replace(fix) {
                None => {
                    if !slot.busy {
                        ready.push_back(key);
                    }
                    (None, false)
                }
                Some(old) if slot.shed.len() < DEFERRED => {
                    slot.shed.push(Shed {
                        conn: old.conn,
                        id: old.id,
                    });
                    (None, true)
                }
                Some(old) => (Some(old), true),
            };
            let start = !state.ready.is_empty() && state.workers < limits.positions_in_flight;
            if start {
                state.workers += 1;
            }
            (replaced, start)
        };
        let (replaced, shed) = replaced;
        if shed {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        if start_worker {
            // Tracked with the hub's tasks: shutdown waits for a worker before the last flush,
            // and until it ends it holds the store (the data directory stays locked).
            self.lane
                .spawn(self.hub.tasks().track_future(self.clone().work()));
        }
        replaced
    }

    /// Takes the next waiting fix, or ends the worker when none waits.
    fn next(&self, done: Option<Arc<str>>) -> Option<(Arc<str>, Fix, Vec<Shed>)> {
        let mut state = self.state.lock();
        let State { slots, ready, .. } = &mut *state;
        if let Some(key) = done {
            if let Some(slot) = slots.get_mut(&key) {
                slot.busy = false;
                if slot.waiting.is_some() {
                    // A newer fix came while this one was processed: its turn comes after
                    // the guards already waiting.
                    ready.push_back(key);
                } else {
                    slots.remove(&key);
                }
            }
        }
        while let Some(key) = ready.pop_front() {
            let Some(slot) = slots.get_mut(&key) else {
                continue;
            };
            if let Some(fix) = slot.waiting.take() {
                slot.busy = true;
                return Some((key, fix, std::mem::take(&mut slot.shed)));
            }
        }
        state.workers -= 1;
        None
    }

    async fn work(self: Arc<Self>) {
        let mut done = None;
        while let Some((key, fix, shed)) = self.next(done.take()) {
            for replaced in shed {
                answer(&replaced.conn, replaced.id.as_ref(), &fix.channel).await;
            }
            self.process(fix).await;
            self.processed.fetch_add(1, Ordering::Relaxed);
            done = Some(key);
        }
    }

    async fn process(&self, fix: Fix) {
        let request = Publish {
            channel: &fix.channel,
            to: None,
            owner: None,
            data: fix.data,
            ack_required: false,
            idempotency_key: None,
        };
        let result = self.field.publish(&fix.conn.identity, request).await;
        if let Some(bytes) = super::reply::publish_reply(fix.conn.encoding, fix.id.as_ref(), result)
        {
            let _ = fix.conn.send(Outbound::frame(bytes)).await;
        }
    }
}

/// Tells the client its fix was superseded by a newer one before it was processed.
pub async fn answer_shed(fix: Fix) {
    answer(&fix.conn, fix.id.as_ref(), &fix.channel).await;
}

async fn answer(conn: &ConnHandle, id: Option<&RequestId>, channel: &str) {
    let fields = ReplyFields {
        channel: Some(channel),
        shed: Some(true),
        ..Default::default()
    };
    match conn.encoding.encode(&Reply::new(id, fields)) {
        Ok(bytes) => {
            let _ = conn.send(Outbound::frame(bytes)).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a reply"),
    }
}
