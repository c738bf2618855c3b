//! The Debian package, installed as an operator would on a site server: built by
//! `packaging/deb/build.sh`, installed with `apt install` on a Debian system booted with
//! systemd (a `systemd-nspawn` container on a network of its own), started with
//! `systemctl start lookout`, reached by a phone on that network, upgraded, removed.
//!
//! The container runs on a copy of a minimal Debian tree (`tests/install/rootfs.sh`, made once
//! with debootstrap), in a network namespace this test makes and deletes: the site has one
//! veth address, the "phone" (the other end, in a namespace of its own) another. Nothing
//! listens on the host's interfaces. Needs root (CI and `tests/run.sh` run as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SITE_ADDR: &str = "10.213.0.2";
const PHONE_ADDR: &str = "10.213.0.1";

#[test]
fn the_package_installs_starts_serves_phones_upgrades_and_keeps_the_data_on_removal() {
    require_root_and_tools();
    let package = build_package();
    let rootfs = debian_tree();
    let site = Site::boot(&rootfs, &package);

    // `apt install ./lookout_*.deb`: the user, the data directory only it can read, the
    // configuration readable by its group (it may hold secrets), the unit enabled but not
    // started, so that the configuration can be edited first.
    site.run(&["apt-get", "install", "-y", "-q", &site.deb("lookout")]);
    assert_eq!(site.out(&["systemctl", "is-enabled", "lookout"]), "enabled");
    assert_eq!(
        site.status(&["systemctl", "is-active", "lookout"]).0,
        "inactive"
    );
    assert_eq!(
        site.out(&["stat", "-c", "%U:%G %a", "/var/lib/lookout"]),
        "lookout:lookout 700"
    );
    assert_eq!(
        site.out(&["stat", "-c", "%U:%G %a", "/etc/lookout/lookout.toml"]),
        "root:lookout 640"
    );

    // `systemctl start lookout` returns once the service said READY=1, under the unit's sandbox.
    site.run(&["systemctl", "start", "lookout"]);
    assert_eq!(site.out(&["systemctl", "is-active", "lookout"]), "active");

    // A phone on the site's network trusts the CA it fetched from /ca.crt and then reaches the
    // server by its IP address: curl checks that the certificate names that address, which
    // the server could list only through netlink, inside the unit's sandbox.
    let ca = site.phone_fetch_ca();
    assert_eq!(
        ca,
        site.out(&["cat", "/var/lib/lookout/tls/ca.pem"]),
        "/ca.crt is the CA in the data directory"
    );
    for address in site.global_addresses() {
        let ready = site.phone(&address, "/readyz", None);
        assert!(ready.contains("ready"), "/readyz at {address}: {ready}");
    }

    // The token recipe the service prints runs as written: as the service's user, with its
    // configuration file, so the token is signed with the secret the service verifies.
    let journal = site.out(&["journalctl", "-u", "lookout", "-o", "cat", "--no-pager"]);
    let recipe = journal
        .lines()
        .find_map(|l| l.strip_prefix("mint a token: "))
        .unwrap_or_else(|| panic!("the service says how to mint a token:\n{journal}"))
        .to_owned();
    assert_eq!(
        recipe,
        "sudo -u lookout lookout token --config /etc/lookout/lookout.toml \
         --sub alice --org demo --role supervisor"
    );
    let token = site.out(&["sh", "-c", &recipe]);
    let metrics = site.phone(SITE_ADDR, "/metrics", Some(&token));
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        metrics.contains(&format!("lookout_build_info{{version=\"{version}\"}} 1")),
        "{metrics}"
    );

    // check-config, run as the docs say, checks the service's own data directory and promises
    // the names the running certificate has.
    let checked = site.out(&[
        "sudo",
        "-u",
        "lookout",
        "lookout",
        "check-config",
        "--config",
        "/etc/lookout/lookout.toml",
    ]);
    assert!(
        checked.contains("/var/lib/lookout/tls/cert.pem covers") && checked.contains(SITE_ADDR),
        "{checked}"
    );

    // An upgrade keeps the data, the CA phones trust, the secret tokens were signed with and
    // the site's edit of the configuration, and restarts the running service on the new binary.
    site.run(&[
        "sh",
        "-c",
        "echo '# edited on site' >> /etc/lookout/lookout.toml",
    ]);
    let before = site.out(&["systemctl", "show", "-p", "MainPID", "--value", "lookout"]);
    site.run(&[
        "apt-get",
        "install",
        "-y",
        "-q",
        &site.deb("lookout-upgrade"),
    ]);
    assert_eq!(
        site.out(&["dpkg-query", "-W", "-f", "${Version}", "lookout"]),
        format!("{version}+upgrade")
    );
    assert_eq!(site.out(&["systemctl", "is-active", "lookout"]), "active");
    let after = site.out(&["systemctl", "show", "-p", "MainPID", "--value", "lookout"]);
    assert_ne!(before, after, "the upgrade restarted the service");
    assert!(site
        .out(&["cat", "/etc/lookout/lookout.toml"])
        .ends_with("# edited on site"));
    assert_eq!(ca, site.out(&["cat", "/var/lib/lookout/tls/ca.pem"]));
    let metrics = site.phone(SITE_ADDR, "/metrics", Some(&token));
    assert!(
        metrics.contains("lookout_build_info"),
        "the old token still works"
    );

    // Removing, even purging, the package stops the service and keeps the data: the alarms'
    // history and the CA phones trust are never deleted by the package manager.
    site.run(&["apt-get", "remove", "-y", "-q", "lookout"]);
    assert_eq!(
        site.status(&["systemctl", "is-active", "lookout"]).0,
        "inactive"
    );
    site.run(&["apt-get", "purge", "-y", "-q", "lookout"]);
    assert!(!site.exists("/etc/lookout/lookout.toml"));
    assert!(site.exists("/var/lib/lookout/tls/ca.pem"));
    assert!(site.exists("/var/lib/lookout/store"));
}

fn require_root_and_tools() {
    let root = host(Command::new("id").arg("-u")) == "0";
    assert!(
        root,
        "the install test boots a container: run it as root (`bash tests/run.sh` does in CI)"
    );
    for tool in [
        "debootstrap",
        "systemd-nspawn",
        "dpkg-shlibdeps",
        "curl",
        "nsenter",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: run `bash tests/run.sh` (it installs debootstrap, \
             systemd-container and dpkg-dev)"
        );
    }
}

/// The target directory cargo built this test's binary into.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_lookout"))
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/lookout")
        .to_owned()
}

/// The package, built by the documented command from the binary this test run compiled (a
/// debug build: a release build would double CI's compile time; the package is otherwise the
/// same), and an upgrade of it: the same files
/// under a later version, so that dpkg runs the maintainer scripts' upgrade path.
fn build_package() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("packaging/deb/build.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_lookout"))
        .env("CARGO_TARGET_DIR", target_dir())
        .stderr(Stdio::inherit())
        .output()
        .expect("run packaging/deb/build.sh");
    assert!(out.status.success(), "packaging/deb/build.sh failed");
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    assert!(deb.exists(), "build.sh printed the package's path: {deb:?}");
    let deb = if deb.is_absolute() {
        deb
    } else {
        root.join(deb)
    };

    let dir = target_dir().join(format!("install-test/packages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("packages dir");
    std::fs::hard_link(&deb, dir.join("lookout.deb")).expect("link the package");
    let tree = dir.join("upgrade");
    host(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let version = env!("CARGO_PKG_VERSION");
    let text = text.replace(
        &format!("Version: {version}\n"),
        &format!("Version: {version}+upgrade\n"),
    );
    std::fs::write(&control, text).expect("write control");
    host(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Znone", "--build"])
            .arg(&tree)
            .arg(dir.join("lookout-upgrade.deb")),
    );
    std::fs::remove_dir_all(&tree).expect("remove the unpacked tree");
    dir
}

/// The minimal Debian tree, made once per target directory (`tests/run.sh` starts making it
/// in the background when the run begins).
fn debian_tree() -> PathBuf {
    let dir = target_dir().join("install-test/debian");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/install/rootfs.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("run tests/install/rootfs.sh");
    assert!(status.success(), "tests/install/rootfs.sh failed");
    dir
}

/// Runs a command on the host, failing the test with what it said if it fails.
fn host(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", said(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Debian system booted with systemd in a container, on a network namespace of its own
/// whose veth peer is the "phone" in another namespace. Dropped: the container is shut down
/// by its own pid and both namespaces are deleted, also when the test fails.
struct Site {
    nspawn: Child,
    leader: u32,
    namespaces: [String; 2],
    packages: PathBuf,
    scratch: tempfile::TempDir,
}

impl Site {
    fn boot(rootfs: &Path, packages: &Path) -> Site {
        let id = std::process::id();
        let namespaces = [format!("lkt{id}s"), format!("lkt{id}p")];
        for ns in &namespaces {
            // A namespace left by an earlier run of this pid, if any.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            host(Command::new("ip").args(["netns", "add", ns]));
        }
        let [site_ns, phone_ns] = &namespaces;
        host(Command::new("ip").args([
            "link", "add", site_ns, "type", "veth", "peer", "name", phone_ns,
        ]));
        host(Command::new("ip").args(["link", "set", site_ns, "netns", site_ns]));
        host(Command::new("ip").args(["link", "set", phone_ns, "netns", phone_ns]));
        let phone_addr = format!("{PHONE_ADDR}/24");
        host(Command::new("ip").args([
            "-n",
            phone_ns,
            "addr",
            "add",
            &phone_addr,
            "dev",
            phone_ns,
        ]));
        host(Command::new("ip").args(["-n", phone_ns, "link", "set", phone_ns, "up"]));
        host(Command::new("ip").args(["-n", phone_ns, "link", "set", "lo", "up"]));

        let scratch = tempfile::tempdir().expect("tempdir");
        let console = std::fs::File::create(scratch.path().join("console.log")).expect("log");
        // --ephemeral: the container runs on a copy of the tree, thrown away when it stops.
        // --register=no --keep-unit: the host's init is not systemd, there is no machined.
        let nspawn = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(rootfs)
            .args(["--ephemeral", "--boot", "--register=no", "--keep-unit"])
            .arg(format!("--machine=lookout-site-{id}"))
            .arg(format!("--network-namespace-path=/run/netns/{site_ns}"))
            .arg(format!("--bind-ro={}:/mnt/packages", packages.display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("log"))
            .stderr(console)
            .spawn()
            .expect("start systemd-nspawn");
        let mut site = Site {
            leader: 0,
            nspawn,
            namespaces: namespaces.clone(),
            packages: packages.to_owned(),
            scratch,
        };
        site.leader = site.find_init();
        site.wait_for_boot();
        let site_addr = format!("{SITE_ADDR}/24");
        site.run(&["ip", "addr", "add", &site_addr, "dev", site_ns]);
        site.run(&["ip", "link", "set", site_ns, "up"]);
        site.run(&["ip", "link", "set", "lo", "up"]);
        site
    }

    /// The container's PID 1: systemd-nspawn's child named systemd.
    fn find_init(&mut self) -> u32 {
        let pid = self.nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children.split_whitespace() {
                let comm =
                    std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return child.parse().expect("pid");
                }
            }
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn ended ({status}): {}", self.console());
            }
            assert!(
                Instant::now() < deadline,
                "no init in the container: {}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Until systemd in the container says it finished booting; until its manager is up,
    /// `systemctl` cannot reach it and says nothing.
    fn wait_for_boot(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.exec(&["systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not boot: {}\n{}",
                said(&out),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("console.log")).unwrap_or_default()
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.leader.to_string())
            .args(["--all", "--"])
            .args(args)
            .output()
            .expect("run nsenter")
    }

    /// Runs a command in the container; the test fails with what it said if it fails.
    fn run(&self, args: &[&str]) {
        let out = self.exec(args);
        assert!(out.status.success(), "{args:?} failed: {}", said(&out));
    }

    /// A command's trimmed standard output; it must succeed.
    fn out(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(out.status.success(), "{args:?} failed: {}", said(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A command's trimmed standard output and whether it succeeded.
    fn status(&self, args: &[&str]) -> (String, bool) {
        let out = self.exec(args);
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            out.status.success(),
        )
    }

    fn exists(&self, path: &str) -> bool {
        self.exec(&["test", "-e", path]).status.success()
    }

    /// A package in the directory bound at /mnt/packages.
    fn deb(&self, name: &str) -> String {
        assert!(self.packages.join(format!("{name}.deb")).exists());
        format!("/mnt/packages/{name}.deb")
    }

    /// The container's addresses other than loopback and link-local ones.
    fn global_addresses(&self) -> Vec<String> {
        let listed = self.out(&["ip", "-o", "addr", "show", "scope", "global"]);
        let addresses: Vec<String> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|cidr| cidr.split('/').next())
            .map(str::to_owned)
            .collect();
        assert_eq!(addresses, [SITE_ADDR], "the site's one address");
        addresses
    }

    /// curl on the phone, the other end of the site's network.
    fn curl(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespaces[1]])
            .args(["curl", "-sS", "--fail"]);
        cmd
    }

    /// What a phone on the site's network does first: fetch the CA over TLS it cannot verify
    /// yet (as the /trust page's link does), to trust it from then on.
    fn phone_fetch_ca(&self) -> String {
        let path = self.scratch.path().join("ca.crt");
        host(
            self.curl()
                .arg("-k")
                .arg("-o")
                .arg(&path)
                .arg(format!("https://{SITE_ADDR}:8443/ca.crt")),
        );
        let ca = std::fs::read_to_string(path).expect("ca.crt");
        ca.trim().to_owned()
    }

    /// GET `path` from the phone, trusting only the CA it fetched, at `address`.
    fn phone(&self, address: &str, path: &str, token: Option<&str>) -> String {
        let mut cmd = self.curl();
        cmd.arg("--cacert").arg(self.scratch.path().join("ca.crt"));
        if let Some(token) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        host(cmd.arg(format!("https://{address}:8443{path}")))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() && self.leader != 0 {
            let journal = self.exec(&["journalctl", "-b", "--no-pager", "-n", "200"]);
            eprintln!("--- the container's journal ---\n{}", said(&journal));
        }
        // SIGTERM asks systemd-nspawn to shut the container down cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.nspawn.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.nspawn.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.packages);
    }
}
