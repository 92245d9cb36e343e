//! Pipeline files written to hurt: bounded however they are built.

use super::*;

/// This process's peak resident memory (VmHWM), in bytes: nextest runs
/// each test in a process of its own, so what one test allocates shows.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    let kib: u64 = kib
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn aliases_of_aliases_are_refused_before_they_expand() {
    // Each level doubles ten times: 10^9 nodes if expanded.
    let mut text = String::from("version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("stages: [{ name: s, steps: [{ name: a, run: x }] }]\n");
    let before = peak_rss();
    let errors = errors(&text);
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 64 << 20,
        "refused before expanding: peak memory grew {} MiB",
        grew >> 20
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .message
            .contains("expands to more than 100000 nodes"),
        "{}",
        errors[0]
    );
}

#[test]
fn log_cap_has_an_upper_bound() {
    single_error(
        &one_step(&["run: make", "log_cap: 2GiB"]),
        7,
        18,
        &["`log_cap` must be at most 1GiB, found `2GiB`"],
    );
}

#[test]
fn a_cache_path_with_dot_dot_is_refused_even_when_it_stays_inside() {
    let text = lines(&[
        "version: 1",
        "caches:",
        "  deps: { key_files: [lock], paths: [\"a/../b\"] }",
        "stages: [{ name: s, steps: [{ name: a, run: x, caches: [deps] }] }]",
    ]);
    let errors = errors(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.message == "`paths` entry `a/../b` contains `..`"),
        "{errors:#?}"
    );
}
