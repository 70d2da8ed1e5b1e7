//! Bounded state on real clusters (issue 16): the masters forget completed tasks and
//! frameworks beyond their bounds, on every replica, and answer reconciliation for a
//! forgotten task as Mesos does.

mod common;

use std::time::Duration;

use drover_proto::v1;
use drover_scheduler::driver::{AgentId, TaskId};

use common::framework::{state_of, Framework};
use common::{metric, shell_task, start_with_agents, state_at, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const KEEP_TASKS: usize = 5;
const TASKS: usize = 20;

/// Tasks of `framework` in one master's registry.
fn tasks_of(state: &serde_json::Value, framework: &str) -> Vec<String> {
    state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["framework_id"] == framework)
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_tasks_and_frameworks_are_forgotten_beyond_their_bounds_on_every_replica() {
    let c = start_with_agents(
        3,
        &[
            "--max-completed-tasks-per-framework",
            &KEEP_TASKS.to_string(),
            "--max-completed-frameworks",
            "1",
        ],
        1,
        &["--resources", "cpus:4;mem:4096"],
        1,
    )
    .await;
    let addrs = c.addrs();
    let mut f = Framework::start(&addrs, Framework::info("pruned", true, WAIT));
    f.launch(
        (0..TASKS)
            .map(|i| shell_task(&format!("t{i}"), "cpus:0.1;mem:16", "true"))
            .collect(),
    );
    f.until("every task finished and acknowledged", WAIT, |f| {
        let done = (0..TASKS)
            .filter(|i| f.latest(&format!("t{i}")) == Some(v1::TaskState::TaskFinished))
            .count();
        (done == TASKS && f.queued() == 0).then_some(())
    })
    .await;
    let framework = f.driver.framework_id().expect("subscribed").to_string();

    // Every replica forgets the oldest: at most the bound plus its slack (one) remain.
    for addr in &addrs {
        wait_until("completed tasks forgotten", WAIT, || async {
            let state = state_at(addr).await?;
            let kept = tasks_of(&state, &framework);
            if kept.len() <= KEEP_TASKS + 1 {
                Ok(())
            } else {
                Err(format!("{addr} keeps {} tasks: {kept:?}", kept.len()))
            }
        })
        .await
        .unwrap();
    }
    let leader = c.wait_for_leader(WAIT).await.unwrap().leader_addr;
    let pruned = metric(&leader, "drover_master_pruned_total{what=\"tasks\"}")
        .await
        .unwrap_or(0.0);
    assert!(pruned >= (TASKS - KEEP_TASKS - 1) as f64, "pruned {pruned}");

    // A forgotten task is answered as Mesos does: GONE on its registered agent, UNKNOWN
    // without an agent.
    let state = state_at(&leader).await.unwrap();
    let kept = tasks_of(&state, &framework);
    let forgotten = (0..TASKS)
        .map(|i| format!("t{i}"))
        .find(|t| !kept.contains(t))
        .expect("a forgotten task");
    let agent = f.launched_on[&forgotten].clone();
    let before = f.updates.len();
    f.driver
        .reconcile_on(&[
            (TaskId::new(forgotten.clone()), Some(AgentId::new(agent))),
            (TaskId::new("never-launched"), None),
        ])
        .await
        .expect("reconcile");
    let answers = f
        .until("reconciliation answers", WAIT, |f| {
            let answers: Vec<&v1::TaskStatus> = f.updates[before..]
                .iter()
                .filter(|s| s.uuid.is_empty())
                .collect();
            (answers.len() == 2).then(|| {
                answers
                    .iter()
                    .map(|s| (s.task_id.clone(), state_of(s)))
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
        })
        .await;
    assert_eq!(answers[&forgotten], v1::TaskState::TaskGone);
    assert_eq!(answers["never-launched"], v1::TaskState::TaskUnknown);

    // Completed frameworks: three more subscribe and are torn down, then this one; with a
    // bound of one, the oldest go with their tasks.
    for name in ["gone-1", "gone-2", "gone-3"] {
        let mut g = Framework::start(&addrs, Framework::info(name, true, WAIT));
        g.until("subscribed", WAIT, |g| {
            (!g.subscriptions.is_empty()).then_some(())
        })
        .await;
        g.driver.teardown().await.expect("teardown");
    }
    f.driver.teardown().await.expect("teardown");
    for addr in &addrs {
        wait_until("completed frameworks forgotten", WAIT, || async {
            let state = state_at(addr).await?;
            let frameworks: Vec<&str> = state["frameworks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["name"].as_str())
                .collect();
            // The bound (one) plus its slack (one).
            if frameworks.len() <= 2 && !frameworks.contains(&"gone-1") {
                Ok(())
            } else {
                Err(format!("{addr} keeps frameworks {frameworks:?}"))
            }
        })
        .await
        .unwrap();
    }
}

/// An ended task's directory leaves `frameworks/` (what a restarted agent reads) once the
/// master acknowledged its end, and is removed after `--gc-delay`.
#[tokio::test(flavor = "multi_thread")]
async fn an_ended_tasks_directory_is_moved_aside_then_collected_after_the_delay() {
    let c = start_with_agents(
        1,
        &[],
        1,
        &[
            "--resources",
            "cpus:2;mem:1024",
            "--gc-delay",
            "4s",
            "--gc-disk-headroom",
            "0",
            "--disk-watch-interval",
            "100ms",
        ],
        1,
    )
    .await;
    let work_dir = c.agents().next().expect("an agent").work_dir.clone();
    let mut f = Framework::start(&c.addrs(), Framework::info("collected", true, WAIT));
    f.launch(vec![shell_task(
        "short",
        "cpus:0.1;mem:16",
        "echo kept for a while",
    )]);
    f.until_state("short", v1::TaskState::TaskFinished, WAIT)
        .await;
    let completed = wait_until("the ended task's directory moved aside", WAIT, || async {
        let running = work_dir.join("frameworks");
        let in_frameworks = std::fs::read_dir(&running)
            .into_iter()
            .flatten()
            .flatten()
            .any(|fw| fw.path().join("tasks").join("short").exists());
        let moved = std::fs::read_dir(work_dir.join("completed"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|fw| fw.path().join("short"))
            .find(|p| p.join("sandbox").join("stdout").exists());
        match moved {
            Some(p) if !in_frameworks => Ok(p),
            _ => Err(format!("in frameworks/: {in_frameworks}")),
        }
    })
    .await
    .unwrap();
    let stdout = std::fs::read_to_string(completed.join("sandbox/stdout")).unwrap_or_default();
    assert!(stdout.contains("kept for a while"), "{stdout:?}");
    wait_until("the directory removed after the delay", WAIT, || async {
        if completed.exists() {
            Err(format!("{} still there", completed.display()))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    // The counter is bumped once the removal is done, a moment after the directory is gone.
    let agent = c.agents().next().expect("an agent").addr.clone();
    wait_until("the removal counted", WAIT, || {
        let agent = agent.clone();
        async move {
            match metric(&agent, "drover_agent_gc_removed_total").await {
                Some(1.0) => Ok(()),
                other => Err(format!("drover_agent_gc_removed_total: {other:?}")),
            }
        }
    })
    .await
    .unwrap();
}
