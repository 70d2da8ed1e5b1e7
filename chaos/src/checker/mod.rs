//! Checkers: each judges one invariant of DESIGN.md over what a chaos run left in its output
//! directory (the history and the final state of every replica and agent), and says valid,
//! invalid (with the counter-example: operations, times, nodes) or unknown (it could not
//! decide, e.g. out of time, and says why).
//!
//! They read only files ([`Evidence::load`]), so `drover chaos check DIR` re-judges a saved
//! run exactly as the run itself did.

pub mod containers;
pub mod leaders;
pub mod marathon;
pub mod store;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::history::{self, HistoryError, Record};

pub use containers::containers_path;

/// A checker's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    Unknown,
}

/// What one checker found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckerResult {
    pub checker: String,
    /// The invariant it checks, in a line.
    pub invariant: String,
    pub valid: Validity,
    /// One line for a person.
    pub summary: String,
    /// Figures: operations looked at, keys, terms, …
    #[serde(default)]
    pub stats: serde_json::Value,
    /// At most [`MAX_COUNTEREXAMPLES`] violations, each with the records involved.
    #[serde(default)]
    pub counterexamples: Vec<serde_json::Value>,
}

/// Counter-examples kept per checker (the first ones found).
pub const MAX_COUNTEREXAMPLES: usize = 20;

/// The top of `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// True only when every checker says valid.
    pub valid: bool,
    pub checkers: Vec<CheckerResult>,
}

impl Results {
    pub fn of(checkers: Vec<CheckerResult>) -> Results {
        Results {
            valid: !checkers.is_empty() && checkers.iter().all(|c| c.valid == Validity::Valid),
            checkers,
        }
    }
}

/// Everything a run left for the checkers.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub history: Vec<Record>,
    /// `/v1/state` of each master (its own registry), by master id, read after the heal.
    pub final_states: BTreeMap<u64, serde_json::Value>,
    /// The workloads that ran.
    pub workloads: Vec<String>,
    /// The updates the masters acknowledged to each agent: agent index -> task -> uuids.
    pub agent_acks: BTreeMap<usize, BTreeMap<String, BTreeSet<String>>>,
    /// `launches.log`: one `<task> <agent>` line per time a task's command started.
    pub launches: String,
    /// Masters in the cluster (a final state missing from one is itself a finding).
    pub masters: u64,
    /// What became of the tasks' containers (runs with `--containers docker`).
    pub containers: Option<containers::ContainerEvidence>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Where a run keeps the final state of master `id`.
pub fn final_state_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("final").join(format!("master-{id}.json"))
}

/// Where a run keeps what the masters acknowledged to agent `index`.
pub fn agent_acks_path(dir: &Path, index: usize) -> PathBuf {
    dir.join("final").join(format!("agent-{index}-acked.json"))
}

/// The run's description (`run.json`): what ran, for `chaos check`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunInfo {
    pub workloads: Vec<String>,
    pub nemeses: Vec<String>,
    pub masters: u64,
    pub agents: usize,
    pub seed: u64,
    pub duration_secs: f64,
    pub rate: f64,
    /// The framework API the tasks workload's schedulers spoke (`grpc` or `http`; runs saved
    /// before it was recorded read as `grpc`).
    #[serde(default = "grpc")]
    pub api: String,
    /// How the tasks ran (`none`: commands, `docker`: containers).
    #[serde(default = "no_containers")]
    pub containers: String,
}

fn no_containers() -> String {
    "none".into()
}

fn grpc() -> String {
    "grpc".into()
}

impl Evidence {
    /// Reads `history.jsonl`, `run.json`, `final/master-*.json` and, when there,
    /// `final/containers.json` from a run's directory.
    pub fn load(dir: &Path) -> Result<Evidence, EvidenceError> {
        let history = history::read(&dir.join("history.jsonl"))?;
        let info_path = dir.join("run.json");
        let info: RunInfo = read_json(&info_path)?;
        let mut final_states = BTreeMap::new();
        for id in 1..=info.masters {
            let p = final_state_path(dir, id);
            if p.exists() {
                final_states.insert(id, read_json(&p)?);
            }
        }
        let mut agent_acks = BTreeMap::new();
        for index in 0..info.agents {
            let p = agent_acks_path(dir, index);
            if p.exists() {
                agent_acks.insert(index, read_json(&p)?);
            }
        }
        let launches_path = dir.join(crate::workload::tasks::LAUNCHES_FILE);
        let launches = if launches_path.exists() {
            std::fs::read_to_string(&launches_path).map_err(|e| EvidenceError::File {
                path: launches_path.clone(),
                reason: e.to_string(),
            })?
        } else {
            String::new()
        };
        let containers_file = containers_path(dir);
        let containers = if containers_file.exists() {
            Some(read_json(&containers_file)?)
        } else {
            None
        };
        Ok(Evidence {
            history,
            final_states,
            workloads: info.workloads,
            agent_acks,
            launches,
            masters: info.masters,
            containers,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvidenceError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| EvidenceError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Runs every checker that applies to the workloads that ran, within `time_limit` in all.
pub fn check_all(ev: &Evidence, time_limit: Duration) -> Results {
    let deadline = Instant::now() + time_limit;
    let mut out = vec![leaders::check(&ev.history)];
    if ev.workloads.iter().any(|w| w == "store") {
        out.push(store::check(&ev.history, Some(deadline)));
        out.push(store::available_after_heal(&ev.history));
    }
    if ev.workloads.iter().any(|w| w == "tasks") {
        out.extend(tasks::check(ev));
    }
    if ev.workloads.iter().any(|w| w == "marathon") {
        out.extend(marathon::check(ev));
    }
    if let Some(c) = &ev.containers {
        out.push(containers::check(c, &ev.history));
    }
    Results::of(out)
}

/// A checker's result: invalid with the first counter-examples in `bad`, unknown when there
/// was `nothing` to check, else valid; `looked_at` says what was looked at.
pub(crate) fn verdict(
    checker: &str,
    invariant: &str,
    bad: Vec<serde_json::Value>,
    looked_at: String,
    nothing: bool,
    stats: serde_json::Value,
) -> CheckerResult {
    let (valid, summary) = if !bad.is_empty() {
        (
            Validity::Invalid,
            format!("{} violations; {looked_at}", bad.len()),
        )
    } else if nothing {
        (Validity::Unknown, format!("nothing to check: {looked_at}"))
    } else {
        (Validity::Valid, looked_at)
    };
    let mut counterexamples = bad;
    counterexamples.truncate(MAX_COUNTEREXAMPLES);
    CheckerResult {
        checker: checker.into(),
        invariant: invariant.into(),
        valid,
        summary,
        stats,
        counterexamples,
    }
}

/// When the nemesis last healed (0 when it never injected anything).
pub fn last_heal_ns(history: &[Record]) -> u64 {
    history
        .iter()
        .filter(|r| {
            r.process == "nemesis"
                && r.kind == crate::history::Kind::Info
                && (r.f == "stop" || r.f == "heal")
        })
        .map(|r| r.time_ns)
        .max()
        .unwrap_or(0)
}

/// A record as a counter-example entry (its line, process, type, operation, value, time).
pub fn cite(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "index": r.index,
        "process": r.process,
        "type": r.kind,
        "f": r.f,
        "value": r.value,
        "time_s": r.time_ns as f64 / 1e9,
        "error": r.error,
    })
}
