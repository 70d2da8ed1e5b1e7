//! What the master acknowledged to agents and what the registry holds: the two sides of
//! "no acknowledged status update is ever lost" (DESIGN.md, invariant 1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use drover_agent::checkpoint::read_records;

use super::wait_until;

/// The uuids the master acknowledged to the agent, by task: the `acked` records of every
/// task's `updates.log` (a checkpoint record log) under the agent's work directory.
pub fn acked_by_master(work_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
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
                let Ok(replay) = read_records::<serde_json::Value>(&p) else {
                    continue;
                };
                for record in replay.records.iter().filter(|r| r["record"] == "acked") {
                    if let Some(uuid) = record["uuid"].as_str() {
                        out.entry(task.clone())
                            .or_insert_with(BTreeSet::new)
                            .insert(uuid.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Every update uuid of every task in the `/v1/state` of the master at `addr` (its own
/// registry, leader or not).
pub async fn updates_on(addr: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let state = super::state_at(addr).await?;
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
pub async fn wait_holds(addr: &str, acked: &BTreeMap<String, BTreeSet<String>>) {
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
