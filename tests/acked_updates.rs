//! Status updates the master acknowledged to an agent survive a SIGKILL of the leader: they are
//! in every replica's registry afterwards (the killed one too, once restarted), and the
//! framework, which had acknowledged none of them, gets every one again from the new leader.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use drover_proto::v1;
use drover_scheduler::driver::{Driver, DriverEvent, DriverOptions, EventStream, FrameworkInfo};

use common::{start_with_agents, wait_until, LEADER_TIMEOUT};

const TASKS: usize = 8;
/// STARTING, RUNNING, FINISHED.
const UPDATES_PER_TASK: usize = 3;

/// The uuids the master acknowledged to the agent, by task: the `acked` records of every
/// task's `updates.log` under the agent's work directory (lines are `CRC32 JSON`).
fn acked_by_master(work_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![work_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "updates.log") {
                let task = p
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for line in text.lines() {
                    let Some((_, json)) = line.split_once(' ') else {
                        continue;
                    };
                    let Ok(record) = serde_json::from_str::<serde_json::Value>(json) else {
                        continue;
                    };
                    if record["record"] == "acked" {
                        if let Some(uuid) = record["uuid"].as_str() {
                            out.entry(task.clone())
                                .or_insert_with(BTreeSet::new)
                                .insert(uuid.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every update uuid of every task in the `/v1/state` of the master at `addr` (its own
/// registry, leader or not).
async fn updates_on(addr: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let (code, body) = common::try_http_get(addr, "/v1/state")
        .await
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("{addr}: /v1/state answered {code}"));
    }
    let state: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for t in state["tasks"].as_array().into_iter().flatten() {
        let uuids = t["updates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["uuid"].as_str().map(String::from))
            .collect();
        out.insert(t["id"].as_str().unwrap_or_default().to_string(), uuids);
    }
    Ok(out)
}

/// Waits until the master at `addr` holds every acknowledged uuid.
async fn wait_holds(addr: &str, acked: &BTreeMap<String, BTreeSet<String>>) {
    wait_until(
        &format!("{addr} holds every acknowledged update"),
        Duration::from_secs(30),
        || async {
            let have = updates_on(addr).await?;
            for (task, uuids) in acked {
                let held = have.get(task).cloned().unwrap_or_default();
                let missing: Vec<&String> = uuids.difference(&held).collect();
                if !missing.is_empty() {
                    return Err(format!("task {task}: missing {missing:?}"));
                }
            }
            Ok(())
        },
    )
    .await
    .expect("acknowledged updates kept");
}

/// The next driver event, within 30 s.
async fn next(events: &mut EventStream) -> DriverEvent {
    tokio::time::timeout(Duration::from_secs(30), events.next_event())
        .await
        .expect("an event in time")
        .expect("driver running")
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_the_master_acknowledged_survive_a_sigkill_of_the_leader() {
    let mut c = start_with_agents(
        3,
        &[],
        1,
        &[
            "--resources",
            "cpus:4;mem:4096;disk:1024;ports:[31000-31099]",
        ],
        1,
    )
    .await;
    let (driver, mut events) = Driver::start(
        &c.addrs(),
        FrameworkInfo::new("durable"),
        DriverOptions::default(),
    )
    .expect("driver");
    let offer = loop {
        match next(&mut events).await {
            DriverEvent::Offers(mut o) => break o.remove(0),
            DriverEvent::Error(e) => panic!("{e}"),
            _ => {}
        }
    };
    let tasks: Vec<v1::TaskInfo> = (0..TASKS)
        .map(|i| v1::TaskInfo {
            task_id: format!("quick-{i}"),
            name: format!("quick-{i}"),
            resources: "cpus:0.1;mem:32"
                .parse::<drover_resources::Resources>()
                .unwrap()
                .to_proto(),
            command: Some(v1::CommandInfo {
                shell: "exit 0".into(),
                environment: Default::default(),
            }),
            kill_grace_seconds: 1.0,
        })
        .collect();
    driver
        .accept(std::slice::from_ref(&offer.id), tasks, Some(600.0))
        .await
        .expect("accept");

    // Every update of every task acknowledged by the master to the agent (after commit).
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let acked = wait_until(
        "the master acknowledged every update",
        Duration::from_secs(60),
        || {
            let work_dir = work_dir.clone();
            async move {
                let acked = acked_by_master(&work_dir);
                let n: usize = acked.values().map(BTreeSet::len).sum();
                if acked.len() == TASKS && n == TASKS * UPDATES_PER_TASK {
                    Ok(acked)
                } else {
                    Err(format!("{n} of {} acknowledged", TASKS * UPDATES_PER_TASK))
                }
            }
        },
    )
    .await
    .unwrap();

    // At once, SIGKILL the leader.
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let old = leader.leader_id;
    c.kill(old).await.unwrap();
    let survivors: Vec<u64> = c.masters().map(|m| m.id).filter(|&id| id != old).collect();
    let new = c
        .wait_for_leader_among(&survivors, leader.term, LEADER_TIMEOUT)
        .await
        .expect("a new leader");
    assert_ne!(new.leader_id, old);
    for id in &survivors {
        let addr = c.master(*id).unwrap().addr.clone();
        wait_holds(&addr, &acked).await;
    }

    // The framework acknowledged nothing: the new leader re-sends every update.
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    let want: BTreeSet<String> = acked.values().flatten().cloned().collect();
    assert_eq!(want.len(), TASKS * UPDATES_PER_TASK);
    while !want.is_subset(&delivered) {
        match next(&mut events).await {
            DriverEvent::Update(s) => {
                delivered.insert(s.uuid.clone());
            }
            DriverEvent::Offers(o) => {
                let ids: Vec<_> = o.iter().map(|o| o.id.clone()).collect();
                driver.decline(&ids, Some(600.0)).await.ok();
            }
            DriverEvent::Error(e) => panic!("{e}"),
            _ => {}
        }
    }

    // The killed replica, restarted, has them too.
    c.start_master(old).unwrap();
    let addr = c.master(old).unwrap().addr.clone();
    let (code, _) = wait_until("restarted master answers", Duration::from_secs(30), || {
        let addr = addr.clone();
        async move {
            common::try_http_get(&addr, "/health")
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    wait_holds(&addr, &acked).await;
    driver.teardown().await.expect("teardown");
}
