//! The documentation as a specification: README.md and docs/*.md name every configuration key,
//! every route the server answers and every subcommand and flag of the command line; every TOML
//! example loads as a configuration; every shell example parses and names only subcommands and
//! flags that exist; every relative link leads somewhere; and the README stays short enough for
//! a newcomer.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// README.md and every docs/*.md, as (path from the root, text), in a fixed order.
fn documents() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(Path::new(ROOT).join(&n)).expect("document");
            (n, text)
        })
        .collect()
}

/// Every fenced block whose info string is one of `languages`: (document, line, text).
fn blocks(languages: &[&str]) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for (name, text) in documents() {
        let mut open: Option<(usize, bool, String)> = None;
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            match &mut open {
                None if trimmed.starts_with("```") => {
                    let language = trimmed.trim_start_matches('`').trim();
                    open = Some((n + 1, languages.contains(&language), String::new()));
                }
                Some((start, wanted, body)) if trimmed == "```" => {
                    if *wanted {
                        out.push((name.clone(), *start, std::mem::take(body)));
                    }
                    open = None;
                }
                Some((_, _, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
        assert!(open.is_none(), "{name}: a code block is never closed");
    }
    out
}

fn all_text() -> String {
    documents()
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_is_at_most_250_lines() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; the rest belongs in docs/"
    );
}

/// The README's first block holds the two commands a newcomer needs, and CI runs the second.
#[test]
fn the_readme_opens_with_the_demo_and_the_test_command_ci_runs() {
    let (name, line, first) = blocks(&["sh", "bash"]).remove(0);
    assert_eq!(
        (name.as_str(), line),
        ("README.md", 3),
        "the README opens with them"
    );
    let commands: Vec<&str> = first
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --release -- demo", "bash tests/run.sh"]
    );
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "exec bash tests/run.sh"),
        "{ci}"
    );
}

#[test]
fn every_document_in_docs_is_linked_from_the_readme() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    for (name, _) in documents().into_iter().skip(1) {
        assert!(
            readme.contains(&format!("]({name})")),
            "README.md does not link {name}"
        );
    }
}

#[test]
fn every_configuration_key_is_in_the_configuration_reference() {
    let reference = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md"))
        .expect("docs/configuration.md");
    for (key, _) in lookout::config::KEYS {
        assert!(
            reference.contains(&format!("| `{key}` |")),
            "docs/configuration.md lacks `{key}`"
        );
    }
}

/// Each route as `transport::routes()` gathers it from the lists the dispatcher matches on:
/// `` `GET /api/v1/alerts/{id}` `` for the REST API, `` `/trust` `` for the rest.
#[test]
fn every_route_the_server_answers_is_documented() {
    let text = all_text();
    let routes = lookout::transport::routes();
    assert!(routes.len() > 40, "{routes:?}");
    let missing: Vec<&String> = routes
        .iter()
        .filter(|r| !text.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the docs: {missing:?}"
    );
}

/// Each subcommand is written `lookout NAME` somewhere, each of its flags on a line that names
/// the subcommand, and each global flag somewhere.
#[test]
fn every_subcommand_and_flag_is_documented() {
    let text = all_text();
    let cli = lookout::cli::Cli::command();
    let flags = |cmd: &clap::Command| -> Vec<String> {
        cmd.get_arguments()
            .filter(|a| !a.is_global_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .filter(|l| l != "--help" && l != "--version")
            .collect()
    };
    for global in cli.get_arguments().filter_map(|a| a.get_long()) {
        if global == "help" || global == "version" {
            continue;
        }
        assert!(
            text.contains(&format!("--{global}")),
            "--{global} is undocumented"
        );
    }
    let mut subcommands = 0;
    for sub in cli.get_subcommands() {
        let named = format!("lookout {}", sub.get_name());
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(&named)).collect();
        assert!(!lines.is_empty(), "`{named}` is undocumented");
        for flag in flags(sub) {
            assert!(
                lines.iter().any(|l| {
                    l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .any(|w| w == flag)
                }),
                "`{named} {flag}` is undocumented: no line naming `{named}` names {flag}"
            );
        }
        subcommands += 1;
    }
    assert!(subcommands >= 8, "{subcommands} subcommands");
}

/// Every TOML example loads: parsed and checked as `check-config` checks a file (a cluster's
/// Redis is not asked for).
#[test]
fn every_toml_example_loads_with_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = blocks(&["toml"]);
    for (name, line, text) in &examples {
        let path = dir.path().join("example.toml");
        std::fs::write(&path, text).expect("write example");
        let problems = lookout::config::check(Some(&path), &lookout::config::Overrides::default());
        assert!(
            problems.is_empty(),
            "{name} line {line}: the example does not load: {problems:?}\n{text}"
        );
    }
    assert!(examples.len() >= 6, "{} TOML examples", examples.len());
}

/// The words of a shell line split into simple commands: at `&&`, `||`, `;`, `|`, `&`, `$(`,
/// `(` and `)`, without comments or line continuations.
fn simple_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        let spaced = code
            .replace("$(", " ; ")
            .replace(['(', ')', '|', '&', ';'], " ; ");
        let mut current = Vec::new();
        for word in spaced.split_whitespace() {
            if word == ";" {
                out.push(std::mem::take(&mut current));
            } else {
                current.push(word.trim_matches(['"', '\'']).to_string());
            }
        }
        out.push(current);
    }
    out.retain(|c| !c.is_empty());
    out
}

/// The arguments given to `lookout` by one simple command, if it runs `lookout`: after
/// variable assignments and `sudo` (with `-u USER`), the program `lookout` or a path ending
/// in `/lookout`, or `cargo run … --`.
fn lookout_arguments(command: &[String]) -> Option<&[String]> {
    let mut i = 0;
    while i < command.len() {
        let word = command[i].as_str();
        if word.contains('=') && !word.starts_with('-') {
            i += 1;
        } else if word == "sudo" {
            i += 1;
            while i < command.len() && command[i].starts_with('-') {
                i += if command[i] == "-u" { 2 } else { 1 };
            }
        } else {
            break;
        }
    }
    let program = command.get(i)?;
    if program == "lookout" || program.ends_with("/lookout") {
        return Some(&command[i + 1..]);
    }
    if program == "cargo" && command.get(i + 1).is_some_and(|w| w == "run") {
        let dashes = command.iter().position(|w| w == "--")?;
        return Some(&command[dashes + 1..]);
    }
    None
}

#[test]
fn every_shell_example_parses_and_names_real_subcommands_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = lookout::cli::Cli::command();
    let global: Vec<String> = cli
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .chain(["--help".to_string(), "--version".to_string()])
        .collect();
    let examples = blocks(&["sh", "bash"]);
    let mut invocations = 0;
    for (name, line, text) in &examples {
        let path: PathBuf = dir.path().join("example.sh");
        std::fs::write(&path, text).expect("write example");
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{name} line {line}: bash -n refuses the example: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        for command in simple_commands(text) {
            let Some(args) = lookout_arguments(&command) else {
                continue;
            };
            let words: Vec<String> = args
                .iter()
                .map(|w| w.trim_matches(['[', ']']).to_string())
                .collect();
            let sub = words
                .iter()
                .find(|w| !w.starts_with('-') && cli.find_subcommand(w.as_str()).is_some());
            let Some(sub) = sub else {
                assert!(
                    words.iter().all(|w| w == "--help" || w == "--version"),
                    "{name} line {line}: `lookout {}` names no subcommand",
                    words.join(" ")
                );
                continue;
            };
            let subcommand = cli.find_subcommand(sub.as_str()).expect("found");
            let own: Vec<String> = subcommand
                .get_arguments()
                .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                .collect();
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                let flag = flag.split('=').next().unwrap_or(flag);
                assert!(
                    own.iter().chain(&global).any(|f| f == flag),
                    "{name} line {line}: `lookout {sub}` has no flag {flag}"
                );
            }
            invocations += 1;
        }
    }
    assert!(examples.len() >= 10, "{} shell examples", examples.len());
    assert!(invocations >= 10, "{invocations} lookout commands in them");
}

/// GitHub's anchor for a heading: lower case, spaces as `-`, punctuation other than `-` and `_`
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let mut links = 0;
    for (name, text) in documents() {
        let base = Path::new(ROOT).join(&name);
        let base = base.parent().expect("dir");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target, None),
            };
            let path = if file.is_empty() {
                Path::new(ROOT).join(&name)
            } else {
                base.join(file)
            };
            assert!(path.exists(), "{name}: link to {target}: no such file");
            if let Some(fragment) = fragment {
                let linked = std::fs::read_to_string(&path).expect("linked document");
                let anchors: Vec<String> = linked
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(|l| anchor(l.trim_start_matches('#')))
                    .collect();
                assert!(
                    anchors.iter().any(|a| a == fragment),
                    "{name}: link to {target}: no such heading in {file}"
                );
            }
            links += 1;
        }
    }
    assert!(links >= 30, "{links} relative links");
}

/// A release names itself in the changelog: its newest numbered heading is `Cargo.toml`'s
/// version, the one `--version`, `/metrics` and the dashboard show (and the client package's,
/// checked in tests/client_package.rs).
#[test]
fn the_changelog_names_this_release() {
    let changelog =
        std::fs::read_to_string(Path::new(ROOT).join("CHANGELOG.md")).expect("CHANGELOG.md");
    let newest = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .find(|heading| *heading != "Unreleased")
        .expect("a released version in CHANGELOG.md");
    let version = newest.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        version,
        env!("CARGO_PKG_VERSION"),
        "CHANGELOG.md's newest release is {newest:?}; Cargo.toml says {}",
        env!("CARGO_PKG_VERSION")
    );
}
