//! Mesos's scheduler API, `POST /api/v1/scheduler`, on every master.
//!
//! SUBSCRIBE answers `200` with a chunked RecordIO stream of events (SUBSCRIBED, then a
//! HEARTBEAT at once and after every burst of events, then what the engine sends) and a
//! `Mesos-Stream-Id` header; every other call names that stream id and is answered `202` once
//! the engine took it. Each call is checked here with Mesos's field names, converted to the
//! request the gRPC edge takes and handed to the same [`SchedulerService`], so decisions are
//! the gRPC API's. Connections are kept between calls (pymesos sends each call on the one it
//! kept); error answers close theirs.
//!
//! Mesos reports a call's semantic failures as events, not as the call's answer: an ACCEPT on
//! offers that are gone answers `202` and its tasks come back TASK_DROPPED (TASK_LOST for a
//! framework that is not partition-aware); a task Drover cannot run comes back TASK_ERROR; a
//! KILL of a task the master does not know comes back as a reconciliation answer (TASK_UNKNOWN
//! or TASK_LOST). These master-made updates have no uuid and are not acknowledged, as Mesos's;
//! the edge sends them on a small queue of its own per stream, merged into the stream, so they
//! never take the room the engine counts on. That queue, by stream id, is the only state the
//! edge keeps, gone when the stream ends.
//!
//! A master that does not lead answers every call `307` with `Location:
//! //leader:port/api/v1/scheduler`, before reading the body; with no leader, or a leader that
//! cannot answer yet, `503` with `Retry-After`, after a second's pause for SUBSCRIBE (pymesos
//! subscribes again at once on a 503, with no backoff).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use drover_mesos::v1 as mesos;
use drover_mesos::v1::scheduler::call::Type as CallType;
use drover_proto::v1;
use drover_proto::v1::scheduler_server::Scheduler as _;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tonic::{Code, Request, Status};

use super::convert::{self, lenient_seconds, Refused, StreamContext};
use super::{close_unless_ok, ContentType, HttpError, MesosState};
use crate::api::scheduler::SchedulerService;
use crate::leader::convert as grpc;
use crate::leader::engine::EVENT_QUEUE;
use crate::registry::cluster::{MAX_OFFERS_PER_ACCEPT, MAX_TASKS_PER_ACCEPT};

pub use drover_mesos::STREAM_ID_HEADER;
/// How long a SUBSCRIBE waits before it is answered 503.
const UNAVAILABLE_PAUSE: Duration = Duration::from_secs(1);
/// How long a SUBSCRIBE waits for its SUBSCRIBED event once the engine accepted it.
const SUBSCRIBED_WAIT: Duration = Duration::from_secs(5);
/// Master-made updates queued per stream by the edge; beyond, they are dropped (a framework
/// learns a task's state by reconciling, as with Mesos's best-effort master updates).
pub const EDGE_QUEUE: usize = 1024;
/// Mesos's default refuse filter, seconds.
const DEFAULT_REFUSE_SECONDS: f64 = 5.0;
const PATH: &str = drover_mesos::SCHEDULER_PATH;

/// The Mesos scheduler API's state: the service calls go to, and the edge's queue of each
/// live stream by stream id.
#[derive(Clone)]
pub struct SchedulerApi {
    service: Arc<SchedulerService>,
    streams: Arc<Mutex<HashMap<String, LiveStream>>>,
}

#[derive(Clone)]
struct LiveStream {
    framework_id: String,
    edge: mpsc::Sender<v1::Event>,
}

impl SchedulerApi {
    pub fn new(service: Arc<SchedulerService>) -> Self {
        Self {
            service,
            streams: Arc::default(),
        }
    }
}

/// Removes a stream from the live ones when its response body is dropped.
struct Registered {
    streams: Arc<Mutex<HashMap<String, LiveStream>>>,
    stream_id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.stream_id);
    }
}

/// Why a call was not answered 202.
enum CallError {
    /// Refused by this edge: 400 naming the field.
    Refused(Refused),
    /// Refused by the gRPC edge or the engine.
    Status(Box<Status>),
    Http(HttpError),
}

impl From<Refused> for CallError {
    fn from(r: Refused) -> Self {
        CallError::Refused(r)
    }
}

impl From<Status> for CallError {
    fn from(s: Status) -> Self {
        CallError::Status(Box::new(s))
    }
}

fn refused(field: impl Into<String>, reason: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        reason: reason.into(),
    }
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Refused> {
    if value.is_empty() {
        Err(refused(field, "Expecting it to be present"))
    } else {
        Ok(value)
    }
}

fn member<'a, T>(m: &'a Option<T>, name: &str) -> Result<&'a T, Refused> {
    m.as_ref()
        .ok_or_else(|| refused(name, format!("Expecting '{name}' to be present")))
}

fn refuse_seconds(field: &str, f: &Option<mesos::Filters>) -> Option<f64> {
    f.as_ref()
        .and_then(|f| f.refuse_seconds)
        .map(|s| lenient_seconds(field, s, DEFAULT_REFUSE_SECONDS))
}

/// The answer for a status the service gave.
fn status_response(s: &MesosState, st: &Status, framework_id: Option<&str>) -> Response {
    use drover_proto::metadata::{LEADER_ADDR, STALE_CALLER, STALE_CALLER_NOT_SUBSCRIBED};
    let meta = |k: &str| st.metadata().get(k).and_then(|v| v.to_str().ok());
    match st.code() {
        Code::Unavailable => match meta(LEADER_ADDR) {
            Some(addr) => super::redirect_to(addr, PATH),
            None => super::unavailable(st.message()),
        },
        Code::FailedPrecondition => match meta(STALE_CALLER) {
            Some(STALE_CALLER_NOT_SUBSCRIBED) => {
                let known = framework_id.is_some_and(|f| s.framework(f).is_some());
                if known {
                    error(
                        StatusCode::FORBIDDEN,
                        format!("Framework is not subscribed: {}", st.message()),
                    )
                } else {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("{}: {}", drover_mesos::FRAMEWORK_NOT_FOUND, st.message()),
                    )
                }
            }
            Some(_) => error(
                StatusCode::BAD_REQUEST,
                format!("{}: {}", drover_mesos::STREAM_ID_MISMATCH, st.message()),
            ),
            None => error(StatusCode::BAD_REQUEST, st.message()),
        },
        Code::InvalidArgument | Code::OutOfRange | Code::NotFound => {
            error(StatusCode::BAD_REQUEST, st.message())
        }
        Code::ResourceExhausted => error(StatusCode::TOO_MANY_REQUESTS, st.message()),
        Code::DeadlineExceeded => error(StatusCode::GATEWAY_TIMEOUT, st.message()),
        Code::PermissionDenied => error(StatusCode::FORBIDDEN, st.message()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, st.message()),
    }
}

/// An error answer: plain text, as Mesos's.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    HttpError::new(code, message).into_response()
}

fn refused_response(r: &Refused) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("Failed to validate scheduler::Call: {r}"),
    )
}

/// `POST /api/v1/scheduler`.
pub async fn handle(
    State(s): State<MesosState>,
    who: Option<axum::Extension<drover_tls::Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = s.not_leading(PATH) {
        let subscribing = super::body_media(&headers)
            .and_then(|c| Ok(c.decode::<mesos::scheduler::Call>(&body)?))
            .is_ok_and(|c| c.r#type == Some(CallType::Subscribe as i32));
        if subscribing && r.status() == StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(UNAVAILABLE_PAUSE).await;
        }
        return close_unless_ok(r);
    }
    let call: mesos::scheduler::Call =
        match super::body_media(&headers).and_then(|c| Ok(c.decode(&body)?)) {
            Ok(c) => c,
            Err(e) => return close_unless_ok(e.into_response()),
        };
    if call.r#type == Some(CallType::Subscribe as i32) {
        return subscribe_call(&s, &headers, who.as_ref().map(|w| &w.0), call).await;
    }
    close_unless_ok(call_answer(&s, &headers, who.map(|w| w.0), call).await)
}

async fn call_answer(
    s: &MesosState,
    headers: &HeaderMap,
    who: Option<drover_tls::Identity>,
    call: mesos::scheduler::Call,
) -> Response {
    let framework_id = match call.framework_id.as_ref() {
        Some(f) => f.value.clone(),
        None => {
            return refused_response(&refused(
                "framework_id",
                "Expecting 'framework_id' to be present",
            ))
        }
    };
    if let Err(st) = grpc::framework_id("framework_id", &framework_id) {
        return status_response(s, &st, None);
    }
    let Some(stream_id) = headers
        .get(STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
        );
    };
    let caller = v1::Caller {
        framework_id: framework_id.clone(),
        stream_id,
    };
    match dispatch(s, caller, who, call).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(CallError::Refused(r)) => refused_response(&r),
        Err(CallError::Status(st)) => status_response(s, &st, Some(&framework_id)),
        Err(CallError::Http(e)) => e.into_response(),
    }
}

async fn dispatch(
    s: &MesosState,
    caller: v1::Caller,
    who: Option<drover_tls::Identity>,
    call: mesos::scheduler::Call,
) -> Result<(), CallError> {
    let svc = &s.scheduler.service;
    let kind = call
        .r#type
        .and_then(|t| CallType::try_from(t).ok())
        .unwrap_or(CallType::Unknown);
    match kind {
        CallType::Accept => accept(s, caller, who, member(&call.accept, "accept")?).await,
        CallType::Decline => {
            let d = member(&call.decline, "decline")?;
            if d.offer_ids.is_empty() {
                return Ok(());
            }
            let offer_ids: Vec<String> = d.offer_ids.iter().map(|o| o.value.clone()).collect();
            grpc::offer_ids("decline.offer_ids", &offer_ids)?;
            let r = svc
                .decline(Request::new(v1::DeclineRequest {
                    caller: Some(caller),
                    offer_ids,
                    refuse_seconds: refuse_seconds("decline.filters.refuse_seconds", &d.filters),
                }))
                .await;
            // Mesos ignores offers that are no longer outstanding.
            ignore_stale(r.map(drop))
        }
        CallType::Revive => Ok(svc
            .revive(Request::new(v1::ReviveRequest {
                caller: Some(caller),
            }))
            .await
            .map(drop)?),
        CallType::Suppress => Ok(svc
            .suppress(Request::new(v1::SuppressRequest {
                caller: Some(caller),
            }))
            .await
            .map(drop)?),
        CallType::Kill => kill(s, caller, member(&call.kill, "kill")?).await,
        CallType::Acknowledge => {
            acknowledge(svc, caller, member(&call.acknowledge, "acknowledge")?).await
        }
        CallType::Reconcile => {
            let r = member(&call.reconcile, "reconcile")?;
            let mut tasks = Vec::with_capacity(r.tasks.len());
            for (i, t) in r.tasks.iter().enumerate() {
                let field = format!("reconcile.tasks[{i}].task_id.value");
                tasks.push(v1::ReconcileTask {
                    task_id: required(&field, &t.task_id.value)?.to_string(),
                    agent_id: t
                        .agent_id
                        .as_ref()
                        .map(|a| a.value.clone())
                        .unwrap_or_default(),
                });
            }
            Ok(svc
                .reconcile(Request::new(v1::ReconcileRequest {
                    caller: Some(caller),
                    task_ids: vec![],
                    tasks,
                }))
                .await
                .map(drop)?)
        }
        CallType::Teardown => Ok(svc
            .teardown(Request::new(v1::TeardownRequest {
                caller: Some(caller),
            }))
            .await
            .map(drop)?),
        // Both address a custom executor and are best effort, as in Mesos: taken (202) and
        // dropped when the agent or the executor is not there.
        CallType::Message => {
            let m = member(&call.message, "message")?;
            Ok(svc
                .message(Request::new(v1::MessageRequest {
                    caller: Some(caller),
                    agent_id: required("message.agent_id.value", &m.agent_id.value)?.to_string(),
                    executor_id: required("message.executor_id.value", &m.executor_id.value)?
                        .to_string(),
                    data: m.data.clone(),
                }))
                .await
                .map(drop)?)
        }
        CallType::Shutdown => {
            let m = member(&call.shutdown, "shutdown")?;
            Ok(svc
                .shutdown_executor(Request::new(v1::ShutdownExecutorRequest {
                    caller: Some(caller),
                    agent_id: required("shutdown.agent_id.value", &m.agent_id.value)?.to_string(),
                    executor_id: required("shutdown.executor_id.value", &m.executor_id.value)?
                        .to_string(),
                }))
                .await
                .map(drop)?)
        }
        // The default Mesos allocator ignores REQUEST, and Drover makes no inverse offers.
        CallType::Request | CallType::AcceptInverseOffers | CallType::DeclineInverseOffers => {
            Ok(())
        }
        CallType::AcknowledgeOperationStatus
        | CallType::ReconcileOperations
        | CallType::UpdateFramework
        | CallType::Unknown => Err(CallError::Http(HttpError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{} is not supported by Drover", kind.as_str_name()),
        ))),
        CallType::Subscribe => Err(CallError::Http(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SUBSCRIBE reached the calls' dispatch",
        ))),
    }
}

/// A refusal of a call on something no longer there (an offer, a task) is no error to a Mesos
/// framework: the call is answered 202.
fn ignore_stale(r: Result<(), Status>) -> Result<(), CallError> {
    match r {
        Err(s)
            if matches!(s.code(), Code::FailedPrecondition | Code::NotFound)
                && s.metadata()
                    .get(drover_proto::metadata::STALE_CALLER)
                    .is_none() =>
        {
            tracing::debug!(error = %s.message(), "refused call answered 202, as Mesos does");
            Ok(())
        }
        other => other.map_err(CallError::from),
    }
}

/// A master-made update of a task, sent by the edge.
fn edge_update(task_id: &str, state: v1::TaskState, reason: &str, message: &str) -> v1::Event {
    update_event(v1::TaskStatus {
        task_id: task_id.to_string(),
        state: state as i32,
        source: v1::StatusSource::SourceMaster as i32,
        reason: reason.to_string(),
        message: message.to_string(),
        timestamp_ms: crate::clock::unix_ms(),
        ..Default::default()
    })
}

fn update_event(status: v1::TaskStatus) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::Update(v1::Update {
            status: Some(status),
        })),
    }
}

/// Puts `events` on the edge queue of the stream `caller` names, if it is that framework's,
/// as far as the queue has room.
fn tell(s: &MesosState, caller: &v1::Caller, events: Vec<v1::Event>) {
    let live = s
        .scheduler
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&caller.stream_id)
        .cloned();
    let Some(live) = live.filter(|l| l.framework_id == caller.framework_id) else {
        return;
    };
    for e in events {
        if live.edge.try_send(e).is_err() {
            tracing::warn!(framework = %live.framework_id, "edge queue full; a master-made update was dropped");
            return;
        }
    }
}

fn partition_aware(s: &MesosState, framework_id: &str) -> bool {
    s.framework(framework_id).is_some_and(|f| f.partition_aware)
}

/// An ACCEPT's LAUNCH operations: the tasks Drover runs, and those it refuses (id, why).
pub type Launch = (Vec<v1::TaskInfo>, Vec<(String, String)>);

pub fn launch_of(a: &mesos::scheduler::call::Accept) -> Result<Launch, Refused> {
    use mesos::offer::operation::Type as Op;
    let (mut launch, mut invalid) = (Vec::new(), Vec::new());
    for (i, op) in a.operations.iter().enumerate() {
        let field = format!("accept.operations[{i}]");
        match op.r#type.and_then(|t| Op::try_from(t).ok()) {
            Some(Op::Launch) => {
                let l = member(&op.launch, &format!("{field}.launch"))?;
                for (j, t) in l.task_infos.iter().enumerate() {
                    let at = format!("{field}.launch.task_infos[{j}]");
                    let id = required(&format!("{at}.task_id.value"), &t.task_id.value)?;
                    required(&format!("{at}.name"), &t.name)?;
                    let checked = convert::task_info(&at, t).and_then(|info| {
                        grpc::task_from_proto(j, &info)
                            .map(|_| info)
                            .map_err(|s| refused(at.clone(), s.message()))
                    });
                    match checked {
                        Ok(info) => launch.push(info),
                        Err(e) => invalid.push((id.to_string(), e.to_string())),
                    }
                }
            }
            Some(Op::LaunchGroup) => {
                let g = member(&op.launch_group, &format!("{field}.launch_group"))?;
                let at = format!("{field}.launch_group");
                let tasks = &g.task_group.tasks;
                if tasks.is_empty() {
                    return Err(refused(format!("{at}.task_group.tasks"), "empty"));
                }
                let mut ids = Vec::with_capacity(tasks.len());
                for (j, t) in tasks.iter().enumerate() {
                    let tf = format!("{at}.task_group.tasks[{j}]");
                    ids.push(required(&format!("{tf}.task_id.value"), &t.task_id.value)?);
                    required(&format!("{tf}.name"), &t.name)?;
                }
                match launch_group(&at, &g.executor, tasks) {
                    Ok(infos) => launch.extend(infos),
                    // A group launches whole or not at all: every task of a bad one is
                    // TASK_ERROR.
                    Err(e) => invalid.extend(ids.iter().map(|id| (id.to_string(), e.to_string()))),
                }
            }
            Some(other) => {
                return Err(refused(
                    format!("{field}.type"),
                    format!(
                        "{} is not supported: Drover has no reservations or volumes",
                        other.as_str_name()
                    ),
                ))
            }
            None => return Err(refused(format!("{field}.type"), "missing or unknown")),
        }
    }
    if launch.len() + invalid.len() > MAX_TASKS_PER_ACCEPT {
        return Err(refused(
            "accept.operations",
            format!("at most {MAX_TASKS_PER_ACCEPT} tasks per ACCEPT"),
        ));
    }
    Ok((launch, invalid))
}

/// A LAUNCH_GROUP's tasks, each run by the group's executor and in one task group (named
/// after its first task, whose id no other task of the framework has), checked as a whole.
fn launch_group(
    at: &str,
    executor: &mesos::ExecutorInfo,
    tasks: &[mesos::TaskInfo],
) -> Result<Vec<v1::TaskInfo>, Refused> {
    if executor.r#type.is_none() {
        return Err(refused(
            format!("{at}.executor.type"),
            "must be set (CUSTOM)",
        ));
    }
    let Some(group) = tasks.first().map(|t| t.task_id.value.clone()) else {
        return Err(refused(format!("{at}.task_group.tasks"), "empty"));
    };
    let mut infos = Vec::with_capacity(tasks.len());
    for (j, t) in tasks.iter().enumerate() {
        let tf = format!("{at}.task_group.tasks[{j}]");
        if t.executor.as_ref().is_some_and(|e| e != executor) {
            return Err(refused(
                format!("{tf}.executor"),
                "differs from the group's executor",
            ));
        }
        let with_executor = mesos::TaskInfo {
            executor: Some(executor.clone()),
            ..t.clone()
        };
        let info = convert::task_info(&tf, &with_executor).map(|info| v1::TaskInfo {
            task_group: group.clone(),
            ..info
        })?;
        grpc::task_from_proto(j, &info).map_err(|s| refused(tf.clone(), s.message()))?;
        infos.push(info);
    }
    Ok(infos)
}

async fn accept(
    s: &MesosState,
    caller: v1::Caller,
    who: Option<drover_tls::Identity>,
    a: &mesos::scheduler::call::Accept,
) -> Result<(), CallError> {
    let offer_ids: Vec<String> = a.offer_ids.iter().map(|o| o.value.clone()).collect();
    if offer_ids.is_empty() || offer_ids.len() > MAX_OFFERS_PER_ACCEPT {
        return Err(refused(
            "accept.offer_ids",
            format!("between 1 and {MAX_OFFERS_PER_ACCEPT} offers"),
        )
        .into());
    }
    for (i, o) in offer_ids.iter().enumerate() {
        grpc::offer_id(&format!("accept.offer_ids[{i}].value"), o)?;
    }
    let (launch, invalid) = launch_of(a)?;
    let refuse = refuse_seconds("accept.filters.refuse_seconds", &a.filters);
    let svc = &s.scheduler.service;
    let result = if launch.is_empty() {
        // Nothing to launch: the offers are declined, as Mesos does with an empty ACCEPT.
        svc.decline(Request::new(v1::DeclineRequest {
            caller: Some(caller.clone()),
            offer_ids,
            refuse_seconds: refuse,
        }))
        .await
        .map(drop)
    } else {
        // As the caller: the gRPC edge's ACL check sees who it is.
        let mut request = Request::new(v1::AcceptRequest {
            caller: Some(caller.clone()),
            offer_ids,
            launch: launch.clone(),
            refuse_seconds: refuse,
        });
        if let Some(who) = who {
            request.extensions_mut().insert(who);
        }
        svc.accept(request).await.map(drop)
    };
    let mut told: Vec<v1::Event> = invalid
        .iter()
        .map(|(id, why)| edge_update(id, v1::TaskState::TaskError, convert::TASK_INVALID, why))
        .collect();
    let outcome = accept_outcome(s, &caller, &launch, result, &mut told);
    if outcome.is_ok() {
        tell(s, &caller, told);
    }
    outcome
}

/// What an ACCEPT's refusal means to a Mesos framework: updates of its tasks, or an answer.
fn accept_outcome(
    s: &MesosState,
    caller: &v1::Caller,
    launch: &[v1::TaskInfo],
    result: Result<(), Status>,
    told: &mut Vec<v1::Event>,
) -> Result<(), CallError> {
    let stale = |st: &Status| {
        st.metadata()
            .get(drover_proto::metadata::STALE_CALLER)
            .is_some()
    };
    match result {
        Ok(()) => Ok(()),
        Err(st) if stale(&st) => Err(st.into()),
        Err(st) if launch.is_empty() => ignore_stale(Err(st)),
        // The offers are gone (rescinded, expired, used) or another framework's: the tasks
        // are dropped.
        Err(st) if matches!(st.code(), Code::FailedPrecondition | Code::NotFound) => {
            let state = if partition_aware(s, &caller.framework_id) {
                v1::TaskState::TaskDropped
            } else {
                v1::TaskState::TaskLost
            };
            told.extend(
                launch
                    .iter()
                    .map(|t| edge_update(&t.task_id, state, convert::INVALID_OFFERS, st.message())),
            );
            Ok(())
        }
        // A task the ACLs do not let the caller run: every task of the ACCEPT is refused,
        // as Mesos refuses an unauthorized task (REASON_TASK_UNAUTHORIZED).
        Err(st) if st.code() == Code::PermissionDenied => {
            told.extend(launch.iter().map(|t| {
                edge_update(
                    &t.task_id,
                    v1::TaskState::TaskError,
                    convert::TASK_UNAUTHORIZED,
                    st.message(),
                )
            }));
            Ok(())
        }
        // The tasks do not fit the offers, or repeat a live task's id.
        Err(st) if st.code() == Code::InvalidArgument => {
            told.extend(launch.iter().map(|t| {
                edge_update(
                    &t.task_id,
                    v1::TaskState::TaskError,
                    convert::TASK_INVALID,
                    st.message(),
                )
            }));
            Ok(())
        }
        Err(st) => Err(st.into()),
    }
}

async fn kill(
    s: &MesosState,
    caller: v1::Caller,
    k: &mesos::scheduler::call::Kill,
) -> Result<(), CallError> {
    let task_id = required("kill.task_id.value", &k.task_id.value)?.to_string();
    let grace_seconds = k
        .kill_policy
        .as_ref()
        .and_then(|p| p.grace_period.as_ref())
        .map(|d| {
            lenient_seconds(
                "kill.kill_policy.grace_period",
                d.nanoseconds as f64 / 1e9,
                0.0,
            )
        });
    let r = s
        .scheduler
        .service
        .kill(Request::new(v1::KillRequest {
            caller: Some(caller.clone()),
            task_id: task_id.clone(),
            grace_seconds,
        }))
        .await;
    match r {
        Err(st) if st.code() == Code::NotFound => {
            // As Mesos: the framework learns the master does not know the task.
            let agent = k.agent_id.as_ref().map(|a| (a.value.as_str(), None));
            let status = grpc::unknown_task_status(
                &task_id,
                agent,
                partition_aware(s, &caller.framework_id),
                crate::clock::unix_ms(),
            );
            tell(s, &caller, vec![update_event(status)]);
            Ok(())
        }
        other => ignore_stale(other.map(drop)),
    }
}

async fn acknowledge(
    svc: &SchedulerService,
    caller: v1::Caller,
    a: &mesos::scheduler::call::Acknowledge,
) -> Result<(), CallError> {
    let task_id = required("acknowledge.task_id.value", &a.task_id.value)?.to_string();
    required("acknowledge.agent_id.value", &a.agent_id.value)?;
    let uuid = uuid::Uuid::from_slice(&a.uuid).map_err(|_| {
        refused(
            "acknowledge.uuid",
            format!("not a 16-byte UUID ({} bytes)", a.uuid.len()),
        )
    })?;
    grpc::task_id("acknowledge.task_id.value", &task_id)?;
    let r = svc
        .acknowledge(Request::new(v1::AcknowledgeRequest {
            caller: Some(caller),
            acks: vec![v1::Acknowledgement {
                task_id,
                uuid: uuid.to_string(),
            }],
        }))
        .await;
    // An acknowledgement of an update already acknowledged, or of a task already gone, is
    // answered 202 as Mesos does (pymesos stops on any other answer).
    ignore_stale(r.map(drop))
}

/// A SUBSCRIBE answered with one ERROR event, as Mesos answers a framework it refuses (one torn
/// down, say): the client's error callback hears why.
fn error_stream(accept: ContentType, message: &str) -> Response {
    let e = mesos::scheduler::Event {
        r#type: Some(mesos::scheduler::event::Type::Error as i32),
        error: Some(mesos::scheduler::event::Error {
            message: message.to_string(),
        }),
        ..Default::default()
    };
    let record = Bytes::from(drover_mesos::recordio::encode(&accept.encode(&e)));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, accept.media_type())
        .body(Body::from_stream(futures::stream::iter([Ok::<
            _,
            std::convert::Infallible,
        >(record)])))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn subscribe_call(
    s: &MesosState,
    headers: &HeaderMap,
    principal: Option<&drover_tls::Identity>,
    call: mesos::scheduler::Call,
) -> Response {
    if headers.contains_key(STREAM_ID_HEADER) {
        return error(
            StatusCode::BAD_REQUEST,
            "Subscribe calls should not include the 'Mesos-Stream-Id' header",
        );
    }
    let accept = match super::answer_media(headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(sub) = call.subscribe.as_ref() else {
        return refused_response(&refused("subscribe", "Expecting 'subscribe' to be present"));
    };
    let info = &sub.framework_info;
    if info.name.trim().is_empty() {
        return refused_response(&refused(
            "subscribe.framework_info.name",
            "Expecting it to be present",
        ));
    }
    let top = call.framework_id.as_ref().map(|f| f.value.as_str());
    let inner = info.id.as_ref().map(|f| f.value.as_str());
    if top != inner {
        return refused_response(&refused(
            "framework_id",
            "'framework_id' differs from 'subscribe.framework_info.id'",
        ));
    }
    let ours = match convert::framework_info(info) {
        Ok(f) => f,
        Err(e) => return refused_response(&e),
    };
    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let principal = principal.map(|who| who.name.as_str());
    if let Err(st) = s
        .scheduler
        .service
        .subscribe_events(&ours, tx, principal)
        .await
    {
        return match st.code() {
            // No leader that can answer yet (or the write timed out): pause, then 503.
            Code::Unavailable | Code::DeadlineExceeded
                if st
                    .metadata()
                    .get(drover_proto::metadata::LEADER_ADDR)
                    .is_none() =>
            {
                tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                super::unavailable(st.message())
            }
            Code::FailedPrecondition => error_stream(accept, st.message()),
            _ => status_response(s, &st, inner),
        };
    }
    // The engine sends SUBSCRIBED before it answers.
    let first = match tokio::time::timeout(SUBSCRIBED_WAIT, rx.recv()).await {
        Ok(Some(Ok(e))) => e,
        _ => return super::unavailable("the subscription ended before it began; subscribe again"),
    };
    let Some(v1::event::Event::Subscribed(subscribed)) = first.event.as_ref() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the first event was not SUBSCRIBED",
        );
    };
    let stream_id = subscribed.stream_id.clone();
    let Ok(stream_header) = HeaderValue::from_str(&stream_id) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stream id is not a header value",
        );
    };
    let (edge, edge_rx) = mpsc::channel(EDGE_QUEUE);
    s.scheduler
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            stream_id.clone(),
            LiveStream {
                framework_id: subscribed.framework_id.clone(),
                edge,
            },
        );
    let registered = Registered {
        streams: s.scheduler.streams.clone(),
        stream_id: stream_id.clone(),
    };
    let cx = StreamContext {
        role: ours.role.clone(),
        master_info: s.master_info(),
    };
    tracing::info!(framework = %subscribed.framework_id, stream = %stream_id, "Mesos HTTP framework subscribed");
    let body = event_stream(first, rx, edge_rx, cx, accept, registered);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, accept.media_type())
        .header("Mesos-Stream-Id", stream_header)
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// What the event stream is doing next.
struct Streaming {
    rx: mpsc::Receiver<Result<v1::Event, Status>>,
    edge: mpsc::Receiver<v1::Event>,
    cx: StreamContext,
    encoding: ContentType,
    /// Records to send before reading more events.
    queued: VecDeque<mesos::scheduler::Event>,
    /// Whether the last record sent was an event other than HEARTBEAT.
    burst: bool,
    done: bool,
    _registered: Registered,
}

/// What the engine's and the edge's queues hold for a stream.
enum Next {
    Event(Result<v1::Event, Status>),
    /// Nothing right now.
    Empty,
    /// The engine ended the stream.
    Ended,
}

impl Streaming {
    /// The next event from the engine or the edge, without waiting.
    fn ready(&mut self) -> Next {
        match self.rx.try_recv() {
            Ok(e) => Next::Event(e),
            Err(mpsc::error::TryRecvError::Disconnected) => Next::Ended,
            Err(mpsc::error::TryRecvError::Empty) => match self.edge.try_recv() {
                Ok(e) => Next::Event(Ok(e)),
                Err(_) => Next::Empty,
            },
        }
    }

    /// Waits for the next event from the engine or the edge.
    async fn wait(&mut self) -> Next {
        tokio::select! {
            e = self.rx.recv() => e.map_or(Next::Ended, Next::Event),
            Some(e) = self.edge.recv() => Next::Event(Ok(e)),
        }
    }
}

/// The RecordIO body: SUBSCRIBED and a HEARTBEAT, then every event; a HEARTBEAT after each
/// burst (clients that read records line by line, as mesoshttp, see a record only once the
/// next one begins); an ERROR and the end when the engine ends the stream with a status.
fn event_stream(
    first: v1::Event,
    rx: mpsc::Receiver<Result<v1::Event, Status>>,
    edge: mpsc::Receiver<v1::Event>,
    cx: StreamContext,
    encoding: ContentType,
    registered: Registered,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let mut queued = VecDeque::new();
    queued.extend(convert::event_to_mesos(&first, &cx));
    queued.push_back(convert::heartbeat());
    let state = Streaming {
        rx,
        edge,
        cx,
        encoding,
        queued,
        burst: false,
        done: false,
        _registered: registered,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.queued.pop_front() {
                st.burst = e.r#type != Some(mesos::scheduler::event::Type::Heartbeat as i32);
                let record = drover_mesos::recordio::encode(&st.encoding.encode(&e));
                return Some((Ok(Bytes::from(record)), st));
            }
            if st.done {
                return None;
            }
            let next = match st.ready() {
                Next::Empty if st.burst => {
                    st.queued.push_back(convert::heartbeat());
                    continue;
                }
                Next::Empty => st.wait().await,
                other => other,
            };
            match next {
                Next::Event(Ok(e)) => st.queued.extend(convert::event_to_mesos(&e, &st.cx)),
                Next::Event(Err(status)) => {
                    st.queued.push_back(mesos::scheduler::Event {
                        r#type: Some(mesos::scheduler::event::Type::Error as i32),
                        error: Some(mesos::scheduler::event::Error {
                            message: status.message().to_string(),
                        }),
                        ..Default::default()
                    });
                    st.done = true;
                }
                Next::Empty | Next::Ended => return None,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor() -> mesos::ExecutorInfo {
        serde_json::from_value(serde_json::json!({
            "executor_id": {"value": "e1"},
            "type": "CUSTOM",
            "command": {"value": "python3 executor.py"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}]
        }))
        .unwrap()
    }

    fn group(tasks: serde_json::Value) -> mesos::scheduler::call::Accept {
        let mut a: mesos::scheduler::call::Accept = serde_json::from_value(serde_json::json!({
            "offer_ids": [{"value": "o1"}],
            "operations": [{"type": "LAUNCH_GROUP", "launch_group": {
                "executor": {"executor_id": {"value": "e1"}},
                "task_group": {"tasks": tasks}
            }}]
        }))
        .unwrap();
        if let Some(g) = a.operations[0].launch_group.as_mut() {
            g.executor = executor();
        }
        a
    }

    fn task(id: &str, cpus: f64) -> serde_json::Value {
        serde_json::json!({
            "name": id, "task_id": {"value": id}, "agent_id": {"value": "a1"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}}]
        })
    }

    #[test]
    fn a_launch_group_runs_its_tasks_together_in_its_executor_or_refuses_them_all() {
        let (launch, invalid) = launch_of(&group(serde_json::json!([
            task("t1", 0.5),
            task("t2", 0.5)
        ])))
        .unwrap();
        assert!(invalid.is_empty(), "{invalid:?}");
        assert_eq!(launch.len(), 2);
        for t in &launch {
            assert_eq!(t.task_group, "t1", "named after its first task");
            assert_eq!(
                t.executor.as_ref().map(|e| e.executor_id.as_str()),
                Some("e1")
            );
        }
        // One bad task (no resources): none of the group launches, each is TASK_ERROR.
        let (launch, invalid) = launch_of(&group(serde_json::json!([
            task("t1", 0.5),
            task("t2", 0.0)
        ])))
        .unwrap();
        assert!(launch.is_empty(), "{launch:?}");
        let ids: Vec<&str> = invalid.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert!(invalid[0].1.contains("tasks[1]"), "{invalid:?}");
        // An empty group is a malformed call.
        let e = launch_of(&group(serde_json::json!([]))).unwrap_err();
        assert!(e.to_string().contains("task_group.tasks"), "{e}");
    }
}
