//! What the master acknowledged to agents and what the registry holds: the two sides of
//! "no acknowledged status update is ever lost" (DESIGN.md, invariant 1).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::wait_until;

#[allow(unused_imports)]
pub use drover_chaos::checker::tasks::acked_by_master;

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
