//! A real `redis-server` (Debian's package) for one test: listening on a Unix socket in a
//! temporary directory of its own (no TCP port at all), durable as cluster mode requires, and
//! stopped by its own pid when dropped, also when the test fails. Shared by the integration
//! tests and the store's unit tests (`#[path]`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct RedisProcess {
    child: std::process::Child,
    /// Its data and socket; removed when the process is gone.
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl RedisProcess {
    /// A durable Redis: `appendonly yes`, `appendfsync always`.
    pub fn start() -> RedisProcess {
        RedisProcess::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A Redis with these extra arguments (e.g. a non-durable one, to be refused).
    pub fn start_with(args: &[&str]) -> RedisProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let program = if std::path::Path::new("/usr/bin/redis-server").exists() {
            "/usr/bin/redis-server"
        } else {
            "redis-server"
        };
        let child = std::process::Command::new(program)
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(dir.path())
            .arg("--save")
            .arg("")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (install Debian's redis-server, or run tests/run.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisProcess {
            child,
            _dir: dir,
            socket,
        }
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
