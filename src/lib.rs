//! Lookout: a self-hosted real-time hub for field teams.
//!
//! Guards' phones and supervisors' dashboards connect over TLS WebSockets with a JWT; services
//! publish over REST; every message lives on a channel named like a STOMP destination.
//!
//! # Layout
//! The data path reads top to bottom: socket → session → hub → channel log → subscribers.
//! - [`transport`]: TCP accept loop, TLS, HTTP/1.1, routing and the WebSocket upgrade.
//! - [`session`]: one WebSocket connection: reader and writer tasks, clocks and limits.
//! - [`stomp`]: STOMP 1.2 frames (and, later, sessions) on the same hub.
//! - [`protocol`]: the native wire protocol (JSON and MessagePack envelopes, error and close codes).
//! - [`hub`]: channels, rights ([`hub::channel`]), subscribers, admission and fan-out.
//! - [`store`]: sequence numbers, message logs and the user directory behind one interface.
//! - [`field`]: what publishes on the domain channels mean: locations, video, emergencies,
//!   fences and shifts.
//! - [`alerts`]: alert records, their life cycle, audit trail and escalation timers.
//! - [`geofence`]: pure geometry of fences.
//! - [`auth`]: JWT verification and minting, identities and roles.
//! - [`api`]: the REST routes.
//! - [`dashboard`]: the supervisor dashboard's files, embedded and served.
//! - [`demo`]: the demo org, fences and supervisor login of `lookout demo`.
//! - [`simulate`]: simulated guards over real WebSocket connections (`lookout demo`/`simulate`).
//! - [`metrics`]: counters for stats.
//! - [`config`]: every setting with its default and documentation.
//! - [`server`]: wiring, start-up and ordered shutdown.
//! - [`systemd`]: readiness, watchdog, reload and stop notifications to the service manager.
//! - [`cli`]: the `lookout` command line.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod field;
pub mod geofence;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod simulate;
pub mod stomp;
pub mod store;
pub mod systemd;
pub mod transport;

pub use config::Config;
pub use server::Server;
