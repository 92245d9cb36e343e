use buildfleet_model::{
    Event, EventKind, RunContext, RunStatus, ShardStatus, State, StateChange, StepStatus,
};

use super::*;

const T0: u64 = 1_700_000_000_000;

fn shard(index: u32, state: State, attempt: u32) -> ShardStatus {
    ShardStatus {
        runner: Some("r1".into()),
        attempt,
        ..ShardStatus::new(index, state)
    }
}

fn step(name: &str, shards: Vec<ShardStatus>) -> StepStatus {
    StepStatus {
        name: name.into(),
        stage: "s".into(),
        state: State::Succeeded,
        shards,
        split: None,
    }
}

fn status(steps: Vec<StepStatus>) -> RunStatus {
    RunStatus {
        run_id: "r".into(),
        state: State::Running,
        steps,
        created_unix_ms: T0,
        duration_ms: 0,
        pipeline_path: "p.yaml".into(),
        notices: Vec::new(),
        context: RunContext::default(),
    }
}

/// Events at `ms` after T0: (step, shard, state).
fn events(list: &[(u64, &str, Option<u32>, State)]) -> Vec<Event> {
    list.iter()
        .enumerate()
        .map(|(i, (ms, step, shard, state))| Event {
            seq: i as u64 + 1,
            at_unix_ms: T0 + ms,
            kind: EventKind::State(StateChange {
                step: Some((*step).into()),
                shard: *shard,
                state: state.clone(),
                runner: None,
                duration_ms: 0,
                cache: Vec::new(),
            }),
        })
        .collect()
}

#[test]
fn bars_span_from_first_lease_to_end_with_every_wait_and_the_right_mark() {
    let st = status(vec![
        step("build", vec![shard(0, State::Succeeded, 1)]),
        step(
            "test",
            vec![
                shard(0, State::Succeeded, 2),
                shard(1, State::failed("exit 1"), 1),
            ],
        ),
        step("lint", vec![shard(0, State::Cached, 1)]),
        step(
            "deploy",
            vec![shard(0, State::ConditionFalse { why: "no".into() }, 0)],
        ),
        step("tail", vec![shard(0, State::Running, 1)]),
        step("later", vec![shard(0, State::Pending, 0)]),
    ]);
    let ev = events(&[
        (0, "build", None, State::Waiting),
        (10, "build", Some(0), State::Running),
        (100, "build", Some(0), State::Succeeded),
        (100, "test", None, State::Waiting),
        (150, "test", Some(0), State::Running),
        (160, "test", Some(1), State::Running),
        (200, "test", Some(0), State::Waiting),
        (250, "test", Some(0), State::Running),
        (300, "test", Some(1), State::failed("exit 1")),
        (400, "test", Some(0), State::Succeeded),
        (5, "lint", Some(0), State::Cached),
        (
            400,
            "deploy",
            Some(0),
            State::ConditionFalse { why: "no".into() },
        ),
        (410, "tail", Some(0), State::Running),
    ]);
    let chart = layout(&st, ev.iter(), T0 + 500);
    assert!(chart.timed);
    let got: Vec<(&str, u32, Mark, u64, u64)> = chart
        .bars
        .iter()
        .map(|b| (b.step.as_str(), b.shard, b.mark, b.start, b.end))
        .collect();
    assert_eq!(
        got,
        vec![
            ("build", 0, Mark::Succeeded, 10, 100),
            ("test", 0, Mark::Retried, 150, 400),
            ("test", 1, Mark::Failed, 160, 300),
            ("lint", 0, Mark::Cached, 5, 5),
            ("deploy", 0, Mark::Skipped, 400, 400),
            ("tail", 0, Mark::Running, 410, 500),
            ("later", 0, Mark::Pending, 500, 500),
        ]
    );
    let test0 = &chart.bars[1];
    assert_eq!(
        test0.waits,
        vec![(100, 150), (200, 250)],
        "both attempts' waits"
    );
    assert_eq!(test0.ready, 100, "ready when its step was");
    assert_eq!(chart.span_ms, 500);
    assert!(!chart.bars[4].skipped_by_failure, "a condition said no");
}

#[test]
fn the_critical_path_follows_what_each_bar_waited_for() {
    let st = status(vec![
        step(
            "a",
            vec![shard(0, State::Succeeded, 1), shard(1, State::Succeeded, 1)],
        ),
        step("b", vec![shard(0, State::Succeeded, 1)]),
        step("side", vec![shard(0, State::Succeeded, 1)]),
    ]);
    let ev = events(&[
        (0, "a", None, State::Waiting),
        (0, "side", None, State::Waiting),
        (0, "a", Some(0), State::Running),
        (0, "a", Some(1), State::Running),
        (0, "side", Some(0), State::Running),
        (50, "side", Some(0), State::Succeeded),
        (80, "a", Some(0), State::Succeeded),
        (120, "a", Some(1), State::Succeeded),
        (120, "b", None, State::Waiting),
        (125, "b", Some(0), State::Running),
        (300, "b", Some(0), State::Succeeded),
    ]);
    let chart = layout(&st, ev.iter(), T0 + 300);
    let critical: Vec<String> = chart
        .bars
        .iter()
        .filter(|b| b.critical)
        .map(|b| format!("{}#{}", b.step, b.shard))
        .collect();
    assert_eq!(critical, vec!["a#1", "b#0"]);
}

#[test]
fn the_svg_has_one_marked_bar_per_shard_with_names_escaped() {
    let st = status(vec![step(
        "<script>",
        vec![shard(0, State::Succeeded, 1), shard(1, State::Waiting, 0)],
    )]);
    let ev = events(&[
        (0, "<script>", None, State::Waiting),
        (1, "<script>", Some(0), State::Running),
        (9, "<script>", Some(0), State::Succeeded),
    ]);
    let svg = svg(&layout(&st, ev.iter(), T0 + 20));
    assert_eq!(svg.matches("<rect class=\"bar ").count(), 2, "{svg}");
    assert!(
        svg.contains(r#"data-step="&lt;script&gt;" data-shard="1" data-mark="queued""#),
        "{svg}"
    );
    assert!(!svg.contains("<script>"), "names are escaped: {svg}");
}

#[test]
fn a_run_stored_without_times_is_laid_out_untimed() {
    let st = status(vec![step("a", vec![shard(0, State::Succeeded, 1)])]);
    let mut ev = events(&[(0, "a", Some(0), State::Running)]);
    ev[0].at_unix_ms = 0;
    assert!(!layout(&st, ev.iter(), T0).timed);
}
