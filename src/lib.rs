//! Lookout: a self-hosted real-time hub for field teams.
//!
//! Guards' phones and supervisors' dashboards connect over TLS WebSockets with a JWT; services
//! publish over REST; every message lives on a channel named like a STOMP destination.
//!
//! # Layout
//! The data path reads top to bottom: socket → session → hub → store → subscribers. One
//! publish from a guard's phone, file by file:
//! 1. `transport/mod.rs` accepts the TLS connection and routes the HTTP request;
//!    `transport/upgrade.rs` settles origin, subprotocol and token and admits the connection
//!    (`hub/admission.rs`); `transport/websocket.rs` makes the WebSocket the session's source
//!    and sink.
//! 2. `session/mod.rs` starts the writer (`session/writer.rs`) and runs the protocol's reader:
//!    `session/native.rs` (or `session/stomp/`) decodes the message and calls
//!    `field/publish.rs`, which gives domain channels their meaning (a location's fan-in and
//!    fences, an emergency's alert).
//! 3. `hub/publish.rs` checks the rights table (`channel.rs`, on facts from `hub/facts.rs`),
//!    asks the store for the next seq (`store/interface.rs`, engine `store/sled/engine.rs`),
//!    waits for the group commit (`store/sled/flusher.rs`) and releases the channel's durable
//!    messages in seq order (`hub/registry.rs`) into each subscriber's bounded queue
//!    (`hub/conn.rs`).
//! 4. Each subscriber's `session/writer.rs` renders the delivery once per encoding
//!    (`hub/conn.rs`) and writes it through `transport/websocket.rs`; the publisher's reader
//!    queues its reply the same way.
//!
//! The modules, from the top (a module imports only modules below it):
//! - [`cli`]: the `lookout` command line. [`demo`]: the demo org, its login and its run;
//!   [`simulate`]: simulated guards over real WebSocket connections.
//! - [`server`]: data directory, certificate, listeners, run and ordered shutdown, reloads;
//!   [`systemd`]: readiness, watchdog and stop notifications to the service manager.
//! - [`transport`]: TCP, TLS, HTTP routing, the WebSocket upgrade, SockJS, and the adapters
//!   that make a socket a session's transport.
//! - [`api`]: the REST routes, one table, handlers by concern, and `/metrics`.
//! - [`dashboard`]: the supervisor dashboard's files, embedded and served.
//! - [`app`]: the application's shared state, where the services are wired together.
//! - [`report`]: the shift report (PDF and CSV): a shift's track, scans, rounds, alerts and
//!   check-ins in one time-ordered list, drawn on the site plan.
//! - [`amqp`]: task events from the site's RabbitMQ, published on their bindings' channels.
//! - [`arc`]: alarms to an alarm receiving centre over ANSI/SIA DC-09, from the durable
//!   outbox the alerts write to (through [`alerts::AlertOutbox`]).
//! - [`session`]: one connection's reader (native or STOMP) and writer with its clocks.
//! - [`patrol`]: guard tours: checkpoints with signed codes, tours on a schedule, scans, and
//!   `TOUR_MISSED` at a round's window end.
//! - [`field`]: what publishes on the domain channels mean: locations, video, emergencies,
//!   fences and shifts. [`alerts`]: alert records, life cycle, audit trail, escalation timers.
//!   [`notify`]: webhooks for alert events, from a durable outbox.
//! - [`hub`]: channels with their subscribers, admission, publish, replay, history, fan-out.
//! - [`store`]: the durable state behind one interface, with the sled and in-memory engines.
//! - [`counters`]: the hot-path counters and latency histograms. [`lanes`]: the runtimes
//!   besides the main one (TLS handshakes, urgent work, positions) and their priorities.
//! - [`channel`]: channel names and the rights table, as pure functions.
//! - [`stomp`]: STOMP frames on the wire. [`protocol`]: the native wire protocol (envelopes,
//!   encodings, close codes, the protocols a connection speaks).
//! - [`http`]: response bodies, JSON answers and errors, token extraction; [`failure`]: what
//!   a client is told about an error (the one mapping, and the stable error codes).
//! - [`auth`]: JWT verification and minting, identities and roles. [`geofence`]: pure
//!   geometry of fences. [`config`]: every setting with its default and documentation.
//!   [`clock`]: the wall clock (ms and s since the Unix epoch). [`version`]: this release.

pub(crate) mod alerts;
pub(crate) mod amqp;
pub(crate) mod api;
pub mod app;
pub mod arc;
pub mod auth;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod counters;
pub(crate) mod dashboard;
pub(crate) mod demo;
pub(crate) mod failure;
pub mod field;
pub(crate) mod geofence;
pub(crate) mod http;
pub mod hub;
pub(crate) mod lanes;
pub(crate) mod notify;
pub mod patrol;
pub mod protocol;
pub mod report;
pub mod server;
pub(crate) mod session;
pub mod simulate;
pub mod stomp;
pub mod store;
pub(crate) mod systemd;
pub mod transport;
pub mod version;

pub use config::Config;
pub use server::Server;
