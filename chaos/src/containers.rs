//! The Docker containers a local cluster's agents started: finding them by the labels the
//! agents put on them (agent, framework, task), and removing them when the cluster stops, as
//! the cluster kills its agents' executors (a container runs under the engine, not under the
//! agent's work directory, so killing processes there leaves it running).
//!
//! Owns nothing: every call asks the engine at the default socket afresh. Where no engine
//! answers there are no containers to find, and every call says so without failing the caller
//! that only cleans up.

use std::path::Path;
use std::time::Duration;

use drover_agent::docker::{self, Labelled, LABEL_AGENT, LABEL_FRAMEWORK};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

/// A container as a chaos run records it (`final/containers.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub agent: String,
    pub framework: String,
    pub task: String,
    pub running: bool,
}

impl From<Labelled> for Container {
    fn from(l: Labelled) -> Self {
        Container {
            id: l.id,
            agent: l.agent,
            framework: l.framework,
            task: l.task,
            running: l.running,
        }
    }
}

/// The id the agent working in `work_dir` was given (its `meta/agent_id`), if it registered.
pub fn agent_id(work_dir: &Path) -> Option<String> {
    let layout = drover_agent::layout::Layout::new(work_dir.to_path_buf());
    std::fs::read_to_string(layout.agent_id_file())
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn engine() -> Result<bollard::Docker, String> {
    docker::connect(Path::new(docker::DEFAULT_SOCKET))
        .await
        .map_err(|e| e.to_string())
}

/// Every container (running or ended) that one of `frameworks` started.
pub async fn of_frameworks(frameworks: &[String]) -> Result<Vec<Container>, String> {
    let d = engine().await?;
    let mut out = Vec::new();
    for f in frameworks {
        let found = docker::list_labelled(&d, &[(LABEL_FRAMEWORK, f)])
            .await
            .map_err(|e| e.to_string())?;
        out.extend(found.into_iter().map(Container::from));
    }
    Ok(out)
}

/// Removes every container (running or ended) labelled with one of `agents`; how many went.
/// Bounded: it gives up at the first call the engine does not answer in time (each is bounded
/// by [`docker::CALL_TIMEOUT`]: an engine that stopped answering would otherwise hold the
/// caller for a minute per container) and after [`REMOVAL_DEADLINE`] in all.
pub async fn remove_of_agents(agents: &[String]) -> Result<usize, String> {
    if agents.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    let all = remove_each(agents, &mut removed);
    match tokio::time::timeout(REMOVAL_DEADLINE, all).await {
        Ok(Ok(())) => Ok(removed),
        Ok(Err(e)) => Err(format!("{e} ({removed} removed before)")),
        Err(_) => Err(format!(
            "not done within {} s ({removed} removed)",
            REMOVAL_DEADLINE.as_secs()
        )),
    }
}

async fn remove_each(agents: &[String], removed: &mut usize) -> Result<(), String> {
    let d = engine().await?;
    for a in agents {
        let found = docker::list_labelled(&d, &[(LABEL_AGENT, a)])
            .await
            .map_err(|e| e.to_string())?;
        // A long run leaves thousands of ended containers: several removals at once, and the
        // first failure ends the cleanup (the rest would most likely fail alike).
        let mut results = futures::stream::iter(found.iter().map(|c| docker::remove(&d, &c.id)))
            .buffer_unordered(REMOVALS_AT_ONCE);
        while let Some(r) = results.next().await {
            r.map_err(|e| e.to_string())?;
            *removed += 1;
        }
    }
    Ok(())
}

/// Container removals in flight at once.
const REMOVALS_AT_ONCE: usize = 8;
/// Longest a whole [`remove_of_agents`] may take (a healthy engine removes a few dozen ended
/// containers a second: a ten-minute run's thousands take about a minute).
pub const REMOVAL_DEADLINE: Duration = Duration::from_secs(180);

/// [`remove_of_agents`] from synchronous code (a `Drop`), on a thread of its own with its own
/// runtime, so that it works inside and outside a runtime alike.
pub fn remove_of_agents_blocking(agents: Vec<String>) {
    if agents.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            if let Err(e) = rt.block_on(remove_of_agents(&agents)) {
                tracing::debug!("removing the cluster's containers: {e}");
            }
        }
    })
    .join();
}
