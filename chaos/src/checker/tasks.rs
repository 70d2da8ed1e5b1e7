//! Invariants 1–5 of DESIGN.md over the tasks workload: what the framework recorded, what the
//! agents recorded (the updates the master acknowledged to them, the launches their tasks
//! wrote), what the monitor sampled of the leader's committed state during the run, and every
//! replica's final state.
//!
//! - `acked-updates-kept` (1): every update a master acknowledged to an agent is in every
//!   replica's registry (unless its whole task was forgotten after its scheduler received the
//!   task's end: completed tasks are pruned), and every update of the framework's tasks in the
//!   registry reached the framework.
//! - `task-states-forward` (2): per task, in every replica's committed order and in the order
//!   the framework received them, states never move backwards and nothing leaves a terminal
//!   state.
//! - `resources-safe` (3): on every agent, outstanding offers plus live tasks fit in its total,
//!   in every sampled committed state and every final one (ports included: none twice).
//! - `no-double-launch` (4): a task id was launched at most once (its command ran once); an
//!   offer was consumed by at most one successful ACCEPT (one whose tasks were all dropped
//!   for invalid offers consumed none).
//! - `liveness-after-heal` (5): after the last heal, every long task the framework wants is
//!   RUNNING within the bound, and by the end it knows a terminal state for every task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use drover_resources::Resources;
use serde_json::json;

use super::{cite, CheckerResult, Evidence};
use crate::history::{pairs, Kind, Record};
use crate::workload::tasks::{is_call_process, is_events_process, LONG_PREFIX};

/// How long after the last heal the wanted tasks may take to run again.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(45);

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
                let Ok(acked) = drover_agent::status_updates::acked_in_log(&p) else {
                    continue;
                };
                if !acked.is_empty() {
                    out.entry(task)
                        .or_insert_with(BTreeSet::new)
                        .extend(acked.iter().map(|u| u.to_string()));
                }
            }
        }
    }
    out
}

/// Each scheduler's framework id (from its subscriptions), by its events process.
fn framework_ids(history: &[Record]) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    for r in history
        .iter()
        .filter(|r| is_events_process(&r.process) && r.f == "subscribed")
    {
        if let Some(id) = r.value["framework"].as_str() {
            out.entry(r.process.as_str()).or_insert(id);
        }
    }
    out
}

/// The updates the schedulers received (with a uuid), in order of arrival.
fn received(history: &[Record]) -> Vec<&Record> {
    history
        .iter()
        .filter(|r| {
            is_events_process(&r.process)
                && r.f == "update"
                && r.value["uuid"].as_str().is_some_and(|u| !u.is_empty())
        })
        .collect()
}

/// Invariant 1.
pub fn acked_updates_kept(ev: &Evidence) -> CheckerResult {
    let mut bad = Vec::new();
    let mut acked_total = 0usize;
    let held: BTreeMap<u64, HashMap<&str, BTreeSet<&str>>> = ev
        .final_states
        .iter()
        .map(|(id, state)| (*id, uuids_by_task(state)))
        .collect();
    // Tasks whose end a scheduler received: the masters may forget such a task once the
    // scheduler acknowledged that end (completed tasks are pruned, as Mesos does), and the
    // workload acknowledges every update it receives.
    let ended_at_scheduler: BTreeSet<&str> = received(&ev.history)
        .into_iter()
        .filter(|r| r.value["state"].as_str().is_some_and(is_terminal))
        .filter_map(|r| r.value["task"].as_str())
        .collect();
    // Forgetting is a committed command: once a replica applied it, every replica that
    // applied as much or more lacks the task too. A replica missing a task that another, at
    // least as far along, still holds lost it.
    let applied: BTreeMap<u64, u64> = ev
        .final_states
        .iter()
        .map(|(id, state)| (*id, state["applied_index"].as_u64().unwrap_or(0)))
        .collect();
    let forgotten_at = |id: u64, task: &str| {
        let mine = applied.get(&id).copied().unwrap_or(0);
        ended_at_scheduler.contains(task)
            && held.iter().all(|(other, by_task)| {
                applied.get(other).copied().unwrap_or(0) < mine || !by_task.contains_key(task)
            })
    };
    let mut forgotten = 0usize;
    for (agent, acked) in &ev.agent_acks {
        for (task, uuids) in acked {
            for uuid in uuids {
                acked_total += 1;
                for (id, by_task) in &held {
                    let entry = by_task.get(task.as_str());
                    if entry.is_none() && forgotten_at(*id, task) {
                        forgotten += 1;
                        continue;
                    }
                    let has = entry.is_some_and(|u| u.contains(uuid.as_str()));
                    if !has {
                        bad.push(json!({"why": "acknowledged to the agent but not in this replica's registry",
                                        "agent": agent, "task": task, "uuid": uuid, "replica": format!("master-{id}")}));
                    }
                }
            }
        }
    }
    // Each framework's updates in the registry must have reached its own scheduler.
    let by_framework: BTreeMap<&str, &str> = framework_ids(&ev.history)
        .into_iter()
        .map(|(process, fw)| (fw, process))
        .collect();
    let got: BTreeSet<(&str, &str)> = received(&ev.history)
        .iter()
        .filter_map(|r| Some((r.process.as_str(), r.value["uuid"].as_str()?)))
        .collect();
    let mut registry_total = 0usize;
    if let Some((id, state)) = ev.final_states.iter().next() {
        for t in state["tasks"].as_array().into_iter().flatten() {
            let Some(process) = t["framework_id"]
                .as_str()
                .and_then(|fw| by_framework.get(fw))
            else {
                continue;
            };
            for u in t["updates"].as_array().into_iter().flatten() {
                let Some(uuid) = u["uuid"].as_str() else {
                    continue;
                };
                registry_total += 1;
                if !got.contains(&(*process, uuid)) {
                    bad.push(json!({
                        "why": "in the registry but never received by its scheduler",
                        "scheduler": process, "task": t["id"], "uuid": uuid,
                        "state": u["state"], "replica": format!("master-{id}"),
                    }));
                }
            }
        }
    }
    // A replica that did not catch up after the heal could not be checked.
    let nothing = acked_total == 0 || (ev.final_states.len() as u64) < ev.masters.max(1);
    super::verdict(
        "acked-updates-kept",
        "1. no acknowledged status update is lost; every one reaches the scheduler",
        bad,
        format!(
            "{acked_total} updates acknowledged to agents, {registry_total} of the framework's in the registry, final states of {} of {} replicas{}",
            ev.final_states.len(),
            ev.masters,
            if forgotten > 0 {
                format!(" ({forgotten} of a task whose end the scheduler had, forgotten by a prune)")
            } else {
                String::new()
            }
        ),
        nothing,
        json!({"acked_to_agents": acked_total, "framework_updates_in_registry": registry_total,
               "received_by_framework": got.len(), "replicas": ev.final_states.len(),
               "forgotten_after_completion": forgotten}),
    )
}

/// Every update uuid of every task in one replica's state.
fn uuids_by_task(state: &serde_json::Value) -> HashMap<&str, BTreeSet<&str>> {
    let mut out: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for t in state["tasks"].as_array().into_iter().flatten() {
        let uuids = t["updates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["uuid"].as_str());
        out.entry(t["id"].as_str().unwrap_or_default())
            .or_default()
            .extend(uuids);
    }
    out
}

/// Rank of a state (its Mesos name) in a task's life; None for names that are not a task's
/// state. UNREACHABLE ranks with RUNNING: a task comes back from it no earlier than RUNNING.
fn rank(state: &str) -> Option<u8> {
    use drover_model::TaskState;
    let s = TaskState::from_mesos_name(state)?;
    Some(match s {
        TaskState::Staging => 0,
        TaskState::Starting => 1,
        TaskState::Running | TaskState::Unreachable => 2,
        TaskState::Killing => 3,
        // Every other state is terminal.
        _ => 4,
    })
}

/// Whether a task in `state` (its name in `/v1/state`) holds nothing any more.
pub fn is_terminal(state: &str) -> bool {
    drover_model::TaskState::from_mesos_name(state)
        .is_some_and(drover_model::TaskState::is_terminal)
}

/// The first backward step in `states`, if any: (index, from, to).
fn backward(states: &[&str]) -> Option<(usize, String, String)> {
    let mut last: Option<&str> = None;
    for (i, s) in states.iter().enumerate() {
        let Some(r) = rank(s) else { continue };
        if let Some(prev) = last {
            let pr = rank(prev).unwrap_or(0);
            // UNREACHABLE may return to RUNNING (a partition healed) and KILLING may be
            // followed by RUNNING's report from an agent that had not heard of the kill yet.
            let back = if is_terminal(prev) {
                true
            } else {
                r < pr && !(prev == "TASK_KILLING" && *s == "TASK_RUNNING")
            };
            if back {
                return Some((i, prev.to_string(), s.to_string()));
            }
        }
        last = Some(s);
    }
    None
}

/// Invariant 2.
pub fn states_forward(ev: &Evidence) -> CheckerResult {
    let mut bad = Vec::new();
    let mut tasks_seen = 0usize;
    for (id, state) in &ev.final_states {
        for t in state["tasks"].as_array().into_iter().flatten() {
            tasks_seen += 1;
            let states: Vec<&str> = t["updates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u["state"].as_str())
                .collect();
            if let Some((i, from, to)) = backward(&states) {
                bad.push(json!({"why": "committed updates go backwards", "replica": format!("master-{id}"),
                                "task": t["id"], "from": from, "to": to, "at_update": i, "updates": t["updates"]}));
            }
        }
    }
    // The framework's view, deduplicated by uuid, in order of arrival.
    let mut by_task: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in received(&ev.history) {
        let uuid = r.value["uuid"].as_str().unwrap_or_default();
        if seen.insert(uuid) {
            by_task
                .entry(r.value["task"].as_str().unwrap_or_default())
                .or_default()
                .push(r);
        }
    }
    for (task, rs) in &by_task {
        let states: Vec<&str> = rs
            .iter()
            .filter_map(|r| r.value["state"].as_str())
            .collect();
        if let Some((i, from, to)) = backward(&states) {
            bad.push(json!({"why": "the framework received states going backwards", "task": task,
                            "from": from, "to": to, "updates": rs.iter().take(i + 1).map(|r| cite(r)).collect::<Vec<_>>()}));
        }
    }
    let nothing = tasks_seen == 0 && by_task.is_empty();
    super::verdict(
        "task-states-forward",
        "2. task states move only forward; nothing leaves a terminal state",
        bad,
        format!(
            "{tasks_seen} task histories over the replicas, {} tasks in the framework's view",
            by_task.len()
        ),
        nothing,
        json!({"replica_tasks": tasks_seen, "framework_tasks": by_task.len()}),
    )
}

fn parse(r: &serde_json::Value) -> Option<Resources> {
    r.as_str().and_then(|s| s.parse().ok())
}

/// Over-commitments of one committed state (agents with their offers and live tasks).
fn overcommitted(state: &serde_json::Value) -> (usize, Vec<serde_json::Value>) {
    let mut bad = Vec::new();
    let mut agents = 0;
    let mut use_of: HashMap<&str, Vec<(String, &serde_json::Value)>> = HashMap::new();
    for o in state["offers"].as_array().into_iter().flatten() {
        if let Some(a) = o["agent_id"].as_str() {
            use_of.entry(a).or_default().push((
                format!("offer {}", o["id"].as_str().unwrap_or("?")),
                &o["resources"],
            ));
        }
    }
    for t in state["tasks"].as_array().into_iter().flatten() {
        let live = t["state"].as_str().is_some_and(|s| !is_terminal(s));
        if let (true, Some(a)) = (live, t["agent_id"].as_str()) {
            use_of.entry(a).or_default().push((
                format!("task {}", t["id"].as_str().unwrap_or("?")),
                &t["resources"],
            ));
        }
    }
    for a in state["agents"].as_array().into_iter().flatten() {
        agents += 1;
        let id = a["id"].as_str().unwrap_or_default();
        let Some(mut left) = parse(&a["resources"]) else {
            continue;
        };
        for (what, r) in use_of.get(id).into_iter().flatten() {
            let Some(need) = parse(r) else { continue };
            match left.checked_sub(&need) {
                Ok(rest) => left = rest,
                Err(e) => {
                    bad.push(json!({"agent": id, "total": a["resources"], "over_at": what,
                                    "error": e.to_string(),
                                    "uses": use_of.get(id).into_iter().flatten().map(|(w, r)| json!({"what": w, "resources": r})).collect::<Vec<_>>()}));
                    break;
                }
            }
        }
    }
    (agents, bad)
}

/// Invariant 3.
pub fn resources_safe(ev: &Evidence) -> CheckerResult {
    let mut bad = Vec::new();
    let mut states = 0usize;
    for r in ev
        .history
        .iter()
        .filter(|r| r.process == "monitor" && r.f == "committed-state")
    {
        states += 1;
        let (_, found) = overcommitted(&r.value);
        for mut b in found {
            b["sample"] = cite_brief(r);
            bad.push(b);
        }
    }
    for (id, state) in &ev.final_states {
        states += 1;
        for mut b in overcommitted(state).1 {
            b["replica"] = json!(format!("master-{id}"));
            bad.push(b);
        }
    }
    super::verdict(
        "resources-safe",
        "3. on every agent, outstanding offers + live tasks fit in its total",
        bad,
        format!("{states} committed states (samples during the run and final ones)"),
        states == 0,
        json!({"states": states}),
    )
}

fn cite_brief(r: &Record) -> serde_json::Value {
    json!({"index": r.index, "time_s": r.time_ns as f64 / 1e9, "node": r.value["node"]})
}

/// Reason of the updates the Mesos HTTP API sends for the tasks of an ACCEPT it refused
/// because its offers were gone (as the scheduler driver names it).
const INVALID_OFFERS: &str = "invalid_offers";

/// The tasks a scheduler was told were never launched because their ACCEPT's offers were gone
/// (TASK_DROPPED, or TASK_LOST for a framework that is not partition-aware).
fn refused_for_invalid_offers(history: &[Record]) -> BTreeSet<&str> {
    received(history)
        .into_iter()
        .filter(|r| {
            r.value["reason"] == INVALID_OFFERS
                && matches!(
                    r.value["state"].as_str(),
                    Some("TASK_DROPPED" | "TASK_LOST")
                )
        })
        .filter_map(|r| r.value["task"].as_str())
        .collect()
}

/// Invariant 4.
pub fn no_double_launch(ev: &Evidence) -> CheckerResult {
    let mut bad = Vec::new();
    let mut runs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in ev.launches.lines() {
        let mut it = line.split_whitespace();
        if let Some(task) = it.next() {
            runs.entry(task).or_default().push(it.next().unwrap_or("?"));
        }
    }
    for (task, agents) in &runs {
        if agents.len() > 1 {
            bad.push(json!({"why": "the task's command ran more than once", "task": task, "agents": agents}));
        }
    }
    let refused = refused_for_invalid_offers(&ev.history);
    let mut consumed: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for p in pairs(&ev.history, is_call_process) {
        if p.invoke.f != "accept" || p.outcome() != Kind::Ok {
            continue;
        }
        // The Mesos HTTP API answers every well-formed ACCEPT 202 and refuses one on offers
        // that are gone afterwards, through its tasks' updates: such an ACCEPT consumed
        // nothing.
        let tasks: Vec<&str> = p.invoke.value["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .collect();
        if !tasks.is_empty() && tasks.iter().all(|t| refused.contains(t)) {
            continue;
        }
        for o in p.invoke.value["offers"].as_array().into_iter().flatten() {
            if let Some(o) = o.as_str() {
                consumed.entry(o).or_default().push(p.invoke);
            }
        }
    }
    for (offer, accepts) in &consumed {
        if accepts.len() > 1 {
            bad.push(
                json!({"why": "an offer consumed by more than one ACCEPT", "offer": offer,
                            "accepts": accepts.iter().map(|r| cite(r)).collect::<Vec<_>>()}),
            );
        }
    }
    let nothing = runs.is_empty();
    super::verdict(
        "no-double-launch",
        "4. a task id runs at most once; an offer is consumed at most once",
        bad,
        format!(
            "{} tasks launched, {} offers consumed",
            runs.len(),
            consumed.len()
        ),
        nothing,
        json!({"tasks_launched": runs.len(), "offers_consumed": consumed.len()}),
    )
}

/// When scheduler `process` (its events) saw `wanted` of its long tasks RUNNING at or after
/// `last_heal` (updates deduplicated by uuid); None if it never did.
fn recovered_at(history: &[Record], process: &str, last_heal: u64, wanted: usize) -> Option<u64> {
    let mut state: BTreeMap<&str, &str> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut passed_heal = false;
    let running =
        |state: &BTreeMap<&str, &str>| state.values().filter(|s| **s == "TASK_RUNNING").count();
    for r in history
        .iter()
        .filter(|r| r.process == process && r.f == "update")
    {
        let (Some(task), Some(s)) = (r.value["task"].as_str(), r.value["state"].as_str()) else {
            continue;
        };
        let uuid = r.value["uuid"].as_str().unwrap_or_default();
        if uuid.is_empty() || !task.starts_with(LONG_PREFIX) || !seen.insert(uuid) {
            continue;
        }
        if r.time_ns >= last_heal && !passed_heal {
            passed_heal = true;
            if running(&state) >= wanted {
                return Some(last_heal);
            }
        }
        if !state.get(task).is_some_and(|p| is_terminal(p)) {
            state.insert(task, s);
        }
        if r.time_ns >= last_heal && running(&state) >= wanted {
            return Some(r.time_ns);
        }
    }
    // No update since the heal: the view then is the view now.
    (!passed_heal && running(&state) >= wanted).then_some(last_heal)
}

/// The schedulers (their events processes) that recorded anything in `history`.
fn schedulers_of(history: &[Record]) -> BTreeSet<&str> {
    history
        .iter()
        .filter(|r| is_events_process(&r.process))
        .map(|r| r.process.as_str())
        .collect()
}

/// Whether `history` shows every scheduler with `wanted_long` long tasks RUNNING at or after
/// `heal_ns` (false with no scheduler): what [`liveness`] will look for, asked while the run
/// still goes on so that it watches for as long as the bound needs.
pub fn every_scheduler_recovered(history: &[Record], heal_ns: u64, wanted_long: usize) -> bool {
    let schedulers = schedulers_of(history);
    !schedulers.is_empty()
        && schedulers
            .iter()
            .all(|s| recovered_at(history, s, heal_ns, wanted_long).is_some())
}

/// Invariant 5, for every scheduler.
pub fn liveness(ev: &Evidence, wanted_long: usize) -> CheckerResult {
    let mut bad = Vec::new();
    let last_heal = super::last_heal_ns(&ev.history);
    let schedulers = schedulers_of(&ev.history);
    let bound = LIVENESS_BOUND.as_nanos() as u64;
    let mut slowest: Option<f64> = None;
    for sched in &schedulers {
        match recovered_at(&ev.history, sched, last_heal, wanted_long) {
            Some(t) if t.saturating_sub(last_heal) <= bound => {
                let took = t.saturating_sub(last_heal) as f64 / 1e9;
                slowest = Some(slowest.map_or(took, |s: f64| s.max(took)));
            }
            Some(t) => bad.push(json!({
                "why": "the wanted long tasks ran again only after the bound", "scheduler": sched,
                "last_heal_s": last_heal as f64 / 1e9, "running_at_s": t as f64 / 1e9,
                "bound_s": LIVENESS_BOUND.as_secs_f64(),
            })),
            None => bad.push(json!({
                "why": "the wanted long tasks never all ran again after the last heal",
                "scheduler": sched, "last_heal_s": last_heal as f64 / 1e9, "wanted": wanted_long,
            })),
        }
        // Its last life must have ended by draining, knowing every task's fate.
        let drained = ev
            .history
            .iter()
            .rev()
            .find(|r| r.process == *sched && r.f == "drained");
        match drained {
            Some(r) if r.value["pending"].as_array().map_or(0, Vec::len) > 0 => bad.push(json!({
                "why": "tasks whose fate the scheduler never learned", "record": cite(r),
            })),
            Some(_) => {}
            None => bad.push(json!({
                "why": "the scheduler never finished (no drained record)", "scheduler": sched,
            })),
        }
    }
    if schedulers.is_empty() {
        bad.push(json!({"why": "no scheduler recorded anything"}));
    }
    super::verdict(
        "liveness-after-heal",
        "5. after faults heal, every wanted task runs again within the bound",
        bad,
        format!(
            "{} schedulers, {wanted_long} long tasks each running {} after the last heal (bound {:?})",
            schedulers.len(),
            slowest.map_or_else(|| "never".to_string(), |s| format!("within {s:.1} s")),
            LIVENESS_BOUND
        ),
        false,
        json!({"schedulers": schedulers.len(), "slowest_recovery_s": slowest,
               "last_heal_s": last_heal as f64 / 1e9}),
    )
}

/// Every task checker.
pub fn check(ev: &Evidence) -> Vec<CheckerResult> {
    let wanted = crate::workload::tasks::TasksWorkload::default().long_tasks;
    vec![
        acked_updates_kept(ev),
        states_forward(ev),
        resources_safe(ev),
        no_double_launch(ev),
        liveness(ev, wanted),
    ]
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
