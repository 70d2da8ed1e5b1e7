//! `drover run` end to end against the in-process fake master, and its pure parts.

use std::future::Future;
use std::time::Duration;

use clap::Parser;
use drover_proto::v1::{self, event, TaskState};
use drover_resources::Resources;
use tokio::sync::mpsc;
use tonic::Status;

use super::launch::{launch, Interrupts};
use super::*;
use crate::fake_master::{
    offer, offers, update, FakeConfig, FakeMaster, FRAMEWORK_ID, TEST_DEADLINE,
};

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("drover-run").chain(args.iter().copied())).map(|c| c.run)
}

fn options() -> DriverOptions {
    DriverOptions {
        call_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(2),
        subscribe_timeout: Duration::from_secs(5),
        resubscribe_backoff_start: Duration::from_millis(20),
        resubscribe_backoff_max: Duration::from_millis(200),
        ..DriverOptions::default()
    }
}

fn never() -> Interrupts {
    let (_tx, rx) = mpsc::channel(1);
    Interrupts::Channel(rx)
}

/// Runs `drover run ARGS` against `fake` while `script` plays the master; returns the result
/// and the stdout lines.
async fn run_with_script(
    fake: &FakeMaster,
    args: &[&str],
    interrupts: Interrupts,
    script: impl Future<Output = ()>,
) -> (Result<i32, RunError>, Vec<String>) {
    let mut full = vec!["--masters", &fake.addr];
    full.extend_from_slice(args);
    let args = parse(&full).expect("valid arguments");
    let mut out: Vec<u8> = Vec::new();
    let both = async { tokio::join!(launch(args, options(), &mut out, interrupts), script) };
    let (result, ()) = tokio::time::timeout(TEST_DEADLINE * 2, both)
        .await
        .expect("drover run did not finish in time");
    let lines = String::from_utf8(out)
        .expect("utf-8 output")
        .lines()
        .map(str::to_string)
        .collect();
    (result, lines)
}

fn ended(task_id: &str, state: TaskState, uuid: &str, exit_code: Option<i32>) -> event::Event {
    let mut e = update(task_id, state, uuid);
    if let event::Event::Update(u) = &mut e {
        if let Some(s) = &mut u.status {
            s.exit_code = exit_code;
            s.signal = None;
            s.reason = "command_exited".into();
            s.message = match exit_code {
                Some(k) => format!("exited with status {k}"),
                None => "killed".into(),
            };
        }
    }
    e
}

const SMALL: &str = "cpus:0.05;mem:1024;ports:[31000-31005]";
const BIG: &str = "cpus:4;mem:1024;disk:100;ports:[31000-31005]";

#[tokio::test]
async fn declines_what_does_not_fit_launches_prints_acknowledges_and_exits_with_the_task_status() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let script = async {
        fake.wait_for("SUBSCRIBE", |c| c.subscribes.len() == 1)
            .await;
        fake.push(offers(vec![offer("small", SMALL)])).await;
        fake.push(offers(vec![offer("big", BIG)])).await;
        fake.wait_for("ACCEPT", |c| !c.accepts.is_empty()).await;
        fake.push(update("t1", TaskState::TaskStarting, "u1")).await;
        fake.push(update("t1", TaskState::TaskRunning, "u2")).await;
        fake.push(ended("t1", TaskState::TaskFailed, "u3", Some(3)))
            .await;
    };
    let (result, lines) = run_with_script(
        &fake,
        &[
            "--task-id",
            "t1",
            "--ports",
            "2",
            "--env",
            "A=1",
            "--env",
            "B=two",
            "--",
            "exit",
            "3",
        ],
        never(),
        script,
    )
    .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(
        lines,
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FAILED (exit code 3): exited with status 3"
        ]
    );

    let calls = fake.calls();
    let sub = calls.subscribes[0].framework.as_ref().unwrap();
    assert_eq!(sub.name, "drover-run");
    assert_eq!(sub.role, "*");
    assert_eq!(sub.id, "");
    assert_eq!(sub.failover_timeout_seconds, FAILOVER_TIMEOUT_SECONDS);

    let small = calls
        .declines
        .iter()
        .find(|d| d.offer_ids == ["small"])
        .expect("the offer that does not fit was declined");
    assert_eq!(small.refuse_seconds, Some(5.0));
    assert!(
        !calls
            .declines
            .iter()
            .any(|d| d.offer_ids.contains(&"big".to_string())),
        "the accepted offer must not be declined"
    );

    assert_eq!(calls.accepts.len(), 1);
    let accept = &calls.accepts[0];
    assert_eq!(accept.offer_ids, ["big"]);
    let caller = accept.caller.as_ref().unwrap();
    assert_eq!(
        (caller.framework_id.as_str(), caller.stream_id.as_str()),
        (FRAMEWORK_ID, "stream-1")
    );
    assert_eq!(accept.launch.len(), 1);
    let task = &accept.launch[0];
    assert_eq!(task.task_id, "t1");
    assert_eq!(task.name, "drover-run");
    assert_eq!(
        Resources::from_proto(&task.resources).unwrap(),
        "cpus:0.1;mem:32;ports:[31000-31001]"
            .parse::<Resources>()
            .unwrap()
    );
    let command = task.command.as_ref().unwrap();
    assert_eq!(command.shell, "exit 3");
    assert_eq!(command.environment.len(), 2);
    assert_eq!(command.environment["A"], "1");
    assert_eq!(command.environment["B"], "two");

    assert!(
        !calls.suppresses.is_empty(),
        "offers suppressed after launch"
    );
    // Each update acknowledged exactly once, all before the teardown (the fake refuses calls
    // after it, so a late one would be missing here).
    assert_eq!(calls.ack_uuids(), ["u1", "u2", "u3"]);
    assert_eq!(calls.teardowns.len(), 1);
}

#[tokio::test]
async fn rides_a_stream_break_and_does_not_print_a_redelivered_update_twice() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let script = async {
        fake.wait_for("SUBSCRIBE", |c| c.subscribes.len() == 1)
            .await;
        fake.push(offers(vec![offer("big", BIG)])).await;
        fake.wait_for("ACCEPT", |c| !c.accepts.is_empty()).await;
        fake.push(update("t1", TaskState::TaskStarting, "u1")).await;
        fake.push(update("t1", TaskState::TaskRunning, "u2")).await;
        fake.wait_for("RUNNING acknowledged", |c| c.ack_uuids().contains(&"u2"))
            .await;
        // The master goes away mid-task.
        fake.close_stream();
        fake.wait_for("re-SUBSCRIBE", |c| c.subscribes.len() == 2)
            .await;
        // The new leader re-sends what it believes unacknowledged (say both acks were lost),
        // in order, then the rest.
        fake.push(update("t1", TaskState::TaskStarting, "u1")).await;
        fake.push(update("t1", TaskState::TaskRunning, "u2")).await;
        fake.push(ended("t1", TaskState::TaskFailed, "u3", Some(3)))
            .await;
    };
    let (result, lines) =
        run_with_script(&fake, &["--task-id", "t1", "--", "exit 3"], never(), script).await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(
        lines,
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FAILED (exit code 3): exited with status 3"
        ]
    );
    let calls = fake.calls();
    assert_eq!(calls.subscribes.len(), 2);
    assert_eq!(
        calls.subscribes[1].framework.as_ref().unwrap().id,
        FRAMEWORK_ID,
        "re-subscribed with the framework id"
    );
    assert_eq!(calls.accepts.len(), 1, "launched once");
    // The duplicates are acknowledged again (the master asked for it) but printed once.
    assert_eq!(calls.ack_uuids(), ["u1", "u2", "u1", "u2", "u3"]);
    let last_ack = calls.acks.last().unwrap().caller.as_ref().unwrap();
    assert_eq!(last_ack.stream_id, "stream-2");
    assert_eq!(calls.teardowns.len(), 1);
    assert_eq!(
        calls.teardowns[0].caller.as_ref().unwrap().stream_id,
        "stream-2"
    );
}

#[tokio::test]
async fn interrupt_kills_the_task_waits_for_its_end_tears_down_and_exits_130() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let (tx, rx) = mpsc::channel(1);
    let script = async {
        fake.wait_for("SUBSCRIBE", |c| c.subscribes.len() == 1)
            .await;
        fake.push(offers(vec![offer("big", BIG)])).await;
        fake.wait_for("ACCEPT", |c| !c.accepts.is_empty()).await;
        fake.push(update("t1", TaskState::TaskRunning, "u1")).await;
        fake.wait_for("RUNNING acknowledged", |c| c.ack_uuids() == ["u1"])
            .await;
        tx.send(130).await.unwrap();
        fake.wait_for("KILL", |c| !c.kills.is_empty()).await;
        assert!(
            fake.calls().teardowns.is_empty(),
            "no teardown before the task ended"
        );
        fake.push(ended("t1", TaskState::TaskKilled, "u2", None))
            .await;
    };
    let (result, lines) = run_with_script(
        &fake,
        &[
            "--task-id",
            "t1",
            "--kill-grace-seconds",
            "1",
            "--",
            "sleep",
            "600",
        ],
        Interrupts::Channel(rx),
        script,
    )
    .await;
    assert_eq!(result.unwrap(), 130);
    assert_eq!(
        lines,
        ["TASK_STAGING", "TASK_RUNNING", "TASK_KILLED: killed"]
    );
    let calls = fake.calls();
    assert_eq!(calls.kills.len(), 1);
    assert_eq!(calls.kills[0].task_id, "t1");
    assert_eq!(calls.kills[0].grace_seconds, Some(1.0));
    assert_eq!(calls.ack_uuids(), ["u1", "u2"]);
    assert_eq!(calls.teardowns.len(), 1);
}

#[tokio::test]
async fn no_fitting_offer_within_the_timeout_exits_2_and_tears_down() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let script = async {
        fake.wait_for("SUBSCRIBE", |c| c.subscribes.len() == 1)
            .await;
        fake.push(offers(vec![offer("small", SMALL)])).await;
    };
    let (result, lines) = run_with_script(
        &fake,
        &["--timeout", "500ms", "--", "true"],
        never(),
        script,
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let message = err.to_string();
    assert!(message.contains("no offer fitting cpus:0.1"), "{message}");
    assert!(message.contains("1 offers seen"), "{message}");
    assert!(lines.is_empty(), "{lines:?}");
    let calls = fake.calls();
    assert!(calls.accepts.is_empty());
    assert_eq!(calls.declines.len(), 1);
    assert_eq!(calls.teardowns.len(), 1);
}

#[tokio::test]
async fn ambiguous_launch_is_reconciled_not_repeated() {
    let fake = FakeMaster::start(FakeConfig {
        accept_error: Some(Status::internal("leader lost before commit")),
        ..FakeConfig::default()
    })
    .await;
    let script = async {
        fake.wait_for("SUBSCRIBE", |c| c.subscribes.len() == 1)
            .await;
        fake.push(offers(vec![offer("big", BIG)])).await;
        let calls = fake
            .wait_for("RECONCILE", |c| !c.reconciles.is_empty())
            .await;
        let asked: Vec<&str> = calls.reconciles[0]
            .tasks
            .iter()
            .map(|t| t.task_id.as_str())
            .collect();
        assert_eq!(asked, ["t1"]);
        // The launch did commit: the answer (no uuid) says so, then the task ends.
        fake.push(update("t1", TaskState::TaskRunning, "")).await;
        fake.push(ended("t1", TaskState::TaskFinished, "u9", Some(0)))
            .await;
    };
    let (result, lines) =
        run_with_script(&fake, &["--task-id", "t1", "--", "true"], never(), script).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(
        lines,
        [
            "TASK_STAGING",
            "TASK_RUNNING",
            "TASK_FINISHED (exit code 0): exited with status 0"
        ]
    );
    let calls = fake.calls();
    assert_eq!(
        calls.accepts.len(),
        1,
        "an ambiguous ACCEPT is never repeated"
    );
    assert_eq!(calls.ack_uuids(), ["u9"]);
    assert_eq!(calls.teardowns.len(), 1);
}

#[test]
fn arguments_parse_with_defaults_and_trailing_command() {
    let a = parse(&["--masters", "m1:5050", "--", "sh", "-c", "exit 3"]).unwrap();
    assert_eq!(a.masters, ["m1:5050"]);
    assert_eq!(a.name, "drover-run");
    assert_eq!(a.role, "*");
    assert_eq!(a.cpus, 0.1);
    assert_eq!(a.mem, 32.0);
    assert_eq!(a.disk, 0.0);
    assert_eq!(a.ports, 0);
    assert_eq!(a.timeout, Duration::from_secs(60));
    assert_eq!(a.command, ["sh", "-c", "exit 3"]);

    let b = parse(&[
        "--masters",
        "a:1,b:2",
        "--cpus",
        "2",
        "--env",
        "X=1=2",
        "--timeout",
        "2m",
        "echo",
        "-n",
        "hi",
    ])
    .unwrap();
    assert_eq!(b.masters, ["a:1", "b:2"]);
    assert_eq!(b.env, [("X".to_string(), "1=2".to_string())]);
    assert_eq!(b.timeout, Duration::from_secs(120));
    assert_eq!(b.command, ["echo", "-n", "hi"]);

    assert!(
        parse(&["--masters", "m:1"]).is_err(),
        "a command is required"
    );
    assert!(parse(&["--env", "1X=2", "--", "true"]).is_err());
    assert!(parse(&["--timeout", "soon", "--", "true"]).is_err());
}

#[test]
fn plan_checks_fields_and_names_them() {
    let ok = |extra: &[&str]| {
        let mut v = vec!["--masters", "m:1"];
        v.extend_from_slice(extra);
        Plan::from_args(parse(&v).unwrap())
    };
    let plan = ok(&["--name", "job", "--", "echo", "hi"]).unwrap();
    assert!(plan.task_id.as_str().starts_with("job."));
    assert_eq!(plan.task_id.as_str().len(), "job.".len() + 8);
    assert_eq!(plan.command.shell, "echo hi");
    let spaced = ok(&["--name", "my job/é", "--", "x"]).unwrap();
    assert!(
        spaced.task_id.as_str().starts_with("my-job--."),
        "{:?}",
        spaced.task_id
    );
    assert_eq!(spaced.framework.name, "my job/é");
    // With --no-shell the words are the container's command line, each as given.
    let words = ok(&[
        "--image",
        "busybox:1",
        "--no-shell",
        "--",
        "test",
        "$X",
        "=",
        "a b",
    ])
    .unwrap();
    assert_eq!(words.command.shell, "");
    assert_eq!(words.command.arguments, ["test", "$X", "=", "a b"]);
    assert!(
        parse(&["--masters", "m:1", "--no-shell", "--", "x"]).is_err(),
        "--no-shell needs --image"
    );

    for (args, field) in [
        (vec!["--cpus", "0", "--", "x"], "--cpus"),
        (vec!["--mem=-1", "--", "x"], "--mem"),
        (vec!["--disk", "NaN", "--", "x"], "--disk"),
        (vec!["--task-id", "a b", "--", "x"], "--task-id"),
        (vec!["--env", "A=1", "--env", "A=2", "--", "x"], "--env"),
        (
            vec!["--kill-grace-seconds=-1", "--", "x"],
            "--kill-grace-seconds",
        ),
        (vec!["--", " "], "no command"),
        (vec!["--image", "busybox:1", "--no-shell"], "--no-shell"),
    ] {
        let e = ok(&args).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(field), "{e} should name {field}");
    }
}

#[test]
fn fit_takes_the_first_ports_of_the_offer() {
    let plan = Plan::from_args(
        parse(&["--masters", "m:1", "--ports", "3", "--cpus", "1", "--", "x"]).unwrap(),
    )
    .unwrap();
    let offered: Resources = "cpus:2;mem:64;ports:[31000-31001,32000-32009]"
        .parse()
        .unwrap();
    assert_eq!(
        plan.fit(&offered).unwrap(),
        "cpus:1;mem:32;ports:[31000-31001,32000-32000]"
            .parse()
            .unwrap()
    );
    assert_eq!(
        plan.fit(&"cpus:2;mem:64;ports:[31000-31001]".parse().unwrap()),
        None
    );
    assert_eq!(
        plan.fit(&"cpus:0.5;mem:64;ports:[1-9]".parse().unwrap()),
        None
    );
    assert_eq!(
        plan.fit(&"cpus:2;mem:16;ports:[1-9]".parse().unwrap()),
        None
    );
}

#[test]
fn exit_codes_follow_the_task() {
    let status = |state: TaskState, exit_code: Option<i32>, signal: Option<i32>| v1::TaskStatus {
        state: state as i32,
        exit_code,
        signal,
        ..Default::default()
    };
    assert_eq!(
        exit_code_of(&status(TaskState::TaskFinished, Some(0), None)),
        0
    );
    assert_eq!(
        exit_code_of(&status(TaskState::TaskFailed, Some(3), None)),
        3
    );
    assert_eq!(
        exit_code_of(&status(TaskState::TaskFailed, None, Some(9))),
        137
    );
    assert_eq!(
        exit_code_of(&status(TaskState::TaskFailed, Some(0), None)),
        1
    );
    assert_eq!(
        exit_code_of(&status(TaskState::TaskFailed, Some(300), None)),
        1
    );
    assert_eq!(
        exit_code_of(&status(TaskState::TaskKilled, None, Some(15))),
        1
    );
    assert_eq!(exit_code_of(&status(TaskState::TaskLost, None, None)), 1);
    assert_eq!(exit_code_of(&status(TaskState::TaskGone, None, None)), 1);
}

#[test]
fn status_lines_start_with_the_state_and_stay_on_one_line() {
    let mut s = v1::TaskStatus {
        state: TaskState::TaskFailed as i32,
        signal: Some(9),
        message: "killed\nby the OOM killer".into(),
        ..Default::default()
    };
    assert_eq!(
        status_line(&s),
        "TASK_FAILED (signal 9): killed by the OOM killer"
    );
    s.state = TaskState::TaskRunning as i32;
    assert_eq!(status_line(&s), "TASK_RUNNING");
    s.state = TaskState::TaskLost as i32;
    s.signal = None;
    s.message.clear();
    s.reason = "agent_removed".into();
    assert_eq!(status_line(&s), "TASK_LOST: agent_removed");
}
