//! `POST /api/v1/executor` on the agent's port: the Mesos v1 executor HTTP API, which custom
//! executors (pymesos's `MesosExecutorDriver`, say) speak to run their tasks.
//!
//! Owns only the edge: each call is decoded (JSON or protobuf, [`drover_mesos::media`]),
//! checked and converted, then handed to the task table ([`crate::launcher`], which owns the
//! runs and decides what each executor gets) and the status update manager
//! ([`crate::status_updates`], the same checkpointed path the built-in executor's updates
//! take).
//!
//! - **SUBSCRIBE** answers `200` with a RecordIO stream: SUBSCRIBED, a HEARTBEAT, then the
//!   executor's LAUNCH, KILL, ACKNOWLEDGED, MESSAGE and SHUTDOWN events as the task table sends
//!   them, and a HEARTBEAT every [`HEARTBEAT_INTERVAL`]. A new subscription replaces the old
//!   one (whose stream ends). The updates it lists as unacknowledged go through UPDATE's path.
//! - **UPDATE** answers `202` only once the update is checkpointed, after ACKNOWLEDGED (with
//!   the executor's own uuid bytes) was queued on its stream; the update then goes to the
//!   master as any other.
//! - **MESSAGE** answers `202` once queued for the framework ([`crate::relay`], best effort);
//!   **HEARTBEAT** answers `202`.
//!
//! Refusals, with nothing changed: `400` for a body that does not decode or misses a field
//! (named), an unknown call type, an executor or task the agent does not have; `403` for a
//! call of an executor that never subscribed; `415`/`400` for the content type; `503` when
//! the agent is stopping or its update queue is full. Every answer but SUBSCRIBE's stream
//! closes its connection: pymesos keeps one connection and would lose a call on one the
//! server closed meanwhile.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use drover_mesos::media::{ContentType, MediaError};
use drover_mesos::v1::executor::{call, Call, Event};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::launcher::{CustomError, ExecKey, Launcher, ToCustom, EXECUTOR_EVENT_QUEUE};
use crate::status_updates::{StatusUpdates, UpdateError};

pub mod convert;

/// The path of the executor API.
pub const EXECUTOR_PATH: &str = "/api/v1/executor";
/// Largest call body, bytes (a MESSAGE's data, an UPDATE's status).
pub const MAX_CALL_BYTES: usize = 1024 * 1024;
/// Between HEARTBEATs on a subscription (Mesos's default).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// What the executor API works with.
#[derive(Clone)]
pub struct ExecutorApi {
    pub launcher: Launcher,
    pub updates: StatusUpdates,
    /// An executor's messages go to its framework through it.
    pub relay: crate::relay::Relay,
    /// What SUBSCRIBED says of the agent.
    pub hostname: String,
    pub port: u16,
}

pub fn router(api: ExecutorApi) -> Router {
    Router::new()
        .route(EXECUTOR_PATH, post(call_handler))
        .layer(DefaultBodyLimit::max(MAX_CALL_BYTES))
        .with_state(api)
}

/// An error answer, which closes its connection (a 202 keeps it: pymesos sends its next call
/// on it, and `drover-serve` never closes an idle connection).
fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (code, message.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

fn media_error(e: MediaError) -> Response {
    let code = match e {
        MediaError::MissingContentType | MediaError::Body(_) => StatusCode::BAD_REQUEST,
        MediaError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        MediaError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
    };
    error(code, e.to_string())
}

fn custom_error(e: CustomError) -> Response {
    match e {
        CustomError::ExecutorNotFound | CustomError::TaskNotFound => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        CustomError::NotSubscribed => error(StatusCode::FORBIDDEN, e.to_string()),
        CustomError::Stopped => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `202`.
fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

async fn call_handler(State(api): State<ExecutorApi>, headers: HeaderMap, body: Bytes) -> Response {
    let content = match ContentType::of_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(c) => c,
        Err(e) => return media_error(e),
    };
    let call: Call = match content.decode(&body) {
        Ok(c) => c,
        Err(e) => return media_error(e),
    };
    let exec = match convert::exec_key(&call) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let kind = call.r#type.and_then(|t| call::Type::try_from(t).ok());
    match kind {
        Some(call::Type::Subscribe) => subscribe(api, &headers, exec, call).await,
        Some(call::Type::Update) => match update(&api, &exec, &call).await {
            Ok(()) => accepted(),
            Err(r) => r,
        },
        Some(call::Type::Message) => {
            let Some(m) = call.message.as_ref() else {
                return error(StatusCode::BAD_REQUEST, "Expecting 'message' to be present");
            };
            if m.data.len() > crate::task::MAX_MESSAGE_BYTES {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "message.data: larger than {} bytes",
                        crate::task::MAX_MESSAGE_BYTES
                    ),
                );
            }
            match api.launcher.executor_check(exec.clone(), None).await {
                Ok(agent) => {
                    // Best effort, as in Mesos: taken, and dropped when the queue is full.
                    api.relay.message(&agent, &exec.0, &exec.1, m.data.clone());
                    accepted()
                }
                Err(e) => custom_error(e),
            }
        }
        Some(call::Type::Heartbeat) => match api.launcher.executor_check(exec, None).await {
            Ok(_) => accepted(),
            Err(e) => custom_error(e),
        },
        Some(call::Type::Unknown) | None => error(
            StatusCode::BAD_REQUEST,
            "type: expecting one of SUBSCRIBE, UPDATE, MESSAGE, HEARTBEAT",
        ),
    }
}

/// An UPDATE (also each unacknowledged update of a SUBSCRIBE): checked, checkpointed,
/// acknowledged on the executor's stream.
async fn update(api: &ExecutorApi, exec: &ExecKey, call: &Call) -> Result<(), Response> {
    let Some(u) = call.update.as_ref() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Expecting 'update' to be present",
        ));
    };
    let task = TaskId::new(&u.status.task_id.value).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("update.status.task_id: {e}"),
        )
    })?;
    let agent = api
        .launcher
        .executor_check(exec.clone(), Some(task.clone()))
        .await
        .map_err(custom_error)?;
    let update = convert::status_from_mesos(&u.status, exec, &task, &agent)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (uuid, state) = (update.status.uuid, update.status.state);
    api.updates.update(update).await.map_err(|e| match e {
        UpdateError::QueueFull(_) | UpdateError::Stopped => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        UpdateError::Checkpoint(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    api.launcher
        // A custom executor's task runs no container of Drover's.
        .state_seen(exec.0.clone(), task.clone(), state, false)
        .await;
    api.launcher
        .executor_acknowledge(exec.clone(), task, uuid)
        .await;
    Ok(())
}

async fn subscribe(api: ExecutorApi, headers: &HeaderMap, exec: ExecKey, call: Call) -> Response {
    let accept =
        match ContentType::of_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) {
            Ok(a) => a,
            Err(e) => return media_error(e),
        };
    let Some(sub) = call.subscribe.as_ref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "Expecting 'subscribe' to be present",
        );
    };
    let unacknowledged: HashSet<TaskId> = sub
        .unacknowledged_tasks
        .iter()
        .filter_map(|t| TaskId::new(&t.task_id.value).ok())
        .collect();
    let (tx, rx) = mpsc::channel(EXECUTOR_EVENT_QUEUE);
    // Whatever becomes of this handler from here (its client gone mid-way included), the task
    // table hears that the subscription ended.
    let guard = Disconnect {
        launcher: api.launcher.clone(),
        exec: exec.clone(),
        conn: tx.downgrade(),
    };
    let run = match api
        .launcher
        .executor_subscribe(exec.clone(), unacknowledged, tx)
        .await
    {
        Ok(r) => r,
        Err(e) => return custom_error(e),
    };
    // What it sent but never saw acknowledged: the same path as UPDATE (a uuid the agent has
    // is acknowledged again).
    for u in &sub.unacknowledged_updates {
        let again = Call {
            r#type: Some(call::Type::Update as i32),
            update: Some(u.clone()),
            ..call.clone()
        };
        if let Err(r) = update(&api, &exec, &again).await {
            tracing::warn!(executor = %exec.1, status = %r.status(), "an unacknowledged update the executor listed was refused");
        }
    }
    let cx = StreamContext {
        framework: exec.0.clone(),
        agent: run.agent_id.clone(),
    };
    let mut queued = VecDeque::new();
    queued.push_back(convert::subscribed(&run, &exec.0, &api.hostname, api.port));
    queued.push_back(convert::heartbeat());
    let state = Streaming {
        rx,
        queued,
        cx,
        encoding: accept,
        heartbeat: tokio::time::interval_at(
            tokio::time::Instant::now() + HEARTBEAT_INTERVAL,
            HEARTBEAT_INTERVAL,
        ),
        _guard: guard,
    };
    let body = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.queued.pop_front() {
                let record = drover_mesos::recordio::encode(&st.encoding.encode(&e));
                return Some((Ok::<_, std::convert::Infallible>(Bytes::from(record)), st));
            }
            tokio::select! {
                e = st.rx.recv() => match e {
                    Some(e) => st.queued.push_back(convert::event(&e, &st.cx)),
                    None => return None,
                },
                _ = st.heartbeat.tick() => st.queued.push_back(convert::heartbeat()),
            }
        }
    })
    .boxed();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, accept.media_type())
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// What events need beside themselves.
pub struct StreamContext {
    pub framework: FrameworkId,
    pub agent: AgentId,
}

struct Streaming {
    rx: mpsc::Receiver<ToCustom>,
    queued: VecDeque<Event>,
    cx: StreamContext,
    encoding: ContentType,
    heartbeat: tokio::time::Interval,
    _guard: Disconnect,
}

/// Tells the task table when a subscription's stream is gone (the client went away, or the
/// table replaced it).
struct Disconnect {
    launcher: Launcher,
    exec: ExecKey,
    conn: mpsc::WeakSender<ToCustom>,
}

impl Drop for Disconnect {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            self.launcher.executor_disconnected(self.exec.clone(), conn);
        }
    }
}
