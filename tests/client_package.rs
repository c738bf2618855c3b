//! The JavaScript client as an npm package, `web/lookout-client/`: its TypeScript types check
//! under `tsc --strict` and declare every method and field of the JavaScript classes, `npm pack`
//! ships exactly its files, and its version is the crate's. Its behaviour is tests/client.rs's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn package_dir() -> PathBuf {
    repo().join("web/lookout-client")
}

/// tests/node, with its packages installed.
fn node_dir() -> PathBuf {
    let dir = repo().join("tests/node");
    assert!(
        dir.join("node_modules/typescript").is_dir(),
        "tests/node/node_modules is missing or stale: run `bash tests/run.sh` (or `npm ci --prefix tests/node`)"
    );
    dir
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `cmd` and returns its output; panics with its stdout and stderr if it fails.
fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install Node.js, or run tests/run.sh)"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

#[test]
fn the_package_types_check_under_strict_typescript_as_node_and_bundlers_resolve_them() {
    let dir = node_dir();
    // types/usage.ts imports the package by its name, does what the dashboard and the guard app
    // do, and marks with @ts-expect-error what the types must refuse.
    for resolution in [["nodenext", "nodenext"], ["esnext", "bundler"]] {
        let output = run(Command::new("node")
            .current_dir(&dir)
            .args(["node_modules/typescript/bin/tsc", "--noEmit", "--strict"])
            .args(["--target", "es2022", "--module", resolution[0]])
            .args(["--moduleResolution", resolution[1], "--listFiles"])
            .arg("types/usage.ts"));
        // The types came from the package, through its package.json.
        let files = String::from_utf8_lossy(&output.stdout);
        let types = package_dir().join("index.d.ts");
        assert!(
            files.lines().any(|l| Path::new(l.trim()) == types),
            "{resolution:?}: tsc did not read {}:\n{files}",
            types.display()
        );
    }
}

/// The members of the JavaScript's exported classes that index.d.ts does not declare, and the
/// ones it declares that the JavaScript does not have, as `Class.member`.
fn undeclared_and_phantom(surface: &Value) -> (Vec<String>, Vec<String>) {
    let js = surface["js"].as_object().expect("js");
    let dts = surface["dts"].as_object().expect("dts");
    let (mut undeclared, mut phantom) = (Vec::new(), Vec::new());
    for (name, export) in js {
        let Some(declared) = dts.get(name) else {
            undeclared.push(name.clone());
            continue;
        };
        if export["kind"] != "class" {
            continue;
        }
        assert_eq!(declared["kind"], "class", "{name} is a class: {declared}");
        let has: BTreeSet<String> = strings(&export["methods"])
            .union(&strings(&export["fields"]))
            .cloned()
            .collect();
        let says: BTreeSet<String> = strings(&declared["public"])
            .union(&strings(&declared["private"]))
            .cloned()
            .collect();
        undeclared.extend(has.difference(&says).map(|m| format!("{name}.{m}")));
        phantom.extend(says.difference(&has).map(|m| format!("{name}.{m}")));
    }
    for (name, declared) in dts {
        if declared["kind"] != "type" && !js.contains_key(name) {
            phantom.push(name.clone());
        }
    }
    (undeclared, phantom)
}

fn surface(client_dir: Option<&Path>) -> Value {
    let mut cmd = Command::new("node");
    cmd.current_dir(node_dir()).arg("client_surface.mjs");
    if let Some(dir) = client_dir {
        cmd.env("LOOKOUT_CLIENT_DIR", dir);
    }
    let output = run(&mut cmd);
    let line = String::from_utf8_lossy(&output.stdout);
    let surface: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(surface["event"], "surface", "{surface}");
    surface
}

#[test]
fn every_method_and_field_of_the_client_is_declared_in_its_types() {
    let real = surface(None);
    assert_eq!(
        Path::new(real["dir"].as_str().expect("dir"))
            .canonicalize()
            .expect("dir"),
        package_dir().canonicalize().expect("web/lookout-client"),
        "tests/node imports the package from web/lookout-client"
    );
    let exports: BTreeSet<&String> = real["js"].as_object().expect("js").keys().collect();
    assert_eq!(
        exports.into_iter().cloned().collect::<Vec<_>>(),
        ["LookoutClient", "LookoutError"]
    );
    let (undeclared, phantom) = undeclared_and_phantom(&real);
    assert!(
        undeclared.is_empty(),
        "index.d.ts does not declare {undeclared:?}: add them, typed if they are public, \
         `private` if not"
    );
    assert!(
        phantom.is_empty(),
        "index.d.ts declares {phantom:?}, which the JavaScript does not have"
    );
    let public = strings(&real["dts"]["LookoutClient"]["public"]);
    for method in [
        "on",
        "connect",
        "close",
        "subscribe",
        "publish",
        "ack",
        "send",
        "request",
    ] {
        assert!(public.contains(method), "{method} is public: {public:?}");
    }

    // The check catches a method added to the JavaScript alone.
    let copy = tempfile::tempdir().expect("tempdir");
    for file in ["package.json", "lookout-client.js", "index.d.ts"] {
        std::fs::copy(package_dir().join(file), copy.path().join(file)).expect("copy");
    }
    std::os::unix::fs::symlink(package_dir().join("vendor"), copy.path().join("vendor"))
        .expect("symlink vendor/");
    let js = copy.path().join("lookout-client.js");
    let source = std::fs::read_to_string(&js).expect("read");
    let anchor = "  /** Starts connecting";
    assert!(
        source.contains(anchor),
        "the anchor is in lookout-client.js"
    );
    let added = source.replacen(anchor, &format!("  pause() {{}}\n\n{anchor}"), 1);
    std::fs::write(&js, added).expect("write");
    let (undeclared, phantom) = undeclared_and_phantom(&surface(Some(copy.path())));
    assert_eq!(undeclared, ["LookoutClient.pause"]);
    assert!(phantom.is_empty(), "{phantom:?}");
}

#[test]
fn the_package_loads_its_vendored_msgpack_from_its_own_folder() {
    let codecs = &surface(None)["codecs"];
    let request = json!({ "type": "publish", "channel": "/topic/x" });
    assert_eq!(codecs["msgpack"]["binary"], true, "{codecs}");
    assert_eq!(codecs["msgpack"]["decoded"]["type"], request["type"]);
    assert_eq!(codecs["msgpack"]["decoded"]["channel"], request["channel"]);
    // Binary data stays bytes over MessagePack; JSON has no bytes.
    assert_eq!(codecs["msgpack"]["decoded"]["data"]["bytes"], json!([1, 2]));
    assert_eq!(codecs["json"]["binary"], false, "{codecs}");
    assert_eq!(
        codecs["json"]["decoded"]["data"]["bytes"],
        json!({ "0": 1, "1": 2 })
    );
}

#[test]
fn npm_pack_ships_exactly_the_client_its_types_and_the_vendored_msgpack() {
    let output = run(Command::new("npm").current_dir(package_dir()).args([
        "pack",
        "--dry-run",
        "--json",
        "--loglevel=error",
    ]));
    let packed: Value = serde_json::from_slice(&output.stdout).expect("npm pack --json");
    let packed = &packed[0];
    assert_eq!(packed["name"], "lookout-client");
    assert_eq!(packed["version"], env!("CARGO_PKG_VERSION"));
    let files: BTreeSet<String> = packed["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    let vendor = [
        "CachedKeyDecoder.mjs",
        "DecodeError.mjs",
        "Decoder.mjs",
        "Encoder.mjs",
        "ExtData.mjs",
        "ExtensionCodec.mjs",
        "LICENSE",
        "README.md",
        "context.mjs",
        "decode.mjs",
        "decodeAsync.mjs",
        "encode.mjs",
        "index.mjs",
        "timestamp.mjs",
        "utils/int.mjs",
        "utils/prettyByte.mjs",
        "utils/stream.mjs",
        "utils/typedArrays.mjs",
        "utils/utf8.mjs",
    ];
    let expected: BTreeSet<String> = [
        "package.json",
        "README.md",
        "lookout-client.js",
        "index.d.ts",
    ]
    .into_iter()
    .map(String::from)
    .chain(vendor.iter().map(|f| format!("vendor/msgpack/{f}")))
    .collect();
    assert_eq!(
        files.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "packed but not intended"
    );
    assert_eq!(
        expected.difference(&files).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "intended but not packed"
    );
}

/// `version` of the `[package]` table of Cargo.toml.
fn cargo_version(manifest: &str) -> Option<String> {
    let mut table = manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .skip(1)
        .take_while(|l| !l.starts_with('['));
    table.find_map(|line| {
        let value = line
            .strip_prefix("version")?
            .trim_start()
            .strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

#[test]
fn the_package_version_and_licence_are_the_crates() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let version = cargo_version(&manifest).expect("version in [package]");
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "Cargo.toml read right");
    let package = read_json(&package_dir().join("package.json"));
    assert_eq!(
        package["version"], version,
        "web/lookout-client/package.json's version is Cargo.toml's: a release changes both"
    );
    assert_eq!(package["license"], env!("CARGO_PKG_LICENSE"));
    // tests/node's lock records the linked package's version too.
    let lock = read_json(&repo().join("tests/node/package-lock.json"));
    assert_eq!(
        lock["packages"]["../../web/lookout-client"]["version"], version,
        "tests/node/package-lock.json is stale: run `npm install` in tests/node"
    );
}
