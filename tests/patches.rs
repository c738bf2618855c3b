//! The vendored crates under `patches/` are exactly the published crate plus its `.patch`
//! (`patches/vendor.sh` regenerates them; see its header). A crate is fetched from cargo's
//! download cache or from crates.io and checked against the checksum the index records.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn patches() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("patches")
}

fn vendor(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(dir.join("vendor.sh"))
        .args(args)
        .output()
        .expect("bash runs patches/vendor.sh");
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn every_vendored_crate_is_its_published_crate_plus_its_patch() {
    let out = vendor(&patches(), &["--check"]);
    assert!(out.status.success(), "patches/ has drifted (see above)");
    let checked = String::from_utf8_lossy(&out.stdout);
    for name in ["fastwebsockets", "socketioxide"] {
        assert!(
            checked.contains(&format!("patches/{name} = {name} ")),
            "{name} was not checked: {checked}"
        );
    }
}

#[test]
fn patches_holds_no_tls_stack() {
    for entry in std::fs::read_dir(patches()).expect("patches/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("rustls"),
            "patches/{name}: rustls comes from crates.io"
        );
    }
}

#[test]
fn a_change_to_a_vendored_file_that_its_patch_does_not_make_is_drift() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("patches");
    let status = Command::new("cp")
        .arg("-a")
        .arg(patches())
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let lib = copy.join("fastwebsockets/src/lib.rs");
    let mut text = std::fs::read_to_string(&lib).expect("lib.rs");
    text.push_str("\n// an edit nobody wrote into the patch\n");
    std::fs::write(&lib, text).expect("write");
    let out = vendor(&copy, &["--check", "fastwebsockets"]);
    assert!(!out.status.success(), "the edit went unnoticed");
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(
        told.contains("an edit nobody wrote into the patch"),
        "the drift is shown: {told}"
    );
    // Regenerating puts the published crate plus the patch back.
    assert!(vendor(&copy, &["fastwebsockets"]).status.success());
    assert!(vendor(&copy, &["--check", "fastwebsockets"])
        .status
        .success());
}
