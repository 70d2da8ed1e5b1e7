//! Mesos's scheduler API, `POST /api/v1/scheduler`, on every master.
//!
//! SUBSCRIBE answers `200` with a chunked RecordIO stream of events (SUBSCRIBED, then a
//! HEARTBEAT at once and after every burst of events, then what the engine sends) and a
//! `Mesos-Stream-Id` header; every other call names that stream id and is answered `202` once
//! the engine took it. Each call is converted to the request the gRPC edge takes and handed to
//! the same [`SchedulerService`], so validation and decisions are the gRPC API's.
//!
//! Mesos reports a call's semantic failures as events, not as the call's answer: an ACCEPT on
//! offers that are gone answers `202` and its tasks come back TASK_DROPPED (TASK_LOST for a
//! framework that is not partition-aware); a task Drover cannot run comes back TASK_ERROR; a
//! KILL of a task the master does not know comes back TASK_UNKNOWN (TASK_LOST). The edge puts
//! these updates on the framework's stream itself (they have no uuid and are not
//! acknowledged, as Mesos's master-made updates), so it keeps, per live stream, a weak handle
//! on the stream's queue: the only state it holds, gone when the stream ends.
//!
//! A master that does not lead answers every call `307` with `Location:
//! //leader:port/api/v1/scheduler`; with no leader (or a leader still rebuilding its offer
//! cycle) `503` with `Retry-After`, after a second's pause for SUBSCRIBE (pymesos subscribes
//! again at once on a 503, with no backoff).

use std::collections::HashMap;
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

use super::convert::{self, Refused, StreamContext};
use super::{ContentType, HttpError, MesosState};
use crate::api::scheduler::SchedulerService;
use crate::leader::engine::EVENT_QUEUE;

/// The header naming a framework's event stream.
pub const STREAM_ID_HEADER: &str = "mesos-stream-id";
/// How long a SUBSCRIBE waits before it is answered 503 (no leader).
const UNAVAILABLE_PAUSE: Duration = Duration::from_secs(1);
/// How long a SUBSCRIBE waits for its SUBSCRIBED event once the engine accepted it.
const SUBSCRIBED_WAIT: Duration = Duration::from_secs(5);

/// A live Mesos stream, as the calls that name its id find it.
#[derive(Clone)]
struct LiveStream {
    framework_id: String,
    partition_aware: bool,
    events: mpsc::WeakSender<Result<v1::Event, Status>>,
}

/// The Mesos scheduler API's state: the service calls go to, and the live streams by id.
#[derive(Clone)]
pub struct SchedulerApi {
    service: Arc<SchedulerService>,
    streams: Arc<Mutex<HashMap<String, LiveStream>>>,
}

impl SchedulerApi {
    pub fn new(service: Arc<SchedulerService>) -> Self {
        Self {
            service,
            streams: Arc::default(),
        }
    }

    fn live(&self, stream_id: &str) -> Option<LiveStream> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream_id)
            .cloned()
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

/// An error answer: plain text, as Mesos's.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn refused_response(r: &Refused) -> Response {
    bad_request(format!("Failed to validate scheduler::Call: {r}"))
}

/// The answer for a gRPC status the service gave.
fn status_response(s: &Status, path: &str) -> Response {
    use drover_proto::metadata::{
        LEADER_ADDR, NOT_LEADER, STALE_CALLER, STALE_CALLER_NOT_SUBSCRIBED,
    };
    let meta = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok());
    match s.code() {
        Code::Unavailable => {
            if let Some(addr) = meta(LEADER_ADDR) {
                return super::redirect_to(addr, path);
            }
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, s.message());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            if meta(NOT_LEADER).is_some() {
                r.headers_mut()
                    .insert("drover-not-leader", HeaderValue::from_static("1"));
            }
            r
        }
        Code::FailedPrecondition => match meta(STALE_CALLER) {
            Some(STALE_CALLER_NOT_SUBSCRIBED) => {
                error(StatusCode::FORBIDDEN, format!("Framework is not subscribed: {}", s.message()))
            }
            Some(_) => bad_request(format!(
                "The stream ID included in this request didn't match the stream ID currently associated with the framework: {}",
                s.message()
            )),
            None => error(StatusCode::CONFLICT, s.message()),
        },
        Code::InvalidArgument | Code::OutOfRange => bad_request(s.message()),
        Code::NotFound => bad_request(s.message()),
        Code::ResourceExhausted => error(StatusCode::TOO_MANY_REQUESTS, s.message()),
        Code::DeadlineExceeded => error(StatusCode::GATEWAY_TIMEOUT, s.message()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, s.message()),
    }
}

/// `POST /api/v1/scheduler`.
pub async fn handle(State(s): State<MesosState>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/api/v1/scheduler";
    let content_type = match ContentType::of_request(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let call: mesos::scheduler::Call = match content_type.decode(&body) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let subscribe = call.r#type == Some(CallType::Subscribe as i32);
    if let Some(r) = s.not_leading(PATH).await {
        if subscribe && r.status() == StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(UNAVAILABLE_PAUSE).await;
        }
        return r;
    }
    if subscribe {
        return subscribe_call(&s, &headers, call).await;
    }
    let Some(framework_id) = call.framework_id.as_ref().map(|f| f.value.clone()) else {
        return refused_response(&Refused {
            field: "framework_id".into(),
            reason: "Expecting 'framework_id' to be present".into(),
        });
    };
    let Some(stream_id) = headers
        .get(STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return bad_request("All non-subscribe calls should include the 'Mesos-Stream-Id' header");
    };
    let caller = v1::Caller {
        framework_id,
        stream_id,
    };
    match dispatch(&s.scheduler, caller, call).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(Answer::Refused(r)) => refused_response(&r),
        Err(Answer::Status(st)) => status_response(&st, PATH),
        Err(Answer::Http(e)) => e.into_response(),
    }
}

/// Why a call was not answered 202.
enum Answer {
    Refused(Refused),
    Status(Box<Status>),
    Http(HttpError),
}

impl From<Refused> for Answer {
    fn from(r: Refused) -> Self {
        Answer::Refused(r)
    }
}

impl From<Status> for Answer {
    fn from(s: Status) -> Self {
        Answer::Status(Box::new(s))
    }
}

fn member<'a, T>(m: &'a Option<T>, name: &str) -> Result<&'a T, Answer> {
    m.as_ref().ok_or_else(|| {
        Answer::Refused(Refused {
            field: name.into(),
            reason: format!("Expecting '{name}' to be present"),
        })
    })
}

fn refuse_seconds(f: &Option<mesos::Filters>) -> Option<f64> {
    f.as_ref().and_then(|f| f.refuse_seconds)
}

async fn dispatch(
    api: &SchedulerApi,
    caller: v1::Caller,
    call: mesos::scheduler::Call,
) -> Result<(), Answer> {
    let svc = &api.service;
    let kind = call
        .r#type
        .and_then(|t| CallType::try_from(t).ok())
        .unwrap_or(CallType::Unknown);
    match kind {
        CallType::Accept => accept(api, caller, member(&call.accept, "accept")?).await,
        CallType::Decline => {
            let d = member(&call.decline, "decline")?;
            let offer_ids = d.offer_ids.iter().map(|o| o.value.clone()).collect();
            let r = svc
                .decline(Request::new(v1::DeclineRequest {
                    caller: Some(caller),
                    offer_ids,
                    refuse_seconds: refuse_seconds(&d.filters),
                }))
                .await;
            // Mesos ignores offers that are no longer outstanding.
            ignore_stale(r.map(drop))
        }
        CallType::Revive => svc
            .revive(Request::new(v1::ReviveRequest {
                caller: Some(caller),
            }))
            .await
            .map(drop)
            .map_err(Answer::from),
        CallType::Suppress => svc
            .suppress(Request::new(v1::SuppressRequest {
                caller: Some(caller),
            }))
            .await
            .map(drop)
            .map_err(Answer::from),
        CallType::Kill => kill(api, caller, member(&call.kill, "kill")?).await,
        CallType::Acknowledge => {
            acknowledge(svc, caller, member(&call.acknowledge, "acknowledge")?).await
        }
        CallType::Reconcile => {
            let r = member(&call.reconcile, "reconcile")?;
            let tasks = r
                .tasks
                .iter()
                .map(|t| v1::ReconcileTask {
                    task_id: t.task_id.value.clone(),
                    agent_id: t
                        .agent_id
                        .as_ref()
                        .map(|i| i.value.clone())
                        .unwrap_or_default(),
                })
                .collect();
            svc.reconcile(Request::new(v1::ReconcileRequest {
                caller: Some(caller),
                task_ids: vec![],
                tasks,
            }))
            .await
            .map(drop)
            .map_err(Answer::from)
        }
        CallType::Teardown => svc
            .teardown(Request::new(v1::TeardownRequest {
                caller: Some(caller),
            }))
            .await
            .map(drop)
            .map_err(Answer::from),
        // Both address a custom executor; Drover runs none yet, so, as Mesos does for an
        // executor it does not know, the call is taken and dropped.
        CallType::Message => {
            member(&call.message, "message")?;
            tracing::debug!(framework = %caller.framework_id, "MESSAGE for no executor dropped");
            Ok(())
        }
        CallType::Shutdown => {
            member(&call.shutdown, "shutdown")?;
            tracing::debug!(framework = %caller.framework_id, "SHUTDOWN of no executor dropped");
            Ok(())
        }
        // The default Mesos allocator ignores REQUEST, and Drover makes no inverse offers.
        CallType::Request | CallType::AcceptInverseOffers | CallType::DeclineInverseOffers => {
            Ok(())
        }
        CallType::AcknowledgeOperationStatus
        | CallType::ReconcileOperations
        | CallType::UpdateFramework => Err(Answer::Http(HttpError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{} is not supported by Drover", kind.as_str_name()),
        ))),
        CallType::Subscribe => unreachable!("SUBSCRIBE is handled before dispatch"),
        CallType::Unknown => Err(Answer::Refused(Refused {
            field: "type".into(),
            reason: "Expecting 'type' to be present and known".into(),
        })),
    }
}

/// A refusal of a call on something no longer there (an offer, a task) is no error to a Mesos
/// framework: the call is answered 202.
fn ignore_stale(r: Result<(), Status>) -> Result<(), Answer> {
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
        other => other.map_err(Answer::from),
    }
}

/// A master-made update for a task, for the edge to put on the framework's stream.
fn edge_update(task_id: &str, state: v1::TaskState, reason: &str, message: &str) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::Update(v1::Update {
            status: Some(v1::TaskStatus {
                task_id: task_id.to_string(),
                state: state as i32,
                source: v1::StatusSource::SourceMaster as i32,
                reason: reason.to_string(),
                message: message.to_string(),
                timestamp_ms: crate::clock::unix_ms(),
                ..Default::default()
            }),
        })),
    }
}

/// Puts `events` on the stream `stream_id`, as far as it has room (these updates are best
/// effort, as Mesos's master-made ones: a framework reconciles to learn a task's state).
fn tell(api: &SchedulerApi, stream_id: &str, events: Vec<v1::Event>) {
    let Some(live) = api.live(stream_id) else {
        return;
    };
    let Some(tx) = live.events.upgrade() else {
        return;
    };
    for e in events {
        if tx.try_send(Ok(e)).is_err() {
            tracing::warn!(framework = %live.framework_id, "stream full; an edge update was dropped");
            return;
        }
    }
}

fn lost_state(
    api: &SchedulerApi,
    stream_id: &str,
    partition_aware: v1::TaskState,
) -> v1::TaskState {
    match api.live(stream_id) {
        Some(l) if l.partition_aware => partition_aware,
        _ => v1::TaskState::TaskLost,
    }
}

async fn accept(
    api: &SchedulerApi,
    caller: v1::Caller,
    a: &mesos::scheduler::call::Accept,
) -> Result<(), Answer> {
    use mesos::offer::operation::Type as Op;
    let offer_ids: Vec<String> = a.offer_ids.iter().map(|o| o.value.clone()).collect();
    let mut launch = Vec::new();
    let mut invalid = Vec::new();
    for (i, op) in a.operations.iter().enumerate() {
        let field = format!("accept.operations[{i}]");
        match op.r#type.and_then(|t| Op::try_from(t).ok()) {
            Some(Op::Launch) => {
                let l = op.launch.as_ref().ok_or_else(|| {
                    Answer::Refused(Refused {
                        field: format!("{field}.launch"),
                        reason: "Expecting 'launch' to be present".into(),
                    })
                })?;
                for (j, t) in l.task_infos.iter().enumerate() {
                    let at = format!("{field}.launch.task_infos[{j}]");
                    let id = t.task_id.value.clone();
                    match convert::task_info(&at, t).and_then(|info| {
                        crate::leader::convert::task_from_proto(j, &info)
                            .map(|_| info)
                            .map_err(|s| Refused {
                                field: at.clone(),
                                reason: s.message().to_string(),
                            })
                    }) {
                        Ok(info) => launch.push(info),
                        Err(e) => invalid.push((id, e.to_string())),
                    }
                }
            }
            Some(Op::LaunchGroup) => {
                return Err(Answer::Refused(Refused {
                    field: format!("{field}.type"),
                    reason: "LAUNCH_GROUP needs a custom executor, which Drover does not run yet"
                        .into(),
                }))
            }
            Some(other) => {
                return Err(Answer::Refused(Refused {
                    field: format!("{field}.type"),
                    reason: format!(
                        "{} is not supported: Drover has no reservations or volumes",
                        other.as_str_name()
                    ),
                }))
            }
            None => {
                return Err(Answer::Refused(Refused {
                    field: format!("{field}.type"),
                    reason: "missing or unknown".into(),
                }))
            }
        }
    }
    let stream_id = caller.stream_id.clone();
    let refuse_seconds = refuse_seconds(&a.filters);
    let svc = &api.service;
    let result = if launch.is_empty() {
        // Nothing to launch: the offers are declined, as Mesos does with an empty ACCEPT.
        svc.decline(Request::new(v1::DeclineRequest {
            caller: Some(caller),
            offer_ids,
            refuse_seconds,
        }))
        .await
        .map(drop)
    } else {
        svc.accept(Request::new(v1::AcceptRequest {
            caller: Some(caller),
            offer_ids,
            launch: launch.clone(),
            refuse_seconds,
        }))
        .await
        .map(drop)
    };
    let mut told: Vec<v1::Event> = invalid
        .iter()
        .map(|(id, why)| edge_update(id, v1::TaskState::TaskError, convert::TASK_INVALID, why))
        .collect();
    let outcome = match result {
        Ok(()) => Ok(()),
        Err(s)
            if s.metadata()
                .get(drover_proto::metadata::STALE_CALLER)
                .is_some() =>
        {
            Err(Answer::from(s))
        }
        Err(s) if launch.is_empty() => ignore_stale(Err(s)),
        // The offers are gone (rescinded, expired, used): the tasks are dropped.
        Err(s) if s.code() == Code::FailedPrecondition => {
            let state = lost_state(api, &stream_id, v1::TaskState::TaskDropped);
            told.extend(
                launch
                    .iter()
                    .map(|t| edge_update(&t.task_id, state, convert::INVALID_OFFERS, s.message())),
            );
            Ok(())
        }
        // The tasks do not fit the offers, or repeat a live task's id.
        Err(s) if s.code() == Code::InvalidArgument => {
            told.extend(launch.iter().map(|t| {
                edge_update(
                    &t.task_id,
                    v1::TaskState::TaskError,
                    convert::TASK_INVALID,
                    s.message(),
                )
            }));
            Ok(())
        }
        Err(s) => Err(Answer::from(s)),
    };
    if outcome.is_ok() {
        tell(api, &stream_id, told);
    }
    outcome
}

async fn kill(
    api: &SchedulerApi,
    caller: v1::Caller,
    k: &mesos::scheduler::call::Kill,
) -> Result<(), Answer> {
    let task_id = k.task_id.value.clone();
    let grace_seconds = k
        .kill_policy
        .as_ref()
        .and_then(|p| p.grace_period.as_ref())
        .map(|d| d.nanoseconds.max(0) as f64 / 1e9);
    let stream_id = caller.stream_id.clone();
    let r = api
        .service
        .kill(Request::new(v1::KillRequest {
            caller: Some(caller),
            task_id: task_id.clone(),
            grace_seconds,
        }))
        .await;
    match r {
        Err(s) if s.code() == Code::NotFound => {
            // As Mesos: the framework learns the master does not know the task.
            let state = lost_state(api, &stream_id, v1::TaskState::TaskUnknown);
            tell(
                api,
                &stream_id,
                vec![edge_update(&task_id, state, "reconciliation", s.message())],
            );
            Ok(())
        }
        other => ignore_stale(other.map(drop)),
    }
}

async fn acknowledge(
    svc: &SchedulerService,
    caller: v1::Caller,
    a: &mesos::scheduler::call::Acknowledge,
) -> Result<(), Answer> {
    let uuid = uuid::Uuid::from_slice(&a.uuid).map_err(|_| {
        Answer::Refused(Refused {
            field: "acknowledge.uuid".into(),
            reason: format!("not a 16-byte UUID ({} bytes)", a.uuid.len()),
        })
    })?;
    let task_id = a.task_id.value.clone();
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

async fn subscribe_call(
    s: &MesosState,
    headers: &HeaderMap,
    call: mesos::scheduler::Call,
) -> Response {
    if headers.contains_key(STREAM_ID_HEADER) {
        return bad_request("Subscribe calls should not include the 'Mesos-Stream-Id' header");
    }
    let accept = match ContentType::of_accept(headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(sub) = call.subscribe.as_ref() else {
        return refused_response(&Refused {
            field: "subscribe".into(),
            reason: "Expecting 'subscribe' to be present".into(),
        });
    };
    let info = &sub.framework_info;
    let top = call.framework_id.as_ref().map(|f| f.value.as_str());
    let inner = info.id.as_ref().map(|f| f.value.as_str());
    if top != inner {
        return refused_response(&Refused {
            field: "framework_id".into(),
            reason: "'framework_id' differs from 'subscribe.framework_info.id'".into(),
        });
    }
    let ours = match convert::framework_info(info) {
        Ok(f) => f,
        Err(e) => return refused_response(&e),
    };
    let api = &s.scheduler;
    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let weak = tx.downgrade();
    if let Err(st) = api.service.subscribe_events(&ours, tx).await {
        return status_response(&st, "/api/v1/scheduler");
    }
    // The engine sends SUBSCRIBED before it answers.
    let first = match tokio::time::timeout(SUBSCRIBED_WAIT, rx.recv()).await {
        Ok(Some(Ok(e))) => e,
        _ => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the subscription ended before it began; subscribe again",
            )
        }
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
    api.streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            stream_id.clone(),
            LiveStream {
                framework_id: subscribed.framework_id.clone(),
                partition_aware: convert::partition_aware(info),
                events: weak,
            },
        );
    let registered = Registered {
        streams: api.streams.clone(),
        stream_id: stream_id.clone(),
    };
    let cx = StreamContext {
        role: ours.role.clone(),
        master_info: s.master_info().await,
    };
    tracing::info!(framework = %subscribed.framework_id, stream = %stream_id, "Mesos HTTP framework subscribed");
    let body = event_stream(first, rx, cx, accept, registered);
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
    cx: StreamContext,
    encoding: ContentType,
    /// Records to send before reading more events.
    queued: std::collections::VecDeque<mesos::scheduler::Event>,
    /// Whether the last record sent was an event other than HEARTBEAT.
    burst: bool,
    done: bool,
    _registered: Registered,
}

/// The RecordIO body: SUBSCRIBED and a HEARTBEAT, then every event; a HEARTBEAT after each
/// burst (clients that read records line by line, as mesoshttp, see a record only once the
/// next one begins); an ERROR and the end when the engine ends the stream with a status.
fn event_stream(
    first: v1::Event,
    rx: mpsc::Receiver<Result<v1::Event, Status>>,
    cx: StreamContext,
    encoding: ContentType,
    registered: Registered,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let mut queued = std::collections::VecDeque::new();
    queued.extend(convert::event_to_mesos(&first, &cx));
    queued.push_back(convert::heartbeat());
    let state = Streaming {
        rx,
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
            let next = match st.rx.try_recv() {
                Ok(e) => Some(e),
                Err(mpsc::error::TryRecvError::Empty) if st.burst => {
                    st.queued.push_back(convert::heartbeat());
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => st.rx.recv().await,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            match next {
                Some(Ok(e)) => st.queued.extend(convert::event_to_mesos(&e, &st.cx)),
                Some(Err(status)) => {
                    st.queued.push_back(mesos::scheduler::Event {
                        r#type: Some(mesos::scheduler::event::Type::Error as i32),
                        error: Some(mesos::scheduler::event::Error {
                            message: status.message().to_string(),
                        }),
                        ..Default::default()
                    });
                    st.done = true;
                }
                None => return None,
            }
        }
    })
    .boxed()
}
