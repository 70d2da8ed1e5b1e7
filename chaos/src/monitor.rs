//! The monitor of a chaos run: polls every master's own status several times a second and
//! records each change in what it says of itself (term, role, the leader it knows), and each
//! time it stops answering, as an `info` of process `monitor`, for the one-leader-per-term checker and the report's
//! timeline.

use std::collections::HashMap;
use std::time::Duration;

use drover_client::MasterClient;
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::MasterId;
use crate::history::{Kind, Recorder};

/// Between two rounds of polls.
const PERIOD: Duration = Duration::from_millis(100);
/// How long one master may take to answer.
const ANSWER: Duration = Duration::from_millis(500);

/// Polls `masters` (id, address) until `stop`.
pub async fn run(
    client: MasterClient,
    masters: Vec<(MasterId, String)>,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    // Per master: what it said last, None while it does not answer.
    let mut last: HashMap<MasterId, Option<(u64, String, u64)>> = HashMap::new();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let polls = masters.iter().map(|(id, addr)| {
            let client = client.clone();
            async move { (*id, client.status_of(addr, ANSWER).await) }
        });
        for (id, status) in futures::future::join_all(polls).await {
            let Ok(s) = status else {
                // Down, paused or cut off from this client: said once per outage.
                if last.get(&id).is_none_or(Option::is_some) {
                    rec.record(
                        "monitor",
                        Kind::Info,
                        "unreachable",
                        json!({"node": id}),
                        None,
                    )
                    .await;
                    last.insert(id, None);
                }
                continue;
            };
            let now = Some((s.term, s.role.clone(), s.leader_id));
            if last.get(&id) != Some(&now) {
                rec.record(
                    "monitor",
                    Kind::Info,
                    "status",
                    json!({"node": id, "term": s.term, "role": s.role, "leader": s.leader_id,
                           "committed": s.committed_index}),
                    None,
                )
                .await;
                last.insert(id, now);
            }
        }
    }
}

/// Between two samples of the leader's committed state.
const SAMPLE_PERIOD: Duration = Duration::from_secs(2);

/// Samples the leader's committed state (`/v1/state`: agents, offers, tasks, without update
/// histories) every [`SAMPLE_PERIOD`] until `stop`, for the resource-safety checker.
pub async fn sample_states(
    client: MasterClient,
    masters: Vec<(MasterId, String)>,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(leader) = client.leader_status().await else {
            continue;
        };
        let Some((id, addr)) = masters.iter().find(|(id, _)| *id == leader.node_id) else {
            continue;
        };
        let Ok(state) = crate::http::get_json(addr, "/v1/state").await else {
            continue;
        };
        // Only live tasks hold resources; the registry keeps finished ones too.
        let live_tasks: serde_json::Value = state["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["state"]
                    .as_str()
                    .is_some_and(|s| !crate::checker::tasks::is_terminal(s))
            })
            .cloned()
            .collect();
        let pick = |list: &serde_json::Value, keys: &[&str]| -> Vec<serde_json::Value> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    keys.iter()
                        .map(|k| (k.to_string(), x[*k].clone()))
                        .collect()
                })
                .collect()
        };
        rec.record(
            "monitor",
            Kind::Info,
            "committed-state",
            json!({
                "node": id,
                "applied": state["applied_index"],
                "agents": pick(&state["agents"], &["id", "state", "resources"]),
                "offers": pick(&state["offers"], &["id", "agent_id", "resources"]),
                "tasks": pick(&live_tasks, &["id", "agent_id", "state", "resources"]),
            }),
            None,
        )
        .await;
    }
}
