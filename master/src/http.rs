//! HTTP endpoints on the master's port, next to gRPC: `GET /health`, `GET /v1/leader` and
//! `GET /metrics` (Prometheus text format).
//!
//! Owns nothing: every answer is read from openraft's metrics or the Prometheus recorder at the
//! time of the request. Every replica answers, leader or not.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::raft::{MasterId, Raft};

#[derive(Clone)]
pub struct HttpState {
    pub raft: Raft,
    pub me: MasterId,
    pub prometheus: PrometheusHandle,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/leader", get(leader))
        .route("/metrics", get(metrics))
        .with_state(state)
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
    let leader_addr = m
        .current_leader
        .and_then(|id| m.membership_config.membership().get_node(&id))
        .map(|n| n.addr.clone());
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

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus.render(),
    )
}
