//! Mesos's state endpoints on the leading master, in Mesos's JSON shapes (`src/master/http.cpp`
//! of Mesos 1.x; `master/MESOS_HTTP.md`, section 4), read from the applied registry:
//! `GET /state` (aliases `/master/state`, `/state.json`, `/master/state.json`),
//! `/master/frameworks` (`/frameworks`), `/master/slaves` (`/slaves`) and `/master/tasks`
//! (`/tasks`, with `limit`, `offset`, `order`, `framework_id` and `task_id`). A master that does
//! not lead answers 307 to the leader, as Mesos's do.
//!
//! Resources are Mesos's summaries: scalars as numbers, ranges as `"[a-b, c-d]"`. The registry
//! has no connection state, so which frameworks are `connected` (and `active`) is asked of the
//! leader's engine; torn-down ones are `completed_frameworks`.

use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_mesos::summary::resources as summary;
use drover_resources::Resources;
use serde::Deserialize;
use serde_json::{json, Value};

use super::usage::Usage;
use super::{HttpError, MesosState};
use crate::api::http::MESOS_API_VERSION;
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterState, FrameworkRecord, TaskRecord,
};
use crate::registry::TaskState;

/// Most tasks `/master/tasks` returns in one answer (Mesos's default limit is 100).
pub const MAX_TASKS_LIMIT: usize = 10_000;
const DEFAULT_TASKS_LIMIT: usize = 100;

/// Seconds since the epoch, as Mesos writes times.
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn or_empty(m: &std::collections::HashMap<String, Resources>, key: &str) -> Value {
    summary(&Usage::of_key(m, key))
}

fn agent_json(a: &AgentRecord, u: &Usage) -> Value {
    let (_, port) = super::convert::split_host_port(&a.addr);
    let id = a.id.to_string();
    let used = Usage::of_key(&u.used_on, &id);
    json!({
        "id": id,
        "pid": drover_mesos::agent_pid(&a.addr),
        "hostname": a.hostname,
        "port": port,
        "registered_time": secs(a.registered_at_ms),
        "resources": summary(&a.total),
        "used_resources": summary(&used),
        "offered_resources": or_empty(&u.offered_on, &id),
        "reserved_resources": {},
        "unreserved_resources": summary(&a.total),
        "attributes": drover_mesos::summary::attributes(&a.attributes),
        "active": a.state == AgentState::Active,
        "deactivated": matches!(a.state, AgentState::Draining | AgentState::Deactivated),
        "version": MESOS_API_VERSION,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
    })
}

/// A task as Mesos's `json(Task)`.
pub fn task_json(t: &TaskRecord) -> Value {
    let statuses: Vec<Value> = t
        .updates
        .iter()
        .map(|u| {
            let mut s = json!({
                "state": u.update.state.mesos_name(),
                "timestamp": secs(u.update.at_ms),
            });
            if let Some(h) = drover_model::health::healthy_of(&u.update.reason) {
                s["healthy"] = json!(h);
            }
            s
        })
        .collect();
    json!({
        "id": t.spec.id.to_string(),
        "name": t.spec.name,
        "framework_id": t.framework.to_string(),
        "executor_id": "",
        "slave_id": t.agent.to_string(),
        "agent_id": t.agent.to_string(),
        "state": t.state.mesos_name(),
        "resources": summary(&t.spec.resources),
        "statuses": statuses,
    })
}

fn framework_json(f: &FrameworkRecord, c: &ClusterState, u: &Usage) -> Value {
    let id = f.id.to_string();
    let (mut live, mut unreachable, mut completed) = (Vec::new(), Vec::new(), Vec::new());
    for t in c.tasks_of(&f.id) {
        match t.state {
            s if s.is_terminal() => completed.push(task_json(t)),
            TaskState::Unreachable => unreachable.push(task_json(t)),
            _ => live.push(task_json(t)),
        }
    }
    let offers: Vec<Value> = c
        .offers()
        .filter(|o| o.framework == f.id)
        .map(|o| {
            json!({
                "id": o.id.to_string(),
                "framework_id": id,
                "slave_id": o.agent.to_string(),
                "resources": summary(&o.resources),
            })
        })
        .collect();
    let mut capabilities = Vec::new();
    if f.partition_aware {
        capabilities.push("PARTITION_AWARE");
    }
    json!({
        "id": id,
        "name": f.name,
        "user": "",
        "hostname": "",
        "webui_url": "",
        "principal": f.principal,
        "role": f.role.to_string(),
        "roles": [f.role.to_string()],
        "failover_timeout": secs(f.failover_timeout_ms),
        "checkpoint": true,
        "capabilities": capabilities,
        "active": !f.torn_down && u.is_connected(&id),
        "connected": !f.torn_down && u.is_connected(&id),
        "recovered": false,
        "registered_time": secs(f.subscribed_at_ms),
        "unregistered_time": 0,
        "resources": or_empty(&u.used_by, &id),
        "used_resources": or_empty(&u.used_by, &id),
        "offered_resources": or_empty(&u.offered_by, &id),
        "tasks": live,
        "unreachable_tasks": unreachable,
        "completed_tasks": completed,
        "offers": offers,
        "executors": [],
    })
}

fn frameworks_split(c: &ClusterState, u: &Usage) -> (Vec<Value>, Vec<Value>) {
    let (completed, active): (Vec<&FrameworkRecord>, Vec<_>) =
        c.frameworks().partition(|f| f.torn_down);
    let json =
        |fs: Vec<&FrameworkRecord>| fs.into_iter().map(|f| framework_json(f, c, u)).collect();
    (json(active), json(completed))
}

/// An endpoint's answer: the JSON, or the answer of a master that does not lead (or of a
/// bad query).
type Answer = Result<Json<Value>, Response>;

/// The state the leader has applied, with what is used, offered and connected in it; or the
/// answer of a master that does not lead.
async fn leader_usage(s: &MesosState, path: &str) -> Result<(ClusterState, Usage), Response> {
    if let Some(r) = s.not_leading(path) {
        return Err(r);
    }
    let c = s.cluster();
    let u = Usage::of(&c, s.connected().await);
    Ok((c, u))
}

/// `GET /master/state`.
pub async fn state(State(s): State<MesosState>, uri: Uri) -> Answer {
    let (c, u) = leader_usage(&s, uri.path()).await?;
    let info = s.master_info();
    let pid = info.pid.clone().unwrap_or_default();
    let agents: Vec<&AgentRecord> = c.agents().collect();
    let count = |st: AgentState| agents.iter().filter(|a| a.state == st).count();
    let slaves: Vec<Value> = agents
        .iter()
        .filter(|a| a.state != AgentState::Gone)
        .map(|a| agent_json(a, &u))
        .collect();
    let (frameworks, completed) = frameworks_split(&c, &u);
    Ok(Json(json!({
        "version": MESOS_API_VERSION,
        "drover_version": env!("CARGO_PKG_VERSION"),
        "id": info.id,
        "pid": pid,
        "hostname": info.hostname,
        "leader": pid,
        "leader_info": serde_json::to_value(&info).unwrap_or(Value::Null),
        "start_time": secs(s.started_at_ms),
        "capabilities": ["AGENT_UPDATE", "AGENT_DRAINING"],
        "activated_slaves": count(AgentState::Active),
        "deactivated_slaves": count(AgentState::Draining) + count(AgentState::Deactivated),
        "unreachable_slaves": count(AgentState::Unreachable),
        "flags": {},
        "slaves": slaves,
        "recovered_slaves": [],
        "frameworks": frameworks,
        "completed_frameworks": completed,
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    })))
}

/// `GET /master/frameworks`.
pub async fn frameworks(State(s): State<MesosState>, uri: Uri) -> Answer {
    let (c, u) = leader_usage(&s, uri.path()).await?;
    let (frameworks, completed) = frameworks_split(&c, &u);
    Ok(Json(json!({
        "frameworks": frameworks,
        "completed_frameworks": completed,
        "unregistered_frameworks": [],
    })))
}

/// `GET /master/slaves`.
pub async fn slaves(State(s): State<MesosState>, uri: Uri) -> Answer {
    let (c, u) = leader_usage(&s, uri.path()).await?;
    let slaves: Vec<Value> = c
        .agents()
        .filter(|a| a.state != AgentState::Gone)
        .map(|a| agent_json(a, &u))
        .collect();
    Ok(Json(json!({ "slaves": slaves, "recovered_slaves": [] })))
}

#[derive(Debug, Deserialize)]
pub struct TasksQuery {
    limit: Option<String>,
    offset: Option<String>,
    order: Option<String>,
    framework_id: Option<String>,
    task_id: Option<String>,
}

fn number(field: &str, raw: Option<&str>, default: usize) -> Result<usize, HttpError> {
    match raw {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("{field}: '{v}' is not a non-negative integer"),
            )
        }),
    }
}

/// The page a tasks query asks for: limit, offset, and whether newest first.
fn page(q: &TasksQuery) -> Result<(usize, usize, bool), HttpError> {
    let limit = number("limit", q.limit.as_deref(), DEFAULT_TASKS_LIMIT)?.min(MAX_TASKS_LIMIT);
    let offset = number("offset", q.offset.as_deref(), 0)?;
    let descending = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("order: '{other}' is not 'asc' or 'desc'"),
            ))
        }
    };
    Ok((limit, offset, descending))
}

/// `GET /master/tasks`: in the order tasks started (their first status), newest first
/// (`order=desc`, the default) or oldest first, as Mesos.
pub async fn tasks(State(s): State<MesosState>, uri: Uri, Query(q): Query<TasksQuery>) -> Answer {
    if let Some(r) = s.not_leading(uri.path()) {
        return Err(r);
    }
    let c = s.cluster();
    let (limit, offset, descending) = page(&q).map_err(IntoResponse::into_response)?;
    let mut tasks: Vec<&TaskRecord> = c
        .tasks()
        .filter(|t| {
            q.framework_id
                .as_deref()
                .is_none_or(|f| t.framework.as_str() == f)
        })
        .filter(|t| q.task_id.as_deref().is_none_or(|i| t.spec.id.as_str() == i))
        .collect();
    let started = |t: &TaskRecord| t.updates.first().map_or(0, |u| u.update.at_ms);
    tasks.sort_by_key(|t| (started(t), t.spec.id.to_string()));
    if descending {
        tasks.reverse();
    }
    let page: Vec<Value> = tasks
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(task_json)
        .collect();
    Ok(Json(json!({ "tasks": page })))
}
