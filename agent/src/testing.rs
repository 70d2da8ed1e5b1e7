//! Test harness shared by the crate's tests: an in-process fake `AgentRegistry` (the master's
//! side of the agent API) on 127.0.0.1:0 whose answers a test scripts, and [`wait_for`], the
//! one way tests wait (a condition, polled, with a deadline; never a bare sleep).
//!
//! Test support only: nothing in the agent uses it. [`wait_for`] panics when its deadline
//! passes, as a test assertion does.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_client::{MasterClient, RetryPolicy};
use drover_proto::v1::agent_registry_server::{AgentRegistry, AgentRegistryServer};
use drover_proto::v1::{
    HeartbeatReply, HeartbeatRequest, RegisterReply, RegisterRequest, StatusUpdateOutcome,
    StatusUpdateReply, StatusUpdateRequest, TaskStatus,
};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the fake master saw and how it answers.
#[derive(Default)]
pub struct FakeState {
    /// Every update of every UpdateStatus call, in arrival order.
    pub calls: Vec<(String, TaskStatus)>,
    /// The number of updates in each UpdateStatus call, in arrival order.
    pub batches: Vec<usize>,
    /// Updates applied (first time a uuid was seen), in order.
    pub applied: Vec<TaskStatus>,
    /// Answer this many UpdateStatus calls with UNAVAILABLE first.
    pub unavailable_remaining: usize,
    /// Tasks whose updates are refused with FAILED_PRECONDITION.
    pub refuse_tasks: HashSet<String>,
    /// Tasks whose updates make the whole call fail with INVALID_ARGUMENT.
    pub refuse_calls_with_task: HashSet<String>,
    /// UpdateStatus calls in progress, per task, and whether two ever overlapped.
    pub in_flight: HashMap<String, usize>,
    pub overlap: bool,
    /// Registrations: the agent info received, in order.
    pub registrations: Vec<RegisterRequest>,
    pub heartbeats: usize,
    /// Agents the fake knows (a heartbeat from another gets `reregister`).
    pub known_agents: HashSet<String>,
    pub next_agent: u64,
    pub heartbeat_interval_seconds: f64,
    /// Agents whose registration is refused as removed (GONE).
    pub gone_agents: HashSet<String>,
}

#[derive(Clone, Default)]
pub struct FakeMaster {
    state: Arc<Mutex<FakeState>>,
    /// How long each UpdateStatus takes.
    update_delay: Duration,
    /// While false, UpdateStatus calls wait (after being recorded) before they are answered.
    gate: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

impl FakeMaster {
    /// A fake whose UpdateStatus answers take `delay`.
    pub fn with_update_delay(delay: Duration) -> Self {
        Self {
            update_delay: delay,
            ..Default::default()
        }
    }

    /// A fake whose UpdateStatus calls are recorded and then held until
    /// [`FakeMaster::open_gate`].
    pub fn gated() -> Self {
        Self {
            gate: Some(Arc::new(tokio::sync::watch::channel(false).0)),
            ..Default::default()
        }
    }

    /// Lets held and later UpdateStatus calls through.
    pub fn open_gate(&self) {
        if let Some(g) = &self.gate {
            g.send_replace(true);
        }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applied updates of `task`, as (state, uuid).
    pub fn applied_for(&self, task: &str) -> Vec<(i32, String)> {
        self.state()
            .applied
            .iter()
            .filter(|s| s.task_id == task)
            .map(|s| (s.state, s.uuid.clone()))
            .collect()
    }

    /// Serves the fake on 127.0.0.1:0; returns its address. The server lives as long as the
    /// test's runtime.
    pub async fn try_serve(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let svc = AgentRegistryServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        Ok(addr)
    }

    /// [`FakeMaster::try_serve`], panicking (a test failure) when it cannot bind.
    pub async fn serve(&self) -> String {
        match self.try_serve().await {
            Ok(a) => a,
            Err(e) => panic!("fake master cannot listen on 127.0.0.1:0: {e}"),
        }
    }

    /// A client for the fake with short retry deadlines.
    pub fn client(addr: &str) -> MasterClient {
        match MasterClient::with_policy(
            &[addr.to_string()],
            RetryPolicy {
                deadline: Duration::from_secs(2),
                backoff_start: Duration::from_millis(10),
                backoff_max: Duration::from_millis(50),
            },
        ) {
            Ok(c) => c,
            Err(e) => panic!("client for {addr}: {e}"),
        }
    }
}

#[tonic::async_trait]
impl AgentRegistry for FakeMaster {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        let req = request.into_inner();
        let mut s = self.state();
        let mut id = req.agent.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        if s.gone_agents.contains(&id) {
            s.registrations.push(req);
            let mut status = Status::failed_precondition(format!("agent {id} was removed"));
            status.metadata_mut().insert(
                drover_proto::metadata::AGENT_GONE,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            return Err(status);
        }
        if id.is_empty() {
            s.next_agent += 1;
            id = format!("agent-{}", s.next_agent);
        }
        s.known_agents.insert(id.clone());
        s.registrations.push(req);
        Ok(Response::new(RegisterReply {
            agent_id: id,
            master_id: 1,
            heartbeat_interval_seconds: s.heartbeat_interval_seconds,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let req = request.into_inner();
        let mut s = self.state();
        s.heartbeats += 1;
        Ok(Response::new(HeartbeatReply {
            reregister: !s.known_agents.contains(&req.agent_id),
        }))
    }

    async fn update_status(
        &self,
        request: Request<StatusUpdateRequest>,
    ) -> Result<Response<StatusUpdateReply>, Status> {
        let req = request.into_inner();
        let mut items = Vec::new();
        for u in req.updates {
            let status = u
                .status
                .ok_or_else(|| Status::invalid_argument("status: missing"))?;
            items.push((u.framework_id, status));
        }
        {
            let mut s = self.state();
            s.batches.push(items.len());
            for (framework, status) in &items {
                s.calls.push((framework.clone(), status.clone()));
                let n = s.in_flight.entry(status.task_id.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    s.overlap = true;
                }
            }
        }
        tokio::time::sleep(self.update_delay).await;
        if let Some(g) = &self.gate {
            // An error means the fake is gone; answering then does not matter.
            let _ = g.subscribe().wait_for(|open| *open).await;
        }
        let mut s = self.state();
        for (_, status) in &items {
            if let Some(n) = s.in_flight.get_mut(&status.task_id) {
                *n -= 1;
            }
        }
        if s.unavailable_remaining > 0 {
            s.unavailable_remaining -= 1;
            return Err(Status::unavailable("fake master: try again"));
        }
        if let Some((_, bad)) = items
            .iter()
            .find(|(_, st)| s.refuse_calls_with_task.contains(&st.task_id))
        {
            return Err(Status::invalid_argument(format!(
                "updates[?].status: fake master: malformed update of {}",
                bad.task_id
            )));
        }
        let mut outcomes = Vec::new();
        for (_, status) in items {
            let (code, message) = if s.refuse_tasks.contains(&status.task_id) {
                (
                    tonic::Code::FailedPrecondition,
                    "fake master: illegal transition".to_string(),
                )
            } else {
                if !s.applied.iter().any(|a| a.uuid == status.uuid) {
                    s.applied.push(status.clone());
                }
                (tonic::Code::Ok, String::new())
            };
            outcomes.push(StatusUpdateOutcome {
                uuid: status.uuid,
                code: code as i32,
                message,
            });
        }
        Ok(Response::new(StatusUpdateReply { outcomes }))
    }
}
