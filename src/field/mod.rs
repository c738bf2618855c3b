//! Field operations: what a publish means on the domain channels, and the records around them.
//!
//! Every publish from a socket or REST comes through [`Field::publish`]:
//! - `/topic/location/{user}`: validated, logged, kept as the user's last known position, fanned
//!   in to `/topic/org/{org}/locations`, then checked against the org's geofences — a crossing
//!   into violation raises a GEOFENCE alert, a return resolves it;
//! - `/topic/video/{user}`: a frame is validated (codec, keyframe, ts, bytes ≤ the limit);
//! - `/topic/emergency/{user}`: logged and turned into an alert;
//! - everything else goes to the hub unchanged.
//!
//! This module holds the rules of the field domain; geometry is in [`crate::geofence`], alert
//! life cycles in [`crate::alerts`], delivery in [`crate::hub`].
//!
//! # Layout
//! One file per concern, each adding its operations to [`Field`] (`impl Field` blocks):
//! `publish.rs` (the way in) on top; `location.rs`, `video.rs`, `emergency.rs`, `fences.rs`,
//! `shifts.rs`, `history.rs`, `stats.rs` below it, and `welfare.rs` (check-ins, duress, lost
//! contact) beside them; `service.rs` (the service's state and
//! shared access rules) below them; `records.rs` (fences and shifts as kept) and `error.rs` at
//! the bottom. A file imports only files below it; this file only declares and re-exports.

mod contact;
mod duress;
mod emergency;
mod error;
mod fences;
mod history;
mod location;
mod publish;
mod records;
mod service;
mod shifts;
mod stats;
mod video;
mod welfare;

pub use self::duress::{PinEntry, PinSpec};
pub use self::error::FieldError;
pub use self::location::{LastLocation, Location};
pub use self::records::{
    Fence, FenceSpec, FenceState, GuardWelfare, PinHash, Shift, ShiftSpec, WelfareSettings,
};
pub(crate) use self::service::derived_id;
pub use self::service::{Field, FieldConfig, FieldPublished, WelfareStats};
pub use self::stats::TrackingStats;
pub use self::welfare::Scope;
