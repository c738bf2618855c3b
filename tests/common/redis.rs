//! A real `redis-server` (Debian's package) for one test: listening on a Unix socket in a
//! temporary directory of its own (no TCP port at all), durable as cluster mode requires, and
//! stopped by its own pid when dropped, also when the test fails. Shared by the integration
//! tests and the store's unit tests (`#[path]`).
//!
//! For failover tests, [`RedisProcess::start_tcp`] and [`Sentinel`]: a primary, its replicas
//! and Debian's `redis-sentinel` on 127.0.0.1 ports of their own (Sentinels need TCP), each
//! with a directory of its own and stopped by its own pid.

#![allow(dead_code)] // each includer uses part of it
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct RedisProcess {
    child: std::process::Child,
    /// Its data and socket; removed when the process is gone.
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// Its TCP port on 127.0.0.1, for a failover test's servers.
    pub port: Option<u16>,
    args: Vec<String>,
    /// Certificates a TLS one reads.
    _files: Option<TlsFiles>,
}

/// A free TCP port on 127.0.0.1 (bound and released: a test's servers take theirs at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What every test Redis runs with: durable as Lookout requires, on 127.0.0.1 only.
const DURABLE: [&str; 6] = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--bind",
    "127.0.0.1",
];

impl RedisProcess {
    /// A durable Redis: `appendonly yes`, `appendfsync always`.
    pub fn start() -> RedisProcess {
        RedisProcess::start_with(&DURABLE)
    }

    /// A Redis with these extra arguments (e.g. a non-durable one, to be refused).
    pub fn start_with(args: &[&str]) -> RedisProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn_server(dir.path(), &socket, &args);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisProcess {
            child,
            _dir: dir,
            socket,
            port: None,
            args,
            _files: None,
        }
    }

    /// A durable Redis on 127.0.0.1:`port` (its Unix socket too), with `extra` arguments
    /// (e.g. `--replicaof 127.0.0.1 P`).
    pub fn start_tcp(port: u16, extra: &[&str]) -> RedisProcess {
        let port_arg = port.to_string();
        let mut args = DURABLE.to_vec();
        args.extend_from_slice(&["--port", &port_arg]);
        args.extend_from_slice(extra);
        let mut redis = RedisProcess::start_with(&args);
        wait_for_port(port);
        redis.port = Some(port);
        redis
    }

    /// A durable Redis answering TLS only, on 127.0.0.1:`port`, with a certificate for
    /// `localhost` signed by a CA of its own (its Unix socket stays plain, for inspection).
    /// Answers the CA's PEM.
    pub fn start_tls(port: u16) -> (RedisProcess, String) {
        let tls = TlsFiles::new();
        let ca_pem = std::fs::read_to_string(&tls.ca).expect("CA");
        let mut redis = RedisProcess::start_tls_with(port, &tls, &[]);
        redis._files = Some(tls);
        (redis, ca_pem)
    }

    /// A durable Redis answering only TLS on 127.0.0.1:`port`, with `tls`'s certificate, and
    /// only to clients that log in with `password`.
    pub fn start_secured(port: u16, tls: &TlsFiles, password: &str) -> RedisProcess {
        RedisProcess::start_tls_with(port, tls, &["--requirepass", password])
    }

    fn start_tls_with(port: u16, tls: &TlsFiles, extra: &[&str]) -> RedisProcess {
        let port_arg = port.to_string();
        let mut args = DURABLE.to_vec();
        args.extend_from_slice(&[
            "--tls-port",
            &port_arg,
            "--tls-cert-file",
            &tls.cert,
            "--tls-key-file",
            &tls.key,
            "--tls-ca-cert-file",
            &tls.ca,
            "--tls-auth-clients",
            "no",
        ]);
        args.extend_from_slice(extra);
        let mut redis = RedisProcess::start_with(&args);
        wait_for_port(port);
        redis.port = Some(port);
        redis
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9` of this process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the process again on its directory, port and arguments (after [`Self::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn_server(self._dir.path(), &self.socket, &self.args);
        if let Some(port) = self.port {
            wait_for_port(port);
        }
    }

    /// `redis://127.0.0.1:port` of a TCP one.
    pub fn tcp_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port.expect("a TCP redis"))
    }

    /// The URL Lookout connects with.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(name: &str) -> String {
    let debian = format!("/usr/bin/{name}");
    if std::path::Path::new(&debian).exists() {
        debian
    } else {
        name.to_string()
    }
}

fn spawn_server(
    dir: &std::path::Path,
    socket: &std::path::Path,
    args: &[String],
) -> std::process::Child {
    std::process::Command::new(program("redis-server"))
        .arg("--port")
        .arg("0")
        .arg("--unixsocket")
        .arg(socket)
        .arg("--unixsocketperm")
        .arg("700")
        .arg("--dir")
        .arg(dir)
        .arg("--save")
        .arg("")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (install Debian's redis-server, or run tests/run.sh)")
}

/// A test CA and a certificate it signed for `localhost` and `127.0.0.1` (a Sentinel names a
/// primary by address), as files a Redis or a Sentinel reads.
pub struct TlsFiles {
    _dir: tempfile::TempDir,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl TlsFiles {
    pub fn new() -> TlsFiles {
        let (ca, leaf, key) = certificate_for(&["localhost", "127.0.0.1"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write");
            path.display().to_string()
        };
        TlsFiles {
            ca: write("ca.pem", ca),
            cert: write("redis.pem", leaf.pem()),
            key: write("redis.key", key.serialize_pem()),
            _dir: dir,
        }
    }
}

/// A `redis-sentinel` on 127.0.0.1 watching the primary `master` calls `name`, quick to
/// decide it is down (1 s).
pub struct Sentinel {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Sentinel {
    pub fn start(name: &str, master_port: u16, quorum: u32) -> Sentinel {
        Sentinel::run(|port, dir| {
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 4000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.display()
            )
        })
    }

    /// A Sentinel answering only TLS, with `tls`'s certificate, that reaches the primary
    /// over TLS with `node_password` and answers only clients that log in with `password`.
    pub fn start_secured(
        name: &str,
        master_port: u16,
        tls: &TlsFiles,
        node_password: &str,
        password: &str,
    ) -> Sentinel {
        Sentinel::run(|port, dir| {
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
                 tls-auth-clients no\ntls-replication yes\nrequirepass {password}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel auth-pass {name} {node_password}\n\
                 sentinel down-after-milliseconds {name} 1000\n",
                dir = dir.display(),
                cert = tls.cert,
                key = tls.key,
                ca = tls.ca,
            )
        })
    }

    /// A Sentinel on a free port of 127.0.0.1 with the configuration `config` writes for that
    /// port and a directory of its own.
    fn run(config: impl FnOnce(u16, &std::path::Path) -> String) -> Sentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let file = dir.path().join("sentinel.conf");
        std::fs::write(&file, config(port, dir.path())).expect("sentinel.conf");
        let child = std::process::Command::new(program("redis-sentinel"))
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-sentinel (install Debian's redis-sentinel, or run tests/run.sh)");
        wait_for_port(port);
        Sentinel {
            child,
            _dir: dir,
            port,
        }
    }

    /// `127.0.0.1:port`, as `cluster.sentinels` lists it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA of the test's own and a certificate for `localhost` it signed: (the CA's PEM, the
/// certificate, its key). For the TLS servers tests stand up as peers
/// (Redis here, an identity provider in tests/jwks.rs).
pub fn localhost_certificate() -> (String, rcgen::Certificate, rcgen::KeyPair) {
    certificate_for(&["localhost"])
}

/// A CA of the test's own and a certificate it signed for `names`.
fn certificate_for(names: &[&str]) -> (String, rcgen::Certificate, rcgen::KeyPair) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Lookout test CA");
    let ca = ca.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    (ca.pem(), leaf, key)
}
