//! HTTP endpoints on the agent's port, next to gRPC: `GET /health`, `GET /metrics`
//! (Prometheus text format), the sandbox files (`/files/read`, `/files/download`,
//! `/files/browse`, see [`crate::files`]) and Mesos's agent state (`/state`, see
//! [`crate::state`]), and on a real agent the Mesos executor API (`POST /api/v1/executor`, see
//! [`crate::executor_api`]).
//!
//! Owns nothing: answers are read at request time from the registration counter and the
//! Prometheus recorder.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::layout::Layout;

#[derive(Clone)]
pub struct HttpState {
    pub prometheus: PrometheusHandle,
    /// Agents this process runs (1, or N when simulating).
    pub agents: usize,
    pub simulated: bool,
    /// How many of them are registered now.
    pub registered: Arc<AtomicUsize>,
    /// The work directory, whose task sandboxes `/files` serves.
    pub layout: Layout,
    /// What `/state` says about the agent itself.
    pub me: crate::state::AgentSelf,
    /// The Mesos executor API, on a real agent.
    pub executor_api: Option<crate::executor_api::ExecutorApi>,
}

pub fn router(state: HttpState) -> Router {
    let files = Router::new()
        .route("/files/read", get(crate::files::read))
        .route("/files/browse", get(crate::files::browse))
        .route("/files/download", get(crate::files::download))
        .with_state(state.layout.clone());
    let view = crate::state::StateView {
        me: state.me.clone(),
        layout: state.layout.clone(),
    };
    let mesos_state = Router::new()
        .route("/state", get(crate::state::state))
        .route("/state.json", get(crate::state::state))
        .route("/slave(1)/state", get(crate::state::state))
        .with_state(view);
    let executor_api = state.executor_api.clone();
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(files)
        .merge(mesos_state);
    match executor_api {
        Some(api) => router.merge(crate::executor_api::router(api)),
        None => router,
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    simulated: bool,
    agents: usize,
    registered: usize,
}

/// 200 while the process serves; `registered` says whether masters know it yet.
async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    Json(Health {
        status: "ok",
        simulated: s.simulated,
        agents: s.agents,
        registered: s.registered.load(Ordering::Relaxed),
    })
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
