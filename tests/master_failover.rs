//! Master failures under load, with real masters, agents and executors: the leader SIGKILLed
//! while 200 tasks launch, every master restarted at once, a rolling restart of all masters
//! while tasks launch, and `drover run` riding through a leader's death. Each test checks the
//! invariants on the replicated state and on what the framework received: no update the
//! master acknowledged to an agent is lost, every update reaches the framework, every task
//! ends in a state the framework knows, and nothing is launched twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_proto::v1;
use drover_scheduler::driver::{is_terminal, TaskId};

use common::framework::Framework;
use common::updates::{acked_by_master, updates_on, wait_holds};
use common::{
    process_alive, read_pid, shell_task, start_with_agents, state_at, task_dir, wait_until,
    TestCluster, LEADER_TIMEOUT,
};

const AGENT_RESOURCES: &str = "cpus:64;mem:65536;disk:1024;ports:[31000-31999]";
const WAIT: Duration = Duration::from_secs(60);

fn tasks(prefix: &str, n: usize, shell: &str) -> Vec<v1::TaskInfo> {
    (0..n)
        .map(|i| shell_task(&format!("{prefix}{i}"), "cpus:0.1;mem:16", shell))
        .collect()
}

/// Launched tasks whose ACCEPT failed with an unknown outcome.
fn uncertain(f: &Framework) -> BTreeSet<String> {
    f.failed_accepts
        .iter()
        .flat_map(|(ids, _)| ids.iter().cloned())
        .collect()
}

/// Waits until every task the framework launched has ended; the tasks of ACCEPTs whose
/// outcome is unknown must either end too or be unknown to the master (reconciled).
async fn until_everything_ends(f: &mut Framework, launched: usize) {
    f.until("every launched task ended", Duration::from_secs(180), |f| {
        let unsure = uncertain(f);
        let states = f.states();
        let ended = states
            .iter()
            .filter(|(id, s)| {
                is_terminal(**s) || (unsure.contains(*id) && **s == v1::TaskState::TaskUnknown)
            })
            .count();
        (f.queued() == 0
            && ended + unsure.iter().filter(|t| !states.contains_key(*t)).count() >= launched)
            .then_some(())
    })
    .await;
    // ACCEPTs of unknown outcome that left no trace yet: ask the master.
    let unsure: Vec<String> = uncertain(f)
        .into_iter()
        .filter(|t| f.latest(t).is_none())
        .collect();
    if !unsure.is_empty() {
        let ids: Vec<&str> = unsure.iter().map(String::as_str).collect();
        f.reconcile(&ids).await;
        f.until("uncertain launches reconciled", WAIT, |f| {
            unsure
                .iter()
                .all(|t| {
                    f.latest(t)
                        .is_some_and(|s| is_terminal(s) || s == v1::TaskState::TaskUnknown)
                })
                .then_some(())
        })
        .await;
    }
}

/// The invariants after the dust settled, on the master at `addr`:
/// - every update any agent had acknowledged by the master is in its registry;
/// - every update in the registry reached the framework (at least once);
/// - every task in the registry is terminal there, in the state the framework last heard;
/// - every task ran at most once: one task directory across agents, one TASK_STARTING made.
async fn check_invariants(c: &TestCluster, f: &Framework, addr: &str) {
    let mut acked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in c.agents() {
        for (task, uuids) in acked_by_master(&a.work_dir) {
            acked.entry(task).or_default().extend(uuids);
        }
    }
    wait_holds(addr, &acked).await;
    let held = updates_on(addr).await.expect("registry");
    let received: BTreeSet<&str> = f
        .updates
        .iter()
        .filter(|s| !s.uuid.is_empty())
        .map(|s| s.uuid.as_str())
        .collect();
    for (task, uuids) in &held {
        for u in uuids {
            assert!(
                received.contains(u.as_str()),
                "task {task}: update {u} is in the registry but never reached the framework"
            );
        }
    }
    let state = state_at(addr).await.expect("state");
    for t in state["tasks"].as_array().into_iter().flatten() {
        let id = t["id"].as_str().unwrap_or_default();
        let s = t["state"].as_str().unwrap_or_default();
        let framework_saw = f.latest(id).map(|s| s.as_str_name()).unwrap_or("nothing");
        assert_eq!(
            s, framework_saw,
            "task {id}: registry {s}, framework saw {framework_saw}"
        );
        let ran_on: Vec<_> = c
            .agents()
            .filter_map(|a| task_dir(&a.work_dir, id))
            .collect();
        assert!(
            ran_on.len() <= 1,
            "task {id} ran on several agents: {ran_on:?}"
        );
        if let Some(dir) = ran_on.first() {
            let log = std::fs::read_to_string(dir.join("executor_updates.log")).unwrap_or_default();
            let starts = log.matches("TASK_STARTING").count();
            assert!(starts <= 1, "task {id} started {starts} times");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_while_200_tasks_launch_loses_no_acknowledged_update() {
    let mut c = start_with_agents(3, &[], 2, &["--resources", AGENT_RESOURCES], 2).await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("storm", true, Duration::from_secs(300)),
    );
    f.launch(tasks("t", 200, "sleep 1"));
    f.until("50 tasks running", WAIT, |f| {
        let going = f
            .states()
            .values()
            .filter(|s| **s != v1::TaskState::TaskStaging && **s != v1::TaskState::TaskStarting)
            .count();
        (going >= 50).then_some(())
    })
    .await;
    let (leader, new) = c.kill_leader(LEADER_TIMEOUT).await.expect("a new leader");
    until_everything_ends(&mut f, 200).await;
    check_invariants(&c, &f, &new.leader_addr).await;
    // The killed master, back, holds the same.
    c.start_master(leader.leader_id).unwrap();
    let addr = c.master(leader.leader_id).unwrap().addr.clone();
    let mut acked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in c.agents() {
        acked.extend(acked_by_master(&a.work_dir));
    }
    wait_holds(&addr, &acked).await;
    assert!(
        f.subscriptions
            .iter()
            .any(|(m, re)| *re && *m != leader.leader_id),
        "the framework followed the new leader: {:?}",
        f.subscriptions
    );
    f.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_master_restarted_at_once_brings_back_every_agent_and_task() {
    let mut c = start_with_agents(3, &[], 2, &["--resources", AGENT_RESOURCES], 2).await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("outage", true, Duration::from_secs(300)),
    );
    f.launch(tasks("long", 6, "echo $$ > pid; exec sleep 600"));
    for i in 0..6 {
        f.until_state(&format!("long{i}"), v1::TaskState::TaskRunning, WAIT)
            .await;
    }
    let pids: BTreeMap<String, i32> = (0..6)
        .map(|i| {
            let id = format!("long{i}");
            let dir = c
                .agents()
                .find_map(|a| task_dir(&a.work_dir, &id))
                .expect("task dir");
            let pid = read_pid(&dir.join("sandbox/pid")).expect("pid");
            (id, pid)
        })
        .collect();

    // Power loss: every master SIGKILLed, then all started again.
    let ids: Vec<u64> = c.masters().map(|m| m.id).collect();
    for id in &ids {
        c.kill(*id).await.unwrap();
    }
    for id in &ids {
        c.start_master(*id).unwrap();
    }
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.expect("leader");
    wait_until("every agent and task back", WAIT, || async {
        let state = state_at(&leader.leader_addr).await?;
        let active = state["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "ACTIVE")
            .count();
        let running = state["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count();
        // Re-registered with this leader, not just still ACTIVE in the registry.
        let awaited = common::metric(
            &leader.leader_addr,
            "drover_master_agents_awaiting_reregistration",
        )
        .await;
        if active == 2 && running == 6 && awaited == Some(0.0) {
            Ok(())
        } else {
            Err(format!(
                "{active} agents active, {running} tasks running, {awaited:?} awaited"
            ))
        }
    })
    .await
    .unwrap();
    let reregistered = common::metric(
        &leader.leader_addr,
        "drover_master_agent_registrations_total{kind=\"reregistered\"}",
    )
    .await;
    assert_eq!(
        reregistered,
        Some(2.0),
        "both agents re-registered with their tasks"
    );
    for (id, pid) in &pids {
        assert!(
            process_alive(*pid),
            "task {id} kept running through the outage"
        );
    }
    // The framework re-subscribed and controls its tasks.
    f.driver
        .kill(&TaskId::new("long0"), Some(Duration::from_secs(1)))
        .await
        .expect("kill after the outage");
    f.until_state("long0", v1::TaskState::TaskKilled, WAIT)
        .await;
    assert!(!process_alive(pids["long0"]));
    f.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_every_master_under_load_loses_nothing() {
    let mut c = start_with_agents(3, &[], 2, &["--resources", AGENT_RESOURCES], 2).await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("rolling", true, Duration::from_secs(300)),
    );
    let ids: Vec<u64> = c.masters().map(|m| m.id).collect();
    let mut launched = 0;
    for (round, id) in ids.iter().enumerate() {
        // A wave of short tasks in flight while master `id` restarts.
        f.launch(tasks(&format!("r{round}-"), 30, "sleep 0.5"));
        launched += 30;
        f.until("the wave started", WAIT, |f| {
            (f.queued() < 30).then_some(())
        })
        .await;
        c.stop(*id, Duration::from_secs(10)).await.unwrap();
        c.start_master(*id).unwrap();
        let leader = c.wait_for_leader(LEADER_TIMEOUT).await.expect("leader");
        let caught_up = leader.committed_index;
        let id = *id;
        c.wait_for_status(
            id,
            "the restarted master caught up",
            Duration::from_secs(60),
            |s| {
                if s.applied_index >= caught_up {
                    Ok(())
                } else {
                    Err(format!("applied {} of {caught_up}", s.applied_index))
                }
            },
        )
        .await
        .expect("the restarted master caught up");
    }
    until_everything_ends(&mut f, launched).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.expect("leader");
    check_invariants(&c, &f, &leader.leader_addr).await;
    let finished = f
        .states()
        .values()
        .filter(|s| **s == v1::TaskState::TaskFinished)
        .count();
    assert!(
        finished + uncertain(&f).len() >= launched,
        "{finished} of {launched} finished: {:?}",
        f.states()
    );
    f.driver.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn drover_run_rides_through_the_death_of_the_leader() {
    let mut c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let masters = c.addrs().join(",");
    let run = tokio::process::Command::new(common::binary())
        .args([
            "run",
            "--masters",
            &masters,
            "--name",
            "rides",
            "--task-id",
            "rides-through",
            "--",
            "while [ ! -e go ]; do sleep 0.05; done; exit 4",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("drover run");
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let sandbox = wait_until("the task runs", WAIT, || {
        let work_dir = work_dir.clone();
        async move {
            task_dir(&work_dir, "rides-through")
                .map(|d| d.join("sandbox"))
                .filter(|s| s.is_dir())
                .ok_or_else(|| "not yet".to_string())
        }
    })
    .await
    .unwrap();
    let addr = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap().leader_addr;
    wait_until("RUNNING committed", WAIT, || async {
        match common::task_in_state(&addr, "rides-through")
            .await?
            .0
            .as_str()
        {
            "TASK_RUNNING" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await
    .unwrap();
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    c.kill(leader.leader_id).await.unwrap();
    // The task ends while there is no leader yet, or just after.
    std::fs::write(sandbox.join("go"), b"").unwrap();
    let out = tokio::time::timeout(Duration::from_secs(90), run.wait_with_output())
        .await
        .expect("drover run ends")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("TASK_FAILED"), "{stdout}");
    assert!(stdout.contains("exit code 4"), "{stdout}");
}
