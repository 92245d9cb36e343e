//! The house rules of `docs/style.md` that a machine can check, as tests:
//! each fails naming the file and line that breaks a rule, and says what to
//! do instead. They read the source tree as text (after comments are
//! stripped), so they cost nothing to run and nothing drifts unnoticed.

use std::path::{Path, PathBuf};

/// The library crates: typed errors only (no `String` errors, no `anyhow`).
const LIBRARY_CRATES: &[&str] = &["model", "proto", "trace", "cache", "coordinator", "runner"];

/// Where protobuf types may appear: the wire crate and each crate's gRPC
/// edge (services, clients, and the stored encodings that use protobuf as
/// their format).
const WIRE_ADAPTERS: &[&str] = &[
    "proto/",
    "cache/src/server/",
    "cache/src/client/",
    "cache/src/tree/encoding.rs",
    "cache/src/error.rs",
    "coordinator/src/grpc/",
    "runner/src/wire.rs",
    "runner/src/caching/records.rs",
    "buildfleet/src/wire.rs",
];

/// Where RocksDB may be named: the storage layers.
const STORAGE_LAYERS: &[&str] = &["cache/src/store/rocks/", "coordinator/src/db/rocks.rs"];

/// Where a gRPC status may be built: each crate's one error mapping.
const STATUS_MAPPINGS: &[&str] = &["cache/src/error.rs", "coordinator/src/error.rs"];

const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the binary's crate sits in the workspace")
        .to_path_buf()
}

/// Every Rust source of the workspace, as (path relative to the root, text).
fn sources() -> Vec<(String, String)> {
    let root = root();
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Library code: `src/` of the library crates, without unit-test modules
/// (test files and what follows a `#[cfg(test)]` line).
fn library_code() -> Vec<(String, Vec<(usize, String)>)> {
    sources()
        .into_iter()
        .filter(|(path, _)| {
            LIBRARY_CRATES
                .iter()
                .any(|c| path.starts_with(&format!("{c}/src/")))
        })
        .filter(|(path, _)| !is_test_file(path))
        .map(|(path, text)| (path, code_lines(&text)))
        .collect()
}

/// Production code of every crate, the binary's included.
fn production_code() -> Vec<(String, Vec<(usize, String)>)> {
    sources()
        .into_iter()
        .filter(|(path, _)| path.contains("/src/") && !is_test_file(path))
        .map(|(path, text)| (path, code_lines(&text)))
        .collect()
}

fn is_test_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    name == "tests.rs" || name.ends_with("_tests.rs") || path.contains("/tests/")
}

/// Numbered lines with comments removed, up to the first `#[cfg(test)]`.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(at) if !in_string(line, at) => &line[..at],
            _ => line,
        };
        out.push((i + 1, code.to_owned()));
    }
    out
}

/// Whether byte `at` of `line` is inside a string literal (an odd number
/// of unescaped quotes before it).
fn in_string(line: &str, at: usize) -> bool {
    let before = &line[..at];
    let quotes = before.matches('"').count() - before.matches("\\\"").count();
    quotes % 2 == 1
}

fn allowed(path: &str, places: &[&str]) -> bool {
    places.iter().any(|p| path.starts_with(p))
}

/// Fails with every violation listed, and what to do about them.
fn report(rule: &str, fix: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{rule}:\n  {}\n{fix}",
        violations.join("\n  ")
    );
}

fn find(
    code: &[(String, Vec<(usize, String)>)],
    skip: &[&str],
    matches: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, lines) in code {
        if allowed(path, skip) {
            continue;
        }
        for (n, line) in lines {
            if matches(line) {
                out.push(format!("{path}:{n}: {}", line.trim()));
            }
        }
    }
    out
}

#[test]
fn protobuf_types_stay_in_the_wire_adapters() {
    let wire = |l: &str| {
        [
            "pb::",
            "v1::",
            "reapi::",
            "bytestream::",
            "google_rpc::",
            "prost::",
        ]
        .iter()
        .any(|p| l.contains(p))
            || l.contains("buildfleet_proto::v1")
            || l.contains("buildfleet_proto::reapi")
    };
    report(
        "protobuf types outside the wire adapters",
        "Convert at the crate's gRPC edge (buildfleet_proto::convert, coordinator/src/grpc, \
         runner/src/wire.rs, buildfleet/src/wire.rs) and pass buildfleet_model types inward.",
        find(&production_code(), WIRE_ADAPTERS, wire),
    );
}

#[test]
fn grpc_statuses_are_built_only_by_the_error_mappings() {
    let builds_status = |l: &str| {
        let Some(at) = l.find("Status::") else {
            return false;
        };
        let call = &l[at + "Status::".len()..];
        let ctor = call.split('(').next().unwrap_or_default();
        // `Status::from(err)` goes through the mapping; `ServingStatus::`
        // and REAPI's `google_rpc::Status` are other types.
        !l[..at].ends_with("Serving")
            && !l[..at].ends_with("google_rpc::")
            && !l[..at].ends_with("Rpc")
            && ctor.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !["from", "default", ""].contains(&ctor)
    };
    report(
        "a tonic::Status built outside the crate's error mapping",
        "Add a variant to the crate's error enum (CacheError, CoordinatorError) with its code \
         in the one mapping, and return that.",
        find(&library_code(), STATUS_MAPPINGS, builds_status),
    );
}

#[test]
fn only_the_storage_layers_know_rocksdb() {
    report(
        "RocksDB named outside the storage layers",
        "Go through the store's trait (cache: BlobStore; coordinator: db::Kv); only \
         cache/src/store/rocks/ and coordinator/src/db/rocks.rs may use the rocksdb crate.",
        find(&production_code(), STORAGE_LAYERS, |l| {
            l.contains("rocksdb::") || l.contains("use rocksdb")
        }),
    );
}

#[test]
fn library_errors_are_typed() {
    let stringly = |l: &str| {
        let squeezed: String = l.split_whitespace().collect();
        squeezed.contains(",String>") && squeezed.contains("Result<")
            || squeezed.contains("anyhow::")
    };
    report(
        "a `String` as an error type (or anyhow) in a library crate",
        "Return a thiserror enum whose variants carry the context (see docs/style.md, \
         `Errors`); `anyhow` belongs to the binary's edge only.",
        find(&library_code(), &[], stringly),
    );
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|(path, text)| {
            let n = text.lines().count();
            (n > MAX_LINES).then(|| format!("{path}: {n} lines"))
        })
        .collect();
    report(
        "source files over 600 lines",
        "Split the file along what its parts do (a module per phase, per message kind, \
         per backend); tests can move to a `tests.rs` beside it.",
        long,
    );
}

#[test]
fn every_public_item_of_the_model_is_documented() {
    let mut undocumented = Vec::new();
    for (path, text) in sources() {
        if !path.starts_with("model/src/") {
            continue;
        }
        if path == "model/src/lib.rs" && !text.contains("#![deny(missing_docs)]") {
            undocumented.push("model/src/lib.rs: `#![deny(missing_docs)]` is gone".to_owned());
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let public =
                t.starts_with("pub ") && !t.starts_with("pub use ") && !t.starts_with("pub mod ");
            if !public {
                continue;
            }
            let documented = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim_start())
                .find(|l| !l.starts_with("#["))
                .is_some_and(|l| l.starts_with("///"));
            if !documented {
                undocumented.push(format!("{path}:{}: {}", i + 1, t));
            }
        }
    }
    report(
        "public items of the model crate without a doc comment",
        "The model is the project's vocabulary: say what each item means (and why it exists) \
         in a `///` comment.",
        undocumented,
    );
}

/// The dashboard's handlers that need no caller: the login form and its
/// post (which checks the token it is given), and logging out.
const OPEN_PAGES: &[&str] = &["login_page", "login", "logout"];

/// Handlers (`pub async fn`) in `lines` whose body never admits its caller:
/// calls `admit(` or a helper that says it does (`admitted_view(`).
fn unadmitted(path: &str, lines: &[(usize, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let starts: Vec<(usize, usize, String)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, (n, l))| {
            let name = l.trim_start().strip_prefix("pub async fn ")?;
            let name = name.split(['(', '<']).next()?.to_owned();
            Some((i, *n, name))
        })
        .collect();
    for (k, (i, n, name)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(lines.len(), |s| s.0);
        let admits = lines[*i..end]
            .iter()
            .any(|(_, l)| l.contains("admit(") || l.contains("admitted_"));
        if !admits && !OPEN_PAGES.contains(&name.as_str()) {
            out.push(format!("{path}:{n}: {name}"));
        }
    }
    out
}

/// Every page and button of the dashboard is admitted as the RPC it stands
/// for, so it shows and allows no more than the API would.
#[test]
fn every_dashboard_handler_admits_its_caller() {
    let mut violations = Vec::new();
    for (path, lines) in production_code() {
        if path.starts_with("coordinator/src/dashboard/") {
            violations.extend(unadmitted(&path, &lines));
        }
    }
    report(
        "dashboard handlers that never admit their caller",
        "Call `Dashboard::admit(headers, RPC, uri)` with the RPC the page stands for (and `Hub::check_run` for a run), or list a page that truly needs no caller in OPEN_PAGES.",
        violations,
    );
}

/// The rules above read what they mean to: each finds a planted violation.
#[test]
fn the_rules_catch_what_they_are_for() {
    let lines = |text: &str| vec![("lib/src/x.rs".to_owned(), code_lines(text))];
    assert_eq!(
        find(&lines("fn f(d: pb::Digest) {}"), &[], |l| l
            .contains("pb::"))
        .len(),
        1
    );
    // Comments and test modules do not count.
    let ignored = "// pb::Digest in a comment\n#[cfg(test)]\nmod tests { use pb::Digest; }";
    assert!(find(&lines(ignored), &[], |l| l.contains("pb::")).is_empty());
    // A handler that forgets its caller is named; one that admits is not.
    let page = code_lines(
        "pub async fn page(d: D) -> R {\n    d.admit(h, GET, u)?;\n}\npub async fn leak(d: D) -> R {\n    d.hub.read(|s| s.runs())\n}",
    );
    assert_eq!(unadmitted("x.rs", &page), vec!["x.rs:4: leak".to_owned()]);
    // A `//` inside a string is not a comment.
    assert_eq!(
        code_lines("let u = \"http://x\"; pb::A")[0].1,
        "let u = \"http://x\"; pb::A"
    );
}
