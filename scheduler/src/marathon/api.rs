//! `/v2` over HTTP (axum): so far `GET /ping`, `GET/POST /v2/apps` and `GET /v2/apps/{id}`,
//! on the app state in the framework store. Not served by any binary yet: changes that
//! deploy (update, scale, restart, delete), tasks, the queue, events and the rest of the
//! issue's routes come with the launch loop, and until then apps show no tasks and no
//! deployments.
//!
//! Owns the HTTP edge only: paths as Marathon clients send them (an app id put into the URL
//! as is: `/v2/apps//prod/web`), bodies bounded ([`MAX_BODY_BYTES`]), every error in
//! Marathon's JSON shape with `Content-Type: application/json` (clients read the body only
//! then).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::app::{parse_app, AppDefinition};
use super::error::ApiError;
use super::path::PathId;
use super::state::{Apps, KvStore};
use super::time::Timestamp;
use super::view::{AppView, TaskCounts, VersionInfo};

/// Largest request body accepted, bytes (an app definition is far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes, over apps kept in `apps`.
pub fn router<S: KvStore + Send + Sync + 'static>(apps: Apps<S>) -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/v2/apps", get(list::<S>).post(create::<S>))
        .route("/v2/apps/{*id}", get(show::<S>))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(apps))
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

/// A JSON answer.
fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError {
            status: 500,
            message: format!("cannot encode the answer: {e}"),
            details: Vec::new(),
        }
        .into_response(),
    }
}

/// An app as shown while no tasks are tracked yet: counts zero, no deployment.
fn view(app: AppDefinition) -> AppView {
    let version = app.version.unwrap_or(Timestamp(0));
    AppView {
        app,
        counts: TaskCounts::default(),
        deployments: Vec::new(),
        version_info: VersionInfo {
            last_scaling_at: version,
            last_config_change_at: version,
        },
        tasks: None,
        last_task_failure: None,
    }
}

/// The app id in a path, as clients put it there (leading and doubled slashes allowed).
fn app_id(raw: &str) -> Result<PathId, ApiError> {
    PathId::parse(raw)
        .map_err(|e| ApiError::not_found(format!("App '/{raw}' does not exist ({e})")))
}

async fn list<S: KvStore + Send + Sync>(State(apps): State<Arc<Apps<S>>>) -> Response {
    match apps.list().await {
        Ok(all) => {
            let views: Vec<AppView> = all.into_iter().map(view).collect();
            json(StatusCode::OK, &serde_json::json!({ "apps": views }))
        }
        Err(e) => e.into_response(),
    }
}

async fn create<S: KvStore + Send + Sync>(
    State(apps): State<Arc<Apps<S>>>,
    body: Bytes,
) -> Response {
    let app = match parse_app(&body) {
        Ok(app) => app,
        Err(e) => return e.into_response(),
    };
    match apps.create(app, Timestamp::now()).await {
        Ok(app) => {
            let location = format!("/v2/apps{}", app.id);
            let mut response = json(StatusCode::CREATED, &view(app));
            if let Ok(value) = location.parse() {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn show<S: KvStore + Send + Sync>(
    State(apps): State<Arc<Apps<S>>>,
    Path(raw): Path<String>,
) -> Response {
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match apps.get(&id).await {
        Ok(Some(stored)) => {
            let mut v = view(stored.app);
            v.tasks = Some(Vec::new());
            json(StatusCode::OK, &serde_json::json!({ "app": v }))
        }
        Ok(None) => ApiError::not_found(format!("App '{id}' does not exist")).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;
