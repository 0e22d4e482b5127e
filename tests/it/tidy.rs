//! The conventions ARCHITECTURE.md and shared/STYLE.md state, checked on the source tree (as
//! rust-analyzer's tidy.rs does): no source file over 600 lines; every file opens with a
//! comment saying what it is for; no repository object name spelled outside the namespace
//! module (engine/format/src/names.rs); no sleep in a test and no assertion on wall-clock time,
//! except where listed below with the reason. Each list entry must still be needed: one that
//! no longer is fails too, so the lists only shrink. And the layering the compiler cannot see:
//! each crate of the chain depends only on crates below it (dev-dependencies included, which
//! cargo would let reach up); the storage crate takes only the error type from the format
//! crate, never its keys, crypto or layouts; no engine crate reads the environment; the
//! engine's operations never use each other; and neither they nor the CLI reach the storage
//! past the repository's services (packs, segments, snapshots, the rest of the namespace).

use std::fs;
use std::path::{Path, PathBuf};

/// The most lines a source file may have.
const MAX_LINES: usize = 600;

/// Files over [`MAX_LINES`], each with what is to become of it (none now: a file that grows
/// past the limit is split, or listed here with the plan for it).
const LONG_FILES: &[(&str, &str)] = &[];

/// Test files that sleep, and why.
const SLEEPS: &[(&str, &str)] = &[
    ("tests/it/keys.rs", "polls /proc for a child process to reach a point"),
    ("tests/it/readme.rs", "polls for a lock file; lets a slow stdin command start before SIGTERM"),
    ("tests/it/signals.rs", "polls for a child process to be ready to interrupt"),
    ("tests/it/soak.rs", "paces the random workload of the soak test"),
    ("tests/it/mount.rs", "polls /proc/self/mountinfo for the kernel to show or drop the mount"),
    ("tests/it/serve/mod.rs", "polls for the server to take up its identities file again after SIGHUP"),
    ("tests/it/serve/hostile.rs", "lets the server take in half an upload before it is killed mid-upload"),
];

/// Test files that assert on elapsed time, and why.
const WALL_CLOCK: &[(&str, &str)] =
    &[("tests/it/s3.rs", "bandwidth limits are slowness: only a lower bound on time, which noise cannot break")];

/// Files that may spell object names: the namespace itself, and fixtures of the fuzz targets
/// (names bound into sealed test objects).
const NAME_SPELLERS: &[&str] = &["engine/format/src/names.rs", "engine/format/src/fuzzing.rs"];

/// Directory prefixes of the object namespace, as a string literal opens them.
const OBJECT_DIRS: [&str; 8] =
    ["\"data/", "\"index/", "\"snapshots/", "\"keys/", "\"keyring/", "\"locks/", "\"audit/", "\"marks/"];

/// The engine's operations (modules of engine/src), which never use each other.
const OPERATIONS: [&str; 12] =
    ["backup", "restore", "dump", "diff", "snapfs", "forget", "prune", "check", "repair", "copy", "rewrite", "stats"];

/// The operation a file of the engine crate belongs to, if any.
fn operation_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("engine/src/")?;
    let module = rest.split(['/', '.']).next()?;
    OPERATIONS.iter().find(|o| **o == module).copied()
}

/// A source file: its path from the workspace root and its text.
struct Source {
    path: String,
    text: String,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every `.rs` file below the checked directories, by path from the workspace root.
fn sources() -> Vec<Source> {
    let root = workspace();
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "engine/format/src",
        "engine/storage/src",
        "engine/repository/src",
        "engine/src",
        "server/src",
        "cli/src",
        "tests/it",
        "tests/src",
        "benches/benches",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                out.push(Source { path: rel, text: fs::read_to_string(&path).unwrap() });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The text before a file's unit tests (`#[cfg(test)]`): what ships.
fn shipped(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// The exceptions the rules allow: files over the line limit, tests that sleep, tests that
/// assert on time, each with its reason.
struct Allowed<'a> {
    long_files: &'a [(&'a str, &'a str)],
    sleeps: &'a [(&'a str, &'a str)],
    wall_clock: &'a [(&'a str, &'a str)],
}

const ALLOWED: Allowed<'static> = Allowed { long_files: LONG_FILES, sleeps: SLEEPS, wall_clock: WALL_CLOCK };

/// Every breach of the conventions in `files`, one line each. With `whole_tree`, list entries
/// that nothing needs (or whose file is gone) are breaches too.
fn violations(files: &[Source], allowed: &Allowed<'_>, whole_tree: bool) -> Vec<String> {
    let mut out = Vec::new();
    let listed = |list: &[(&str, &str)], path: &str| list.iter().any(|(p, _)| *p == path);
    let mut needed: Vec<&str> = Vec::new();
    for f in files {
        let lines = f.text.lines().count();
        if lines > MAX_LINES {
            if listed(allowed.long_files, &f.path) {
                needed.push(&f.path);
            } else {
                out.push(format!("{}: {lines} lines, more than {MAX_LINES}: split it by concern", f.path));
            }
        }
        if !f.text.starts_with("//!") {
            out.push(format!("{}: does not open with a //! comment saying what it is for", f.path));
        }
        let engine_or_cli = ["engine/", "server/", "cli/src/"].iter().any(|d| f.path.starts_with(d));
        if engine_or_cli && !NAME_SPELLERS.contains(&f.path.as_str()) {
            for (n, line) in shipped(&f.text).lines().enumerate() {
                if let Some(dir) = OBJECT_DIRS.iter().find(|d| line.contains(*d)) {
                    out.push(format!(
                        "{}:{}: object name spelled by hand ({dir}...): use format::names",
                        f.path,
                        n + 1
                    ));
                }
            }
        }
        if f.path.starts_with("engine/src/") || f.path.starts_with("cli/src/") {
            for (n, line) in shipped(&f.text).lines().enumerate() {
                if line.contains(".storage()") {
                    out.push(format!(
                        "{}:{}: reaches the storage past the repository: use (or add) a repository service",
                        f.path,
                        n + 1
                    ));
                }
            }
        }
        if f.path.starts_with("engine/") || f.path.starts_with("server/") {
            for (n, line) in shipped(&f.text).lines().enumerate() {
                if ["env::var", "env::vars"].iter().any(|read| line.contains(read)) {
                    out.push(format!(
                        "{}:{}: the engine reads the environment: take it as a parameter (the CLI reads it)",
                        f.path,
                        n + 1
                    ));
                }
            }
        }
        if let Some(op) = operation_of(&f.path) {
            for (n, line) in shipped(&f.text).lines().enumerate() {
                for other in OPERATIONS.iter().filter(|o| **o != op) {
                    let path = format!("crate::{other}");
                    if line
                        .match_indices(&path)
                        .any(|(i, _)| !line[i + path.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'))
                    {
                        out.push(format!(
                            "{}:{}: operation {op} uses operation {other}: move what both need down into \
                             the repository crate or an engine helper",
                            f.path,
                            n + 1
                        ));
                    }
                }
            }
        }
        if f.path.starts_with("engine/storage/") {
            for (n, line) in f.text.lines().enumerate() {
                let mut rest = line;
                while let Some(i) = rest.find("cairn_format::") {
                    rest = &rest[i + "cairn_format::".len()..];
                    if !["error::", "Error", "Result"].iter().any(|allowed| rest.starts_with(allowed)) {
                        out.push(format!(
                            "{}:{}: storage uses the format crate beyond its error type: storage sees names and \
                             opaque bytes only",
                            f.path,
                            n + 1
                        ));
                    }
                }
            }
        }
        // This file spells the patterns it looks for.
        if f.path.starts_with("tests/") && f.path != "tests/it/tidy.rs" {
            if f.text.contains("sleep(") {
                if listed(allowed.sleeps, &f.path) {
                    needed.push(&f.path);
                } else {
                    out.push(format!("{}: sleeps: wait for the condition instead, or list it with a reason", f.path));
                }
            }
            let timed = f.text.lines().any(|l| l.contains("assert") && l.contains("elapsed()"));
            if timed {
                if listed(allowed.wall_clock, &f.path) {
                    needed.push(&f.path);
                } else {
                    out.push(format!("{}: asserts on wall-clock time: shared machines are noisy", f.path));
                }
            }
        }
    }
    for (list, what) in
        [(allowed.long_files, "LONG_FILES"), (allowed.sleeps, "SLEEPS"), (allowed.wall_clock, "WALL_CLOCK")]
    {
        for (path, _) in list {
            let present = files.iter().any(|f| f.path == *path);
            if (whole_tree || present) && !needed.contains(path) {
                out.push(format!("{path}: listed in {what} but no longer needs to be: remove the entry"));
            }
        }
    }
    out
}

/// The crate chain, lowest first: each crate's manifest (by directory) and its package name.
const CHAIN: [(&str, &str); 5] = [
    ("engine/format", "cairn-format"),
    ("engine/storage", "cairn-storage"),
    ("engine/repository", "cairn-repository"),
    ("engine", "cairn-engine"),
    ("cli", "cairn-cli"),
];

/// Every dependency of a chain crate on a crate at its level or above, one line each.
/// `manifests` holds each chain crate's Cargo.toml text, in [`CHAIN`] order.
fn upward_edges(manifests: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (level, text) in manifests.iter().enumerate() {
        let (_, name) = CHAIN[level];
        for line in text.lines() {
            // A dependency line opens with the crate's name: `name.workspace = true`, `name = ...`.
            let dep = line.split(['=', '.']).next().unwrap_or("").trim();
            if CHAIN.iter().skip(level).any(|(_, n)| *n == dep) {
                out.push(format!("{name} depends on {dep}, at its level or above: the chain only goes down"));
            }
        }
    }
    out
}

/// The server stands on the storage layer beside the repository: it sees names and sealed
/// bytes, as the storage does, and nothing that needs a key.
const SERVER: (&str, &str) = ("server", "cairn-server");
/// How many crates of [`CHAIN`], from the bottom, the server may use.
const SERVER_USES: usize = 2;

/// Every dependency of the server's manifest on a chain crate it must not use.
fn server_edges(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .map(|line| line.split(['=', '.']).next().unwrap_or("").trim())
        .filter(|dep| CHAIN.iter().skip(SERVER_USES).any(|(_, n)| n == dep))
        .map(|dep| format!("{} depends on {dep}: the server stands on the storage layer only", SERVER.1))
        .collect()
}

#[test]
fn the_server_stands_on_the_storage_layer_only() {
    let manifest = fs::read_to_string(workspace().join(SERVER.0).join("Cargo.toml")).unwrap();
    assert!(manifest.contains("cairn-storage.workspace = true"));
    let found = server_edges(&manifest);
    assert!(found.is_empty(), "{}", found.join("\n"));
    let planted = manifest + "\n[dev-dependencies]\ncairn-repository.workspace = true\n";
    assert!(server_edges(&planted).iter().any(|v| v.contains("depends on cairn-repository")));
}

#[test]
fn each_crate_depends_only_on_crates_below_it() {
    let root = workspace();
    let manifests: Vec<String> =
        CHAIN.iter().map(|(dir, _)| fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap()).collect();
    // The chain is there at all: each crate above the bottom names the one below it.
    for (level, text) in manifests.iter().enumerate().skip(1) {
        let below = CHAIN[level - 1].1;
        assert!(text.contains(&format!("{below}.workspace = true")), "{} does not depend on {below}", CHAIN[level].1);
    }
    let found = upward_edges(&manifests);
    assert!(found.is_empty(), "{}", found.join("\n"));
    // A planted edge up is caught.
    let mut planted = manifests.clone();
    planted[1].push_str("\n[dev-dependencies]\ncairn-repository.workspace = true\n");
    let found = upward_edges(&planted);
    assert!(found.iter().any(|v| v.contains("cairn-storage depends on cairn-repository")), "{found:?}");
}

#[test]
fn the_source_tree_follows_the_conventions() {
    let files = sources();
    assert!(files.len() > 100, "found only {} source files", files.len());
    let found = violations(&files, &ALLOWED, true);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn each_rule_catches_a_planted_violation() {
    let file = |path: &str, text: String| Source { path: path.into(), text };
    let doc = "//! A module.\n".to_string();
    let cases = [
        (file("engine/repository/src/planted.rs", doc.clone() + &"let x = 1;\n".repeat(MAX_LINES)), "lines, more than"),
        (file("engine/src/planted.rs", "fn main() {}\n".into()), "does not open with"),
        (file("cli/src/planted.rs", doc.clone() + "let n = format!(\"index/{id}\");\n"), "spelled by hand"),
        (file("tests/it/planted.rs", doc.clone() + "std::thread::sleep(d);\n"), "sleeps"),
        (file("engine/storage/src/planted.rs", doc.clone() + "use cairn_format::crypto::Key32;\n"), "beyond its error"),
        (
            file("engine/storage/src/planted.rs", doc.clone() + "let r = std::env::var(\"AWS_REGION\");\n"),
            "environment",
        ),
        (file("engine/src/dump.rs", doc.clone() + "use crate::restore::Extents;\n"), "uses operation restore"),
        (file("engine/src/prune/planted.rs", doc.clone() + "repo.storage().list(\"x\")?;\n"), "past the repository"),
        (file("cli/src/planted.rs", doc.clone() + "let s = repo.storage().clone();\n"), "past the repository"),
        (file("tests/it/planted.rs", doc.clone() + "assert!(t.elapsed() < d);\n"), "wall-clock"),
    ];
    for (planted, expected) in cases {
        let found = violations(std::slice::from_ref(&planted), &ALLOWED, false);
        assert!(found.iter().any(|v| v.contains(expected)), "{expected:?} not caught: {found:?}");
    }
    // Names in unit tests are fine; a listed file that is now short must leave the list.
    let in_tests =
        file("engine/src/planted.rs", doc.clone() + "#[cfg(test)]\nmod t { const N: &str = \"locks/x\"; }\n");
    assert!(violations(&[in_tests], &ALLOWED, false).is_empty());
    let listed = Allowed { long_files: &[("engine/src/was_long.rs", "to split")], sleeps: &[], wall_clock: &[] };
    let now_short = file("engine/src/was_long.rs", doc);
    let found = violations(&[now_short], &listed, false);
    assert!(found.iter().any(|v| v.contains("no longer needs to be")), "{found:?}");
}
