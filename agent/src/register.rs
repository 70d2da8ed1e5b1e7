//! Registration and heartbeats: keeps one agent (real or simulated) registered with whichever
//! master leads.
//!
//! One loop per agent identity, owned by the agent's task set. It registers (the stored id, or
//! empty the first time; the id the master returns is persisted in the agent's `agent_id` file
//! before it is used), then heartbeats every interval (the master's
//! `heartbeat_interval_seconds` when it gives one, else `--heartbeat-interval-ms`). It
//! registers again when a heartbeat answer says `reregister`, when the master does not know
//! the agent (NOT_FOUND, FAILED_PRECONDITION), or when heartbeats failed for
//! [`FAILURES_BEFORE_REREGISTER`] intervals in a row and then reach a master again (possibly a
//! new leader, which may have lost the agent). [`MasterClient`] follows the leader.
//!
//! Every registration under a known id carries the agent's task report ([`Reporter`]): the
//! master reconciles its registry against it. A registration refused because the master
//! removed the agent (GONE) ends the loop: the agent must not come back under that id, and
//! says so through `on_gone`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_client::{Backoff, ClientError, MasterClient};
use drover_proto::v1::agent_registry_client::AgentRegistryClient;
use drover_proto::v1::{AgentInfo, HeartbeatRequest, RegisterReply, RegisterRequest, ReportedTask};
use drover_resources::{Attributes, Resources};
use tokio::sync::{mpsc, Semaphore};
use tonic::Code;

use crate::checkpoint::{self, CheckpointError};
use crate::ids::AgentId;
use crate::metrics as m;

/// Heartbeats failed in a row after which the agent counts itself unregistered and registers
/// again once a master answers.
pub const FAILURES_BEFORE_REREGISTER: u32 = 3;
/// Bounds on the heartbeat interval a master may ask for.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// Waits between failed registration attempts.
const REGISTER_BACKOFF_MIN: Duration = Duration::from_millis(100);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Who an agent is, as it tells the master.
#[derive(Clone, Debug)]
pub struct Identity {
    /// 0 for the real agent; `i` for simulated agent `sim-<i>`.
    pub index: usize,
    pub simulated: bool,
    /// Where its id is kept.
    pub id_file: PathBuf,
    pub hostname: String,
    /// Where masters reach its Agent service.
    pub addr: String,
    pub resources: Resources,
    pub attributes: Attributes,
}

#[derive(Debug, thiserror::Error)]
pub enum IdFileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: holds no valid agent id ({reason}); remove it to register as a new agent")]
    Invalid { path: PathBuf, reason: String },
}

/// Reads a stored agent id; `Ok(None)` when there is none yet.
pub fn load_agent_id(path: &Path) -> Result<Option<AgentId>, IdFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => AgentId::new(text.trim())
            .map(Some)
            .map_err(|e| IdFileError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Persists an agent id (atomically, durably).
pub fn store_agent_id(path: &Path, id: &AgentId) -> Result<(), CheckpointError> {
    if let Some(dir) = path.parent() {
        checkpoint::create_dir_all_durable(dir)?;
    }
    checkpoint::write_atomic(path, format!("{id}\n").as_bytes())
}

/// Announces a (re)registration: (agent index, id).
pub type Registered = (usize, AgentId);

/// What an agent reports having when it registers again as the given id.
pub type Reporter = Arc<
    dyn Fn(
            AgentId,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<ReportedTask>> + Send>>
        + Send
        + Sync,
>;

/// Everything one registration loop needs.
pub struct Registrar {
    pub identity: Identity,
    /// The id loaded from `id_file` at start.
    pub stored_id: Option<AgentId>,
    pub client: MasterClient,
    pub default_interval: Duration,
    /// Delay before the first registration (spreads simulated agents over the interval).
    pub stagger: Duration,
    /// Limits concurrent registrations across agents.
    pub limiter: Arc<Semaphore>,
    pub on_registered: mpsc::Sender<Registered>,
    /// Registered agents of this process (for /health).
    pub registered: Arc<AtomicUsize>,
    /// Log each registration at debug instead of info (many simulated agents).
    pub quiet: bool,
    /// The task report of a registration under a known id.
    pub reporter: Reporter,
    /// Told (with the agent's index and id) when the master refuses the agent as GONE.
    pub on_gone: mpsc::Sender<Registered>,
}

/// The master removed this agent: it must not register under its id again.
struct Gone(AgentId);

struct Registration {
    id: AgentId,
    master_id: u64,
    interval: Duration,
}

impl Registrar {
    fn info(&self, id: Option<&AgentId>) -> AgentInfo {
        AgentInfo {
            id: id.map(|i| i.to_string()).unwrap_or_default(),
            hostname: self.identity.hostname.clone(),
            addr: self.identity.addr.clone(),
            resources: self.identity.resources.to_proto(),
            attributes: self.identity.attributes.to_proto(),
        }
    }

    async fn register_once(&self, id: Option<&AgentId>) -> Result<RegisterReply, ClientError> {
        let _permit = self.limiter.acquire().await;
        let mut tasks = match id {
            Some(id) => (self.reporter)(id.clone()).await,
            None => Vec::new(),
        };
        // Reports list live tasks first: those are the ones the master must not lose.
        let truncated = tasks.len() > drover_proto::agent_api::MAX_REPORTED_TASKS;
        if truncated {
            tracing::warn!(
                tasks = tasks.len(),
                "more tasks than one registration may report; the master hears of the first {} and takes none of the others for lost",
                drover_proto::agent_api::MAX_REPORTED_TASKS
            );
            tasks.truncate(drover_proto::agent_api::MAX_REPORTED_TASKS);
        }
        let req = RegisterRequest {
            agent: Some(self.info(id)),
            tasks,
            tasks_truncated: truncated,
        };
        self.client
            .call_idempotent(|channel, time_left| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(time_left);
                async move {
                    Ok(AgentRegistryClient::new(channel)
                        .register(r)
                        .await?
                        .into_inner())
                }
            })
            .await
    }

    /// Registers, retrying until a master accepts; persists a new id. Fails only when the
    /// master removed the agent.
    async fn register(&mut self) -> Result<Registration, Gone> {
        let mut backoff = Backoff::new(REGISTER_BACKOFF_MIN, REGISTER_BACKOFF_MAX);
        loop {
            let attempt = self.register_once(self.stored_id.as_ref()).await;
            if let (Err(ClientError::Rejected(s)), Some(id)) = (&attempt, &self.stored_id) {
                if s.metadata()
                    .get(drover_proto::metadata::AGENT_GONE)
                    .is_some()
                {
                    return Err(Gone(id.clone()));
                }
            }
            let failure = match attempt {
                Ok(reply) => match AgentId::new(&reply.agent_id) {
                    Ok(id) => match self.adopt_id(&id).await {
                        Ok(()) => {
                            let interval = interval_from(reply.heartbeat_interval_seconds)
                                .unwrap_or(self.default_interval);
                            return Ok(Registration {
                                id,
                                master_id: reply.master_id,
                                interval,
                            });
                        }
                        Err(e) => format!("cannot persist the agent id: {e}"),
                    },
                    Err(e) => format!("the master answered with an invalid agent id: {e}"),
                },
                Err(e) => e.to_string(),
            };
            tracing::warn!(
                simulated = self.identity.simulated,
                hostname = %self.identity.hostname,
                retry_within_ms = backoff.step().as_millis() as u64,
                error = %failure,
                "registration failed"
            );
            backoff.wait().await;
        }
    }

    async fn adopt_id(&mut self, id: &AgentId) -> Result<(), CheckpointError> {
        if self.stored_id.as_ref() == Some(id) {
            return Ok(());
        }
        if let Some(old) = &self.stored_id {
            tracing::warn!(old = %old, new = %id, simulated = self.identity.simulated, "the master gave this agent a new id");
        }
        let (path, id2) = (self.identity.id_file.clone(), id.clone());
        checkpoint::off_runtime(path.clone(), move || store_agent_id(&path, &id2)).await?;
        self.stored_id = Some(id.clone());
        Ok(())
    }

    async fn heartbeat(&self, id: &AgentId, timeout: Duration) -> Result<bool, ClientError> {
        let req = HeartbeatRequest {
            agent_id: id.to_string(),
        };
        self.client
            .with_deadline(timeout)
            .call_idempotent(|channel, time_left| {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(time_left);
                async move {
                    Ok(AgentRegistryClient::new(channel)
                        .heartbeat(r)
                        .await?
                        .into_inner()
                        .reregister)
                }
            })
            .await
    }

    fn set_registered(&self, registered: &mut bool, now: bool) {
        if *registered == now {
            return;
        }
        *registered = now;
        if now {
            self.registered.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!(m::REGISTERED).increment(1.0);
        } else {
            self.registered.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!(m::REGISTERED).decrement(1.0);
        }
    }

    /// Runs until its task is aborted, or the master removes the agent.
    pub async fn run(mut self) {
        tokio::time::sleep(self.stagger).await;
        let mut registered = false;
        loop {
            let reg = match self.register().await {
                Ok(reg) => reg,
                Err(Gone(id)) => {
                    self.set_registered(&mut registered, false);
                    tracing::error!(agent_id = %id, simulated = self.identity.simulated, "the master removed this agent (GONE); it will not register under this id again; remove {} to start it as a new agent", self.identity.id_file.display());
                    let _ = self.on_gone.send((self.identity.index, id)).await;
                    return;
                }
            };
            self.set_registered(&mut registered, true);
            let leader = self.client.known_leader().unwrap_or_default();
            if self.quiet {
                tracing::debug!(agent_id = %reg.id, master_id = reg.master_id, %leader, hostname = %self.identity.hostname, "simulated agent registered");
            } else {
                tracing::info!(
                    agent_id = %reg.id,
                    master_id = reg.master_id,
                    %leader,
                    hostname = %self.identity.hostname,
                    simulated = self.identity.simulated,
                    heartbeat_interval_ms = reg.interval.as_millis() as u64,
                    "{}",
                    if self.identity.simulated { "simulated agent registered" } else { "agent registered" }
                );
            }
            let _ = self
                .on_registered
                .send((self.identity.index, reg.id.clone()))
                .await;
            self.heartbeats(&reg, &mut registered).await;
        }
    }

    /// Heartbeats until the agent must register again.
    async fn heartbeats(&self, reg: &Registration, registered: &mut bool) {
        let mut failures = 0u32;
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + reg.interval, reg.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sim = if self.identity.simulated {
            "simulated "
        } else {
            ""
        };
        loop {
            ticks.tick().await;
            match self
                .heartbeat(&reg.id, reg.interval.max(MIN_HEARTBEAT_INTERVAL))
                .await
            {
                Ok(true) => {
                    tracing::info!(agent_id = %reg.id, simulated = self.identity.simulated, "the master asks this {sim}agent to register again");
                    return;
                }
                Ok(false) => {
                    if failures >= FAILURES_BEFORE_REREGISTER {
                        tracing::info!(agent_id = %reg.id, simulated = self.identity.simulated, "a master answers again; {sim}agent registering again");
                        return;
                    }
                    failures = 0;
                }
                Err(ClientError::Rejected(s))
                    if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) =>
                {
                    tracing::info!(agent_id = %reg.id, simulated = self.identity.simulated, reason = s.message(), "the master does not know this {sim}agent; registering again");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    if failures == FAILURES_BEFORE_REREGISTER {
                        self.set_registered(registered, false);
                        tracing::warn!(agent_id = %reg.id, simulated = self.identity.simulated, failures, error = %e, "heartbeats failing; {sim}agent will register again once a master answers");
                    } else {
                        tracing::debug!(agent_id = %reg.id, failures, error = %e, "heartbeat failed");
                    }
                }
            }
        }
    }
}

/// The interval a master asked for, bounded; `None` when it asked for none.
fn interval_from(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds > 0.0).then(|| {
        Duration::from_secs_f64(seconds.min(MAX_HEARTBEAT_INTERVAL.as_secs_f64()))
            .max(MIN_HEARTBEAT_INTERVAL)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{wait_for, FakeMaster};

    /// A report of one running task, `t1` of framework `f1`.
    fn one_task_reporter() -> Reporter {
        Arc::new(|_id| {
            Box::pin(async {
                vec![ReportedTask {
                    framework_id: "f1".into(),
                    task_id: "t1".into(),
                    state: drover_proto::v1::TaskState::TaskRunning as i32,
                }]
            })
        })
    }

    fn registrar(addr: &str, id_file: PathBuf, tx: mpsc::Sender<Registered>) -> Registrar {
        let (on_gone, _) = mpsc::channel(1);
        Registrar {
            identity: Identity {
                index: 0,
                simulated: false,
                id_file,
                hostname: "host-a".into(),
                addr: "127.0.0.1:5051".into(),
                resources: "cpus:2;mem:1024".parse().expect("resources"),
                attributes: "rack:a".parse().expect("attributes"),
            },
            stored_id: None,
            client: FakeMaster::client(addr),
            default_interval: Duration::from_millis(50),
            stagger: Duration::ZERO,
            limiter: Arc::new(Semaphore::new(4)),
            on_registered: tx,
            registered: Arc::new(AtomicUsize::new(0)),
            quiet: false,
            reporter: one_task_reporter(),
            on_gone,
        }
    }

    #[tokio::test]
    async fn registers_persists_the_id_and_registers_again_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id_file = dir.path().join("meta/agent_id");
        let fake = FakeMaster::default();
        let addr = fake.serve().await;
        let (tx, mut rx) = mpsc::channel(8);
        let r = registrar(&addr, id_file.clone(), tx);
        let registered = r.registered.clone();
        let task = tokio::spawn(r.run());
        let (_, id) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("registered in time")
            .expect("registered");
        assert_eq!(id.as_str(), "agent-1");
        assert_eq!(load_agent_id(&id_file).expect("load"), Some(id.clone()));
        {
            let s = fake.state();
            let info = s.registrations[0].agent.as_ref().expect("info");
            assert_eq!(info.id, "");
            assert_eq!(info.hostname, "host-a");
            assert_eq!(info.addr, "127.0.0.1:5051");
        }
        wait_for(Duration::from_secs(10), "heartbeats", || async {
            fake.state().heartbeats >= 2
        })
        .await;
        assert_eq!(registered.load(Ordering::Relaxed), 1);
        // The master forgets the agent: the next heartbeat says reregister, and the agent
        // registers again under its stored id.
        fake.state().known_agents.clear();
        let (_, again) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("re-registered in time")
            .expect("re-registered");
        assert_eq!(again, id);
        let s = fake.state();
        assert_eq!(s.registrations.len(), 2);
        assert_eq!(
            s.registrations[1].agent.as_ref().expect("info").id,
            "agent-1"
        );
        // A new agent reports nothing; one registering again under its id reports its tasks.
        assert!(s.registrations[0].tasks.is_empty());
        assert_eq!(s.registrations[1].tasks.len(), 1);
        assert_eq!(s.registrations[1].tasks[0].task_id, "t1");
        drop(s);
        task.abort();
    }

    #[tokio::test]
    async fn an_agent_the_master_removed_stops_registering_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id_file = dir.path().join("meta/agent_id");
        store_agent_id(&id_file, &AgentId::new("agent-9").expect("id")).expect("store");
        let fake = FakeMaster::default();
        fake.state().gone_agents.insert("agent-9".into());
        let addr = fake.serve().await;
        let (tx, _rx) = mpsc::channel(8);
        let (gone_tx, mut gone_rx) = mpsc::channel(1);
        let mut r = registrar(&addr, id_file.clone(), tx);
        r.stored_id = load_agent_id(&id_file).expect("load");
        r.on_gone = gone_tx;
        let task = tokio::spawn(r.run());
        let (_, id) = tokio::time::timeout(Duration::from_secs(10), gone_rx.recv())
            .await
            .expect("told in time")
            .expect("told");
        assert_eq!(id.as_str(), "agent-9");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the loop ends")
            .expect("no panic");
        assert_eq!(
            fake.state().registrations.len(),
            1,
            "no retry under a removed id"
        );
    }

    #[test]
    fn a_corrupt_id_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent_id");
        std::fs::write(&path, "not/an id").expect("write");
        let e = load_agent_id(&path).expect_err("invalid");
        assert!(e.to_string().contains("agent_id"), "{e}");
        assert_eq!(
            load_agent_id(&dir.path().join("none")).expect("absent"),
            None
        );
    }

    #[test]
    fn the_masters_interval_is_bounded() {
        assert_eq!(interval_from(0.0), None);
        assert_eq!(interval_from(f64::NAN), None);
        assert_eq!(interval_from(0.001), Some(MIN_HEARTBEAT_INTERVAL));
        assert_eq!(interval_from(1e9), Some(MAX_HEARTBEAT_INTERVAL));
        assert_eq!(interval_from(2.0), Some(Duration::from_secs(2)));
    }
}
