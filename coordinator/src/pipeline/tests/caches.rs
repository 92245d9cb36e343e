//! The `caches:` section and the caching fields of steps.

use super::*;

const WITH_CACHES: &str = r#"version: 1
caches:
  deps:
    key_files: [requirements.txt, constraints.txt]
    paths: [.venv]
    version: "2"
    restore: [deps/2/, deps/]
  npm: { key_files: [package-lock.json], paths: [node_modules, .npm], version: 3 }
stages:
  - name: test
    steps:
      - name: unit
        run: pytest
        caches: [deps, npm]
        inputs: ["src/**/*.py", requirements.txt]
      - name: deploy
        run: ./deploy.sh
        cache: false
"#;

#[test]
fn caches_and_step_cache_fields_parse() {
    let p = parse(FILE, WITH_CACHES).unwrap();
    let deps = &p.caches["deps"];
    assert_eq!(
        deps.key_files,
        strings(&["requirements.txt", "constraints.txt"])
    );
    assert_eq!(deps.paths, strings(&[".venv"]));
    assert_eq!(deps.version, "2");
    assert_eq!(deps.restore, strings(&["deps/2/", "deps/"]));
    let npm = &p.caches["npm"];
    assert_eq!(npm.version, "3");
    assert!(npm.restore.is_empty());
    let unit = p.step("unit").unwrap();
    assert_eq!(unit.caches, strings(&["deps", "npm"]));
    assert_eq!(unit.inputs, strings(&["src/**/*.py", "requirements.txt"]));
    assert_eq!(unit.cache, None);
    assert_eq!(p.step("deploy").unwrap().cache, Some(false));
    assert_eq!(p.result_cache_off(unit), None);
    assert!(p
        .result_cache_off(p.step("deploy").unwrap())
        .unwrap()
        .contains("`cache: false`"));
}

#[test]
fn steps_that_act_on_the_world_are_not_served_from_the_step_cache_unless_they_say_so() {
    let p = parse(
        "t.yaml",
        r#"version: 1
stages:
  - name: s
    steps:
      - { name: push, run: ./push.sh, secrets: [REGISTRY_TOKEN] }
      - { name: push-cached, run: ./push.sh, secrets: [REGISTRY_TOKEN], cache: true }
      - { name: tag, run: 'docker push app:$BUILDFLEET_RUN_ID' }
      - { name: tag-env, run: ./tag.sh, env: { TAG: "${BUILDFLEET_RUN_ID}" } }
      - { name: check, run: make, verify: 'test -e "out-$BUILDFLEET_RUN_ID"' }
      - { name: build, run: make }
"#,
    )
    .unwrap();
    let why = |name: &str| p.result_cache_off(p.step(name).unwrap());
    assert!(why("push")
        .unwrap()
        .contains("receives secrets (REGISTRY_TOKEN), so it acts on the outside world"));
    assert_eq!(why("push-cached"), None);
    for name in ["tag", "tag-env", "check"] {
        assert!(
            why(name).unwrap().contains("uses BUILDFLEET_RUN_ID"),
            "{name}"
        );
    }
    assert_eq!(why("build"), None);
}

#[test]
fn resources_are_parsed_and_bad_ones_are_named() {
    let p = parse(
        "t.yaml",
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: a, run: x, resources: { memory: 2GiB, cpus: 1.5 } }\n      - { name: b, run: x, resources: { cpus: 2 } }\n",
    )
    .unwrap();
    let a = p.step("a").unwrap().resources;
    assert_eq!(a.memory_bytes, Some(2 << 30));
    assert_eq!(a.cpu_millis, Some(1500));
    let b = p.step("b").unwrap().resources;
    assert_eq!((b.memory_bytes, b.cpu_millis), (None, Some(2000)));
    let err = parse(
        "t.yaml",
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: a, run: x, resources: { memory: lots, cpus: -1, disk: 1 } }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`memory` must be a size, found `lots`"),
        "{err}"
    );
    assert!(err.contains("`cpus` must be a number of CPUs"), "{err}");
    assert!(err.contains("disk"), "{err}");
}

#[test]
fn unknown_cache_is_reported_at_the_reference_with_a_suggestion() {
    let text = WITH_CACHES.replace("caches: [deps, npm]", "caches: [dep, npm]");
    single_error(
        &text,
        14,
        18,
        &["unknown cache `dep`", "did you mean `deps`?"],
    );
}

#[test]
fn cache_paths_in_home_or_outside_the_workspace_are_rejected() {
    let text = lines(&[
        "version: 1",
        "caches:",
        "  cargo: { key_files: [Cargo.lock], paths: [~/.cargo/registry, ../shared, /abs] }",
        "stages:",
        "  - name: b",
        "    steps:",
        "      - { name: x, run: 'true', caches: [cargo] }",
    ]);
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_error(&errs[0], 3, 45, &["home directory", "CARGO_HOME=.cargo"]);
    assert_error(&errs[1], 3, 64, &["`../shared`", "escapes"]);
    assert_error(&errs[2], 3, 75, &["`/abs`", "absolute"]);
}

#[test]
fn a_cache_needs_key_files_and_paths() {
    let text = lines(&[
        "version: 1",
        "caches:",
        "  deps: { paths: [x] }",
        "stages:",
        "  - name: b",
        "    steps:",
        "      - { name: x, run: 'true' }",
    ]);
    single_error(&text, 3, 9, &["missing", "`key_files`", "cache `deps`"]);
}

#[test]
fn a_dependency_cache_may_not_take_the_step_result_cache_s_name() {
    let text = lines(&[
        "version: 1",
        "caches:",
        "  step: { key_files: [a], paths: [x] }",
        "stages:",
        "  - name: b",
        "    steps:",
        "      - { name: x, run: 'true' }",
    ]);
    single_error(&text, 3, 3, &["`step`", "reserved"]);
}

#[test]
fn bad_glob_and_non_bool_cache_flag_are_reported_where_written() {
    let text = one_step(&["run: make", "inputs: [\"src/[a\"]", "cache: \"no\""]);
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_error(&errs[0], 7, 18, &["invalid glob `src/[a`"]);
    assert_error(&errs[1], 8, 16, &["`cache` must be true or false"]);
}

#[test]
fn unknown_key_in_a_cache_suggests_the_right_one() {
    let text = lines(&[
        "version: 1",
        "caches:",
        "  deps: { key_file: [a], paths: [x] }",
        "stages:",
        "  - name: b",
        "    steps:",
        "      - { name: x, run: 'true' }",
    ]);
    let errs = errors(&text);
    assert_error(
        &errs[0],
        3,
        11,
        &[
            "unknown key `key_file` in cache `deps`",
            "did you mean `key_files`?",
        ],
    );
}

#[test]
fn reports_parse_and_must_stay_in_the_workspace() {
    let ok = parse(FILE, &one_step(&["run: make", "reports: [out/junit.xml]"])).unwrap();
    assert_eq!(
        ok.step("compile").unwrap().reports,
        strings(&["out/junit.xml"])
    );
    let text = one_step(&["run: make", "reports: [../junit.xml]"]);
    single_error(
        &text,
        7,
        19,
        &["report path `../junit.xml` escapes the workspace"],
    );
}

#[test]
fn split_takes_a_files_glob_and_refuses_list_for_now() {
    let ok = parse(
        FILE,
        &one_step(&["run: make", "split: { files: \"tests/**/test_*.py\" }"]),
    )
    .unwrap();
    assert_eq!(
        ok.step("compile").unwrap().split,
        Some(Split::Files("tests/**/test_*.py".into()))
    );
    let text = one_step(&["run: make", "split: { files: \"[\" }"]);
    single_error(&text, 7, 25, &["invalid glob `[` in `split.files`"]);
}
