//! Pipelines that parse, and what they parse into.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const FULL: &str = r#"# CI for the app
version: 1
target_minutes: 20
env:
  RUST_LOG: info
  JOBS: 8
stages:
  - name: build
    steps:
      - name: compile
        run: cargo build --release
        timeout: 10m
        outputs: [target/release/app, dist/]
        labels: [linux]
      - name: lint
        run: cargo clippy
  - name: test
    steps:
      - name: unit
        run: cargo test
        shards: 4
        timeout: 1h 30m
        env:
          RUST_BACKTRACE: 1
        labels: [linux, gpu]
      - name: integration
        run: |
          ./scripts/it.sh
          echo done
        needs: [compile]
        timeout: 90
  - name: release
    steps:
      - name: publish
        run: ./publish.sh
        needs: [unit, lint]
"#;

fn step(name: &str, stage: &str, run: &str) -> Step {
    Step {
        name: name.to_string(),
        stage: stage.to_string(),
        run: run.to_string(),
        shards: Shards::Fixed(1),
        timeout: None,
        env: BTreeMap::new(),
        outputs: Vec::new(),
        needs: None,
        labels: Vec::new(),
        caches: Vec::new(),
        inputs: Vec::new(),
        cache: None,
        reports: Vec::new(),
        split: None,
        split_by: SplitBy::Timings,
        flaky_retries: 0,
        infra_retries: 2,
        verify: Vec::new(),
        secrets: Vec::new(),
        log_cap: None,
        resources: Default::default(),
        condition: None,
        services: Vec::new(),
        approval: None,
        matrix: BTreeMap::new(),
    }
}

#[test]
fn full_pipeline_parses_into_expected_structs() {
    let pipeline = parse(FILE, FULL).unwrap();
    let expected = Pipeline {
        version: 1,
        target_minutes: Some(20),
        quarantine: None,
        env: map(&[("RUST_LOG", "info"), ("JOBS", "8")]),
        caches: BTreeMap::new(),
        stages: vec![
            Stage {
                name: "build".into(),
                steps: vec![
                    Step {
                        timeout: Some(Duration::from_secs(600)),
                        outputs: strings(&["target/release/app", "dist/"]),
                        labels: strings(&["linux"]),
                        ..step("compile", "build", "cargo build --release")
                    },
                    step("lint", "build", "cargo clippy"),
                ],
            },
            Stage {
                name: "test".into(),
                steps: vec![
                    Step {
                        shards: Shards::Fixed(4),
                        timeout: Some(Duration::from_secs(5400)),
                        env: map(&[("RUST_BACKTRACE", "1")]),
                        labels: strings(&["linux", "gpu"]),
                        ..step("unit", "test", "cargo test")
                    },
                    Step {
                        needs: Some(strings(&["compile"])),
                        timeout: Some(Duration::from_secs(90)),
                        ..step("integration", "test", "./scripts/it.sh\necho done\n")
                    },
                ],
            },
            Stage {
                name: "release".into(),
                steps: vec![Step {
                    needs: Some(strings(&["unit", "lint"])),
                    ..step("publish", "release", "./publish.sh")
                }],
            },
        ],
    };
    assert_eq!(pipeline, expected);
}

#[test]
fn steps_and_step_lookup_follow_declaration_order() {
    let pipeline = parse(FILE, FULL).unwrap();
    let names: Vec<&str> = pipeline.steps().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["compile", "lint", "unit", "integration", "publish"]);
    assert_eq!(pipeline.step("unit").unwrap().shards, Shards::Fixed(4));
    assert_eq!(pipeline.step("unit").unwrap().stage, "test");
    assert!(pipeline.step("missing").is_none());
}

#[test]
fn dependencies_use_stage_barriers_unless_needs_is_given() {
    let deps = parse(FILE, FULL).unwrap().dependencies();
    let expected: BTreeMap<String, Vec<String>> = [
        ("compile", vec![]),
        ("lint", vec![]),
        ("unit", vec!["compile", "lint"]),
        ("integration", vec!["compile"]),
        // Written as [unit, lint]; reported in declaration order.
        ("publish", vec!["lint", "unit"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), strings(&v)))
    .collect();
    assert_eq!(deps, expected);
}

#[test]
fn empty_needs_opts_out_of_the_stage_barrier_and_same_stage_needs_work() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: one",
        "    steps:",
        "      - {name: a, run: x}",
        "  - name: two",
        "    steps:",
        "      - {name: b, run: x, needs: []}",
        "      - {name: c, run: x, needs: [b, a]}",
        "      - {name: d, run: x}",
    ]);
    let pipeline = parse(FILE, &text).unwrap();
    assert_eq!(pipeline.step("b").unwrap().needs, Some(vec![]));
    let deps = pipeline.dependencies();
    assert_eq!(deps["a"], Vec::<String>::new());
    assert_eq!(deps["b"], Vec::<String>::new());
    assert_eq!(deps["c"], strings(&["a", "b"]));
    assert_eq!(deps["d"], strings(&["a"]));
}

#[test]
fn defaults_apply_when_optional_keys_are_absent() {
    let pipeline = parse(FILE, &one_step(&["run: make"])).unwrap();
    assert_eq!(pipeline.version, 1);
    assert_eq!(pipeline.target_minutes, None);
    assert!(pipeline.env.is_empty());
    assert_eq!(pipeline.stages.len(), 1);
    assert_eq!(
        pipeline.stages[0].steps,
        vec![step("compile", "build", "make")]
    );
}

#[test]
fn env_scalars_are_rendered_as_written() {
    let text = lines(&[
        "version: 1",
        "env:",
        "  NUM: 8",
        "  FLOAT: 1.50",
        "  YES: true",
        "  NO: False",
        "  QUOTED: \"007\"",
        "  EMPTY: ''",
        "  WORDS: hello world",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - name: compile",
        "        run: make",
        "        env: {NEG: -3, _X1: yes}",
    ]);
    let pipeline = parse(FILE, &text).unwrap();
    assert_eq!(
        pipeline.env,
        map(&[
            ("NUM", "8"),
            ("FLOAT", "1.50"),
            ("YES", "true"),
            ("NO", "False"),
            ("QUOTED", "007"),
            ("EMPTY", ""),
            ("WORDS", "hello world"),
        ])
    );
    assert_eq!(
        pipeline.step("compile").unwrap().env,
        map(&[("NEG", "-3"), ("_X1", "yes")])
    );
}

#[test]
fn timeouts_accept_humantime_and_whole_seconds() {
    for (written, seconds) in [
        ("30s", 30),
        ("10m", 600),
        ("1h 30m", 5400),
        ("45", 45),
        ("\"120\"", 120),
    ] {
        let text = one_step(&["run: make", &format!("timeout: {written}")]);
        let pipeline = parse(FILE, &text).unwrap();
        assert_eq!(
            pipeline.step("compile").unwrap().timeout,
            Some(Duration::from_secs(seconds)),
            "timeout {written}"
        );
    }
}

#[test]
fn outputs_may_use_dotdot_that_stays_inside() {
    let text = one_step(&["run: make", "outputs: [./a/../b, c/d.txt]"]);
    let pipeline = parse(FILE, &text).unwrap();
    assert_eq!(
        pipeline.step("compile").unwrap().outputs,
        strings(&["./a/../b", "c/d.txt"])
    );
}

#[test]
fn shards_bounds_are_inclusive() {
    for shards in [1, 1024] {
        let text = one_step(&["run: make", &format!("shards: {shards}")]);
        assert_eq!(
            parse(FILE, &text).unwrap().stages[0].steps[0].shards,
            Shards::Fixed(shards)
        );
    }
}

#[test]
fn error_display_has_position_message_and_hint() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    stpes:",
        "      - name: compile",
        "        run: make",
    ]);
    let error = single_error(&text, 4, 5, &[]);
    assert_eq!(error.message, "unknown key `stpes` in stage");
    assert_eq!(
        error.hint.as_deref(),
        Some("did you mean `steps`? (allowed: name, steps)")
    );
    assert_eq!(
        error.to_string(),
        "buildfleet.yaml:4:5: unknown key `stpes` in stage; did you mean `steps`? (allowed: name, steps)"
    );
}

#[test]
fn errors_display_one_per_line() {
    let errors = PipelineErrors(vec![
        PipelineError {
            file: "f.yaml".into(),
            line: 1,
            column: 2,
            message: "first".into(),
            hint: None,
        },
        PipelineError {
            file: "f.yaml".into(),
            line: 3,
            column: 4,
            message: "second".into(),
            hint: Some("fix it".into()),
        },
    ]);
    assert_eq!(
        errors.to_string(),
        "f.yaml:1:2: first\nf.yaml:3:4: second; fix it"
    );
    let as_error: &dyn std::error::Error = &errors;
    assert!(as_error.to_string().starts_with("f.yaml:1:2"));
}

#[test]
fn anchors_and_aliases_are_resolved() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - name: a",
        "        run: make",
        "        env: &common {CC: clang, OPT: 2}",
        "      - name: b",
        "        run: make",
        "        env: *common",
    ]);
    let pipeline = parse(FILE, &text).unwrap();
    let expected = map(&[("CC", "clang"), ("OPT", "2")]);
    assert_eq!(pipeline.step("a").unwrap().env, expected);
    assert_eq!(pipeline.step("b").unwrap().env, expected);
}
