//! Lookout measured side by side with the servers teams deploy today, one run, the same load
//! generator (tokio-tungstenite, not the server's WebSocket library) for every server.
//!
//! `bash benches/compare.sh` installs the peers (Debian's nginx + libnginx-mod-nchan and
//! rabbitmq-server) when missing and runs `cargo bench --bench compare`: every scenario, the
//! first two against Lookout, Nchan and RabbitMQ Web-STOMP in alternation, the others against
//! Lookout (the table says why). It writes `report.md`, `report.json` and `latency.svg` to
//! `target/bench-compare/<unix time>/` and prints the Markdown.
//!
//! Settings (environment): `COMPARE_SCENARIOS` (any of connections, fanout, field, storm,
//! durable, churn), `COMPARE_SERVERS` (any of lookout, lookout-socketio, lookout-cluster, nchan,
//! nchan-plain, rabbitmq), `CONNECTIONS_N` (19,000),
//! `CONNECTIONS_N_RABBITMQ` (5,000: RabbitMQ holds ~180 KiB each), `CONNECTIONS_HOLD` (30 s),
//! `FANOUT_SUBSCRIBERS` (1,000), `FANOUT_RATES` (50,100,...,800), `FANOUT_SECONDS`
//! (10), `FIELD_GUARDS` (5,000,10,000,19,000: with the open-files cap of 20,000 per process
//! the server cannot hold 20,000), `FIELD_ENCODINGS` (json,msgpack), `FIELD_SECONDS` (30), `STORM_CLIENTS` (19,000),
//! `STORM_RATE` (2 msgs/s: 38,000 deliveries/s to the room), `DURABLE_SECONDS` (5),
//! `CHURN_ROUNDS` (24), `CHURN_USERS` (2,000 per round), `COMPARE_OUT` (the output directory).
//! `SERVER_UNDER_TEST=path` runs another Lookout build. Under `cargo test` it runs a smoke pass
//! against Lookout only (a few seconds per scenario) that checks the harness works.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/common/mod.rs"]
mod harness;

mod churn;
mod connections;
mod durable;
mod fanout;
mod field;
mod report;
mod servers;
mod storm;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use report::{ms, Curve, Report, Section};
use servers::{Kind, Server};

struct Settings {
    full: bool,
    scenarios: Vec<String>,
    servers: Vec<Kind>,
    connections: usize,
    connections_rabbitmq: usize,
    hold: Duration,
    subscribers: usize,
    rates: Vec<u64>,
    fanout_seconds: u64,
    field: Vec<field::Scale>,
    storm_clients: usize,
    storm_rate: u64,
    durable: Duration,
    churn: churn::Scale,
}

fn env_or<T: std::str::FromStr>(name: &str, full: T, smoke: T, is_full: bool) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if is_full { full } else { smoke })
}

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every (guards, encoding) pair of `FIELD_GUARDS` and `FIELD_ENCODINGS`, in that order.
fn field_scales(full: bool) -> Vec<field::Scale> {
    let guards = list("FIELD_GUARDS", if full { "5000,10000,19000" } else { "50" });
    let encodings = list("FIELD_ENCODINGS", "json,msgpack");
    let mut scales = Vec::new();
    for g in &guards {
        for e in &encodings {
            scales.push(field::Scale {
                guards: g
                    .parse()
                    .unwrap_or_else(|_| panic!("FIELD_GUARDS: {g} is not a number")),
                supervisors: if full { 10 } else { 2 },
                fences: if full { 50 } else { 5 },
                seconds: env_or("FIELD_SECONDS", 30, 3, full),
                encoding: field::Encoding::parse(e)
                    .unwrap_or_else(|| panic!("FIELD_ENCODINGS: unknown encoding {e}")),
            });
        }
    }
    scales
}

impl Settings {
    fn from_env() -> Settings {
        let full = std::env::args().any(|a| a == "--bench");
        let servers = list(
            "COMPARE_SERVERS",
            if full {
                "lookout,lookout-socketio,lookout-cluster,nchan,nchan-plain,rabbitmq"
            } else {
                "lookout,lookout-socketio,lookout-cluster"
            },
        )
        .iter()
        .map(|s| Kind::parse(s).unwrap_or_else(|| panic!("COMPARE_SERVERS: unknown server {s}")))
        .collect();
        let rates = list(
            "FANOUT_RATES",
            if full {
                "50,100,200,300,400,600,800"
            } else {
                "50"
            },
        )
        .iter()
        .map(|r| {
            r.parse()
                .unwrap_or_else(|_| panic!("FANOUT_RATES: {r} is not a rate"))
        })
        .collect();
        Settings {
            full,
            scenarios: list(
                "COMPARE_SCENARIOS",
                "connections,fanout,field,storm,durable,churn",
            ),
            servers,
            connections: env_or("CONNECTIONS_N", 19_000, 100, full),
            connections_rabbitmq: env_or("CONNECTIONS_N_RABBITMQ", 5_000, 100, full),
            hold: Duration::from_secs(env_or("CONNECTIONS_HOLD", 30, 1, full)),
            subscribers: env_or("FANOUT_SUBSCRIBERS", 1000, 20, full),
            rates,
            fanout_seconds: env_or("FANOUT_SECONDS", 10, 1, full),
            field: field_scales(full),
            storm_clients: env_or("STORM_CLIENTS", 19_000, 50, full),
            storm_rate: env_or("STORM_RATE", 2, 10, full),
            durable: Duration::from_secs(env_or("DURABLE_SECONDS", 5, 1, full)),
            churn: churn::Scale {
                rounds: env_or("CHURN_ROUNDS", 24, 2, full),
                users: env_or("CHURN_USERS", 2000, 20, full),
                rooms: if full { 100 } else { 2 },
                messages: 5,
            },
        }
    }

    fn wants(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }
}

fn kib(v: f64) -> String {
    format!("{v:.1} KiB")
}

fn connections(s: &Settings, root: &std::path::Path, report: &mut Report) {
    let mut section = Section::new(
        "1. Idle connections: server RSS and CPU",
        &[
            "server",
            "transport",
            "connections",
            "connected in",
            "RSS per connection",
            "server RSS with all",
            "idle CPU (% of a core)",
            "dropped",
        ],
    );
    println!("== connections");
    for &kind in &s.servers {
        if let Some(why) = kind.missing() {
            section.note(format!(
                "{}: not run, {why} (run benches/compare.sh)",
                kind.name()
            ));
            continue;
        }
        let count = if kind == Kind::RabbitMq {
            s.connections_rabbitmq.min(s.connections)
        } else {
            s.connections
        };
        let server = Server::start(kind, root);
        let run = common::block_on(connections::run(&server, count, s.hold))
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
        section.row(
            vec![
                kind.name().into(),
                server.transport().into(),
                format!("{count}"),
                format!("{:.1} s", run.connect_seconds),
                kib(run.kib_per_connection()),
                format!("{:.0} MiB", run.rss_after_kib as f64 / 1024.0),
                format!("{:.1} %", run.idle_cpu_percent),
                format!("{}", run.dropped),
            ],
            json!({
                "server": kind.key(), "connections": count, "connect_seconds": run.connect_seconds,
                "rss_before_kib": run.rss_before_kib, "rss_after_kib": run.rss_after_kib,
                "kib_per_connection": run.kib_per_connection(),
                "idle_cpu_percent": run.idle_cpu_percent, "dropped": run.dropped,
            }),
        );
        if !s.full {
            assert_eq!(run.dropped, 0, "{}: idle connections dropped", kind.name());
        }
    }
    section.note(format!(
        "Each connection subscribed (Lookout: authenticated with a JWT, a room of its org), held {} s; \
         heartbeats every 10 s. RSS per connection is the server's growth over itself with one \
         connection, summed over its processes (nginx's master and workers, RabbitMQ's beam.smp).",
        s.hold.as_secs()
    ));
    report.sections.push(section);
}

fn fanout(s: &Settings, root: &std::path::Path, report: &mut Report) {
    let mut section = Section::new(
        format!(
            "2. Fan-out to {} subscribers, one publisher, ~100-byte messages, {} s per rate",
            s.subscribers, s.fanout_seconds
        ),
        &[
            "server",
            "msgs/s",
            "deliveries/s",
            "undelivered",
            "p50",
            "p99",
            "p99.9",
            "max",
            "server CPU per delivery",
        ],
    );
    println!("== fan-out");
    let mut saturation = Vec::new();
    for &kind in &s.servers {
        if let Some(why) = kind.missing() {
            section.note(format!(
                "{}: not run, {why} (run benches/compare.sh)",
                kind.name()
            ));
            continue;
        }
        let server = Server::start(kind, root);
        let mut held = None;
        for &rate in &s.rates {
            let topic = format!("fanout{rate}");
            let run = common::block_on(fanout::run(
                &server,
                s.subscribers,
                rate,
                s.fanout_seconds,
                &topic,
            ))
            .unwrap_or_else(|e| panic!("{} at {rate} msgs/s: {e}", kind.name()));
            section.row(
                vec![
                    kind.name().into(),
                    format!("{rate}"),
                    format!("{:.0}", run.deliveries as f64 / run.seconds as f64),
                    if run.disconnected > 0 {
                        format!("{} ({} disconnected)", run.undelivered, run.disconnected)
                    } else {
                        format!("{}", run.undelivered)
                    },
                    ms(run.p(0.5)),
                    ms(run.p(0.99)),
                    ms(run.p(0.999)),
                    ms(run.sorted_us.last().copied().unwrap_or(0)),
                    format!("{:.2} µs", run.cpu_per_delivery_us),
                ],
                json!({
                    "server": kind.key(), "rate": run.rate, "sent": run.sent,
                    "deliveries": run.deliveries, "undelivered": run.undelivered,
                    "disconnected": run.disconnected,
                    "p50_us": run.p(0.5), "p99_us": run.p(0.99), "p999_us": run.p(0.999),
                    "max_us": run.sorted_us.last().copied().unwrap_or(0),
                    "cpu_per_delivery_us": run.cpu_per_delivery_us,
                }),
            );
            if !s.full {
                assert!(run.deliveries > 0, "{}: nothing delivered", kind.name());
                assert_eq!(run.undelivered, 0, "{}: messages lost", kind.name());
            }
            let ok = run.held();
            report.curves.push(Curve {
                label: format!("{} {rate} msgs/s", kind.name()),
                sorted_us: run.sorted_us,
            });
            if !ok {
                break;
            }
            held = Some(rate);
        }
        saturation.push(format!(
            "{}: {}",
            kind.name(),
            held.map_or("below the lowest rate tried".into(), |r| format!(
                "{r} msgs/s"
            ))
        ));
    }
    section.note(format!(
        "Undelivered: messages a subscriber had not received 2 s after the last publish (each \
         carries its number). Publishers: a TLS WebSocket for Lookout (publishes pipelined), \
         HTTP POSTs to `nchan_publisher` for Nchan (up to 64 in flight), STOMP SEND frames for \
         RabbitMQ. Rates go up until one is not held (a loss, a disconnection, or p99 \
         ≥ 100 ms). Highest rate held — {}. Lookout's subscribers are on a logged room: every \
         message is durable before it is delivered; Nchan keeps messages in memory; RabbitMQ's \
         are non-persistent topic messages.",
        saturation.join("; ")
    ));
    report.sections.push(section);
}

fn lookout_only(s: &Settings, name: &str) -> bool {
    if !s.servers.contains(&Kind::Lookout) {
        println!("== {name}: skipped, Lookout is not among COMPARE_SERVERS");
        return false;
    }
    true
}

fn field_load(s: &Settings, root: &std::path::Path, report: &mut Report) {
    if !lookout_only(s, "field") {
        return;
    }
    println!("== field load");
    let Some(first) = s.field.first() else {
        return;
    };
    let mut section = Section::new(
        format!(
            "3. Field load: guards streaming locations at 1 Hz over TLS without waiting for replies (late fixes sent late), {} geofences, {} supervisors on the org's alerts and locations, a PANIC a second raised by a streaming guard, {} s",
            first.fences, first.supervisors, first.seconds
        ),
        &[
            "guards",
            "encoding",
            "locations acknowledged/s",
            "positions shed",
            "position lag p50 / p99",
            "supervisors disconnected",
            "PANICs delivered",
            "PANIC → supervisor p50 / p99 / max",
            "server CPU",
            "server RSS",
        ],
    );
    let ms_of = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    for scale in &s.field {
        println!("-- {} guards, {}", scale.guards, scale.encoding.name());
        let server = Server::start(Kind::Lookout, root);
        let run = common::block_on(field::run(&server, scale));
        drop(server);
        let (p50, p99, max) = common::spread(&run.panic_latencies);
        let (lag50, lag99, _) = common::spread(&run.position_lag);
        section.row(
            vec![
                format!("{}", scale.guards),
                scale.encoding.name().into(),
                format!("{:.0}", run.locations_acknowledged as f64 / run.seconds),
                format!("{}", run.shed),
                format!("{} / {}", ms_of(lag50), ms_of(lag99)),
                format!("{}", run.disconnected.len()),
                format!(
                    "{} of {}",
                    run.panics_delivered,
                    run.panics_sent * scale.supervisors
                ),
                format!("{} / {} / {}", ms_of(p50), ms_of(p99), ms_of(max)),
                format!("{:.2} cores", run.server_cores),
                format!("{:.0} → {:.0} MiB", run.rss_mib.0, run.rss_mib.1),
            ],
            json!({
                "server": "lookout", "guards": scale.guards, "encoding": scale.encoding.name(),
                "fences": scale.fences, "supervisors": scale.supervisors, "seconds": run.seconds,
                "locations_sent": run.locations_sent, "locations_acknowledged": run.locations_acknowledged,
                "locations_refused": run.locations_refused, "guards_lost": run.guards_lost,
                "positions_shed": run.shed,
                "position_lag_p50_us": lag50.as_micros() as u64,
                "position_lag_p99_us": lag99.as_micros() as u64,
                "supervisors_disconnected": run.disconnected,
                "panics_sent": run.panics_sent, "panics_delivered": run.panics_delivered,
                "panic_p50_us": p50.as_micros() as u64, "panic_p99_us": p99.as_micros() as u64,
                "panic_max_us": max.as_micros() as u64,
                "positions_delivered": run.positions_delivered,
                "server_cores": run.server_cores, "generator_cores": run.generator_cores,
                "rss_mib": [run.rss_mib.0, run.rss_mib.1], "connect_seconds": run.connect_seconds,
            }),
        );
        section.note(format!(
            "{} guards, {}: {} fixes sent, {} acknowledged, {} refused; {} guards lost; {} positions reached the supervisors; load generator {:.2} cores; connected in {:.1} s.",
            scale.guards,
            scale.encoding.name(),
            run.locations_sent,
            run.locations_acknowledged,
            run.locations_refused,
            run.guards_lost,
            run.positions_delivered,
            run.generator_cores,
            run.connect_seconds
        ));
        if !s.full {
            assert!(run.disconnected.is_empty(), "{:?}", run.disconnected);
            assert_eq!(
                run.panics_delivered,
                run.panics_sent * scale.supervisors,
                "PANICs lost"
            );
            assert!(run.panics_sent > 0, "no PANIC was raised");
            assert!(run.locations_acknowledged > 0);
        }
    }
    section.note(
        "Lookout only: neither peer has geofences, alerts or rights. Position lag: a position's \
         `ts` (set by the guard when it made the fix) to a supervisor's receipt, every 100th \
         position. Shed: positions the server answered without processing because a newer fix \
         of the same guard had arrived (`lookout_positions_shed_total`).",
    );
    report.sections.push(section);
}

fn reconnect_storm(s: &Settings, root: &std::path::Path, report: &mut Report) {
    if !lookout_only(s, "storm") {
        return;
    }
    println!("== reconnect storm");
    let server = Server::start(Kind::Lookout, root);
    let run = common::block_on(storm::run(&server, s.storm_clients, s.storm_rate))
        .unwrap_or_else(|e| panic!("storm: {e}"));
    let mut section = Section::new(
        format!(
            "4. Reconnect storm: {} subscribers of one logged room dropped at once, {} msgs/s published throughout",
            run.clients, run.rate
        ),
        &[
            "server",
            "resumed",
            "not recovered",
            "drop → resubscribed p50 / p99",
            "all resumed after",
            "lost",
            "duplicated",
            "PANIC 1 s into the storm → supervisor",
        ],
    );
    let (p50, p99, max) = common::spread(&run.resumed_us);
    section.row(
        vec![
            "Lookout".into(),
            format!("{} of {}", run.resumed_us.len(), run.clients),
            format!("{}", run.not_recovered),
            format!("{} / {}", ms(p50), ms(p99)),
            ms(max),
            format!("{}", run.lost),
            format!("{}", run.duplicated),
            run.panic_us.map_or("not delivered in 30 s".into(), ms),
        ],
        json!({
            "server": "lookout", "clients": run.clients, "rate": run.rate,
            "published": run.published, "resumed": run.resumed_us.len(),
            "not_recovered": run.not_recovered, "failed": run.failed.len(),
            "resubscribed_p50_us": p50, "resubscribed_p99_us": p99, "all_resumed_us": max,
            "lost": run.lost, "duplicated": run.duplicated, "panic_us": run.panic_us,
            "server_cores": run.cores.0, "generator_cores": run.cores.1,
            "stages_us": {
                "attempt": common::spread(&run.stages.attempt),
                "tcp": common::spread(&run.stages.tcp),
                "tls": common::spread(&run.stages.tls),
                "upgrade": common::spread(&run.stages.upgrade),
                "established": common::spread(&run.stages.established),
                "subscribed": common::spread(&run.stages.subscribed),
                "first_message": common::spread(&run.stages.first_message),
                "retries": run.stages.retries,
                "retry_reasons": run.stages.retry_reasons,
            },
        }),
    );
    section.note(format!(
        "CPU from the drop until all had resumed: server {:.2} cores, load generator {:.2} \
         cores (of 2).",
        run.cores.0, run.cores.1
    ));
    let stages = &run.stages;
    let stage = |name: &str, list: &[u64]| {
        let (p50, p99, max) = common::spread(list);
        format!("{name} {} / {} / {}", ms(p50), ms(p99), ms(max))
    };
    section.note(format!(
        "Where the resuming clients waited, each stage's p50 / p99 / max from the drop: {}; {}; \
         {}; {}; {}; {}; {}. Failed attempts before the last: {} ({:?}).",
        stage("attempt began", &stages.attempt),
        stage("TCP connected", &stages.tcp),
        stage("TLS done", &stages.tls),
        stage("101 read", &stages.upgrade),
        stage("connection_established", &stages.established),
        stage("subscribe replied", &stages.subscribed),
        stage("first message after it", &stages.first_message),
        stages.retries,
        stages.retry_reasons
    ));
    section.note(
        "Lookout only: Nchan can resume from a message id but keeps only its last few messages \
         in memory and says nothing of what it could not replay; RabbitMQ's STOMP topics have no \
         replay. Each client waits 250–500 ms before reconnecting (the first retry of \
         web/lookout-client.js), which the drop → resubscribed figures include.",
    );
    if !run.failed.is_empty() {
        section.note(format!(
            "{} clients failed, e.g. {:?}",
            run.failed.len(),
            &run.failed[..run.failed.len().min(3)]
        ));
    }
    if !s.full {
        assert!(run.failed.is_empty(), "{:?}", run.failed);
        assert_eq!(run.resumed_us.len(), run.clients);
        assert_eq!((run.lost, run.duplicated, run.not_recovered), (0, 0, 0));
        assert!(run.panic_us.is_some(), "the PANIC did not arrive");
    }
    report.sections.push(section);
}

fn durable_publish(s: &Settings, root: &std::path::Path, report: &mut Report) {
    if !lookout_only(s, "durable") {
        return;
    }
    println!("== durable publish");
    let server = Server::start(Kind::Lookout, root);
    let mut section = Section::new(
        format!(
            "5. Durable publish on a logged room, {} s per mode",
            s.durable.as_secs()
        ),
        &[
            "server",
            "transport",
            "publishers",
            "acknowledged/s",
            "refused",
            "latency p50 / p99",
        ],
    );
    for transport in ["TLS WebSocket, 64 in flight", "REST"] {
        for publishers in [1, 32] {
            let run = common::block_on(durable::run(&server, transport, publishers, s.durable))
                .unwrap_or_else(|e| panic!("durable {transport}: {e}"));
            let rate = run.acknowledged as f64 / run.seconds;
            section.row(
                vec![
                    "Lookout".into(),
                    transport.into(),
                    format!("{publishers}"),
                    format!("{rate:.0}"),
                    format!("{}", run.refused),
                    format!(
                        "{} / {}",
                        ms(common::percentile(&run.sorted_us, 0.5)),
                        ms(common::percentile(&run.sorted_us, 0.99))
                    ),
                ],
                json!({
                    "server": "lookout", "transport": run.transport, "publishers": run.publishers,
                    "acknowledged": run.acknowledged, "refused": run.refused,
                    "per_second": rate,
                    "p50_us": common::percentile(&run.sorted_us, 0.5),
                    "p99_us": common::percentile(&run.sorted_us, 0.99),
                }),
            );
            if !s.full {
                assert!(run.acknowledged > 0 && run.refused == 0);
            }
        }
    }
    section.note(
        "Lookout only: an acknowledgement here means the message is on disk (group commit). \
         Nchan and RabbitMQ (non-persistent) acknowledge a publish held in memory.",
    );
    report.sections.push(section);
}

/// What docs/performance.md promises a server with no connections open stays within: the store's page
/// cache (`store.cache_capacity`, 64 MiB by default, as the bench runs it) and 64 MiB for
/// everything else (code, the user directory, the allocator's keep).
const CHURN_BUDGET_KIB: u64 = (64 + 64) * 1024;

fn churn(s: &Settings, root: &std::path::Path, report: &mut Report) {
    if !lookout_only(s, "churn") {
        return;
    }
    println!("== churn");
    let server = Server::start(Kind::Lookout, root);
    let scale = &s.churn;
    let run = common::block_on(churn::run(&server, scale)).unwrap_or_else(|e| panic!("churn: {e}"));
    let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
    let first = run.rss_kib.get(1).copied().unwrap_or(0);
    let last = run.rss_kib.last().copied().unwrap_or(0);
    let most = run.rss_kib.iter().copied().max().unwrap_or(0);
    let growth = (last as f64 - first as f64) / (scale.rounds.max(2) - 1) as f64;
    let mut section = Section::new(
        format!(
            "6. A day's churn: {} rounds of {} new users (a new org each round, {} rooms), {} publishes each, all disconnected after their round",
            scale.rounds, scale.users, scale.rooms, scale.messages
        ),
        &[
            "server",
            "users",
            "messages stored",
            "RSS idle",
            "after round 1",
            "highest",
            "after the last round",
            "growth per round after the first",
            "budget: store.cache_capacity + 64 MiB",
        ],
    );
    section.row(
        vec![
            "Lookout".into(),
            format!("{}", scale.rounds * scale.users),
            format!("{}", run.published),
            mib(run.rss_kib[0]),
            mib(first),
            mib(most),
            mib(last),
            format!("{:.1} MiB", growth / 1024.0),
            format!(
                "{} ({})",
                mib(CHURN_BUDGET_KIB),
                if most <= CHURN_BUDGET_KIB {
                    "within"
                } else {
                    "exceeded"
                }
            ),
        ],
        json!({
            "server": "lookout", "rounds": scale.rounds, "users_per_round": scale.users,
            "rooms_per_round": scale.rooms, "published": run.published,
            "rss_kib": run.rss_kib, "seconds": run.seconds,
            "budget_kib": CHURN_BUDGET_KIB, "within_budget": most <= CHURN_BUDGET_KIB,
        }),
    );
    section.note(format!(
        "RSS after each round (MiB): {}.",
        run.rss_kib
            .iter()
            .map(|k| format!("{:.0}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !s.full {
        assert_eq!(
            run.published,
            (scale.rounds * scale.users * scale.messages) as u64
        );
    }
    report.sections.push(section);
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let s = Settings::from_env();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = std::env::var_os("COMPARE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let name = if s.full {
                stamp.to_string()
            } else {
                "smoke".into()
            };
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("..")
                .join("bench-compare")
                .join(name)
        });
    let mut versions = serde_json::Map::new();
    for &kind in &s.servers {
        if kind.missing().is_none() {
            versions.insert(kind.key().into(), kind.version().into());
        }
    }
    let command: Vec<String> = std::env::vars()
        .filter(|(k, _)| {
            [
                "COMPARE_",
                "CONNECTIONS_",
                "FANOUT_",
                "FIELD_",
                "STORM_",
                "DURABLE_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || k == "SERVER_UNDER_TEST"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .chain([if s.full {
            "cargo bench --bench compare".to_string()
        } else {
            "cargo test --bench compare (smoke)".to_string()
        }])
        .collect();
    let mut report = Report {
        meta: json!({
            "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "host": gethostname::gethostname().to_string_lossy(),
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "commit": git_commit(),
            "command": command.join(" "),
            "versions": versions,
            "load_generator": "tokio-tungstenite 0.28 + rustls (ring), 2 tokio workers, same machine",
        }),
        sections: Vec::new(),
        curves: Vec::new(),
    };
    if s.wants("connections") {
        connections(&s, &root, &mut report);
    }
    if s.wants("fanout") {
        fanout(&s, &root, &mut report);
    }
    if s.wants("field") {
        field_load(&s, &root, &mut report);
    }
    if s.wants("storm") {
        reconnect_storm(&s, &root, &mut report);
    }
    if s.wants("durable") {
        durable_publish(&s, &root, &mut report);
    }
    if s.wants("churn") {
        churn(&s, &root, &mut report);
    }
    report.write(&out).expect("write the report");
    println!("\n{}", report.markdown());
    println!("written to {}", out.display());
}
