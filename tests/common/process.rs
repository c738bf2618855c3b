//! Server processes tests and benches start and own: stopped by the pids they were started
//! with (their whole tree, children first), never by name. RabbitMQ from Debian's package, with
//! every listener (AMQP, plugins, epmd, distribution) on 127.0.0.1 and a directory of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process a test or bench started, killed (SIGTERM, then SIGKILL) and reaped by its pid on drop.
pub struct Owned {
    /// The process.
    pub child: Child,
    what: &'static str,
}

impl Owned {
    /// Starts `cmd`; `what` names it in messages.
    pub fn spawn(cmd: &mut Command, what: &'static str) -> Owned {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Owned { child, what }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // The whole tree: RabbitMQ's start script waits on beam.smp, nginx's master on its
        // workers. Each is signalled by the pid we know it by, children first.
        let mut tree = descendants(self.child.id());
        tree.reverse();
        tree.push(self.child.id());
        for pid in &tree {
            signal(*pid, "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in &tree {
            if Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!(
                    "{} (pid {pid}) still running after SIGTERM: SIGKILL",
                    self.what
                );
                signal(*pid, "KILL");
            }
        }
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Every process below `pid`, parents before children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.filter_map(Result::ok) {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|f| f.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Where Debian's rabbitmq-server lives, when it is installed.
pub fn rabbitmq_home() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/rabbitmq/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rabbitmq_server-"))
        })
}

/// RabbitMQ under `dir` (its `rabbitmq.conf` and `enabled_plugins` written there already),
/// with an epmd of its own on `epmd_port` (the one Erlang would start is a daemon nobody owns)
/// and its distribution on `dist`: (the broker, the epmd).
pub fn rabbitmq(dir: &Path, epmd_port: u16, dist: u16) -> (Owned, Owned) {
    for sub in ["home", "mnesia", "log"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    let epmd = Owned::spawn(
        Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port", &epmd_port.to_string()])
            .env("HOME", dir.join("home"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "epmd",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", epmd_port)).is_err() {
        assert!(Instant::now() < deadline, "epmd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Owned::spawn_rabbitmq(dir, epmd_port, dist), epmd)
}

/// A RabbitMQ of the test's own: AMQP on 127.0.0.1:`port` (guest allowed from loopback only),
/// its epmd and distribution on 127.0.0.1 ports of their own, data under a temp directory.
pub struct RabbitMq {
    broker: Option<Owned>,
    _epmd: Owned,
    epmd_port: u16,
    dist: u16,
    /// The AMQP port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RabbitMq {
    /// Starts it and waits (up to 90 s: the first boot creates its database) for AMQP.
    pub fn start() -> RabbitMq {
        let dir = tempfile::tempdir().expect("tempdir");
        let [port, epmd_port, dist] = [0; 3].map(|_| super::redis::free_port());
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins");
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users.guest = true\n"),
        )
        .expect("rabbitmq.conf");
        let (broker, epmd) = rabbitmq(dir.path(), epmd_port, dist);
        let mut mq = RabbitMq {
            broker: Some(broker),
            _epmd: epmd,
            epmd_port,
            dist,
            port,
            dir,
        };
        mq.wait();
        mq
    }

    /// `amqp://guest:guest@127.0.0.1:port/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker (by its pid) and starts it again on the same data: durable queues and
    /// persistent messages survive.
    pub fn restart(&mut self) {
        drop(self.broker.take());
        self.broker = Some(Owned::spawn_rabbitmq(
            self.dir.path(),
            self.epmd_port,
            self.dist,
        ));
        self.wait();
    }

    fn wait(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "RabbitMQ did not listen");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Owned {
    /// The broker alone, on an epmd already running.
    fn spawn_rabbitmq(dir: &Path, epmd_port: u16, dist: u16) -> Owned {
        let home = rabbitmq_home().expect("rabbitmq-server is installed (run tests/run.sh)");
        Owned::spawn(
            Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
                .env("HOME", dir.join("home"))
                .env("RABBITMQ_HOME", &home)
                .env("RABBITMQ_NODENAME", format!("lookout-{dist}@localhost"))
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .env("ERL_EPMD_PORT", epmd_port.to_string())
                .env("RABBITMQ_DIST_PORT", dist.to_string())
                .env(
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                    "-kernel inet_dist_use_interface {127,0,0,1}",
                )
                .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", dir.join("log"))
                .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
                .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "rabbitmq-server",
        )
    }
}
