//! The servers under test, each started by the bench on 127.0.0.1 only, with a data directory
//! of its own, and stopped by its own pid when dropped (also when the bench fails):
//! - **Lookout**: the built binary (or `SERVER_UNDER_TEST`), TLS, a logged room;
//! - **Lookout cluster**: three such nodes in cluster mode on one durable `redis-server`
//!   (Debian's; a Unix socket of its own, no replica: `cluster.min_replicas = 0`), the
//!   subscribers spread over the nodes in turn, the publisher on the first;
//! - **Nchan**: Debian's `nginx` with `libnginx-mod-nchan`, TLS with the same kind of
//!   self-signed certificate, an HTTP `nchan_publisher` and a `nchan_subscriber websocket`
//!   location, 2 workers;
//! - **RabbitMQ** with `rabbitmq_web_stomp` (the broker behind Spring's STOMP relay), plain
//!   WebSocket: every listener, epmd and the distribution port on 127.0.0.1.
//!
//! What a scenario needs from a server is here too: a subscriber connection (subscribed and
//! confirmed), a publisher, and the server's RSS and CPU summed over its process tree.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use lookout::auth::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::process::{descendants, Owned};
use crate::harness::{self, Binary};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lookout,
    /// Lookout with Socket.IO v5 clients (Engine.IO over TLS WebSocket) as subscribers.
    LookoutSocketIo,
    /// Three Lookout nodes on one Redis.
    LookoutCluster,
    Nchan,
    /// Nchan over plain WebSocket, as the issue's first measurement ran it.
    NchanPlain,
    RabbitMq,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name.trim() {
            "lookout" => Some(Kind::Lookout),
            "lookout-socketio" => Some(Kind::LookoutSocketIo),
            "lookout-cluster" => Some(Kind::LookoutCluster),
            "nchan" => Some(Kind::Nchan),
            "nchan-plain" => Some(Kind::NchanPlain),
            "rabbitmq" => Some(Kind::RabbitMq),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Lookout => "Lookout",
            Kind::LookoutSocketIo => "Lookout, Socket.IO clients",
            Kind::LookoutCluster => "Lookout, 3 nodes on Redis",
            Kind::Nchan => "Nchan",
            Kind::NchanPlain => "Nchan (plain)",
            Kind::RabbitMq => "RabbitMQ Web-STOMP",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Kind::Lookout => "lookout",
            Kind::LookoutSocketIo => "lookout-socketio",
            Kind::LookoutCluster => "lookout-cluster",
            Kind::Nchan => "nchan",
            Kind::NchanPlain => "nchan-plain",
            Kind::RabbitMq => "rabbitmq",
        }
    }

    /// The version under test, without starting it.
    pub fn version(self) -> String {
        let dpkg = |package| command_output("dpkg-query".into(), &["-W", "-f=${Version}", package]);
        match self {
            Kind::Lookout | Kind::LookoutSocketIo => command_output(
                std::env::var_os("SERVER_UNDER_TEST")
                    .unwrap_or_else(|| env!("CARGO_BIN_EXE_lookout").into()),
                &["--version"],
            ),
            Kind::LookoutCluster => format!(
                "{} ×3, redis-server {}",
                Kind::Lookout.version(),
                dpkg("redis-server")
            ),
            Kind::Nchan | Kind::NchanPlain => format!(
                "{}, libnginx-mod-nchan {}",
                command_output("nginx".into(), &["-v"]),
                dpkg("libnginx-mod-nchan")
            ),
            Kind::RabbitMq => format!("RabbitMQ {}", dpkg("rabbitmq-server")),
        }
    }

    /// Why this server cannot be started here, if it cannot (a package is missing).
    pub fn missing(self) -> Option<String> {
        match self {
            Kind::Lookout | Kind::LookoutSocketIo => None,
            Kind::LookoutCluster => which("redis-server")
                .is_none()
                .then(|| "redis-server is not installed".to_string()),
            Kind::Nchan | Kind::NchanPlain => (!Path::new(NCHAN_MODULE).exists()
                || which("nginx").is_none())
            .then(|| "nginx and libnginx-mod-nchan are not installed".into()),
            Kind::RabbitMq => harness::process::rabbitmq_home()
                .is_none()
                .then(|| "rabbitmq-server is not installed".into()),
        }
    }
}

const NCHAN_MODULE: &str = "/usr/share/nginx/modules/ngx_nchan_module.so";

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_listening(addr: SocketAddr, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

enum Process {
    Lookout(Binary),
    /// The nodes, then the Redis they share (stopped after them: fields drop in order).
    Cluster {
        nodes: Vec<Binary>,
        _redis: harness::redis::RedisProcess,
    },
    Nchan(Owned),
    /// RabbitMQ's start script (beam.smp below it), and the epmd started for it (stopped
    /// after the broker: fields drop in order).
    RabbitMq {
        broker: Owned,
        _epmd: Owned,
    },
}

/// A server under test.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// The client TLS configuration, for servers spoken to over TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    process: Process,
    cert_pem: Vec<u8>,
    /// Where subscribers connect, in turn (one entry but for a cluster).
    nodes: Vec<(SocketAddr, Option<Arc<rustls::ClientConfig>>)>,
    turn: std::sync::atomic::AtomicUsize,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `kind` in a directory of its own under `root`.
    pub fn start(kind: Kind, root: &Path) -> Server {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        match kind {
            Kind::Lookout | Kind::LookoutSocketIo => {
                let binary = Binary::serve(
                    &dir.path().join("data"),
                    &[
                        ("LOOKOUT_LIMITS__MAX_CONNECTIONS", "20000"),
                        ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
                        ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
                        ("LOOKOUT_LIMITS__PING_INTERVAL", "10s"),
                    ],
                );
                let cert_pem = binary.cert_pem();
                let tls = Some(harness::client_tls(&cert_pem));
                Server {
                    kind,
                    addr: binary.addr,
                    nodes: vec![(binary.addr, tls.clone())],
                    turn: Default::default(),
                    tls,
                    process: Process::Lookout(binary),
                    cert_pem,
                    _dir: dir,
                }
            }
            Kind::LookoutCluster => Server::cluster(dir),
            Kind::Nchan => Server::nchan(dir, true),
            Kind::NchanPlain => Server::nchan(dir, false),
            Kind::RabbitMq => Server::rabbitmq(dir),
        }
    }

    fn nchan(dir: tempfile::TempDir, tls: bool) -> Server {
        let d = dir.path();
        // The same kind of certificate Lookout makes for itself (ECDSA P-256, self-signed).
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("cert");
        let cert_pem = cert.cert.pem().into_bytes();
        std::fs::write(d.join("cert.pem"), &cert_pem).expect("write cert");
        std::fs::write(d.join("key.pem"), cert.key_pair.serialize_pem()).expect("write key");
        let port = free_port();
        let p = d.display();
        let ssl = if tls { " ssl" } else { "" };
        let config = format!(
            "load_module {NCHAN_MODULE};
worker_processes 2;
worker_rlimit_nofile 19500;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  server {{
    listen 127.0.0.1:{port}{ssl};
    ssl_certificate {p}/cert.pem;
    ssl_certificate_key {p}/key.pem;
    location = /pub {{ nchan_publisher http; nchan_channel_id $arg_id; }}
    location = /sub {{
      nchan_subscriber websocket;
      nchan_channel_id $arg_id;
      nchan_websocket_ping_interval 10;
    }}
  }}
}}
"
        );
        std::fs::write(d.join("nginx.conf"), config).expect("write nginx.conf");
        let nginx = Owned::spawn(
            Command::new("nginx")
                .arg("-p")
                .arg(d)
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-e")
                .arg(d.join("error.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "nginx",
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_listening(addr, Duration::from_secs(20), "nginx");
        let tls = tls.then(|| harness::client_tls(&cert_pem));
        Server {
            kind: if tls.is_some() {
                Kind::Nchan
            } else {
                Kind::NchanPlain
            },
            addr,
            nodes: vec![(addr, tls.clone())],
            turn: Default::default(),
            tls,
            process: Process::Nchan(nginx),
            cert_pem,
            _dir: dir,
        }
    }

    fn rabbitmq(dir: tempfile::TempDir) -> Server {
        let d = dir.path();
        let (web_stomp, stomp, epmd_port, dist) =
            (free_port(), free_port(), free_port(), free_port());
        std::fs::write(d.join("enabled_plugins"), "[rabbitmq_web_stomp].\n").expect("plugins");
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp = none
stomp.listeners.tcp.1 = 127.0.0.1:{stomp}
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = {web_stomp}
loopback_users.guest = true
"
            ),
        )
        .expect("rabbitmq.conf");
        let (broker, epmd) = harness::process::rabbitmq(d, epmd_port, dist);
        let addr: SocketAddr = ([127, 0, 0, 1], web_stomp).into();
        wait_listening(addr, Duration::from_secs(90), "RabbitMQ Web-STOMP");
        Server {
            kind: Kind::RabbitMq,
            addr,
            tls: None,
            nodes: vec![(addr, None)],
            turn: Default::default(),
            process: Process::RabbitMq {
                broker,
                _epmd: epmd,
            },
            cert_pem: Vec::new(),
            _dir: dir,
        }
    }

    fn cluster(dir: tempfile::TempDir) -> Server {
        let redis = harness::redis::RedisProcess::start();
        let url = redis.url();
        let mut nodes = Vec::new();
        for name in ["a", "b", "c"] {
            nodes.push(Binary::serve(
                &dir.path().join(name),
                &[
                    ("LOOKOUT_CLUSTER__REDIS", url.as_str()),
                    ("LOOKOUT_CLUSTER__MIN_REPLICAS", "0"),
                    ("LOOKOUT_CLUSTER__NODE_ID", name),
                    ("LOOKOUT_JWT__SECRET", harness::SECRET),
                    ("LOOKOUT_LIMITS__MAX_CONNECTIONS", "20000"),
                    ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
                    ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
                    ("LOOKOUT_LIMITS__PING_INTERVAL", "10s"),
                ],
            ));
        }
        let reach: Vec<(SocketAddr, Option<Arc<rustls::ClientConfig>>)> = nodes
            .iter()
            .map(|n| (n.addr, Some(harness::client_tls(&n.cert_pem()))))
            .collect();
        Server {
            kind: Kind::LookoutCluster,
            addr: reach[0].0,
            tls: reach[0].1.clone(),
            nodes: reach,
            turn: Default::default(),
            cert_pem: nodes[0].cert_pem(),
            process: Process::Cluster {
                nodes,
                _redis: redis,
            },
            _dir: dir,
        }
    }

    /// The pids the server's process trees hang from (every node and the Redis of a cluster).
    fn root_pids(&self) -> Vec<u32> {
        match &self.process {
            Process::Lookout(b) => vec![b.child.id()],
            Process::Cluster { nodes, _redis } => {
                let mut pids: Vec<u32> = nodes.iter().map(|b| b.child.id()).collect();
                pids.push(_redis.pid());
                pids
            }
            Process::Nchan(o) | Process::RabbitMq { broker: o, .. } => vec![o.child.id()],
        }
    }

    fn tree(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for root in self.root_pids() {
            all.push(root);
            all.extend(descendants(root));
        }
        all
    }

    /// Resident memory of the server's processes, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.tree().into_iter().map(rss_kib_of).sum()
    }

    /// User plus system CPU seconds of the server's processes.
    pub fn cpu_seconds(&self) -> f64 {
        self.tree()
            .into_iter()
            .map(|pid| crate::common::cpu_seconds_of(&pid.to_string()))
            .sum()
    }

    /// Lookout's `lookout_positions_shed_total`, read from its metrics as a supervisor.
    pub async fn shed_positions(&self) -> u64 {
        let Some(token) = self.token("metrics", Role::Supervisor) else {
            return 0;
        };
        let http = harness::http_client(&self.cert_pem);
        let text = match http
            .get(format!("https://{}/metrics", self.addr))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => panic!("metrics: {e}"),
        };
        text.lines()
            .find_map(|line| line.strip_prefix("lookout_positions_shed_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// How the clients reach it, for the table.
    pub fn transport(&self) -> &'static str {
        match self.kind {
            Kind::Lookout | Kind::Nchan => "TLS WebSocket",
            Kind::LookoutSocketIo => "Socket.IO, TLS WebSocket",
            Kind::LookoutCluster => "TLS WebSocket to 3 nodes",
            Kind::NchanPlain => "plain WebSocket",
            Kind::RabbitMq => "plain WebSocket (STOMP)",
        }
    }

    async fn websocket(
        &self,
        path: &str,
        source: IpAddr,
        token: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<Ws, String> {
        websocket(self.addr, self.tls.clone(), path, source, token, protocol).await
    }

    /// A token for `user` of org `acme` (Lookout only; the peers take anyone).
    pub fn token(&self, user: &str, role: Role) -> Option<String> {
        self.token_in(user, "acme", role)
    }

    /// A token for `user` of `org` (Lookout only).
    pub fn token_in(&self, user: &str, org: &str, role: Role) -> Option<String> {
        match &self.process {
            Process::Lookout(b) => Some(b.token(user, Some(org), &[role])),
            Process::Cluster { .. } => {
                let dir = tempfile::tempdir().expect("tempdir");
                let auth =
                    lookout::auth::Authenticator::from_config(&harness::test_config(dir.path()))
                        .expect("auth");
                Some(
                    auth.mint(user, Some(org), &[role], Duration::from_secs(3600), None)
                        .expect("mint"),
                )
            }
            _ => None,
        }
    }

    /// A subscriber of `topic`, subscribed and confirmed (Nchan subscribes on connect). For
    /// Lookout the topic is a logged room of org `acme`: every message is durable before it
    /// is delivered.
    pub async fn subscriber(
        &self,
        user: &str,
        token: Option<&str>,
        topic: &str,
        source: IpAddr,
    ) -> Result<Ws, String> {
        match self.kind {
            Kind::Lookout | Kind::LookoutCluster => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
                let (addr, tls) = self.nodes[turn].clone();
                let mut ws = websocket(addr, tls, "/ws", source, token, None).await?;
                next_text(&mut ws).await?; // connection_established
                let subscribe = json!({"type": "subscribe", "id": "s", "channel": room(topic)});
                send(&mut ws, subscribe.to_string()).await?;
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.starts_with(r#"{"type":"reply""#) {
                        if !text.contains(r#""ok":true"#) {
                            return Err(format!("{user}: subscribe refused: {text}"));
                        }
                        return Ok(ws);
                    }
                }
            }
            Kind::LookoutSocketIo => {
                let path = "/socket.io/?EIO=4&transport=websocket";
                let mut ws = self.websocket(path, source, None, None).await?;
                let open = next_text(&mut ws).await?;
                if !open.starts_with('0') {
                    return Err(format!("{user}: not an Engine.IO open packet: {open}"));
                }
                // CONNECT with the token in `auth`, as socket.io-client does; events only once
                // the namespace answered (the server drops events of a socket not yet in it).
                send(&mut ws, format!("40{}", json!({ "token": token }))).await?;
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.starts_with("44") {
                        return Err(format!("{user}: connect_error: {text}"));
                    }
                    if text.starts_with("40") {
                        break;
                    }
                }
                let subscribe = json!(["subscribe", {"channel": room(topic)}]);
                send(&mut ws, format!("420{subscribe}")).await?;
                loop {
                    let text = next_text(&mut ws).await?;
                    if text == ENGINE_IO_PING {
                        send(&mut ws, ENGINE_IO_PONG.into()).await?;
                    } else if let Some(ack) = text.strip_prefix("430") {
                        if !ack.contains(r#""ok":true"#) {
                            return Err(format!("{user}: subscribe refused: {ack}"));
                        }
                        return Ok(ws);
                    }
                }
            }
            Kind::Nchan | Kind::NchanPlain => {
                self.websocket(&format!("/sub?id={topic}"), source, None, None)
                    .await
            }
            Kind::RabbitMq => {
                let mut ws = self.stomp_connect(source, "0,10000").await?;
                let subscribe = format!(
                    "SUBSCRIBE\nid:0\ndestination:/topic/{topic}\nack:auto\nreceipt:r\n\n\0"
                );
                send(&mut ws, subscribe).await?;
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.starts_with("RECEIPT") {
                        return Ok(ws);
                    }
                    if text.starts_with("ERROR") {
                        return Err(format!("{user}: {text}"));
                    }
                }
            }
        }
    }

    async fn stomp_connect(&self, source: IpAddr, heart_beat: &str) -> Result<Ws, String> {
        let mut ws = self
            .websocket("/ws", source, None, Some("v12.stomp"))
            .await?;
        let connect = format!(
            "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:{heart_beat}\n\n\0"
        );
        send(&mut ws, connect).await?;
        let text = next_text(&mut ws).await?;
        if !text.starts_with("CONNECTED") {
            return Err(format!("STOMP CONNECT: {text}"));
        }
        Ok(ws)
    }

    /// The publisher of `topic` for the fan-out scenario.
    pub async fn publisher(&self, topic: &str) -> Result<Publisher, String> {
        let local: IpAddr = [127, 0, 0, 1].into();
        Ok(match self.kind {
            // Socket.IO is measured on the subscribers' side; the publisher is the same.
            Kind::Lookout | Kind::LookoutCluster | Kind::LookoutSocketIo => {
                let token = self.token("publisher", Role::Supervisor);
                let mut ws = self.websocket("/ws", local, token.as_deref(), None).await?;
                next_text(&mut ws).await?;
                let (write, mut read) = ws.split();
                let acknowledged = Arc::new(AtomicU64::new(0));
                // Replies are read (so the server is never blocked on them) and counted.
                let counted = acknowledged.clone();
                let replies = tokio::spawn(async move {
                    while let Some(Ok(frame)) = read.next().await {
                        if let Message::Text(text) = frame {
                            if text.contains("\"ok\":true") {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
                Publisher::Lookout {
                    write,
                    channel: room(topic),
                    replies,
                    acknowledged,
                    n: 0,
                }
            }
            Kind::Nchan | Kind::NchanPlain => Publisher::Nchan {
                http: harness::http_client(&self.cert_pem),
                url: format!(
                    "{}://{}/pub?id={topic}",
                    if self.tls.is_some() { "https" } else { "http" },
                    self.addr
                ),
                in_flight: Arc::new(tokio::sync::Semaphore::new(NCHAN_IN_FLIGHT)),
                posts: tokio::task::JoinSet::new(),
                acknowledged: Arc::new(AtomicU64::new(0)),
            },
            Kind::RabbitMq => {
                let ws = self.stomp_connect(local, "0,0").await?;
                let (write, mut read) = ws.split();
                let drain =
                    tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
                Publisher::RabbitMq {
                    write,
                    destination: format!("/topic/{topic}"),
                    _drain: drain,
                }
            }
        })
    }
}

/// Client `i`'s own loopback address, as every phone on a site's network has its own: the
/// server's per-address budgets (`limits.max_pending_per_peer`) see one client per address, and
/// no address runs out of ephemeral ports.
pub fn phone_address(i: usize) -> IpAddr {
    IpAddr::from([
        127,
        1 + (i / 50_000) as u8,
        ((i / 200) % 250) as u8,
        1 + (i % 200) as u8,
    ])
}

/// A WebSocket to `path` on `addr` (TLS when `tls` is given) from loopback source address
/// `source` (past one address's ephemeral ports), with a Bearer token for Lookout.
pub async fn websocket(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    path: &str,
    source: IpAddr,
    token: Option<&str>,
    protocol: Option<&str>,
) -> Result<Ws, String> {
    websocket_staged(addr, tls, path, source, token, protocol)
        .await
        .map(|(ws, _)| ws)
}

/// When each step of a connection finished, from its start: TCP connected, TLS handshake done
/// (equal to `tcp` without TLS), the upgrade's 101 read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stages {
    pub tcp: Duration,
    pub tls: Duration,
    pub upgrade: Duration,
}

/// [`websocket`], step by step: how long a client waited at each.
pub async fn websocket_staged(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    path: &str,
    source: IpAddr,
    token: Option<&str>,
    protocol: Option<&str>,
) -> Result<(Ws, Stages), String> {
    let start = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind((source, 0).into())
        .map_err(|e| format!("bind {source}: {e}"))?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut stages = Stages {
        tcp: start.elapsed(),
        ..Stages::default()
    };
    let stream = match tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::from(addr.ip());
            let secure = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            MaybeTlsStream::Rustls(secure)
        }
        None => MaybeTlsStream::Plain(tcp),
    };
    stages.tls = start.elapsed();
    let scheme = if matches!(stream, MaybeTlsStream::Plain(_)) {
        "ws"
    } else {
        "wss"
    };
    let mut req = format!("{scheme}://{addr}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(token) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    if let Some(protocol) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    }
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, None)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    stages.upgrade = start.elapsed();
    Ok((ws, stages))
}

/// Engine.IO's heartbeat: the server pings with this text frame and the client must answer
/// [`ENGINE_IO_PONG`] (the other servers' frames are never exactly this).
pub const ENGINE_IO_PING: &str = "2";
/// The answer to [`ENGINE_IO_PING`].
pub const ENGINE_IO_PONG: &str = "3";

/// The logged room a topic maps to on Lookout.
pub fn room(topic: &str) -> String {
    format!("/topic/org/acme/room/{topic}")
}

pub async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// The next text frame (pings are answered by the client library as it reads).
pub async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Err(_) => return Err("no frame within 60 s".into()),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(Message::Binary(b)))) => return Ok(String::from_utf8_lossy(&b).into_owned()),
            Ok(Some(Ok(Message::Close(c)))) => return Err(format!("closed: {c:?}")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("stream ended".into()),
        }
    }
}

/// POSTs to Nchan in flight at once: one at a time would cap the rate at one round trip each.
const NCHAN_IN_FLIGHT: usize = 64;

pub enum Publisher {
    Lookout {
        write: SplitSink<Ws, Message>,
        channel: String,
        replies: tokio::task::JoinHandle<()>,
        acknowledged: Arc<AtomicU64>,
        n: u64,
    },
    Nchan {
        http: reqwest::Client,
        url: String,
        in_flight: Arc<tokio::sync::Semaphore>,
        posts: tokio::task::JoinSet<()>,
        acknowledged: Arc<AtomicU64>,
    },
    RabbitMq {
        write: SplitSink<Ws, Message>,
        destination: String,
        _drain: tokio::task::JoinHandle<()>,
    },
}

impl Publisher {
    /// Publishes `payload` (a JSON object's text) without waiting for its acknowledgement.
    pub async fn publish(&mut self, payload: &str) -> Result<(), String> {
        match self {
            Publisher::Lookout {
                write, channel, n, ..
            } => {
                *n += 1;
                let frame = format!(
                    r#"{{"type":"publish","id":{n},"channel":"{channel}","data":{payload}}}"#
                );
                write
                    .send(Message::Text(frame.into()))
                    .await
                    .map_err(|e| e.to_string())
            }
            Publisher::Nchan {
                http,
                url,
                in_flight,
                posts,
                acknowledged,
            } => {
                let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
                let post = http
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(payload.to_string());
                let acknowledged = acknowledged.clone();
                posts.spawn(async move {
                    if let Ok(response) = post.send().await {
                        if response.status().is_success() {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
                while posts.try_join_next().is_some() {}
                Ok(())
            }
            Publisher::RabbitMq {
                write, destination, ..
            } => {
                let frame = format!(
                    "SEND\ndestination:{destination}\ncontent-type:application/json\n\n{payload}\0"
                );
                write
                    .send(Message::Text(frame.into()))
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Waits (up to `within`) until `sent` publishes are acknowledged, then closes; how many
    /// were (RabbitMQ acknowledges nothing without receipts: `None`).
    pub async fn close(self, sent: u64, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        let settle = |acknowledged: &AtomicU64| {
            let value = acknowledged.load(Ordering::Relaxed);
            value >= sent || Instant::now() >= deadline
        };
        match self {
            Publisher::Lookout {
                mut write,
                replies,
                acknowledged,
                ..
            } => {
                while !settle(&acknowledged) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = write.close().await;
                let _ = replies.await;
                Some(acknowledged.load(Ordering::Relaxed))
            }
            Publisher::Nchan {
                mut posts,
                acknowledged,
                ..
            } => {
                while tokio::time::timeout_at(deadline.into(), posts.join_next())
                    .await
                    .is_ok_and(|next| next.is_some())
                {}
                Some(acknowledged.load(Ordering::Relaxed))
            }
            Publisher::RabbitMq { mut write, .. } => {
                let _ = write.close().await;
                None
            }
        }
    }
}

fn command_output(program: std::ffi::OsString, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text).trim().to_string()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
