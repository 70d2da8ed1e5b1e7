//! `/v2` over HTTP (axum), on the running service ([`Handle`]).
//!
//! Owns the HTTP edge only: paths as Marathon clients send them (an app id put into the URL
//! as is: `/v2/apps//prod/web/tasks`, the suffixes `restart`, `tasks[/{taskId}]` and
//! `versions[/{v}]` found after the id), query booleans in any case (`force=False`), bodies
//! bounded ([`MAX_BODY_BYTES`]), every error in Marathon's JSON shape with
//! `Content-Type: application/json` (clients read the body only then), and the event stream
//! as Server-Sent Events. Every decision is the service's.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::app::parse_app;
use super::deployment::DeploymentId;
use super::error::ApiError;
use super::events::KINDS;
use super::path::PathId;
use super::service::{Answer, AppFilter, Call, Embed, Handle, KillTasks};
use super::time::Timestamp;

/// Largest request body accepted, bytes (an app definition is far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A blank line is sent on an idle event stream this often, so proxies keep it open.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// The query of a request, every pair in order (a key may repeat).
type Params = Query<Vec<(String, String)>>;

/// The routes, over the service behind `handle`.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/v2/info", get(info))
        .route("/v2/leader", get(leader))
        .route("/v2/apps", get(list_apps).post(create_app))
        .route(
            "/v2/apps/{*rest}",
            get(app_path)
                .put(app_path)
                .patch(app_path)
                .delete(app_path)
                .post(app_path),
        )
        .route("/v2/tasks", get(tasks))
        .route("/v2/tasks/delete", post(delete_tasks))
        .route("/v2/deployments", get(deployments))
        .route("/v2/deployments/{id}", delete(cancel_deployment))
        .route("/v2/queue", get(queue))
        .route("/v2/queue/{*rest}", delete(reset_delay))
        .route("/v2/events", get(events))
        .fallback(|uri: Uri| async move {
            ApiError::not_found(format!("URI not found: {}", uri.path())).into_response()
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(handle)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response()
    }
}

fn respond(result: Result<Answer, ApiError>) -> Response {
    let answer = match result {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = if answer.body.is_null() {
        status.into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            answer.body.to_string(),
        )
            .into_response()
    };
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// The last value of query key `key`.
fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean query value, in any case (`True`, `false`); absent is `default`.
fn flag(params: &[(String, String)], key: &str, default: bool) -> bool {
    param(params, key).map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

/// Every value of a repeated key.
fn values<'a>(params: &'a [(String, String)], key: &'a str) -> impl Iterator<Item = &'a str> {
    params
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn embed(params: &[(String, String)]) -> Embed {
    let mut e = Embed::default();
    for v in values(params, "embed") {
        let suffix = v.rsplit('.').next().unwrap_or(v);
        match suffix {
            "tasks" => e.tasks = true,
            "lastTaskFailure" => e.last_task_failure = true,
            "failures" => {
                e.tasks = true;
                e.last_task_failure = true;
            }
            _ => {}
        }
    }
    e
}

async fn info(State(h): State<Handle>) -> Response {
    respond(h.call(Call::Info).await)
}

async fn leader(State(h): State<Handle>) -> Response {
    respond(Ok(Answer::ok(json!({"leader": h.info().http_address}))))
}

async fn list_apps(State(h): State<Handle>, Query(p): Params) -> Response {
    let filter = AppFilter {
        cmd: param(&p, "cmd").map(str::to_string),
        id: param(&p, "id").map(str::to_string),
        label: param(&p, "label").map(str::to_string),
    };
    respond(h.call(Call::ListApps(filter, embed(&p))).await)
}

async fn create_app(State(h): State<Handle>, body: Bytes) -> Response {
    match parse_app(&body) {
        Ok(app) => respond(h.call(Call::CreateApp(Box::new(app))).await),
        Err(e) => e.into_response(),
    }
}

/// What a path under `/v2/apps/` names.
#[derive(Debug, PartialEq)]
enum AppPath {
    App(PathId),
    Restart(PathId),
    Tasks(PathId, Option<String>),
    Versions(PathId, Option<String>),
}

fn app_id(segments: &[&str]) -> Result<PathId, ApiError> {
    let raw = segments.join("/");
    PathId::parse(&raw)
        .map_err(|e| ApiError::not_found(format!("App '/{raw}' does not exist ({e})")))
}

/// Splits `rest` (after `/v2/apps/`) into the app id and what follows it.
fn app_path_of(rest: &str) -> Result<AppPath, ApiError> {
    let s: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let n = s.len();
    if n >= 2 && s[n - 1] == "restart" {
        return Ok(AppPath::Restart(app_id(&s[..n - 1])?));
    }
    for word in ["tasks", "versions"] {
        let (at, arg) = if n >= 2 && s[n - 1] == word {
            (n - 1, None)
        } else if n >= 3 && s[n - 2] == word {
            (n - 2, Some(s[n - 1].to_string()))
        } else {
            continue;
        };
        let id = app_id(&s[..at])?;
        return Ok(if word == "tasks" {
            AppPath::Tasks(id, arg)
        } else {
            AppPath::Versions(id, arg)
        });
    }
    Ok(AppPath::App(app_id(&s)?))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body).map_err(ApiError::invalid_json)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid(vec![super::error::Violation::new(
            "/",
            "expected a JSON object",
        )])),
    }
}

async fn app_path(
    State(h): State<Handle>,
    method: Method,
    Path(rest): Path<String>,
    Query(p): Params,
    body: Bytes,
) -> Response {
    let result = async {
        let path = app_path_of(&rest)?;
        let force = flag(&p, "force", false);
        let call = match (method.clone(), path) {
            (Method::GET, AppPath::App(id)) => Call::GetApp(id),
            (Method::PUT | Method::PATCH, AppPath::App(id)) => Call::UpdateApp {
                id,
                fields: object(&body)?,
                force,
            },
            (Method::DELETE, AppPath::App(id)) => Call::DeleteApp { id, force },
            (Method::POST, AppPath::Restart(id)) => Call::RestartApp { id, force },
            (Method::GET, AppPath::Tasks(id, None)) => Call::Tasks {
                app: Some(id),
                states: Vec::new(),
            },
            (Method::DELETE, AppPath::Tasks(id, task)) => Call::KillTasks(KillTasks {
                app: Some(id),
                single: task.is_some(),
                ids: task.map(|t| vec![t]),
                host: param(&p, "host").map(str::to_string),
                scale: flag(&p, "scale", false),
                wipe: flag(&p, "wipe", false),
            }),
            (Method::GET, AppPath::Versions(id, None)) => Call::Versions(id),
            (Method::GET, AppPath::Versions(id, Some(v))) => {
                let v = Timestamp::parse(&v).map_err(|_| {
                    ApiError::not_found(format!("App '{id}' does not exist in version {v}"))
                })?;
                Call::Version(id, v)
            }
            (m, _) => {
                return Err(ApiError::new(
                    405,
                    format!("{m} is not allowed on /v2/apps/{rest}"),
                ))
            }
        };
        h.call(call).await
    }
    .await;
    respond(result)
}

async fn tasks(State(h): State<Handle>, Query(p): Params) -> Response {
    let states = values(&p, "status").map(str::to_string).collect();
    respond(h.call(Call::Tasks { app: None, states }).await)
}

async fn delete_tasks(State(h): State<Handle>, Query(p): Params, body: Bytes) -> Response {
    let result = async {
        let fields = object(&body)?;
        let ids: Vec<String> = match fields.get("ids") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid(vec![super::error::Violation::new(
                        "/ids",
                        "expected strings",
                    )])
                })?,
            _ => {
                return Err(ApiError::invalid(vec![super::error::Violation::new(
                    "/ids",
                    "expected an array of task ids",
                )]))
            }
        };
        h.call(Call::KillTasks(KillTasks {
            ids: Some(ids),
            scale: flag(&p, "scale", false),
            wipe: flag(&p, "wipe", false),
            ..KillTasks::default()
        }))
        .await
    }
    .await;
    respond(result)
}

async fn deployments(State(h): State<Handle>) -> Response {
    respond(h.call(Call::Deployments).await)
}

async fn cancel_deployment(
    State(h): State<Handle>,
    Path(id): Path<String>,
    Query(p): Params,
) -> Response {
    respond(
        h.call(Call::CancelDeployment {
            id: DeploymentId(id),
            force: flag(&p, "force", false),
        })
        .await,
    )
}

async fn queue(State(h): State<Handle>) -> Response {
    respond(h.call(Call::Queue).await)
}

async fn reset_delay(State(h): State<Handle>, Path(rest): Path<String>) -> Response {
    let result = async {
        let Some(id) = rest.trim_end_matches('/').strip_suffix("/delay") else {
            return Err(ApiError::not_found(format!(
                "URI not found: /v2/queue/{rest}"
            )));
        };
        let id = PathId::parse(id).map_err(|e| {
            ApiError::not_found(format!("Application /{id} not found in tasks queue. ({e})"))
        })?;
        h.call(Call::ResetDelay(id)).await
    }
    .await;
    respond(result)
}

/// `GET /v2/events`: Server-Sent Events, `event_stream_attached` first, then every event
/// (of the `event_type`s asked for, if any).
async fn events(State(h): State<Handle>, Query(p): Params) -> Response {
    let wanted: Vec<String> = values(&p, "event_type").map(str::to_string).collect();
    if let Some(bad) = wanted.iter().find(|w| !KINDS.contains(&w.as_str())) {
        tracing::debug!(event_type = %bad, "an event type this scheduler never sends");
    }
    let rx = h.subscribe();
    let attached = super::events::Event::new(
        "event_stream_attached",
        Timestamp::now(),
        json!({"remoteAddress": ""}),
    );
    let first = wanted.is_empty() || wanted.iter().any(|w| w == "event_stream_attached");
    let head = futures::stream::iter(
        first.then(|| Ok::<_, Infallible>(Bytes::from(attached.sse_frame()))),
    );
    let rest = futures::stream::unfold((rx, wanted), |(mut rx, wanted)| async move {
        loop {
            match tokio::time::timeout(SSE_KEEPALIVE, rx.recv()).await {
                Err(_) => return Some((Ok(Bytes::from_static(b"\n")), (rx, wanted))),
                Ok(Ok(e)) => {
                    if wanted.is_empty() || wanted.iter().any(|w| w == e.kind) {
                        return Some((Ok(Bytes::from(e.sse_frame())), (rx, wanted)));
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    tracing::warn!(missed = n, "an event stream reader fell behind");
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
            }
        }
    });
    use futures::StreamExt;
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(head.chain(rest)),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
