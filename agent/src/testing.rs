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
    HeartbeatReply, HeartbeatRequest, RegisterReply, RegisterRequest, StatusUpdateAck,
    StatusUpdateRequest, TaskStatus,
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
    /// Every UpdateStatus call, in arrival order.
    pub calls: Vec<(String, TaskStatus)>,
    /// Updates applied (first time a uuid was seen), in order.
    pub applied: Vec<TaskStatus>,
    /// Answer this many UpdateStatus calls with UNAVAILABLE first.
    pub unavailable_remaining: usize,
    /// Tasks whose updates are refused with FAILED_PRECONDITION.
    pub refuse_tasks: HashSet<String>,
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
}

#[derive(Clone, Default)]
pub struct FakeMaster {
    state: Arc<Mutex<FakeState>>,
    /// How long each UpdateStatus takes.
    update_delay: Duration,
}

impl FakeMaster {
    /// A fake whose UpdateStatus answers take `delay`.
    pub fn with_update_delay(delay: Duration) -> Self {
        Self {
            update_delay: delay,
            ..Default::default()
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
    ) -> Result<Response<StatusUpdateAck>, Status> {
        let req = request.into_inner();
        let status = req
            .status
            .ok_or_else(|| Status::invalid_argument("status: missing"))?;
        let task = status.task_id.clone();
        {
            let mut s = self.state();
            s.calls.push((req.framework_id.clone(), status.clone()));
            let n = s.in_flight.entry(task.clone()).or_default();
            *n += 1;
            if *n > 1 {
                s.overlap = true;
            }
        }
        tokio::time::sleep(self.update_delay).await;
        let mut s = self.state();
        if let Some(n) = s.in_flight.get_mut(&task) {
            *n -= 1;
        }
        if s.unavailable_remaining > 0 {
            s.unavailable_remaining -= 1;
            return Err(Status::unavailable("fake master: try again"));
        }
        if s.refuse_tasks.contains(&task) {
            return Err(Status::failed_precondition(
                "fake master: illegal transition",
            ));
        }
        if !s.applied.iter().any(|a| a.uuid == status.uuid) {
            s.applied.push(status.clone());
        }
        Ok(Response::new(StatusUpdateAck { uuid: status.uuid }))
    }
}
