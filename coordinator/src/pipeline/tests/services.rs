//! `services:` and `approval:` on a step: what parses, and where each
//! mistake is reported.

use super::*;

#[test]
fn services_parse_with_their_defaults() {
    let text = one_step(&[
        "run: make",
        "services:",
        "  db: { run: 'postgres', ready: 'pg_isready', ready_timeout: 30s }",
        "  cache-2: { run: 'redis-server' }",
    ]);
    let p = parse(FILE, &text).unwrap();
    let s = &p.steps().next().unwrap().services;
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].ready.as_deref(), Some("pg_isready"));
    assert_eq!(s[0].ready_timeout, std::time::Duration::from_secs(30));
    assert_eq!(s[1].ready, None);
    assert_eq!(s[1].ready_timeout, std::time::Duration::from_secs(60));
    assert_eq!(s[1].port_var(), "BUILDFLEET_SERVICE_CACHE_2_PORT");
}

#[test]
fn service_mistakes_are_reported_where_they_are() {
    let text = one_step(&[
        "run: make",
        "services:",
        "  9db: { run: x }",
        "  web: { ready: y }",
        "  a-b: { run: x }",
        "  a_b: { run: x }",
        "  slow: { run: x, ready_timeout: soon }",
    ]);
    let errors = errors(&text);
    let got = positions(&errors);
    assert_eq!(
        got,
        [
            (8, 11, "invalid service name `9db`"),
            (9, 16, "missing required key `run` in service `web`"),
            (
                11,
                11,
                "services `a-b` and `a_b` would share BUILDFLEET_SERVICE_A_B_PORT"
            ),
            (
                12,
                42,
                "invalid `ready_timeout` string \"soon\": expected number at 0"
            ),
        ],
        "{errors:#?}"
    );
}

#[test]
fn approval_takes_a_timeout_or_true() {
    let p = parse(FILE, &one_step(&["run: make", "approval: { timeout: 2h }"])).unwrap();
    assert_eq!(
        p.steps().next().unwrap().approval,
        Some(std::time::Duration::from_secs(7200))
    );
    let p = parse(FILE, &one_step(&["run: make", "approval: true"])).unwrap();
    assert_eq!(
        p.steps().next().unwrap().approval,
        Some(std::time::Duration::from_secs(86400))
    );
    single_error(
        &one_step(&["run: make", "approval: { timout: 2h }"]),
        7,
        21,
        &[
            "unknown key `timout` in `approval`",
            "did you mean `timeout`?",
        ],
    );
}

#[test]
fn an_output_can_carry_the_shard_index() {
    let text = one_step(&[
        "run: make",
        "shards: 2",
        "outputs: [\"cov-${BUILDFLEET_SHARD_INDEX}.xml\", dist]",
    ]);
    let p = parse(FILE, &text).unwrap();
    let step = p.steps().next().unwrap();
    let lease = p.shard_lease(
        step,
        1,
        2,
        Vec::new(),
        buildfleet_model::Digest::empty(),
        "p",
        &Default::default(),
    );
    assert_eq!(lease.outputs, ["cov-1.xml", "dist"]);
}

#[test]
fn a_var_must_be_declared_in_the_pipeline_env() {
    let text = lines(&[
        "version: 1",
        "env: { TARGET: default }",
        "stages: [{ name: s, steps: [{ name: a, run: x }] }]",
    ]);
    let p = parse(FILE, &text).unwrap();
    let set = p
        .clone()
        .with_vars(&map(&[("TARGET", "https://staging")]))
        .unwrap();
    assert_eq!(set.env["TARGET"], "https://staging");
    let e = p.with_vars(&map(&[("TARGTE", "x")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`--var TARGTE`: the pipeline declares no variable `TARGTE` in its top-level `env` (it declares: TARGET)"
    );
}
