//! Test harness: a real Lookout server in-process on 127.0.0.1:0 over TLS with a temporary data
//! directory, and WebSocket clients built on tokio-tungstenite (not the server's library).
#![allow(dead_code)]

pub mod dc09;
pub mod process;
pub mod redis;
pub mod sio;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lookout::app::AppState;
use lookout::auth::{Authenticator, Role};
use lookout::{Config, Server};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test server uses, so tests can also sign odd tokens themselves.
pub const SECRET: &str = "test-secret-test-secret-test-secret!";

/// How long a test waits for something that should happen; generous for a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct TestServer {
    pub addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    pub auth: Authenticator,
    pub cert_pem: Vec<u8>,
    pub cert_path: std::path::PathBuf,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), lookout::server::ServerError>>>,
    dir: Option<tempfile::TempDir>,
    /// With `TEST_STORE=redis`: the Redis this server's state is in, for as long as it runs
    /// (and across [`TestServer::restart`]).
    redis: Option<Arc<redis::RedisProcess>>,
    /// With `TEST_CLUSTER=N`: the other N-1 nodes on the same Redis; connections go to the
    /// nodes in turn.
    pub peers: Vec<TestServer>,
    turn: std::sync::atomic::AtomicUsize,
}

/// `TEST_STORE=redis` runs the in-process servers of the suite on the Redis engine (cluster
/// mode, one node) instead of sled: `TEST_STORE=redis cargo test --test durability`.
fn redis_for(config: &mut Config) -> Option<Arc<redis::RedisProcess>> {
    if (std::env::var("TEST_STORE").as_deref() != Ok("redis") && cluster_size() == 1)
        || config.cluster.enabled()
    {
        return None;
    }
    let process = Arc::new(redis::RedisProcess::start());
    config.cluster.redis = Some(process.url());
    config.cluster.min_replicas = 0;
    Some(process)
}

/// `TEST_CLUSTER=N` (N > 1) runs each in-process server as N nodes on one Redis, and the
/// server's connections go to them in turn: `TEST_CLUSTER=3 cargo test --test authorization`.
pub fn cluster_size() -> usize {
    std::env::var("TEST_CLUSTER")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 1)
        .unwrap_or(1)
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.jwt.secret = Some(SECRET.into());
    config.metrics.token = Some(METRICS_TOKEN.into());
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        Self::start_config(config, dir).await
    }

    /// A server over `store` (e.g. a [`lookout::store::MemoryStore`] whose commits a test
    /// holds) instead of the data directory's sled store.
    pub async fn start_on(store: Arc<dyn lookout::store::Store>) -> Self {
        Self::start_on_with(store, |_| {}).await
    }

    /// [`TestServer::start_on`] with settings of its own.
    pub async fn start_on_with(
        store: Arc<dyn lookout::store::Store>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let server = Server::bind_on(config.clone(), store).await.expect("bind");
        Self::serve(server, config, dir)
    }

    /// Stops (SIGTERM-like graceful shutdown) and starts again on the same data directory.
    pub async fn restart(self) -> Self {
        self.restart_after(Duration::ZERO).await
    }

    /// [`TestServer::restart`], down for `down` in between (its Redis, if any, keeps running).
    pub async fn restart_after(mut self, down: Duration) -> Self {
        let dir = self.dir.take().expect("dir");
        let config = self.config.clone();
        let redis = self.redis.take();
        // The other nodes of a TEST_CLUSTER go on running.
        let peers = std::mem::take(&mut self.peers);
        self.stop().await;
        tokio::time::sleep(down).await;
        let mut server = Self::start_config_on(config, dir).await;
        server.redis = redis;
        server.peers = peers;
        server
    }

    /// Starts with `config` on `dir` (a data directory a stopped server left, e.g. to start
    /// again with other settings).
    pub async fn start_config_in(config: Config, dir: tempfile::TempDir) -> Self {
        Self::start_config(config, dir).await
    }

    /// Stops like [`TestServer::stop`] and hands over the data directory.
    pub async fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        let dir = self.dir.take().expect("dir");
        self.stop().await;
        dir
    }

    async fn start_config(mut config: Config, dir: tempfile::TempDir) -> Self {
        let redis = redis_for(&mut config);
        let clustered = redis.is_some();
        if clustered {
            config.cluster.node_id = Some("node-0".into());
        }
        let mut server = Self::start_config_on(config.clone(), dir).await;
        server.redis = redis;
        if clustered {
            for n in 1..cluster_size() {
                let peer_dir = tempfile::tempdir().expect("tempdir");
                let mut peer_config = config.clone();
                peer_config.data_dir = peer_dir.path().to_path_buf();
                peer_config.cluster.node_id = Some(format!("node-{n}"));
                server
                    .peers
                    .push(Box::pin(Self::start_config_on(peer_config, peer_dir)).await);
            }
        }
        server
    }

    /// The node the next connection goes to: with `TEST_CLUSTER`, each node in turn.
    fn next_node(&self) -> (&[u8], SocketAddr) {
        let n =
            self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (1 + self.peers.len());
        let node = if n == 0 { self } else { &self.peers[n - 1] };
        (&node.cert_pem, node.addr)
    }

    async fn start_config_on(config: Config, dir: tempfile::TempDir) -> Self {
        // LOOKOUT_TEST_LOG=debug shows the server's logs for a failing test.
        if let Ok(level) = std::env::var("LOOKOUT_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(level))
                .with_test_writer()
                .try_init();
        }
        let server = Server::bind(config.clone()).await.expect("bind");
        Self::serve(server, config, dir)
    }

    fn serve(server: Server, config: Config, dir: tempfile::TempDir) -> Self {
        let auth = Authenticator::from_config(&config).expect("auth");
        let addr = server.local_addr();
        let plain_addr = server.plain_addr();
        let state = server.state().clone();
        let cert_path = server.certificate.trust_path.clone();
        let cert_pem = std::fs::read(&cert_path).expect("cert");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            plain_addr,
            state,
            auth,
            cert_pem,
            cert_path,
            config,
            stop: Some(tx),
            task: Some(task),
            dir: Some(dir),
            redis: None,
            peers: Vec::new(),
            turn: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn token(&self, sub: &str, org: Option<&str>, roles: &[Role]) -> String {
        self.auth
            .mint(sub, org, roles, Duration::from_secs(3600), None)
            .expect("mint")
    }

    pub fn url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }

    pub fn https(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }

    pub fn http(&self) -> reqwest::Client {
        http_client(&self.cert_pem)
    }

    /// Connects with `token` in the Authorization header and reads `connection_established`.
    pub async fn connect(&self, token: &str) -> Client {
        self.connect_as(token, None).await.expect("connect")
    }

    pub async fn connect_as(
        &self,
        token: &str,
        subprotocol: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        let (cert_pem, addr) = self.next_node();
        connect_with_token(cert_pem, addr, token, subprotocol).await
    }

    /// `/metrics` as the configured scraper reads it.
    pub async fn metrics(&self) -> String {
        self.http()
            .get(self.https("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// GETs `path` with `token`: the status and the JSON answer (null if none).
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http()
            .get(self.https(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// PUTs `body` as JSON to `path` with `token`: the status and the JSON answer (null if
    /// none).
    pub async fn put_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        put_json(&self.http(), &self.https(path), token, body).await
    }

    pub async fn stats(&self) -> Value {
        let admin = self.token("stats-admin", None, &[Role::Admin]);
        self.http()
            .get(self.https("/api/v1/websocket/stats"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    /// Waits until `check` holds on the stats, or fails after PATIENCE.
    pub async fn wait_stats(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let s = self.stats().await;
            if check(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.stop_with_result()
            .await
            .expect("server stopped cleanly");
    }

    /// Stops and says how the server ended (an unhealthy store ends it with an error).
    pub async fn stop_with_result(mut self) -> Result<(), lookout::server::ServerError> {
        for peer in std::mem::take(&mut self.peers) {
            Box::pin(peer.stop_with_result()).await?;
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }
}

pub fn client_tls(cert_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(browser_like_crypto())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// What a browser (or a phone's TLS stack) offers, in its order: key exchanges X25519 first
/// (its key share is the one sent), then P-256 and P-384; TLS 1.3 suites AES-128-GCM first.
/// A client that led with P-384 would make every handshake a slow one, and measure that
/// instead of what phones cost the server.
pub fn browser_like_crypto() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
    let mut suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let defaults = default_provider();
    // TLS 1.2's, for servers without 1.3, in the provider's order.
    suites.extend(
        defaults
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12),
    );
    Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        cipher_suites: suites,
        ..defaults
    })
}

pub fn http_client(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).expect("cert"))
        .tls_built_in_root_certs(false)
        .timeout(PATIENCE)
        .build()
        .expect("client")
}

pub async fn connect_request(
    cert_pem: &[u8],
    req: tungstenite::handshake::client::Request,
    msgpack: bool,
) -> Result<Client, tungstenite::Error> {
    let (ws, _response) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        true,
        Some(Connector::Rustls(client_tls(cert_pem))),
    )
    .await?;
    let mut client = Client {
        ws,
        inbox: VecDeque::new(),
        next_id: 0,
        msgpack,
        established: Value::Null,
    };
    let first = client.next_frame().await;
    assert_eq!(first["type"], "connection_established", "{first}");
    client.established = first;
    Ok(client)
}

/// Connects to `wss://addr/ws` with `token` as a Bearer header, asking for `subprotocol`.
pub async fn connect_with_token(
    cert_pem: &[u8],
    addr: SocketAddr,
    token: &str,
    subprotocol: Option<&str>,
) -> Result<Client, tungstenite::Error> {
    let mut req = format!("wss://{addr}/ws").into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().expect("header"));
    }
    connect_request(cert_pem, req, subprotocol == Some("lookout.msgpack")).await
}

/// The body of an HTTP refusal at the upgrade, as tungstenite reports it.
pub fn refusal(err: tungstenite::Error) -> (u16, Value) {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (status, body)
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Channel messages read while waiting for a reply.
    pub inbox: VecDeque<Value>,
    next_id: u64,
    msgpack: bool,
    pub established: Value,
}

/// How a connection ended, as the client saw it.
#[derive(Debug)]
pub enum Ended {
    Closed(u16, String),
    /// The TCP/TLS stream ended without a close frame.
    Dropped,
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        let msg = if self.msgpack {
            Message::Binary(rmp_serde::to_vec_named(&v).expect("pack").into())
        } else {
            Message::Text(v.to_string().into())
        };
        self.ws.send(msg).await.expect("send");
    }

    /// The next application frame, decoded; panics on close or after PATIENCE.
    pub async fn next_frame(&mut self) -> Value {
        match tokio::time::timeout(PATIENCE, self.read_frame()).await {
            Ok(Ok(v)) => v,
            Ok(Err(end)) => panic!("connection ended: {end:?}"),
            Err(_) => panic!("no frame within {PATIENCE:?}"),
        }
    }

    async fn read_frame(&mut self) -> Result<Value, Ended> {
        self.ws.next_frame_or_end().await
    }

    /// Like [`Client::request`], but `None` when the connection ends first (a crashed server).
    pub async fn try_request(&mut self, mut v: Value) -> Option<Value> {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        v["id"] = json!(id);
        let msg = Message::Text(v.to_string().into());
        self.ws.send(msg).await.ok()?;
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.read_frame())
                .await
                .ok()?
                .ok()?;
            if frame["id"] == json!(id) {
                return Some(frame);
            }
        }
    }

    /// Sends `v` with a fresh id and returns the reply, error or pong carrying that id.
    pub async fn request(&mut self, mut v: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        v["id"] = json!(id);
        self.send(v).await;
        loop {
            let frame = self.next_frame().await;
            if frame["id"] == json!(id) {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }

    /// Publishes a video frame (MessagePack connections only) and returns the reply.
    pub async fn publish_frame(&mut self, channel: &str, jpeg: &[u8], keyframe: bool) -> Value {
        let s = |v: &str| rmpv::Value::from(v);
        let frame = rmpv::Value::Map(vec![
            (s("codec"), s("jpeg")),
            (s("keyframe"), rmpv::Value::from(keyframe)),
            (s("ts"), rmpv::Value::from(lookout::clock::now_millis())),
            (s("data"), rmpv::Value::Binary(jpeg.to_vec())),
        ]);
        self.publish_packed(channel, frame).await
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.request(json!({"type": "subscribe", "channel": channel}))
            .await
    }

    pub async fn publish(&mut self, channel: &str, data: Value) -> Value {
        self.request(json!({"type": "publish", "channel": channel, "data": data}))
            .await
    }

    /// The next `message` frame (from the inbox first).
    pub async fn next_message(&mut self) -> Value {
        if let Some(pos) = self.inbox.iter().position(|f| f["type"] == "message") {
            return self.inbox.remove(pos).expect("present");
        }
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "message" {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }

    /// Reads until the connection ends and reports how.
    pub async fn ended(&mut self) -> Ended {
        match tokio::time::timeout(PATIENCE, async {
            loop {
                if let Err(end) = self.read_frame().await {
                    return end;
                }
            }
        })
        .await
        {
            Ok(end) => end,
            Err(_) => panic!("connection still open after {PATIENCE:?}"),
        }
    }

    /// Everything that arrives within `window`, after the inbox.
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.inbox.drain(..).collect();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Ok(v)) = tokio::time::timeout_at(deadline, self.read_frame()).await {
            out.push(v);
        }
        out
    }
}

pub fn ok(reply: &Value) -> bool {
    reply["type"] == "reply" && reply["ok"] == true
}

pub fn error_code(reply: &Value) -> &str {
    if reply["type"] == "error" {
        reply["code"].as_str().unwrap_or("?")
    } else {
        "ok"
    }
}

/// A `lookout` process started from the built binary.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub data_dir: std::path::PathBuf,
    pub stdout_lines: Vec<String>,
    /// The environment it was started with (what its tokens are signed with, say).
    pub env: Vec<(String, String)>,
}

/// The `metrics.token` tests give a server whose `/metrics` they scrape.
pub const METRICS_TOKEN: &str = "a-test-scraper-token-of-32-bytes-at-least";

impl Binary {
    /// Runs `lookout serve --listen 127.0.0.1:0 --data-dir DIR` with `env`, waits for the
    /// listening line.
    pub fn serve(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Binary {
        Binary::serve_at(data_dir, "127.0.0.1:0", env)
    }

    /// Like [`Binary::serve`] on a given address (to come back on the same port).
    pub fn serve_at(data_dir: &std::path::Path, listen: &str, env: &[(&str, &str)]) -> Binary {
        Binary::spawn(&["serve", "--listen", listen], data_dir, env)
    }

    /// `lookout demo --listen LISTEN --data-dir DIR` plus `args`.
    pub fn demo(data_dir: &std::path::Path, listen: &str, args: &[&str]) -> Binary {
        let mut all = vec!["demo", "--listen", listen];
        all.extend_from_slice(args);
        Binary::spawn(&all, data_dir, &[])
    }

    /// `lookout ARGS --data-dir DIR`, waiting for the listening line.
    pub fn spawn(args: &[&str], data_dir: &std::path::Path, env: &[(&str, &str)]) -> Binary {
        // LOOKOUT_TEST_LOG shows the binary's logs too (RUST_LOG sets its level).
        let stderr = if std::env::var_os("LOOKOUT_TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        };
        Binary::spawn_logging_to(args, data_dir, env, stderr)
    }

    /// Like [`Binary::spawn`], with the binary's logs (stderr) going to `stderr`.
    pub fn spawn_logging_to(
        args: &[&str],
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
    ) -> Binary {
        use std::io::BufRead;
        // A benchmark may compare another build (SERVER_UNDER_TEST names its binary).
        let program = std::env::var_os("SERVER_UNDER_TEST")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_lookout").into());
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .current_dir(data_dir.parent().unwrap_or(data_dir))
            .stdout(std::process::Stdio::piped())
            // Not a setting of the binary's: its config refuses unknown LOOKOUT_ variables.
            .env_remove("LOOKOUT_TEST_LOG")
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lookout");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("lookout exited before listening")
                .expect("read stdout");
            seen.push(line.clone());
            if let Some(url) = line.strip_prefix("lookout listening on https://") {
                break url.trim().parse().expect("address in listening line");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Binary {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            stdout_lines: seen,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// What a client trusts: the local CA's certificate.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("tls/ca.pem")).expect("the local CA's certificate")
    }

    /// The supervisor's sign-in link `lookout demo` printed.
    pub fn demo_link(&self) -> String {
        self.stdout_lines
            .iter()
            .find_map(|l| l.strip_prefix("dashboard (one-time sign-in link): "))
            .expect("the demo prints the dashboard link")
            .to_string()
    }

    /// A one-time sign-in link's token for `sub`, as `lookout token --link` mints it.
    pub fn link(&self, sub: &str, org: &str, role: Role) -> String {
        let config = Config {
            data_dir: self.data_dir.clone(),
            ..Config::default()
        };
        Authenticator::from_config(&config)
            .expect("auth")
            .mint_link(sub, Some(org), &[role], Duration::from_secs(3600), None)
            .expect("mint link")
    }

    /// Mints a token with the binary's generated secret, as `lookout token` does.
    pub fn token(&self, sub: &str, org: Option<&str>, roles: &[Role]) -> String {
        let config = Config {
            data_dir: self.data_dir.clone(),
            ..Config::default()
        };
        Authenticator::from_config(&config)
            .expect("auth")
            .mint(sub, org, roles, Duration::from_secs(3600), None)
            .expect("mint")
    }

    pub async fn connect(&self, token: &str) -> Client {
        self.connect_with(token, None).await
    }

    /// Connects asking for `subprotocol`.
    pub async fn connect_with(&self, token: &str, subprotocol: Option<&str>) -> Client {
        connect_with_token(&self.cert_pem(), self.addr, token, subprotocol)
            .await
            .expect("connect")
    }

    /// Its `/metrics` text, scraped with its `metrics.token`, or as an admin.
    pub async fn metrics(&self) -> String {
        let env = |key: &str| {
            self.env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let bearer = match (env("LOOKOUT_METRICS__TOKEN"), env("LOOKOUT_JWT__SECRET")) {
            (Some(token), _) => token,
            (None, Some(secret)) => {
                let mut config = test_config(&self.data_dir);
                config.jwt.secret = Some(secret);
                Authenticator::from_config(&config)
                    .expect("auth")
                    .mint(
                        "scraper",
                        None,
                        &[Role::Admin],
                        Duration::from_secs(600),
                        None,
                    )
                    .expect("mint")
            }
            (None, None) => self.token("scraper", None, &[Role::Admin]),
        };
        http_client(&self.cert_pem())
            .get(format!("https://{}/metrics", self.addr))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics")
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// Rate limits out of the way, for tests that publish as fast as the server acknowledges.
pub const UNLIMITED_RATE: [(&str, &str); 2] = [
    ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
    ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
];

impl Binary {
    /// `kill -9`, then the binary again on the same data directory and port with `env`.
    pub fn kill_9_and_restart(self, env: &[(&str, &str)]) -> Binary {
        self.kill_9_and_restart_after(Duration::ZERO, env)
    }

    /// Like [`Binary::kill_9_and_restart`], staying down for `down` in between.
    pub fn kill_9_and_restart_after(mut self, down: Duration, env: &[(&str, &str)]) -> Binary {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        std::thread::sleep(down);
        Binary::serve_at(&self.data_dir, &self.addr.to_string(), env)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one decoded frame or how the connection ended, without a timeout.
pub trait NextFrameOrEnd {
    fn next_frame_or_end(&mut self) -> impl std::future::Future<Output = Result<Value, Ended>>;
}

impl NextFrameOrEnd for WebSocketStream<MaybeTlsStream<TcpStream>> {
    async fn next_frame_or_end(&mut self) -> Result<Value, Ended> {
        loop {
            match self.next().await {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(&t).expect("server sent invalid JSON"))
                }
                Some(Ok(Message::Binary(b))) => {
                    let v =
                        rmpv::decode::read_value(&mut &b[..]).expect("server sent invalid msgpack");
                    return Ok(packed_to_json(v));
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Err(Ended::Closed(u16::from(code), reason.to_string()))
                }
                Some(Ok(Message::Close(None))) => return Err(Ended::Closed(1005, String::new())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }
}

/// Connects a client whose TCP receive buffer is tiny, so that once it stops reading the
/// server's writes back up at once instead of filling megabytes of loopback buffers.
pub async fn connect_stalled(cert_pem: &[u8], addr: SocketAddr, token: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(addr).await.expect("connect");
    let mut req = format!("wss://{addr}/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        req,
        stream,
        None,
        Some(Connector::Rustls(client_tls(cert_pem))),
    )
    .await
    .expect("handshake");
    let mut client = Client {
        ws,
        inbox: VecDeque::new(),
        next_id: 0,
        msgpack: false,
        established: Value::Null,
    };
    client.established = client.next_frame().await;
    client
}

/// GETs `url` with `token` and decodes the JSON body, whatever the status.
/// POSTs `body` as JSON with `token`: the status and the JSON answer (null if none).
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// PUTs `body` as JSON to `url` with `token`: the status and the JSON answer (null if none).
pub async fn put_json(http: &reqwest::Client, url: &str, token: &str, body: Value) -> (u16, Value) {
    let response = http
        .put(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts that every screenshot `{prefix}-{name}.png` was written to `artifacts`.
pub fn assert_screenshots(artifacts: &std::path::Path, prefix: &str, names: &[&str]) {
    for name in names {
        let file = artifacts.join(format!("{prefix}-{name}.png"));
        assert!(
            file.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "screenshot {} was not written",
            file.display()
        );
    }
}

pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

impl Client {
    /// Publishes an arbitrary MessagePack payload (MessagePack connections only), e.g. a NaN
    /// that JSON cannot carry, and returns the reply.
    pub async fn publish_packed(&mut self, channel: &str, data: rmpv::Value) -> Value {
        assert!(self.msgpack, "needs lookout.msgpack");
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        let s = |v: &str| rmpv::Value::from(v);
        let frame = rmpv::Value::Map(vec![
            (s("type"), s("publish")),
            (s("id"), s(&id)),
            (s("channel"), s(channel)),
            (s("data"), data),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &frame).expect("encode");
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
        loop {
            let reply = self.next_frame().await;
            if reply["id"] == json!(id) {
                return reply;
            }
            self.inbox.push_back(reply);
        }
    }

    /// The next message on `channel` (others stay in the inbox).
    pub async fn next_on(&mut self, channel: &str) -> Value {
        if let Some(pos) = self
            .inbox
            .iter()
            .position(|f| f["type"] == "message" && f["channel"] == channel)
        {
            return self.inbox.remove(pos).expect("present");
        }
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "message" && frame["channel"] == channel {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }
}

/// A location payload.
pub fn location(lat: f64, lon: f64) -> Value {
    json!({"lat": lat, "lon": lon, "accuracy": 5.0, "battery": 80, "ts": lookout::clock::now_millis()})
}

/// MessagePack as JSON for assertions; bytes become arrays of numbers.
pub fn packed_to_json(v: rmpv::Value) -> Value {
    match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        rmpv::Value::F32(f) => json!(f),
        rmpv::Value::F64(f) => json!(f),
        rmpv::Value::String(s) => Value::String(s.into_str().unwrap_or_default()),
        rmpv::Value::Binary(b) => json!(b),
        rmpv::Value::Array(a) => Value::Array(a.into_iter().map(packed_to_json).collect()),
        rmpv::Value::Map(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap_or_default().to_string(),
                        packed_to_json(v),
                    )
                })
                .collect(),
        ),
        rmpv::Value::Ext(_, b) => json!(b),
    }
}

/// One entry of an alert's audit trail, as REST returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditStep {
    pub action: String,
    pub by: String,
    pub level: u64,
    pub at: u64,
}

/// The audit trail of an alert (a REST alert body), oldest first.
pub fn audit_trail(alert: &Value) -> Vec<AuditStep> {
    alert["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .map(|e| AuditStep {
            action: e["action"].as_str().unwrap_or("").to_string(),
            by: e["by"].as_str().unwrap_or("").to_string(),
            level: e["level"].as_u64().unwrap_or(0),
            at: e["at"].as_u64().unwrap_or(0),
        })
        .collect()
}

/// A script in `tests/node` run under Node.js with real npm clients. It reports steps as JSON
/// lines on stdout (`{"event": …}`); `{"event":"fail"}` or an early exit fails the test.
pub struct NodeScript {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// For scripts driven command by command ([`NodeScript::driven`]).
    stdin: Option<tokio::process::ChildStdin>,
    name: String,
}

impl NodeScript {
    pub fn run(script: &str, env: &[(&str, String)]) -> NodeScript {
        Self::spawn(script, env, false)
    }

    /// A script that reads one JSON command per line on its stdin ([`NodeScript::send`]).
    pub fn driven(script: &str, env: &[(&str, String)]) -> NodeScript {
        Self::spawn(script, env, true)
    }

    /// Sends one command to a [`NodeScript::driven`] script.
    pub async fn send(&mut self, command: Value) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("a driven script");
        let mut line = command.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to node");
        stdin.flush().await.expect("flush to node");
    }

    fn spawn(script: &str, env: &[(&str, String)], driven: bool) -> NodeScript {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        assert!(
            dir.join("node_modules").is_dir(),
            "tests/node/node_modules is missing: run `bash tests/run.sh` (or `npm ci --prefix tests/node`)"
        );
        let mut cmd = tokio::process::Command::new("node");
        let stdin = if driven {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        };
        cmd.arg(script)
            .current_dir(&dir)
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("node (install Node.js, or run tests/run.sh)");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        use tokio::io::AsyncBufReadExt;
        NodeScript {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            stdin,
            name: script.to_string(),
        }
    }

    /// The next event of any kind.
    pub async fn next_event(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE * 4, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no event in time", self.name))
            .expect("read node stdout")
            .unwrap_or_else(|| panic!("{}: exited early", self.name));
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not a JSON event ({e}): {line}", self.name));
        assert_ne!(event["event"], "fail", "{}: {event:#}", self.name);
        event
    }

    /// The next event named `name`; events of other names before it are skipped.
    pub async fn event(&mut self, name: &str) -> Value {
        loop {
            let event = self.next_event().await;
            if event["event"] == name {
                return event;
            }
        }
    }

    /// Reads the script's `done` event and waits for its clean exit: no page error or CSP
    /// refusal (`problems`), no request that left the appliance (`foreign`).
    pub async fn finish_clean(mut self) {
        let done = self.event("done").await;
        self.finish().await;
        assert_eq!(
            done["problems"],
            json!([]),
            "page errors or CSP violations: {done}"
        );
        assert_eq!(
            done["foreign"],
            json!([]),
            "requests left the appliance: {done}"
        );
    }

    /// Waits for a clean exit.
    pub async fn finish(mut self) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("node exits")
            .expect("wait node");
        assert!(status.success(), "{} exited with {status}", self.name);
    }
}

/// The value of counter or gauge `name` (with or without `_total`) in `/metrics`' text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .or_else(|| l.strip_prefix(&format!("{name}_total ")))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// A minimal STOMP 1.2 client over tokio-tungstenite, for what stompjs cannot be made to do
/// (malformed and oversized frames, exact frame checks).
pub struct StompClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    parser: lookout::stomp::frame::Parser,
}

impl StompClient {
    /// Opens a `v12.stomp` WebSocket, with `token` at the upgrade if given; no CONNECT yet.
    pub async fn open(server: &TestServer, token: Option<&str>) -> StompClient {
        StompClient::open_at(&server.url(), &server.cert_pem, token).await
    }

    /// [`StompClient::open`] on any server: its WebSocket URL and certificate.
    pub async fn open_at(url: &str, cert_pem: &[u8], token: Option<&str>) -> StompClient {
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "v12.stomp".parse().expect("header"),
        );
        if let Some(token) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let (ws, response) = tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            true,
            Some(Connector::Rustls(client_tls(cert_pem))),
        )
        .await
        .expect("upgrade");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("v12.stomp")
        );
        StompClient {
            ws,
            parser: lookout::stomp::frame::Parser::new(1 << 20, 64),
        }
    }

    /// Opens and sends CONNECT with the token in `Authorization`; expects CONNECTED.
    pub async fn connect(server: &TestServer, token: &str) -> StompClient {
        StompClient::connect_at(&server.url(), &server.cert_pem, token).await
    }

    /// [`StompClient::connect`] on any server.
    pub async fn connect_at(url: &str, cert_pem: &[u8], token: &str) -> StompClient {
        let mut client = StompClient::open_at(url, cert_pem, None).await;
        let auth = format!("Bearer {token}");
        client
            .send_frame(
                "CONNECT",
                &[
                    ("accept-version", "1.2"),
                    ("host", "lookout"),
                    ("Authorization", &auth),
                ],
                b"",
            )
            .await;
        let connected = client.next_frame().await;
        assert_eq!(connected.command, "CONNECTED", "{connected:?}");
        client
    }

    pub async fn send_frame(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut frame = lookout::stomp::frame::Frame::new(command);
        for (k, v) in headers {
            frame = frame.header(k, *v);
        }
        let frame = frame.body(body.to_vec());
        self.ws
            .send(Message::Text(
                String::from_utf8(frame.to_bytes()).expect("utf-8").into(),
            ))
            .await
            .expect("send");
    }

    /// Sends a frame if the connection still takes it; false once the server has closed it.
    pub async fn try_send_frame(
        &mut self,
        command: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> bool {
        let mut frame = lookout::stomp::frame::Frame::new(command);
        for (k, v) in headers {
            frame = frame.header(k, *v);
        }
        let frame = frame.body(body.to_vec());
        let text = String::from_utf8(frame.to_bytes()).expect("utf-8");
        self.ws.send(Message::Text(text.into())).await.is_ok()
    }

    /// The next frame (heart-beats skipped).
    pub async fn next_frame(&mut self) -> lookout::stomp::frame::Frame {
        use lookout::stomp::frame::Event;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match self.parser.next_event().expect("well-formed frame") {
                Some(Event::Frame(frame)) => return frame,
                Some(Event::Heartbeat) => continue,
                None => {}
            }
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("connection open")
                .expect("read");
            match msg {
                Message::Text(t) => self.parser.push(t.as_bytes()),
                Message::Binary(b) => self.parser.push(&b),
                Message::Close(c) => panic!("closed while waiting for a frame: {c:?}"),
                _ => {}
            }
        }
    }

    /// Waits for the server's close frame; its code (`None` when the stream just ended).
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits for the server's close frame (or the end of the stream).
    pub async fn closed(&mut self) {
        self.close_code().await;
    }
}

/// Reads server-sent events from a streaming response: (id, data) of each `message` event.
pub struct EventReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        EventReader {
            stream: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event with data: its name, its id (if any) and its data; `None` when the
    /// stream ends.
    pub async fn next_event(&mut self) -> Option<(String, Option<String>, String)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_string())
                };
                if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                    return Some((event, field("id:"), data));
                }
                continue;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("an event or the end in time")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.ok()?));
        }
    }

    /// The next `message` event: its id and data.
    pub async fn next_message(&mut self) -> (String, Value) {
        loop {
            let (event, id, data) = self.next_event().await.expect("stream open");
            if event == "message" {
                let data = serde_json::from_str(&data).expect("json");
                return (id.expect("id"), data);
            }
        }
    }
}

/// One scrape of `/metrics`, parsed by a Prometheus text parser.
pub async fn scrape(server: &TestServer) -> prometheus_parse::Scrape {
    let response = server
        .http()
        .get(server.https("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the output parses as Prometheus text")
}

/// The value of `name` with `labels`; a histogram's value is its count.
pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count)
            .unwrap_or_else(|| panic!("{name} has no +Inf bucket")),
        other => panic!("{name}: unexpected {other:?}"),
    }
}

/// Debian's Chromium (or `CHROMIUM`), which the browser tests drive; missing, they fail.
pub fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "Chromium is missing: run `bash tests/run.sh` (it installs Debian's chromium) or set CHROMIUM"
    );
    path
}

/// Writes `toml` as the configuration of a binary on `data` (beside it, as `<data>.toml`; the
/// data directory is created) and answers its path, for `LOOKOUT_CONFIG`.
pub fn config_file(data: &std::path::Path, toml: &str) -> String {
    std::fs::create_dir_all(data).expect("mkdir");
    let path = data.with_extension("toml");
    std::fs::write(&path, toml).expect("write config");
    path.display().to_string()
}

// ---- PDFs: poppler's tools, CSV and PPM readers (tests/shift_report.rs, tests/patrols.rs) ----

/// Runs one of poppler's tools; a missing tool fails the test, saying what to install.
pub fn poppler(tool: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool} is required (Debian's poppler-utils; tests/run.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
/// RFC 4180 rows: quoted fields may hold commas, doubled quotes and line breaks.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "the CSV ends with a line end"
    );
    rows
}
/// A binary PPM (P6) as (width, height, RGB bytes).
pub fn parse_ppm(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).to_string());
    }
    assert_eq!(fields[0], "P6", "a binary PPM");
    let (w, h): (usize, usize) = (fields[1].parse().expect("w"), fields[2].parse().expect("h"));
    let pixels = bytes[i + 1..].to_vec();
    assert_eq!(pixels.len(), w * h * 3);
    (w, h, pixels)
}
pub fn near(pixel: &[u8], colour: [u8; 3], tolerance: u8) -> bool {
    pixel
        .iter()
        .zip(colour)
        .all(|(p, c)| p.abs_diff(c) <= tolerance)
}
/// Page 1 rendered at 50 dpi: as PPM for the checks, as PNG for people.
pub fn first_page(
    pdf: &std::path::Path,
    dir: &std::path::Path,
    artifacts: &std::path::Path,
    keep_as: &str,
) -> (usize, usize, Vec<u8>) {
    let prefix = dir.join("page");
    let r50 = std::ffi::OsStr::new("50");
    let one = std::ffi::OsStr::new("1");
    let flags = |extra: &'static str| {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "-r".as_ref(),
            r50,
            "-f".as_ref(),
            one,
            "-l".as_ref(),
            one,
            "-singlefile".as_ref(),
        ];
        if !extra.is_empty() {
            a.push(extra.as_ref());
        }
        a
    };
    let mut ppm = flags("");
    ppm.extend([pdf.as_os_str(), prefix.as_os_str()]);
    poppler("pdftoppm", &ppm);
    let mut png = flags("-png");
    png.extend([pdf.as_os_str(), prefix.as_os_str()]);
    poppler("pdftoppm", &png);
    std::fs::copy(dir.join("page.png"), artifacts.join(keep_as)).expect("copy");
    parse_ppm(&std::fs::read(dir.join("page.ppm")).expect("ppm"))
}
