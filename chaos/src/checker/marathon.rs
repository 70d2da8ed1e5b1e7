//! The marathon workload's checkers, over its history and the masters' final registries:
//!
//! - **converged** (liveness): after the heal, every app ran exactly its instances, as `/v2`
//!   showed them and in the registry, within [`crate::workload::marathon::CONVERGE_BOUND`].
//! - **apps**: the apps that exist at the end are those the acknowledged operations say:
//!   an app whose last operation was an acknowledged delete is gone, one whose last was an
//!   acknowledged create, scale or restart is there (with the scaled count), unless an
//!   operation of unknown outcome landed after it (it may land at any time after it was
//!   sent): then the end may be that operation's effect instead.
//! - **slots**: in every master's final registry, no instance runs two tasks at once (at
//!   most one live task per instance id), and no task of an app that no longer exists is
//!   left live.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{cite, CheckerResult, Evidence, Validity};
use crate::history::{pairs, Kind, Record};
use crate::workload::marathon::TASK_PREFIX;

/// Whether a registry task state is terminal.
pub fn is_terminal(state: &str) -> bool {
    !matches!(
        state,
        "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING" | "TASK_UNREACHABLE"
    )
}

/// The app id a task of this workload belongs to (`chaos_app-3.instance-…` → `/chaos/app-3`).
pub fn app_of_task(task: &str) -> String {
    let safe = task.split(".instance-").next().unwrap_or(task);
    format!("/{}", safe.replacen('_', "/", 1))
}

fn instance_of_task(task: &str) -> &str {
    task.rsplit_once("._app.").map_or(task, |(i, _)| i)
}

/// The marathon checkers' results: nothing of theirs is ever "nothing to check".
fn result(
    checker: &str,
    invariant: &str,
    bad: Vec<Value>,
    looked_at: String,
    stats: Value,
) -> CheckerResult {
    super::verdict(checker, invariant, bad, looked_at, false, stats)
}

/// Every marathon checker.
pub fn check(ev: &Evidence) -> Vec<CheckerResult> {
    let last = ev
        .history
        .iter()
        .rev()
        .find(|r| r.process == "marathon" && r.f == "final");
    let Some(last) = last else {
        return vec![CheckerResult {
            checker: "marathon".into(),
            invariant: "the marathon workload recorded its final view".into(),
            valid: Validity::Unknown,
            summary: "no final view in the history".into(),
            stats: json!({}),
            counterexamples: Vec::new(),
        }];
    };
    vec![converged(last), apps(&ev.history, last), slots(ev)]
}

fn converged(last: &Record) -> CheckerResult {
    let ok = last.value["converged"] == true;
    let bad = if ok {
        Vec::new()
    } else {
        vec![json!({"final": cite(last)})]
    };
    result(
        "marathon-converged",
        "after the heal every app runs exactly its instances, in /v2 and in the registry (invariant 5)",
        bad,
        format!("converged {} ms after the run", last.value["waited_ms"]),
        json!({"waited_ms": last.value["waited_ms"]}),
    )
}

/// One operation on an app: its outcome, name, instance count and invocation.
type AppOp<'a> = (Kind, &'a str, Option<u64>, &'a Record);

fn apps(history: &[Record], last: &Record) -> CheckerResult {
    let present: BTreeMap<String, u64> = last.value["view"]["apps"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["instances"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    // Each app's operations in invocation order, with their outcomes.
    let mut by_app: BTreeMap<String, Vec<AppOp<'_>>> = BTreeMap::new();
    for p in pairs(history, |proc| proc.starts_with("marathon.")) {
        let Some(app) = p.invoke.value["app"].as_str() else {
            continue;
        };
        let n = p.invoke.value["instances"].as_u64();
        by_app.entry(app.to_string()).or_default().push((
            p.outcome(),
            p.invoke.f.as_str(),
            n,
            p.invoke,
        ));
    }
    let mut bad = Vec::new();
    let mut judged = 0;
    let mut with_unknown = 0;
    for (app, ops) in &by_app {
        // The acknowledged operations apply in order, so the last one's effect stands, unless
        // an operation of unknown outcome landed after it (it may land at any time after it
        // was sent, even after later ones): any of those effects may be the last.
        let effect = |f: &str, n: Option<u64>| -> Option<Option<u64>> {
            match f {
                "delete" => None,
                "restart" => Some(None),
                _ => Some(n),
            }
        };
        let last_ok = ops.iter().rposition(|(k, ..)| *k == Kind::Ok);
        let mut candidates: Vec<Option<Option<u64>>> = vec![match last_ok.map(|i| &ops[i]) {
            None => None,
            Some((_, f, n, _)) => effect(f, *n),
        }];
        let unknown = ops.iter().filter(|(k, ..)| *k == Kind::Info).count();
        candidates.extend(
            ops.iter()
                .filter(|(k, ..)| *k == Kind::Info)
                .map(|(_, f, n, _)| effect(f, *n)),
        );
        judged += 1;
        with_unknown += usize::from(unknown > 0);
        let seen = present.get(app);
        let fine = candidates.iter().any(|expect| match (expect, seen) {
            (None, None) => true,
            (Some(None), Some(_)) => true,
            (Some(Some(n)), Some(m)) => n == m,
            _ => false,
        });
        if !fine {
            bad.push(json!({
                "app": app,
                "expected_one_of": candidates,
                "final": seen,
                "last_acknowledged": last_ok.map(|i| cite(ops[i].3)),
            }));
        }
    }
    result(
        "marathon-apps",
        "the apps at the end are those the acknowledged operations made",
        bad,
        format!("{judged} apps judged ({with_unknown} with operations of unknown outcome)"),
        json!({"apps": by_app.len(), "judged": judged, "with_unknown": with_unknown}),
    )
}

fn slots(ev: &Evidence) -> CheckerResult {
    let mut bad = Vec::new();
    let mut tasks_seen = 0;
    let present: Vec<String> = ev
        .history
        .iter()
        .rev()
        .find(|r| r.process == "marathon" && r.f == "final")
        .and_then(|r| {
            r.value["view"]["apps"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default();
    for (master, state) in &ev.final_states {
        let mut live: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in state["tasks"].as_array().into_iter().flatten() {
            let (Some(id), Some(st)) = (t["id"].as_str(), t["state"].as_str()) else {
                continue;
            };
            if !id.starts_with(TASK_PREFIX) {
                continue;
            }
            tasks_seen += 1;
            if is_terminal(st) {
                continue;
            }
            live.entry(instance_of_task(id)).or_default().push(id);
            let app = app_of_task(id);
            if !present.contains(&app) {
                bad.push(json!({"master": master, "task": id, "state": st, "why": "live task of an app that no longer exists"}));
            }
        }
        for (instance, tasks) in live {
            if tasks.len() > 1 {
                bad.push(json!({"master": master, "instance": instance, "live_tasks": tasks, "why": "one instance runs two tasks"}));
            }
        }
    }
    result(
        "marathon-slots",
        "no instance runs two tasks and no task of a deleted app is left running (invariant 4)",
        bad,
        format!(
            "{tasks_seen} task records over {} masters",
            ev.final_states.len()
        ),
        json!({"task_records": tasks_seen}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_name_their_app_and_instance() {
        let t = "chaos_app-3.instance-5d2c._app.2";
        assert_eq!(app_of_task(t), "/chaos/app-3");
        assert_eq!(instance_of_task(t), "chaos_app-3.instance-5d2c");
        assert!(is_terminal("TASK_KILLED") && !is_terminal("TASK_UNREACHABLE"));
    }

    fn rec(index: u64, process: &str, kind: Kind, f: &str, value: Value) -> Record {
        crate::history::record(index, process, kind, f, value, index)
    }

    fn final_with(apps: Value) -> Record {
        rec(
            99,
            "marathon",
            Kind::Info,
            "final",
            json!({"converged": true, "waited_ms": 1, "view": {"apps": apps, "registry": {}}}),
        )
    }

    #[test]
    fn an_acknowledged_delete_whose_app_remains_is_caught() {
        let a = json!({"app": "/chaos/app-0", "instances": null});
        let h = vec![
            rec(
                0,
                "marathon.0",
                Kind::Invoke,
                "create",
                json!({"app": "/chaos/app-0", "instances": 2}),
            ),
            rec(
                1,
                "marathon.0",
                Kind::Ok,
                "create",
                json!({"app": "/chaos/app-0", "instances": 2}),
            ),
            rec(2, "marathon.0", Kind::Invoke, "delete", a.clone()),
            rec(3, "marathon.0", Kind::Ok, "delete", a),
        ];
        let still = final_with(json!({"/chaos/app-0": {"instances": 2}}));
        assert_eq!(apps(&h, &still).valid, Validity::Invalid);
        let gone = final_with(json!({}));
        assert_eq!(apps(&h, &gone).valid, Validity::Valid);
        // A create of unknown outcome of 2 instances may have landed last; one of 5 may not.
        let mut h2 = h.clone();
        let c = json!({"app": "/chaos/app-0", "instances": 2});
        h2.push(rec(4, "marathon.1", Kind::Invoke, "create", c.clone()));
        h2.push(rec(5, "marathon.1", Kind::Info, "create", c));
        assert_eq!(apps(&h2, &still).valid, Validity::Valid);
        assert_eq!(apps(&h2, &gone).valid, Validity::Valid);
        let five = final_with(json!({"/chaos/app-0": {"instances": 5}}));
        assert_eq!(apps(&h2, &five).valid, Validity::Invalid);
    }

    #[test]
    fn two_live_tasks_of_one_instance_are_caught() {
        let mut ev = Evidence {
            history: vec![final_with(json!({"/chaos/app-1": {"instances": 1}}))],
            ..Evidence::default()
        };
        ev.final_states.insert(
            1,
            json!({"tasks": [
                {"id": "chaos_app-1.instance-a._app.1", "state": "TASK_RUNNING"},
                {"id": "chaos_app-1.instance-a._app.2", "state": "TASK_RUNNING"},
                {"id": "chaos_app-2.instance-b._app.1", "state": "TASK_KILLED"},
            ]}),
        );
        assert_eq!(slots(&ev).valid, Validity::Invalid);
        ev.final_states.insert(
            1,
            json!({"tasks": [
                {"id": "chaos_app-1.instance-a._app.1", "state": "TASK_FAILED"},
                {"id": "chaos_app-1.instance-a._app.2", "state": "TASK_RUNNING"},
                {"id": "chaos_app-2.instance-b._app.1", "state": "TASK_RUNNING"},
            ]}),
        );
        let r = slots(&ev);
        assert_eq!(r.valid, Validity::Invalid, "a live task of a deleted app");
        assert_eq!(r.counterexamples.len(), 1);
    }
}
