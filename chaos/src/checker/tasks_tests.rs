//! The task checkers on known-bad evidence: a generated run that is consistent by
//! construction must pass every checker, and each kind of damage (a lost update, a state that
//! goes backwards, an over-committed agent, a double launch, a doubly consumed offer, tasks
//! that never run again) must be caught by the checker for it and named in its
//! counter-examples.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::checker::{Evidence, Validity};
use crate::history::{Kind, Record};
use crate::workload::tasks::TASK_RESOURCES;

/// A consistent run: `n` tasks on 2 agents, each STAGING → STARTING → RUNNING → FINISHED
/// (long ones stay RUNNING until killed), every update acknowledged to its agent, in every
/// replica, received by the framework; one nemesis fault healed early on.
fn generated(n: usize, long: usize) -> Evidence {
    let mut history = Vec::new();
    let mut t = 0u64;
    let mut push = |process: &str, kind: Kind, f: &str, value: Value| {
        t += 1_000_000;
        history.push(Record {
            index: history.len() as u64,
            process: process.into(),
            kind,
            f: f.into(),
            value,
            time_ns: t,
            error: None,
        });
    };
    push(
        "tasks",
        Kind::Info,
        "subscribed",
        json!({"framework": "fw-1", "master": 1}),
    );
    push(
        "nemesis",
        Kind::Info,
        "start",
        json!({"fault": "kill-leader"}),
    );
    push("nemesis", Kind::Info, "stop", json!({}));
    let mut tasks = Vec::new();
    let mut acks: BTreeMap<usize, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut launches = String::new();
    for i in 0..n {
        let is_long = i < long;
        let id = if is_long {
            format!("{LONG_PREFIX}{i}")
        } else {
            format!("short-{i}")
        };
        let agent = i % 2;
        let offer = format!("o-{i}");
        push(
            "tasks",
            Kind::Info,
            "offer",
            json!({"offer": offer, "agent": format!("a{agent}")}),
        );
        let op = format!("tasks-op-{i}");
        let accept = json!({"offers": [offer], "tasks": [id]});
        push(&op, Kind::Invoke, "accept", accept.clone());
        push(&op, Kind::Ok, "accept", accept);
        launches.push_str(&format!("{id} a{agent}\n"));
        let states: &[&str] = if is_long {
            &["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"]
        } else {
            &[
                "TASK_STAGING",
                "TASK_STARTING",
                "TASK_RUNNING",
                "TASK_FINISHED",
            ]
        };
        let mut updates = Vec::new();
        for (k, s) in states.iter().enumerate() {
            let uuid = format!("u-{i}-{k}");
            push(
                "tasks",
                Kind::Info,
                "update",
                json!({"task": id, "state": s, "uuid": uuid}),
            );
            updates.push(json!({"uuid": uuid, "state": s}));
            if *s != "TASK_STAGING" {
                acks.entry(agent)
                    .or_default()
                    .entry(id.clone())
                    .or_default()
                    .insert(uuid);
            }
        }
        tasks.push(
            json!({"id": id, "framework_id": "fw-1", "agent_id": format!("a{agent}"),
                          "state": states.last(), "resources": TASK_RESOURCES, "updates": updates}),
        );
    }
    push("tasks", Kind::Info, "drained", json!({"pending": []}));
    let state = json!({
        "agents": [{"id": "a0", "resources": "cpus:1;mem:256"}, {"id": "a1", "resources": "cpus:1;mem:256"}],
        "offers": [],
        "tasks": tasks,
    });
    let final_states = (1..=3).map(|m| (m, state.clone())).collect();
    Evidence {
        history,
        final_states,
        workloads: vec!["tasks".into()],
        agent_acks: acks,
        launches,
        masters: 3,
        containers: None,
    }
}

fn verdict(results: &[crate::checker::CheckerResult], name: &str) -> Validity {
    results
        .iter()
        .find(|c| c.checker == name)
        .map(|c| c.valid)
        .unwrap_or_else(|| panic!("no checker {name}"))
}

#[test]
fn a_consistent_run_passes_every_checker() {
    let ev = generated(12, 3);
    for c in check(&ev) {
        assert_eq!(c.valid, Validity::Valid, "{c:?}");
    }
}

#[test]
fn an_acknowledged_update_missing_from_one_replica_is_caught() {
    let mut ev = generated(6, 3);
    let updates = ev.final_states.get_mut(&2).expect("replica 2")["tasks"][4]["updates"]
        .as_array_mut()
        .expect("updates");
    let lost = updates.pop().expect("an update");
    let r = acked_updates_kept(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["uuid"], lost["uuid"]);
    assert_eq!(r.counterexamples[0]["replica"], "master-2");
}

/// Completed tasks are pruned: a task gone from the registry whose end its scheduler had is
/// no loss; a task gone whose end the scheduler never had is (its acknowledged updates are
/// lost).
#[test]
fn a_task_forgotten_after_its_scheduler_had_its_end_is_no_loss_but_one_still_running_is() {
    let mut ev = generated(6, 3);
    // short-4 ended (FINISHED received by the scheduler): every replica forgets it.
    for state in ev.final_states.values_mut() {
        state["tasks"]
            .as_array_mut()
            .expect("tasks")
            .retain(|t| t["id"] != "short-4");
    }
    let r = acked_updates_kept(&ev);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
    assert_eq!(r.stats["forgotten_after_completion"], 3 * 3);
    // A replica that forgot an ended task another replica, as far along, still holds lost
    // it: forgetting is a committed command every replica applies.
    let mut lone = generated(6, 3);
    lone.final_states.get_mut(&3).expect("replica 3")["tasks"]
        .as_array_mut()
        .expect("tasks")
        .retain(|t| t["id"] != "short-4");
    let r = acked_updates_kept(&lone);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
    assert_eq!(r.counterexamples[0]["replica"], "master-3");
    // … unless that other replica is behind it (it has not applied the prune yet).
    for (id, state) in lone.final_states.iter_mut() {
        state["applied_index"] = serde_json::json!(if *id == 3 { 100 } else { 90 });
    }
    assert_eq!(acked_updates_kept(&lone).valid, Validity::Valid);

    // long-1 is still RUNNING: forgetting it loses its updates.
    ev.final_states.get_mut(&2).expect("replica 2")["tasks"]
        .as_array_mut()
        .expect("tasks")
        .retain(|t| t["id"] != format!("{LONG_PREFIX}1"));
    let r = acked_updates_kept(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["task"], format!("{LONG_PREFIX}1"));
    assert_eq!(r.counterexamples[0]["replica"], "master-2");
}

#[test]
fn a_replica_without_a_final_state_leaves_the_check_undecided() {
    let mut ev = generated(6, 3);
    ev.final_states.remove(&3);
    assert_eq!(acked_updates_kept(&ev).valid, Validity::Unknown);
}

#[test]
fn an_update_that_never_reached_the_framework_is_caught() {
    let mut ev = generated(6, 3);
    ev.history
        .retain(|r| !(r.f == "update" && r.value["uuid"] == "u-5-3"));
    let r = acked_updates_kept(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["uuid"], "u-5-3");
}

#[test]
fn a_state_leaving_a_terminal_one_is_caught_in_the_registry_and_at_the_framework() {
    let mut ev = generated(6, 3);
    ev.final_states.get_mut(&1).expect("replica 1")["tasks"][5]["updates"]
        .as_array_mut()
        .expect("updates")
        .push(json!({"uuid": "u-late", "state": "TASK_RUNNING"}));
    assert_eq!(states_forward(&ev).valid, Validity::Invalid);

    let mut ev = generated(6, 3);
    let mut late = ev
        .history
        .iter()
        .find(|r| r.value["uuid"] == "u-5-2")
        .cloned()
        .expect("RUNNING of short-5");
    late.value["uuid"] = json!("u-5-again");
    late.time_ns = u64::MAX / 2;
    ev.history.push(late);
    let r = states_forward(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["from"], "TASK_FINISHED");
}

#[test]
fn an_over_committed_agent_is_caught_in_a_sample_and_in_a_final_state() {
    let mut ev = generated(4, 3);
    // 25 tasks of 0.05 cpus plus an offer of 0.5 on an agent of 1 cpu.
    let mut tasks = Vec::new();
    for i in 0..25 {
        tasks.push(
            json!({"id": format!("x{i}"), "agent_id": "a0", "state": "TASK_RUNNING",
                          "resources": TASK_RESOURCES}),
        );
    }
    let sample = json!({"node": 1, "agents": [{"id": "a0", "resources": "cpus:1;mem:1024"}],
                        "offers": [{"id": "o", "agent_id": "a0", "resources": "cpus:0.5"}],
                        "tasks": tasks});
    ev.history.push(Record {
        index: 999,
        process: "monitor".into(),
        kind: Kind::Info,
        f: "committed-state".into(),
        value: sample,
        time_ns: 5,
        error: None,
    });
    let r = resources_safe(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["agent"], "a0");

    // The same port in an offer and in a live task.
    let mut ev = generated(4, 3);
    let s = ev.final_states.get_mut(&3).expect("replica 3");
    s["agents"][1]["resources"] = json!("cpus:1;mem:256;ports:[31000-31010]");
    s["offers"] = json!([{"id": "o2", "agent_id": "a1", "resources": "ports:[31005-31005]"}]);
    s["tasks"][1]["resources"] = json!("cpus:0.05;mem:8;ports:[31005-31005]");
    let r = resources_safe(&ev);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
    assert_eq!(r.counterexamples[0]["replica"], "master-3");
}

#[test]
fn a_task_launched_twice_and_an_offer_consumed_twice_are_caught() {
    let mut ev = generated(6, 3);
    ev.launches.push_str("short-4 a1\n");
    let r = no_double_launch(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["task"], "short-4");

    let mut ev = generated(6, 3);
    let again = json!({"offers": ["o-2"], "tasks": ["short-99"]});
    for (kind, t) in [(Kind::Invoke, 10), (Kind::Ok, 11)] {
        ev.history.push(Record {
            index: 1000 + t,
            process: "tasks-op-99".into(),
            kind,
            f: "accept".into(),
            value: again.clone(),
            time_ns: u64::MAX / 4 + t,
            error: None,
        });
    }
    let r = no_double_launch(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["offer"], "o-2");
}

/// Over the Mesos HTTP API, a second ACCEPT of a consumed offer is answered 202 and refused
/// through its tasks' updates (TASK_DROPPED, REASON_INVALID_OFFERS): it consumed nothing. One
/// with a task that was not refused so did.
#[test]
fn an_accept_whose_tasks_were_all_dropped_for_invalid_offers_consumed_no_offer() {
    let second_accept = |ev: &mut Evidence, tasks: serde_json::Value| {
        let value = json!({"offers": ["o-2"], "tasks": tasks});
        for (kind, t) in [(Kind::Invoke, 10), (Kind::Ok, 11)] {
            ev.history.push(Record {
                index: 1000 + t,
                process: "tasks-op-99".into(),
                kind,
                f: "accept".into(),
                value: value.clone(),
                time_ns: u64::MAX / 4 + t,
                error: None,
            });
        }
    };
    let dropped = |ev: &mut Evidence, task: &str, state: &str, reason: &str, t: u64| {
        ev.history.push(Record {
            index: 1100 + t,
            process: "tasks".into(),
            kind: Kind::Info,
            f: "update".into(),
            value: json!({"task": task, "state": state, "uuid": format!("u-drop-{t}"),
                          "reason": reason}),
            time_ns: u64::MAX / 4 + 100 + t,
            error: None,
        });
    };

    let mut ev = generated(6, 3);
    second_accept(&mut ev, json!(["short-98", "short-99"]));
    dropped(&mut ev, "short-98", "TASK_DROPPED", "invalid_offers", 1);
    dropped(&mut ev, "short-99", "TASK_LOST", "invalid_offers", 2);
    let r = no_double_launch(&ev);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");

    // One of its tasks was not refused: the offer was consumed twice.
    let mut ev = generated(6, 3);
    second_accept(&mut ev, json!(["short-98", "short-99"]));
    dropped(&mut ev, "short-98", "TASK_DROPPED", "invalid_offers", 1);
    let r = no_double_launch(&ev);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.counterexamples[0]["offer"], "o-2");

    // Dropped for another reason is not a refusal of the ACCEPT.
    let mut ev = generated(6, 3);
    second_accept(&mut ev, json!(["short-99"]));
    dropped(&mut ev, "short-99", "TASK_DROPPED", "executor_failed", 1);
    assert_eq!(no_double_launch(&ev).valid, Validity::Invalid);
}

#[test]
fn long_tasks_that_never_run_again_after_the_heal_are_caught() {
    let mut ev = generated(6, 3);
    // The heal comes after everything, and one long task was killed before it.
    let kill = json!({"task": "long-1", "state": "TASK_KILLED", "uuid": "u-kill"});
    let n = ev.history.len() as u64;
    ev.history.push(Record {
        index: n,
        process: "tasks".into(),
        kind: Kind::Info,
        f: "update".into(),
        value: kill,
        time_ns: u64::MAX / 8,
        error: None,
    });
    ev.history.push(Record {
        index: n + 1,
        process: "nemesis".into(),
        kind: Kind::Info,
        f: "stop".into(),
        value: json!({}),
        time_ns: u64::MAX / 4,
        error: None,
    });
    let r = liveness(&ev, 3);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
    // What the run watches for before it stops says the same, while the checker's valid
    // history says recovered.
    assert!(!every_scheduler_recovered(&ev.history, u64::MAX / 4, 3));
    assert!(every_scheduler_recovered(&generated(6, 3).history, 0, 3));
    assert!(!every_scheduler_recovered(&[], 0, 3));

    // And a framework that never learned some task's fate.
    let mut ev = generated(6, 3);
    for r in ev.history.iter_mut().filter(|r| r.f == "drained") {
        r.value = json!({"pending": ["short-4"]});
    }
    assert_eq!(liveness(&ev, 3).valid, Validity::Invalid);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Generated runs of any size pass; dropping any one acknowledged update from any
    /// replica, or launching any one task twice, is caught.
    #[test]
    fn generated_damage_is_always_caught(
        n in 3usize..40,
        pick in any::<prop::sample::Index>(),
        replica in 1u64..=3,
    ) {
        let ev = generated(n, 3);
        for c in check(&ev) {
            prop_assert_eq!(c.valid, Validity::Valid, "{:?}", c);
        }
        let all: Vec<(String, String)> = ev.agent_acks.values()
            .flat_map(|m| m.iter().flat_map(|(t, us)| us.iter().map(move |u| (t.clone(), u.clone()))))
            .collect();
        let (task, uuid) = pick.get(&all).clone();
        let mut lost = ev.clone();
        for t in lost.final_states.get_mut(&replica).expect("replica")["tasks"].as_array_mut().expect("tasks") {
            if t["id"] == json!(task) {
                t["updates"].as_array_mut().expect("updates").retain(|u| u["uuid"] != json!(uuid));
            }
        }
        prop_assert_eq!(acked_updates_kept(&lost).valid, Validity::Invalid);

        let mut twice = ev.clone();
        twice.launches.push_str(&format!("{task} a9\n"));
        prop_assert_eq!(verdict(&check(&twice), "no-double-launch"), Validity::Invalid);
    }
}
