//! Mesos's v1 HTTP APIs on the master's port, beside gRPC (`master/MESOS_HTTP.md` is the wire
//! reference): the scheduler API (`POST /api/v1/scheduler`, [`scheduler`]), the operator API
//! (`POST /api/v1`, [`operator`]) and the state
//! endpoints (`/master/state`, `/master/frameworks`, `/master/slaves`, `/master/tasks` and their
//! aliases, [`state`]).
//!
//! Owns the Mesos edge only: decoding (Mesos JSON or protobuf), the leader redirect, the
//! conversions ([`convert`]) and encoding. Decisions are the gRPC edge's and the engine's.

pub mod convert;
pub mod operator;
pub mod scheduler;
pub mod state;
pub mod usage;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use drover_mesos::media::MediaError;
use drover_mesos::v1 as mesos;

use crate::api::http::MESOS_API_VERSION;
use crate::api::scheduler::SchedulerService;
use crate::leader::LeaderHandle;
use crate::raft::state_machine::AppliedState;
use crate::raft::{MasterId, Raft};
use crate::registry::cluster::{ClusterState, FrameworkRecord};
use tokio::sync::watch;

/// Largest Mesos call body read, bytes (as the gRPC framework API's bound).
pub const MAX_CALL_BYTES: usize = crate::api::scheduler::MAX_REQUEST_BYTES;

#[derive(Clone)]
pub struct MesosState {
    raft: Raft,
    me: MasterId,
    scheduler: scheduler::SchedulerApi,
    applied: watch::Receiver<AppliedState>,
    leader: LeaderHandle,
    /// Room for operator event streams (see [`operator::MAX_OPERATOR_STREAMS`]).
    operator_streams: Arc<tokio::sync::Semaphore>,
    /// When this master started, milliseconds since the epoch.
    started_at_ms: u64,
}

impl MesosState {
    pub fn new(
        raft: Raft,
        me: MasterId,
        service: Arc<SchedulerService>,
        applied: watch::Receiver<AppliedState>,
        leader: LeaderHandle,
    ) -> Self {
        Self {
            raft,
            me,
            scheduler: scheduler::SchedulerApi::new(service),
            applied,
            leader,
            operator_streams: Arc::new(tokio::sync::Semaphore::new(operator::MAX_OPERATOR_STREAMS)),
            started_at_ms: crate::clock::unix_ms(),
        }
    }

    /// The answer of a master that does not lead: a redirect to the same path on the leader,
    /// or 503 while there is none. `None` on the leader.
    fn not_leading(&self, path: &str) -> Option<Response> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.me) {
            return None;
        }
        Some(match crate::api::http::leader_addr(&m) {
            Some(addr) => redirect_to(&addr, path),
            None => unavailable("No leader elected"),
        })
    }

    /// The registry as this replica has applied it (a cheap clone: its maps share structure).
    fn cluster(&self) -> ClusterState {
        self.applied.borrow().registry.cluster().clone()
    }

    /// The registry's record of the framework `id` names, if it knows one.
    fn framework(&self, id: &str) -> Option<FrameworkRecord> {
        let id = crate::ids::FrameworkId::new(id).ok()?;
        self.applied
            .borrow()
            .registry
            .cluster()
            .framework(&id)
            .cloned()
    }

    /// The frameworks with a live stream to this leader, as its engine knows them; none while
    /// it cannot answer (it has just become leader: no framework has subscribed to it yet).
    async fn connected(&self) -> std::collections::HashSet<String> {
        self.leader
            .ask(|reply| crate::leader::Command::ConnectedFrameworks { reply })
            .await
            .map(|ids| ids.into_iter().map(|f| f.to_string()).collect())
            .unwrap_or_default()
    }

    fn master_info(&self) -> mesos::MasterInfo {
        let m = self.raft.metrics().borrow().clone();
        let addr = m
            .membership_config
            .membership()
            .get_node(&self.me)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        convert::master_info(self.me, &addr, MESOS_API_VERSION)
    }
}

/// 503 with `Retry-After: 1`.
pub fn unavailable(message: &str) -> Response {
    let mut r = HttpError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// `r`, with `Connection: close` unless it succeeded. Connections are kept between calls
/// (`drover-serve` never closes an idle one: pymesos sends its next call on the connection
/// it kept), but an error may answer a call whose body was never read (a redirect, a refusal
/// before decoding), and a client starts afresh after one.
fn close_unless_ok(mut r: Response) -> Response {
    if !r.status().is_success() {
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    r
}

/// `307` to the same path on the leader, as Mesos: `Location: //host:port/path`.
pub fn redirect_to(addr: &str, path: &str) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("//{addr}{path}"))],
    )
        .into_response()
}

pub fn router(state: MesosState) -> Router {
    Router::new()
        .route("/api/v1/scheduler", post(scheduler::handle))
        .route("/api/v1", post(operator::handle))
        .route("/api/v1/operator", post(operator::handle))
        .layer(DefaultBodyLimit::max(MAX_CALL_BYTES))
        .route("/state", get(state::state))
        .route("/state.json", get(state::state))
        .route("/master/state", get(state::state))
        .route("/master/state.json", get(state::state))
        .route("/frameworks", get(state::frameworks))
        .route("/master/frameworks", get(state::frameworks))
        .route("/slaves", get(state::slaves))
        .route("/master/slaves", get(state::slaves))
        .route("/tasks", get(state::tasks))
        .route("/master/tasks", get(state::tasks))
        .with_state(state)
}

/// A plain-text error answer, as Mesos gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub code: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (
            self.code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

pub use drover_mesos::media::ContentType;

impl From<MediaError> for HttpError {
    fn from(e: MediaError) -> Self {
        let code = match e {
            MediaError::MissingContentType | MediaError::Body(_) => StatusCode::BAD_REQUEST,
            MediaError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MediaError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        };
        HttpError::new(code, e.to_string())
    }
}

/// The request body's encoding: 400 without a Content-Type, 415 for another one.
fn body_media(headers: &HeaderMap) -> Result<ContentType, HttpError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(ContentType::of_content_type(value)?)
}

/// The encoding of an answer: JSON unless Accept allows only protobuf; 406 when it allows
/// neither.
fn answer_media(headers: &HeaderMap) -> Result<ContentType, HttpError> {
    let value = headers
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(ContentType::of_accept(value)?)
}
