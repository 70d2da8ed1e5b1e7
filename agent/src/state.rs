//! The agent's `GET /state` (aliases `/state.json`, `/slave(1)/state`), in the shape of
//! Mesos's agent state endpoint: the agent (id, pid, hostname, resources, attributes) and, per
//! framework, its executors, each with its task. Drover runs one built-in executor per task,
//! so an executor's id is its task's (as Mesos's command executor), and its `directory` is the
//! task's sandbox (what `/files/read` serves).
//!
//! Owns nothing: each request reads the work directory (`task.json` and the status update log
//! of every task directory, as a restart's recovery does, without its pass over `/proc`), off
//! the runtime. Simulated agents have no task directories: their tasks do not show.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_mesos::summary::resources as summary;
use drover_resources::{Attributes, Resources};
use serde_json::{json, Value};

use crate::layout::Layout;
use crate::recovery::{self, Found};

/// What the agent says about itself.
#[derive(Clone, Debug)]
pub struct AgentSelf {
    pub hostname: String,
    /// `host:port` of the agent's API and HTTP endpoints.
    pub addr: String,
    pub resources: Resources,
    pub attributes: Attributes,
}

#[derive(Clone)]
pub struct StateView {
    pub me: AgentSelf,
    pub layout: Layout,
}

fn executor_json(f: &Found, agent_id: &str) -> Option<Value> {
    let spec = f.spec.as_ref().ok()?;
    let task_id = f.task.to_string();
    let state = f.latest_state().map_or("TASK_STAGING", |s| s.mesos_name());
    let task = json!({
        "id": task_id,
        "name": spec.task.name,
        "framework_id": f.framework.to_string(),
        "executor_id": task_id,
        "slave_id": agent_id,
        "state": state,
        "resources": summary(&spec.task.resources),
    });
    // A task of a custom executor shows under that executor (one entry per task: a run shared
    // by several tasks appears once for each), its directory the run's sandbox (the task's
    // `sandbox` links there).
    if let Some(e) = &spec.task.executor {
        let directory = std::fs::canonicalize(f.dir.sandbox())
            .unwrap_or_else(|_| f.dir.sandbox())
            .display()
            .to_string();
        let mut task = task;
        task["executor_id"] = json!(e.executor_id.to_string());
        let (tasks, completed) = if f.latest_state().is_some_and(|s| s.is_terminal()) {
            (vec![], vec![task])
        } else {
            (vec![task], vec![])
        };
        return Some(json!({
            "id": e.executor_id.to_string(),
            "name": e.name,
            "source": e.executor_id.to_string(),
            "container": "",
            "directory": directory,
            "resources": summary(&spec.task.resources),
            "tasks": tasks,
            "queued_tasks": [],
            "completed_tasks": completed,
        }));
    }
    let (tasks, completed) = if f.latest_state().is_some_and(|s| s.is_terminal()) {
        (vec![], vec![task])
    } else {
        (vec![task], vec![])
    };
    Some(json!({
        "id": task_id,
        "name": format!("Command Executor (Task: {task_id}) (Command: sh -c '{}')", spec.task.shell),
        "source": task_id,
        "container": "",
        "directory": f.dir.sandbox().display().to_string(),
        "resources": summary(&spec.task.resources),
        "tasks": tasks,
        "queued_tasks": [],
        "completed_tasks": completed,
    }))
}

/// The state as JSON, from what `scan` found.
fn state_json(v: &StateView, agent_id: Option<String>, found: &[Found]) -> Value {
    let id = agent_id.unwrap_or_default();
    let mut frameworks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in found {
        if let Some(e) = executor_json(f, &id) {
            frameworks
                .entry(f.framework.to_string())
                .or_default()
                .push(e);
        }
    }
    let frameworks: Vec<Value> = frameworks
        .into_iter()
        .map(|(fid, executors)| {
            json!({
                "id": fid,
                "executors": executors,
                "completed_executors": [],
                "checkpoint": true,
            })
        })
        .collect();
    let (_, port) = v.me.addr.rsplit_once(':').unwrap_or((&v.me.addr, "0"));
    json!({
        "version": drover_mesos::API_VERSION,
        "drover_version": env!("CARGO_PKG_VERSION"),
        "id": id,
        "pid": drover_mesos::agent_pid(&v.me.addr),
        "hostname": v.me.hostname,
        "port": port.parse::<u16>().unwrap_or(0),
        "resources": summary(&v.me.resources),
        "attributes": drover_mesos::summary::attributes(&v.me.attributes),
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        "flags": {},
        "frameworks": frameworks,
        "completed_frameworks": [],
    })
}

/// `GET /state`.
pub async fn state(State(v): State<StateView>) -> Response {
    let layout = v.layout.clone();
    let read = tokio::task::spawn_blocking(move || {
        let id = crate::register::load_agent_id(&layout.agent_id_file())
            .ok()
            .flatten()
            .map(|a| a.to_string());
        (id, recovery::scan_task_dirs(&layout))
    })
    .await;
    match read {
        Ok((id, found)) => Json(state_json(&v, id, &found)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
