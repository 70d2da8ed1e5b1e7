//! An in-process fake of the leading master's framework API (`drover.v1.Scheduler`), for the
//! driver's and `drover run`'s tests. It serves real gRPC on 127.0.0.1:0, records every call,
//! and lets the test script the event stream: the test pushes events, closes the stream, and
//! waits (with a deadline) for the calls it expects.
//!
//! Like the real master it answers SUBSCRIBED first, gives each subscription a new stream id,
//! refuses a call naming a replaced stream with FAILED_PRECONDITION, and can play a follower
//! that redirects to a leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::metadata;
use drover_proto::v1::scheduler_server::{Scheduler, SchedulerServer};
use drover_proto::v1::{
    self, event, AcceptRequest, AcknowledgeRequest, CallReply, Caller, DeclineRequest, Event,
    KillRequest, ReconcileRequest, ReviveRequest, SubscribeRequest, SuppressRequest,
    TeardownRequest,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

pub(crate) const FRAMEWORK_ID: &str = "fw-1";
/// How long a test waits for a condition before failing.
pub(crate) const TEST_DEADLINE: Duration = Duration::from_secs(20);
/// Events buffered per stream.
const STREAM_BUFFER: usize = 64;

/// Every call the fake received, in order per kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct Calls {
    pub subscribes: Vec<SubscribeRequest>,
    pub accepts: Vec<AcceptRequest>,
    pub declines: Vec<DeclineRequest>,
    pub suppresses: Vec<SuppressRequest>,
    pub revives: Vec<ReviveRequest>,
    pub kills: Vec<KillRequest>,
    pub acks: Vec<AcknowledgeRequest>,
    pub reconciles: Vec<ReconcileRequest>,
    pub teardowns: Vec<TeardownRequest>,
}

impl Calls {
    pub fn ack_uuids(&self) -> Vec<&str> {
        self.acks
            .iter()
            .flat_map(|a| a.acks.iter().map(|a| a.uuid.as_str()))
            .collect()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FakeConfig {
    pub heartbeat_seconds: f64,
    pub master_id: u64,
    /// ACCEPT fails with this (and is still recorded).
    pub accept_error: Option<Status>,
    /// Play a follower: refuse everything, pointing at this leader ([`FakeMaster::set_leader`]
    /// changes it).
    pub redirect_to: Option<String>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            heartbeat_seconds: 30.0,
            master_id: 1,
            accept_error: None,
            redirect_to: None,
        }
    }
}

struct Live {
    stream_id: String,
    tx: mpsc::Sender<Result<Event, Status>>,
}

struct Shared {
    config: FakeConfig,
    redirect_to: Mutex<Option<String>>,
    calls: watch::Sender<Calls>,
    live: Mutex<Option<Live>>,
    streams_opened: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct Service(Arc<Shared>);

/// A running fake master; the server stops when this is dropped.
pub(crate) struct FakeMaster {
    pub addr: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeMaster {
    pub async fn start(config: FakeConfig) -> FakeMaster {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let shared = Arc::new(Shared {
            redirect_to: Mutex::new(config.redirect_to.clone()),
            config,
            calls: watch::channel(Calls::default()).0,
            live: Mutex::new(None),
            streams_opened: Mutex::new(0),
        });
        let service = SchedulerServer::new(Service(shared.clone()));
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        FakeMaster {
            addr,
            shared,
            server,
        }
    }

    /// Waits until the recorded calls satisfy `cond`; panics after [`TEST_DEADLINE`].
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&Calls) -> bool) -> Calls {
        let mut rx = self.shared.calls.subscribe();
        let found = match tokio::time::timeout(TEST_DEADLINE, rx.wait_for(|c| cond(c))).await {
            Ok(Ok(c)) => Some(c.clone()),
            _ => None,
        };
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; calls so far: {:#?}",
                *self.shared.calls.borrow()
            )
        })
    }

    pub fn calls(&self) -> Calls {
        self.shared.calls.borrow().clone()
    }

    /// Sends `event` on the live stream; panics if there is none.
    pub async fn push(&self, event: event::Event) {
        let tx = lock(&self.shared.live)
            .as_ref()
            .map(|l| l.tx.clone())
            .expect("no live stream to push on");
        tx.send(Ok(Event { event: Some(event) }))
            .await
            .expect("the stream's receiver is gone");
    }

    /// Makes this fake a follower pointing at `leader` (`None`: the leader again). The live
    /// stream stays open, as on an old leader cut off from its peers.
    pub fn set_leader(&self, leader: Option<String>) {
        *lock(&self.shared.redirect_to) = leader;
    }

    /// Ends the live stream (as a master that lost leadership or crashed would).
    pub fn close_stream(&self) {
        lock(&self.shared.live).take();
    }
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut Calls)) {
        self.calls.send_modify(f);
    }

    fn redirect(&self) -> Result<(), Status> {
        match lock(&self.redirect_to).as_deref() {
            Some(leader) => Err(not_leader(leader)),
            None => Ok(()),
        }
    }

    /// The master's refusals, same codes and field-first messages.
    fn check(&self, caller: Option<&Caller>) -> Result<(), Status> {
        self.redirect()?;
        let caller = caller.ok_or_else(|| Status::invalid_argument("caller: missing"))?;
        let live = lock(&self.live);
        match live.as_ref() {
            Some(l) if caller.framework_id == FRAMEWORK_ID && caller.stream_id == l.stream_id => {
                Ok(())
            }
            Some(_) => Err(stale(
                "caller.stream_id: not the framework's live stream (a newer subscription replaced it)",
                drover_proto::metadata::STALE_CALLER_REPLACED,
            )),
            None => Err(stale(
                "caller.framework_id: framework fw-1 is not subscribed to this leader; subscribe first",
                drover_proto::metadata::STALE_CALLER_NOT_SUBSCRIBED,
            )),
        }
    }
}

/// A caller refusal marked as the master marks it.
fn stale(message: &'static str, why: &'static str) -> Status {
    let mut s = Status::failed_precondition(message);
    s.metadata_mut().insert(
        drover_proto::metadata::STALE_CALLER,
        tonic::metadata::MetadataValue::from_static(why),
    );
    s
}

fn not_leader(leader: &str) -> Status {
    let mut s = Status::unavailable("not the leader");
    s.metadata_mut().insert(
        metadata::NOT_LEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    if let Ok(v) = leader.parse() {
        s.metadata_mut().insert(metadata::LEADER_ADDR, v);
    }
    s
}

pub(crate) fn update(task_id: &str, state: v1::TaskState, uuid: &str) -> event::Event {
    event::Event::Update(v1::Update {
        status: Some(v1::TaskStatus {
            task_id: task_id.into(),
            agent_id: "agent-1".into(),
            state: state as i32,
            uuid: uuid.into(),
            source: v1::StatusSource::SourceExecutor as i32,
            ..Default::default()
        }),
    })
}

pub(crate) fn offer(id: &str, resources: &str) -> v1::Offer {
    v1::Offer {
        id: id.into(),
        framework_id: FRAMEWORK_ID.into(),
        agent_id: "agent-1".into(),
        hostname: "host-1".into(),
        resources: resources
            .parse::<drover_resources::Resources>()
            .expect("test resources")
            .to_proto(),
        attributes: vec![],
        expires_at_ms: 0,
        agent_addr: String::new(),
        executor_ids: Vec::new(),
    }
}

pub(crate) fn offers(list: Vec<v1::Offer>) -> event::Event {
    event::Event::Offers(v1::Offers { offers: list })
}

type Reply = Result<Response<CallReply>, Status>;

#[tonic::async_trait]
impl Scheduler for Service {
    type SubscribeStream = ReceiverStream<Result<Event, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let s = &self.0;
        s.redirect()?;
        let stream_id = {
            let mut n = lock(&s.streams_opened);
            *n += 1;
            format!("stream-{n}")
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let hello = event::Event::Subscribed(v1::Subscribed {
            framework_id: FRAMEWORK_ID.into(),
            stream_id: stream_id.clone(),
            heartbeat_interval_seconds: s.config.heartbeat_seconds,
            master_id: s.config.master_id,
        });
        tx.send(Ok(Event { event: Some(hello) }))
            .await
            .map_err(|_| Status::internal("stream closed"))?;
        // Replacing the live stream ends the previous one, as the master does.
        *lock(&s.live) = Some(Live { stream_id, tx });
        let req = request.into_inner();
        s.record(|c| c.subscribes.push(req));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn accept(&self, request: Request<AcceptRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.accepts.push(req));
        match &self.0.config.accept_error {
            Some(e) => Err(e.clone()),
            None => Ok(Response::new(CallReply {})),
        }
    }

    async fn decline(&self, request: Request<DeclineRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.declines.push(req));
        Ok(Response::new(CallReply {}))
    }

    async fn suppress(&self, request: Request<SuppressRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.suppresses.push(req));
        Ok(Response::new(CallReply {}))
    }

    async fn revive(&self, request: Request<ReviveRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.revives.push(req));
        Ok(Response::new(CallReply {}))
    }

    async fn kill(&self, request: Request<KillRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.kills.push(req));
        Ok(Response::new(CallReply {}))
    }

    async fn acknowledge(&self, request: Request<AcknowledgeRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.acks.push(req));
        Ok(Response::new(CallReply {}))
    }

    async fn reconcile(&self, request: Request<ReconcileRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        self.0.record(|c| c.reconciles.push(req));
        Ok(Response::new(CallReply {}))
    }

    async fn teardown(&self, request: Request<TeardownRequest>) -> Reply {
        let req = request.into_inner();
        self.0.check(req.caller.as_ref())?;
        lock(&self.0.live).take();
        self.0.record(|c| c.teardowns.push(req));
        Ok(Response::new(CallReply {}))
    }

    /// The driver's frameworks address no custom executors: the fake never expects these.
    async fn message(&self, _request: Request<v1::MessageRequest>) -> Reply {
        Err(Status::unimplemented(
            "the fake master takes no executor messages",
        ))
    }

    async fn shutdown_executor(&self, _request: Request<v1::ShutdownExecutorRequest>) -> Reply {
        Err(Status::unimplemented(
            "the fake master shuts no executor down",
        ))
    }
}
