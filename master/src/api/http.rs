//! HTTP endpoints on the master's port, next to gRPC: `GET /health`, `GET /v1/leader`,
//! `GET /v1/state` (agents, frameworks, offers and tasks as JSON), `GET /v1/raft` (this
//! replica's Raft metrics as openraft reports them: vote, log, commit, and on a leader each
//! follower's matched log id) and `GET /metrics` (Prometheus text format); and the first of
//! Mesos's plain endpoints (`master/MESOS_HTTP.md`, section 4): `GET /version` (the Mesos API
//! version Drover speaks, `X.Y.Z` as clients parse it) and `GET /master/redirect` (alias
//! `/redirect`: a 307 to the leader, `Location: //host:port`; 503 with `Retry-After` while
//! there is none).
//!
//! Owns nothing: every answer is read from openraft's metrics, the applied registry or the
//! Prometheus recorder at the time of the request. Every replica answers, leader or not;
//! `/v1/state` on a follower may lag the leader by what it has not applied yet (its
//! `applied_index` says how far it is).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::raft::state_machine::AppliedState;
use crate::raft::{MasterId, Raft};
use crate::registry::cluster::ClusterState;

#[derive(Clone)]
pub struct HttpState {
    pub raft: Raft,
    pub me: MasterId,
    pub prometheus: PrometheusHandle,
    pub applied: tokio::sync::watch::Receiver<AppliedState>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/leader", get(leader))
        .route("/v1/state", get(cluster_state))
        .route("/v1/raft", get(raft_metrics))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .with_state(state)
}

/// The Mesos release whose v1 HTTP APIs Drover's follow (dotted integers only).
pub use drover_mesos::API_VERSION as MESOS_API_VERSION;

#[derive(Serialize)]
struct Version {
    version: &'static str,
    drover_version: &'static str,
}

async fn version() -> impl IntoResponse {
    Json(Version {
        version: MESOS_API_VERSION,
        drover_version: env!("CARGO_PKG_VERSION"),
    })
}

/// The leader's address, as this replica knows it.
pub(crate) fn leader_addr(
    m: &openraft::RaftMetrics<MasterId, crate::raft::MasterNode>,
) -> Option<String> {
    m.current_leader
        .and_then(|id| m.membership_config.membership().get_node(&id))
        .map(|n| n.addr.clone())
}

async fn redirect(State(s): State<HttpState>) -> impl IntoResponse {
    match leader_addr(&s.raft.metrics().borrow()) {
        Some(addr) => crate::api::mesos::redirect_to(&addr, ""),
        None => crate::api::mesos::unavailable("no leader is elected yet"),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    node_id: MasterId,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    let metrics = s.raft.metrics();
    let m = metrics.borrow().clone();
    let role = format!("{:?}", m.state).to_lowercase();
    match m.running_state {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                node_id: s.me,
                role,
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "failed",
                node_id: s.me,
                role,
                error: Some(e.to_string()),
            }),
        ),
    }
}

#[derive(Serialize)]
struct Leader {
    leader_id: Option<MasterId>,
    leader_addr: Option<String>,
    term: u64,
}

async fn leader(State(s): State<HttpState>) -> impl IntoResponse {
    let metrics = s.raft.metrics();
    let m = metrics.borrow();
    let leader_addr = leader_addr(&m);
    let body = Leader {
        leader_id: m.current_leader,
        leader_addr,
        term: m.current_term,
    };
    let code = if body.leader_id.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn raft_metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let m = s.raft.metrics().borrow().clone();
    Json(m)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus.render(),
    )
}

#[derive(Serialize)]
struct StateView {
    node_id: MasterId,
    leader_id: Option<MasterId>,
    applied_index: u64,
    agents: Vec<AgentView>,
    frameworks: Vec<FrameworkView>,
    offers: Vec<OfferView>,
    tasks: Vec<TaskView>,
}

#[derive(Serialize)]
struct AgentView {
    id: String,
    hostname: String,
    addr: String,
    state: String,
    resources: String,
    /// Outstanding offers plus live tasks.
    used: String,
    attributes: String,
    registered_at_ms: u64,
    /// When it entered its current state.
    state_since_ms: u64,
}

#[derive(Serialize)]
struct FrameworkView {
    id: String,
    name: String,
    role: String,
    principal: String,
    failover_timeout_ms: u64,
    torn_down: bool,
    partition_aware: bool,
}

#[derive(Serialize)]
struct OfferView {
    id: String,
    framework_id: String,
    agent_id: String,
    resources: String,
    created_at_ms: u64,
    expires_at_ms: u64,
}

#[derive(Serialize)]
struct TaskView {
    id: String,
    name: String,
    framework_id: String,
    agent_id: String,
    state: &'static str,
    resources: String,
    command: String,
    updates: Vec<UpdateView>,
}

#[derive(Serialize)]
struct UpdateView {
    uuid: String,
    state: &'static str,
    reason: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    at_ms: u64,
    acknowledged: bool,
}

fn state_name(s: crate::registry::TaskState) -> &'static str {
    s.to_proto().as_str_name()
}

fn view(
    c: &ClusterState,
) -> (
    Vec<AgentView>,
    Vec<FrameworkView>,
    Vec<OfferView>,
    Vec<TaskView>,
) {
    let agents = c
        .agents()
        .map(|a| AgentView {
            id: a.id.to_string(),
            hostname: a.hostname.clone(),
            addr: a.addr.clone(),
            state: format!("{:?}", a.state).to_uppercase(),
            resources: a.total.to_string(),
            used: c.committed_on(&a.id).to_string(),
            attributes: a.attributes.to_string(),
            registered_at_ms: a.registered_at_ms,
            state_since_ms: a.state_since_ms,
        })
        .collect();
    let frameworks = c
        .frameworks()
        .map(|f| FrameworkView {
            id: f.id.to_string(),
            name: f.name.clone(),
            role: f.role.to_string(),
            principal: f.principal.clone(),
            failover_timeout_ms: f.failover_timeout_ms,
            torn_down: f.torn_down,
            partition_aware: f.partition_aware,
        })
        .collect();
    let offers = c
        .offers()
        .map(|o| OfferView {
            id: o.id.to_string(),
            framework_id: o.framework.to_string(),
            agent_id: o.agent.to_string(),
            resources: o.resources.to_string(),
            created_at_ms: o.created_at_ms,
            expires_at_ms: o.expires_at_ms,
        })
        .collect();
    let tasks = c
        .tasks()
        .map(|t| TaskView {
            id: t.spec.id.to_string(),
            name: t.spec.name.clone(),
            framework_id: t.framework.to_string(),
            agent_id: t.agent.to_string(),
            state: state_name(t.state),
            resources: t.spec.resources.to_string(),
            command: t.spec.command.clone(),
            updates: t
                .updates
                .iter()
                .map(|u| UpdateView {
                    uuid: u.update.uuid.to_string(),
                    state: state_name(u.update.state),
                    reason: u.update.reason.clone(),
                    message: u.update.message.clone(),
                    exit_code: u.update.exit_code,
                    signal: u.update.signal,
                    at_ms: u.update.at_ms,
                    acknowledged: u.acknowledged,
                })
                .collect(),
        })
        .collect();
    (agents, frameworks, offers, tasks)
}

async fn cluster_state(State(s): State<HttpState>) -> impl IntoResponse {
    let applied = s.applied.borrow().clone();
    let leader_id = s.raft.metrics().borrow().current_leader;
    let (agents, frameworks, offers, tasks) = view(applied.registry.cluster());
    Json(StateView {
        node_id: s.me,
        leader_id,
        applied_index: applied.last_applied.map_or(0, |l| l.index),
        agents,
        frameworks,
        offers,
        tasks,
    })
}
