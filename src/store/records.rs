//! The domain records kept beside the channel logs, by typed key, and the changes that write
//! them: what callers name, never how an engine lays it out.
//!
//! Records are MessagePack maps with field names (they have optional fields and will gain new
//! ones); [`encode`]/[`decode`] are the only codec.

use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// A domain record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// An org's fence.
    Fence {
        /// Org.
        org: &'a str,
        /// Fence id.
        id: &'a str,
    },
    /// A user's last known location.
    Location {
        /// User.
        user: &'a str,
    },
    /// Whether a user is in violation of a fence.
    FenceState {
        /// User.
        user: &'a str,
        /// Fence id.
        fence: &'a str,
    },
    /// An alert.
    Alert {
        /// Alert id.
        id: &'a str,
    },
    /// An escalation timer: kept in the due-time index ([`Timer`]).
    Timer {
        /// Due, ms since the Unix epoch.
        due: u64,
        /// Alert id.
        alert: &'a str,
        /// Level it raises the alert to.
        level: u8,
    },
    /// A shift.
    Shift {
        /// Shift id.
        id: &'a str,
    },
    /// An enrolled guard device (the session a guard link opened).
    Device {
        /// Device id (its session token's `jti`).
        id: &'a str,
    },
    /// A one-time sign-in link that was exchanged.
    UsedLink {
        /// The link token's `jti`.
        jti: &'a str,
    },
    /// A notification waiting in the outbox for its webhook.
    Outbox {
        /// Its id (webhook, time, alert, event).
        id: &'a str,
    },
    /// An alarm waiting in the outbox for its alarm receiving centre (`arc`).
    ArcOutbox {
        /// Its id (receiver, time, alert, event).
        id: &'a str,
    },
    /// A member of an org as its tokens have shown it: the roles it holds there.
    Member {
        /// The principal's key (`auth::principal_key`).
        key: &'a str,
    },
    /// Lone-worker safety: an org's welfare settings (`org/{org}`) or a guard's welfare state
    /// (`guard/{principal key}`: check-in deadline, lone work, duress PIN, contact).
    Welfare {
        /// `org/{org}` or `guard/{principal key}`.
        key: &'a str,
    },
    /// Patrols: an org's checkpoints, tours, rounds, scans, incident reports and their photos,
    /// each kind a set of its own (see `crate::patrol`).
    Patrol {
        /// Org (`""` for the set of every org's incident usage, kind `usage`).
        org: &'a str,
        /// What it is: `cp`, `tour`, `round`, `scan`, `key`, `incident`, `photo`, `usage`
        /// (no `\0`).
        kind: &'a str,
        /// Its id within the kind.
        id: &'a str,
    },
}

/// A set of domain records to scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records<'a> {
    /// An org's fences.
    Fences {
        /// Org.
        org: &'a str,
    },
    /// Every last known location.
    Locations,
    /// Every alert.
    Alerts,
    /// Every shift.
    Shifts,
    /// Every enrolled device.
    Devices,
    /// Every notification waiting in the outbox.
    Outbox,
    /// Every alarm waiting for an alarm receiving centre.
    ArcOutbox,
    /// Every welfare record (orgs' settings and guards' states).
    Welfare,
    /// Every patrol record of one kind of an org.
    Patrol {
        /// Org.
        org: &'a str,
        /// Kind.
        kind: &'a str,
    },
}

/// An escalation timer in the due-time index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// Due, ms since the Unix epoch.
    pub due: u64,
    /// Level it raises the alert to.
    pub level: u8,
    /// Alert id.
    pub alert: String,
}

/// One change of a [`super::Store::write`].
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// Store an encoded record.
    Put(Record<'a>, Vec<u8>),
    /// Remove a record.
    Delete(Record<'a>),
}

impl<'a> Change<'a> {
    /// A put of `value`, encoded.
    pub fn put<T: Serialize>(key: Record<'a>, value: &T) -> Result<Self, StoreError> {
        Ok(Change::Put(key, encode(value)?))
    }
}

/// Encodes a record: a map with field names.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|e| StoreError::Codec(e.to_string()))
}

/// Decodes a record.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Codec(e.to_string()))
}

/// A record's key with owned parts, for moving records between engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedRecord {
    /// See [`Record::Fence`].
    Fence {
        /// Org.
        org: String,
        /// Fence id.
        id: String,
    },
    /// See [`Record::Location`].
    Location(String),
    /// See [`Record::FenceState`].
    FenceState {
        /// Guard.
        user: String,
        /// Fence id.
        fence: String,
    },
    /// See [`Record::Alert`].
    Alert(String),
    /// See [`Record::Shift`].
    Shift(String),
    /// See [`Record::UsedLink`].
    UsedLink(String),
    /// See [`Record::Device`].
    Device(String),
    /// See [`Record::Outbox`].
    Outbox(String),
    /// See [`Record::ArcOutbox`].
    ArcOutbox(String),
    /// See [`Record::Member`].
    Member(String),
    /// See [`Record::Welfare`].
    Welfare(String),
    /// See [`Record::Patrol`].
    Patrol {
        /// Org.
        org: String,
        /// Kind.
        kind: String,
        /// Id within the kind.
        id: String,
    },
}

impl OwnedRecord {
    /// The borrowed key callers write with.
    pub fn as_record(&self) -> Record<'_> {
        match self {
            OwnedRecord::Fence { org, id } => Record::Fence { org, id },
            OwnedRecord::Location(user) => Record::Location { user },
            OwnedRecord::FenceState { user, fence } => Record::FenceState { user, fence },
            OwnedRecord::Alert(id) => Record::Alert { id },
            OwnedRecord::Shift(id) => Record::Shift { id },
            OwnedRecord::UsedLink(jti) => Record::UsedLink { jti },
            OwnedRecord::Device(id) => Record::Device { id },
            OwnedRecord::Outbox(id) => Record::Outbox { id },
            OwnedRecord::ArcOutbox(id) => Record::ArcOutbox { id },
            OwnedRecord::Member(key) => Record::Member { key },
            OwnedRecord::Welfare(key) => Record::Welfare { key },
            OwnedRecord::Patrol { org, kind, id } => Record::Patrol { org, kind, id },
        }
    }
}
