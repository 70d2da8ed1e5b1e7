//! Recovery paths, each proven by killing or freezing real processes (DESIGN.md, "Status
//! updates and failover"): an agent SIGKILLed and restarted, an agent cut off past its
//! timeout and back, a scheduler that fails over within and past its failover timeout. Each
//! test asserts on the replicated state and on what the framework received.

mod common;

use std::time::Duration;

use drover_proto::v1;
use drover_scheduler::driver::TaskId;

use common::framework::Framework;
use common::{
    leader_state, process_alive, read_pid, shell_task, start_with_agents, task_dir, task_in_state,
    wait_until, LEADER_TIMEOUT,
};

const AGENT_RESOURCES: &str = "cpus:4;mem:4096;disk:1024;ports:[31000-31099]";
const TASK: &str = "cpus:0.1;mem:32";
const WAIT: Duration = Duration::from_secs(40);

/// The leader's address.
async fn leader_addr(c: &common::TestCluster) -> String {
    c.wait_for_leader(LEADER_TIMEOUT)
        .await
        .expect("leader")
        .leader_addr
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_and_restarted_keeps_its_running_tasks_and_reports_what_ended() {
    let mut c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("restart", true, Duration::from_secs(120)),
    );
    f.launch(vec![
        shell_task(
            "long",
            TASK,
            "echo started >> runs; echo $$ > pid; exec sleep 600",
        ),
        shell_task(
            "ends",
            TASK,
            "while [ ! -e go ]; do sleep 0.05; done; exit 7",
        ),
        shell_task("orphaned", TASK, "echo $$ > pid; exec sleep 600"),
    ]);
    for t in ["long", "ends", "orphaned"] {
        f.until_state(t, v1::TaskState::TaskRunning, WAIT).await;
    }
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let dir = |t: &str| task_dir(&work_dir, t).expect("task dir");
    let orphan_pid = read_pid(&dir("orphaned").join("sandbox/pid")).expect("orphan's pid");
    let long_pid = read_pid(&dir("long").join("sandbox/pid")).expect("long's pid");

    // SIGKILL the agent. While it is down, "ends" exits 7 (its executor keeps the update
    // and tries to reach the agent), and the executor of "orphaned" is SIGKILLed (its command
    // runs on, orphaned).
    c.kill_agent(0).await.unwrap();
    std::fs::write(dir("ends").join("sandbox/go"), b"").unwrap();
    wait_until("the end of 'ends' in its executor's log", WAIT, || {
        let log = dir("ends").join("executor_updates.log");
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("TASK_FAILED") {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        }
    })
    .await
    .unwrap();
    let executor_pid = read_pid(&dir("orphaned").join("executor.pid")).expect("executor pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(executor_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(process_alive(orphan_pid), "the orphaned command runs on");

    c.start_agent(0).unwrap();
    // The true exit of the task that ended while the agent was down.
    f.until_state("ends", v1::TaskState::TaskFailed, WAIT).await;
    let ended = f.update_in("ends", v1::TaskState::TaskFailed).unwrap();
    assert_eq!(ended.exit_code, Some(7), "{ended:?}");
    assert_eq!(ended.source, v1::StatusSource::SourceExecutor as i32);
    // The task whose executor died without reporting: failed, and its command killed.
    f.until_state("orphaned", v1::TaskState::TaskFailed, WAIT)
        .await;
    let orphaned = f.update_in("orphaned", v1::TaskState::TaskFailed).unwrap();
    assert_eq!(orphaned.reason, "executor_terminated", "{orphaned:?}");
    wait_until("the orphaned command is killed", WAIT, || async {
        if process_alive(orphan_pid) {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    // The long task was re-attached, not launched again: same process, one start.
    let addr = leader_addr(&c).await;
    wait_until(
        "the agent re-registered with 'long' running",
        WAIT,
        || async {
            match task_in_state(&addr, "long").await? {
                (t, a) if t == "TASK_RUNNING" && a == "ACTIVE" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap();
    assert!(
        process_alive(long_pid),
        "the long task's process was not touched"
    );
    assert_eq!(f.latest("long"), Some(v1::TaskState::TaskRunning));
    let runs = std::fs::read_to_string(dir("long").join("sandbox/runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "launched once: {runs:?}");
    // The new agent life controls the re-attached executor.
    f.driver
        .kill(&TaskId::new("long"), Some(Duration::from_secs(1)))
        .await
        .expect("kill");
    f.until_state("long", v1::TaskState::TaskKilled, WAIT).await;
    assert!(!process_alive(long_pid));
    f.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_agent_past_its_timeout_comes_back_with_its_tasks() {
    let c = start_with_agents(
        3,
        &["--agent-timeout-ms", "2000", "--agent-heartbeat-ms", "400"],
        1,
        &["--resources", AGENT_RESOURCES],
        1,
    )
    .await;
    // One framework at a time: a framework that is not reading its events would sit on the
    // offers the other one needs.
    let mut aware = Framework::start(
        &c.addrs(),
        Framework::info("aware", true, Duration::from_secs(120)),
    );
    aware.launch(vec![shell_task(
        "a1",
        TASK,
        "echo $$ > pid; exec sleep 600",
    )]);
    aware
        .until_state("a1", v1::TaskState::TaskRunning, WAIT)
        .await;
    aware.driver.suppress().await.expect("suppress");
    let mut plain = Framework::start(
        &c.addrs(),
        Framework::info("plain", false, Duration::from_secs(120)),
    );
    plain.launch(vec![shell_task(
        "p1",
        TASK,
        "echo $$ > pid; exec sleep 600",
    )]);
    plain
        .until_state("p1", v1::TaskState::TaskRunning, WAIT)
        .await;
    plain.driver.suppress().await.expect("suppress");
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let a1_pid = read_pid(&task_dir(&work_dir, "a1").unwrap().join("sandbox/pid")).unwrap();
    let p1_pid = read_pid(&task_dir(&work_dir, "p1").unwrap().join("sandbox/pid")).unwrap();

    // Frozen: to the masters the agent is gone; its tasks run on.
    c.pause_agent(0).unwrap();
    aware
        .until_state("a1", v1::TaskState::TaskUnreachable, WAIT)
        .await;
    plain.until_state("p1", v1::TaskState::TaskLost, WAIT).await;
    assert_eq!(
        aware
            .update_in("a1", v1::TaskState::TaskUnreachable)
            .unwrap()
            .reason,
        "agent_unreachable"
    );
    let addr = leader_addr(&c).await;
    assert_eq!(
        task_in_state(&addr, "a1").await.unwrap(),
        ("TASK_UNREACHABLE".to_string(), "UNREACHABLE".to_string())
    );
    assert!(process_alive(a1_pid) && process_alive(p1_pid));

    // Healed: the partition-aware task is RUNNING again; the other, LOST already, is killed.
    c.resume_agent(0).unwrap();
    aware
        .until_state("a1", v1::TaskState::TaskRunning, WAIT)
        .await;
    assert_eq!(
        aware.latest("a1"),
        Some(v1::TaskState::TaskRunning),
        "{:?}",
        aware.updates
    );
    let back = aware.update_in("a1", v1::TaskState::TaskRunning).unwrap();
    assert_eq!(back.reason, "agent_reregistered");
    wait_until("the LOST task's process is killed", WAIT, || async {
        if process_alive(p1_pid) {
            Err("p1 still runs".to_string())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    assert!(
        process_alive(a1_pid),
        "the partition-aware task was not touched"
    );
    assert_eq!(plain.latest("p1"), Some(v1::TaskState::TaskLost));
    let addr = leader_addr(&c).await;
    assert_eq!(
        task_in_state(&addr, "a1").await.unwrap(),
        ("TASK_RUNNING".to_string(), "ACTIVE".to_string())
    );
    assert_eq!(task_in_state(&addr, "p1").await.unwrap().0, "TASK_LOST");
    aware.driver.teardown().await.expect("teardown");
    plain.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_failing_over_in_time_keeps_its_tasks_and_past_it_loses_them() {
    let c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let timeout = Duration::from_secs(4);
    let mut first = Framework::start(&c.addrs(), Framework::info("fails-over", true, timeout));
    first.launch(vec![
        shell_task("keeps", TASK, "echo $$ > pid; exec sleep 600"),
        shell_task(
            "ends-meanwhile",
            TASK,
            "while [ ! -e go ]; do sleep 0.05; done; exit 0",
        ),
    ]);
    first
        .until_state("keeps", v1::TaskState::TaskRunning, WAIT)
        .await;
    first
        .until_state("ends-meanwhile", v1::TaskState::TaskRunning, WAIT)
        .await;
    let id = first.driver.framework_id().expect("framework id");
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let keeps_pid = read_pid(&task_dir(&work_dir, "keeps").unwrap().join("sandbox/pid")).unwrap();

    // The scheduler dies (its stream closes, no TEARDOWN); a task ends while it is away.
    first.driver.stop().await;
    drop(first);
    std::fs::write(
        task_dir(&work_dir, "ends-meanwhile")
            .unwrap()
            .join("sandbox/go"),
        b"",
    )
    .unwrap();
    let addr = leader_addr(&c).await;
    wait_until("the end is committed", WAIT, || async {
        match task_in_state(&addr, "ends-meanwhile").await?.0.as_str() {
            "TASK_FINISHED" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await
    .unwrap();

    // Back within the failover timeout, under the same id: nothing was killed, and the
    // update it missed is delivered.
    let mut info = Framework::info("fails-over", true, timeout);
    info.id = Some(id.clone());
    let mut second = Framework::start(&c.addrs(), info);
    second
        .until_state("ends-meanwhile", v1::TaskState::TaskFinished, WAIT)
        .await;
    assert!(process_alive(keeps_pid));
    second.reconcile(&["keeps"]).await;
    second
        .until_state("keeps", v1::TaskState::TaskRunning, WAIT)
        .await;
    assert_eq!(second.driver.framework_id(), Some(id.clone()));

    // Gone for longer than the timeout: torn down, its task killed.
    second.driver.stop().await;
    drop(second);
    let addr = leader_addr(&c).await;
    wait_until(
        "the task is killed past the failover timeout",
        WAIT,
        || async {
            match task_in_state(&addr, "keeps").await?.0.as_str() {
                "TASK_KILLED" => Ok(()),
                other => Err(other.to_string()),
            }
        },
    )
    .await
    .unwrap();
    assert!(!process_alive(keeps_pid));
    let state = leader_state(&c).await.unwrap();
    let fw = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(fw["torn_down"], true, "{fw}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_after_a_leader_change_waits_for_the_tasks_agent() {
    let mut c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("reconciler", true, Duration::from_secs(120)),
    );
    f.launch(vec![shell_task("r1", TASK, "exec sleep 600")]);
    f.until_state("r1", v1::TaskState::TaskRunning, WAIT).await;
    f.driver.suppress().await.expect("suppress");

    // The agent freezes, then the leader dies: the new leader has not heard from the agent.
    c.pause_agent(0).unwrap();
    let (_, new) = c.kill_leader(LEADER_TIMEOUT).await.expect("a new leader");
    f.until("subscribed to the new leader", WAIT, |f| {
        f.subscriptions
            .iter()
            .any(|(m, _)| *m == new.leader_id)
            .then_some(())
    })
    .await;
    let answers = |f: &Framework| {
        f.updates
            .iter()
            .filter(|s| s.task_id == "r1" && s.uuid.is_empty())
            .count()
    };
    let before = answers(&f);
    f.reconcile(&["r1", "never-heard-of"]).await;
    // The unknown task is answered at once; r1 is held while its agent is awaited.
    f.until("the unknown task answered", WAIT, |f| {
        (f.latest("never-heard-of") == Some(v1::TaskState::TaskUnknown)).then_some(())
    })
    .await;
    f.pump(Duration::from_millis(1500)).await;
    assert_eq!(
        answers(&f),
        before,
        "r1 answered before its agent came back"
    );

    // The agent comes back and re-registers: r1 is answered, from its report.
    c.resume_agent(0).unwrap();
    f.until("r1 answered", WAIT, |f| (answers(f) > before).then_some(()))
        .await;
    let answer = f
        .updates
        .iter()
        .rev()
        .find(|s| s.task_id == "r1" && s.uuid.is_empty())
        .unwrap();
    assert_eq!(
        common::framework::state_of(answer),
        v1::TaskState::TaskRunning
    );
    f.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_partitioned_from_the_masters_comes_back_running_after_the_heal() {
    let c = common::start_with_agents_proxied(
        3,
        &["--agent-timeout-ms", "2000", "--agent-heartbeat-ms", "400"],
        1,
        &["--resources", AGENT_RESOURCES],
        1,
    )
    .await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("partitioned", true, Duration::from_secs(120)),
    );
    f.launch(vec![shell_task(
        "cut",
        TASK,
        "echo $$ > pid; exec sleep 600",
    )]);
    f.until_state("cut", v1::TaskState::TaskRunning, WAIT).await;
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let pid = read_pid(&task_dir(&work_dir, "cut").unwrap().join("sandbox/pid")).unwrap();

    // A real cut: the agent runs on, but none of its heartbeats reaches a master.
    let net = c.net().expect("fault layer");
    net.isolate_agent(0);
    f.until_state("cut", v1::TaskState::TaskUnreachable, WAIT)
        .await;
    let addr = leader_addr(&c).await;
    assert_eq!(
        task_in_state(&addr, "cut").await.unwrap(),
        ("TASK_UNREACHABLE".to_string(), "UNREACHABLE".to_string())
    );
    assert!(process_alive(pid));

    // Healed: the agent's heartbeats get through, it registers again with its report, and the
    // task is RUNNING again (the same process).
    net.heal_agent(0);
    f.until_state("cut", v1::TaskState::TaskRunning, WAIT).await;
    assert_eq!(
        f.update_in("cut", v1::TaskState::TaskRunning)
            .unwrap()
            .reason,
        "agent_reregistered"
    );
    assert!(process_alive(pid));
    let addr = leader_addr(&c).await;
    assert_eq!(
        task_in_state(&addr, "cut").await.unwrap(),
        ("TASK_RUNNING".to_string(), "ACTIVE".to_string())
    );
    f.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_unreachable_past_the_removal_timeout_is_gone_for_good() {
    let mut c = common::start_with_agents_proxied(
        3,
        &[
            "--agent-timeout-ms",
            "1500",
            "--agent-heartbeat-ms",
            "300",
            "--agent-removal-timeout-ms",
            "2000",
        ],
        1,
        &["--resources", AGENT_RESOURCES],
        1,
    )
    .await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("removed", true, Duration::from_secs(120)),
    );
    f.launch(vec![shell_task(
        "g1",
        TASK,
        "echo $$ > pid; exec sleep 600",
    )]);
    f.until_state("g1", v1::TaskState::TaskRunning, WAIT).await;
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let pid = read_pid(&task_dir(&work_dir, "g1").unwrap().join("sandbox/pid")).unwrap();
    c.net().expect("fault layer").isolate_agent(0);
    f.until_state("g1", v1::TaskState::TaskUnreachable, WAIT)
        .await;
    f.until_state("g1", v1::TaskState::TaskGone, WAIT).await;
    assert_eq!(
        f.update_in("g1", v1::TaskState::TaskGone).unwrap().reason,
        "agent_removed"
    );
    assert!(process_alive(pid), "cut off, the task runs on");
    // Back on the network, the agent is refused for good, kills its tasks and stops.
    c.net().unwrap().heal_agent(0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !c.exited_agents().contains(&0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the removed agent still runs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !process_alive(pid),
        "a removed agent leaves nothing running"
    );
    let addr = leader_addr(&c).await;
    assert_eq!(
        task_in_state(&addr, "g1").await.unwrap(),
        ("TASK_GONE".to_string(), "GONE".to_string())
    );
    f.driver.teardown().await.expect("teardown");
}
