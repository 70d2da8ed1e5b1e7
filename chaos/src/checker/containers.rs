//! The containers checker (runs with `--containers docker`): no Docker container outlives its
//! task or the run.
//!
//! The runner waits, once the schedulers have drained (killed every task and learnt its end),
//! until no container of the run's frameworks runs (bounded), lists them, stops the cluster
//! (which removes every container of its agents) and lists them again: both listings are in
//! `final/containers.json`. A container still running after the drain is a task the cluster
//! lost hold of (its executor gone, its agent restarted or removed, a kill that never reached
//! it); one still there after the stop carries an agent id the cluster's agents no longer
//! hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{verdict, CheckerResult};
use crate::containers::Container;
use crate::history::Record;
use crate::workload::tasks::is_events_process;

/// What the runner saw of the run's containers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerEvidence {
    /// The frameworks whose containers were looked for.
    pub frameworks: Vec<String>,
    /// Every container of theirs, running or ended, after the drain and the wait.
    pub after_drain: Vec<Container>,
    /// How long the runner waited for the running ones to stop.
    pub waited_s: f64,
    /// Why the engine could not be asked, if it could not.
    pub error: Option<String>,
    /// Containers of theirs left once the cluster stopped; `None` when that listing failed.
    pub left_after_stop: Option<usize>,
    /// The agent ids those left carry, and the ids the cluster's agents held when it
    /// stopped (it removes the containers of those): an id missing from the second is an
    /// agent that changed ids; one in both, a removal that failed.
    #[serde(default)]
    pub left_of_agents: Vec<String>,
    #[serde(default)]
    pub cluster_agents: Vec<String>,
}

/// Where a run keeps its [`ContainerEvidence`].
pub fn containers_path(dir: &Path) -> PathBuf {
    dir.join("final").join("containers.json")
}

const INVARIANT: &str = "no container runs once its task has ended and the frameworks have \
                         drained, and none is left once the cluster has stopped";

/// Each task's last state the schedulers heard of.
fn last_states(history: &[Record]) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    for r in history
        .iter()
        .filter(|r| is_events_process(&r.process) && r.f == "update")
    {
        if let (Some(t), Some(s)) = (r.value["task"].as_str(), r.value["state"].as_str()) {
            out.insert(t, s);
        }
    }
    out
}

pub fn check(ev: &ContainerEvidence, history: &[Record]) -> CheckerResult {
    let running = ev.after_drain.iter().filter(|c| c.running).count();
    let stats = json!({
        "frameworks": ev.frameworks.len(),
        "containers": ev.after_drain.len(),
        "running_after_drain": running,
        "waited_s": ev.waited_s,
        "left_after_stop": ev.left_after_stop,
    });
    if let Some(e) = &ev.error {
        return verdict(
            "containers",
            INVARIANT,
            Vec::new(),
            format!("the engine could not be asked: {e}"),
            true,
            stats,
        );
    }
    let states = last_states(history);
    let mut bad: Vec<serde_json::Value> = ev
        .after_drain
        .iter()
        .filter(|c| c.running)
        .map(|c| {
            json!({
                "problem": "running after the drain",
                "container": c.id,
                "task": c.task,
                "framework": c.framework,
                "agent": c.agent,
                "last_state_heard": states.get(c.task.as_str()),
            })
        })
        .collect();
    match ev.left_after_stop {
        Some(0) => {}
        Some(n) => bad.push(json!({
            "problem": "left after the cluster stopped",
            "containers": n,
            "of_agents": ev.left_of_agents,
            "cluster_agents": ev.cluster_agents,
        })),
        None => {
            bad.push(json!({"problem": "the containers left after the stop could not be listed"}))
        }
    }
    let left = match ev.left_after_stop {
        Some(0) => "none".to_string(),
        Some(n) => n.to_string(),
        None => "an unknown number".to_string(),
    };
    let looked_at = format!(
        "{} containers of {} frameworks; {} running {:.1} s after the drain, {left} left after the stop",
        ev.after_drain.len(),
        ev.frameworks.len(),
        if running == 0 { "none".to_string() } else { running.to_string() },
        ev.waited_s
    );
    verdict(
        "containers",
        INVARIANT,
        bad,
        looked_at,
        ev.after_drain.is_empty(),
        stats,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    fn container(task: &str, running: bool) -> Container {
        Container {
            id: format!("c-{task}"),
            agent: "a1".into(),
            framework: "f1".into(),
            task: task.into(),
            running,
        }
    }

    fn evidence(after_drain: Vec<Container>, left: Option<usize>) -> ContainerEvidence {
        ContainerEvidence {
            frameworks: vec!["f1".into()],
            after_drain,
            waited_s: 0.5,
            error: None,
            left_after_stop: left,
            ..Default::default()
        }
    }

    #[test]
    fn ended_containers_all_removed_are_valid() {
        let ev = evidence(
            vec![container("t1", false), container("t2", false)],
            Some(0),
        );
        let r = check(&ev, &[]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
    }

    #[test]
    fn a_container_running_after_the_drain_is_a_violation_naming_its_task() {
        let ev = evidence(vec![container("t1", false), container("t2", true)], Some(0));
        let r = check(&ev, &[]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexamples.len(), 1);
        assert_eq!(r.counterexamples[0]["task"], "t2");
    }

    #[test]
    fn a_container_left_after_the_stop_is_a_violation() {
        let r = check(&evidence(vec![container("t1", false)], Some(1)), &[]);
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.summary.contains("1 left after the stop"), "{}", r.summary);
        let r = check(&evidence(vec![container("t1", false)], None), &[]);
        assert_eq!(r.valid, Validity::Invalid);
    }

    #[test]
    fn no_container_or_no_engine_is_unknown() {
        let r = check(&evidence(Vec::new(), Some(0)), &[]);
        assert_eq!(r.valid, Validity::Unknown);
        let mut ev = evidence(vec![container("t1", false)], Some(0));
        ev.error = Some("no engine".into());
        assert_eq!(check(&ev, &[]).valid, Validity::Unknown);
    }
}
