//! The status update manager: gets every task status update to the leading master, reliably
//! and in order (DESIGN.md, "Status updates and failover", hop 1).
//!
//! One task (the actor) owns all of its state; the rest of the agent reaches it through
//! [`StatusUpdates`], a bounded channel. The rules it keeps:
//!
//! - **Checkpoint before send.** [`StatusUpdates::update`] returns only once the update is
//!   appended to the task's `updates.log` and fsynced; only then may the caller (the executor
//!   link) acknowledge it to the executor. Nothing is sent to the master before that.
//! - **Per task, in order, one in flight.** Each task has a queue; its head is sent with
//!   `AgentRegistry.UpdateStatus` through [`MasterClient`] (which follows the leader), retried
//!   with exponential backoff ([`BACKOFF_MIN`] → [`BACKOFF_MAX`], jittered) until the master
//!   acknowledges its uuid; the ack is recorded (fsynced) and the next one goes.
//! - **Refusals retrying cannot fix** (`FAILED_PRECONDITION`, `NOT_FOUND`, `INVALID_ARGUMENT`)
//!   are logged and the update dropped, recorded as dropped.
//! - **Duplicates are harmless.** An update whose uuid this task already has is acknowledged
//!   to the caller again and not queued twice (the master also applies a uuid once).
//! - **Recovery.** At start, every task's `updates.log` is read back and whatever was neither
//!   acknowledged nor dropped is queued again, in order; a torn last line is skipped with a
//!   warning and cut off.
//! - **Bounded.** At most [`MAX_PENDING_PER_TASK`] unacknowledged updates per task and
//!   [`MAX_PENDING_TOTAL`] in all; beyond that callers get [`UpdateError::QueueFull`] (an
//!   executor keeps the update and sends it again).
//!
//! Simulated agents use [`Checkpointing::Memory`]: the same queueing and retrying, without the
//! files (a simulated agent's updates do not survive its process).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_client::{ClientError, MasterClient};
use drover_proto::v1::agent_registry_client::AgentRegistryClient;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tonic::Code;
use uuid::Uuid;

use crate::checkpoint::{self, CheckpointError};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::layout::{Layout, TaskDir};
use crate::metrics as m;
use crate::update::StatusUpdate;

/// First wait before resending an update the master did not acknowledge.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between resends.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long one send may take (the client's own retries included) before it counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most unacknowledged updates queued for one task.
pub const MAX_PENDING_PER_TASK: usize = 64;
/// Most unacknowledged updates queued in all.
pub const MAX_PENDING_TOTAL: usize = 100_000;
/// Most distinct updates remembered per task (for recognising resends).
pub const MAX_UPDATES_PER_TASK: usize = 1024;
/// Tasks with nothing pending whose uuids are still remembered; the oldest are forgotten.
pub const MAX_IDLE_TASKS: usize = 10_000;
/// Depth of the manager's request channel.
const CHANNEL_DEPTH: usize = 1024;

/// Where updates are checkpointed.
#[derive(Clone, Debug)]
pub enum Checkpointing {
    /// In each task's `updates.log` under the work directory (the real agent).
    Disk(Layout),
    /// Nowhere (simulated agents).
    Memory,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub checkpointing: Checkpointing,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub send_timeout: Duration,
}

impl Config {
    pub fn new(checkpointing: Checkpointing) -> Self {
        Self {
            checkpointing,
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            send_timeout: SEND_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("cannot checkpoint the status update: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("status update queue is full ({0}); send it again later")]
    QueueFull(&'static str),
    #[error("the status update manager has stopped")]
    Stopped,
}

/// One line of `updates.log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Update { update: StatusUpdate },
    Acked { uuid: Uuid },
    Dropped { uuid: Uuid, reason: String },
}

type Key = (AgentId, FrameworkId, TaskId);

enum Command {
    Update {
        update: StatusUpdate,
        reply: oneshot::Sender<Result<(), UpdateError>>,
    },
    Pending {
        reply: oneshot::Sender<usize>,
    },
}

enum Outcome {
    Acked,
    Dropped(String),
}

struct Done {
    key: Key,
    uuid: Uuid,
    outcome: Outcome,
}

/// The handle to the manager. Cheap to clone.
#[derive(Clone)]
pub struct StatusUpdates {
    tx: mpsc::Sender<Command>,
}

/// The running manager; [`Manager::stop`] ends it. What was checkpointed stays on disk.
pub struct Manager {
    handle: JoinHandle<()>,
}

impl Manager {
    /// Stops sending. Updates not yet acknowledged stay in their logs for the next start.
    pub async fn stop(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

impl StatusUpdates {
    /// Starts the manager: recovers unacknowledged updates from disk (with
    /// [`Checkpointing::Disk`]), then serves requests and sends updates through `client`.
    pub fn start(client: MasterClient, config: Config) -> (StatusUpdates, Manager) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let (done_tx, done_rx) = mpsc::channel(CHANNEL_DEPTH);
        let actor = Actor {
            client: client.with_deadline(config.send_timeout),
            config,
            streams: HashMap::new(),
            idle: VecDeque::new(),
            pending_total: 0,
            senders: JoinSet::new(),
            done_tx,
        };
        let handle = tokio::spawn(actor.run(rx, done_rx));
        (StatusUpdates { tx }, Manager { handle })
    }

    /// Checkpoints `update` and queues it for the master. Returns once it is durable (or
    /// already known by its uuid).
    pub async fn update(&self, update: StatusUpdate) -> Result<(), UpdateError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Update { update, reply })
            .await
            .map_err(|_| UpdateError::Stopped)?;
        rx.await.map_err(|_| UpdateError::Stopped)?
    }

    /// How many updates are not yet acknowledged by the master.
    pub async fn pending(&self) -> Result<usize, UpdateError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Pending { reply })
            .await
            .map_err(|_| UpdateError::Stopped)?;
        rx.await.map_err(|_| UpdateError::Stopped)
    }
}

#[derive(Default)]
struct Stream {
    queue: VecDeque<StatusUpdate>,
    in_flight: bool,
    seen: HashSet<Uuid>,
    /// Whether the task is in `Actor::idle`.
    idle: bool,
}

struct Actor {
    client: MasterClient,
    config: Config,
    streams: HashMap<Key, Stream>,
    /// Streams with nothing pending, oldest first: forgotten beyond [`MAX_IDLE_TASKS`].
    idle: VecDeque<Key>,
    pending_total: usize,
    senders: JoinSet<()>,
    done_tx: mpsc::Sender<Done>,
}

fn key_of(u: &StatusUpdate) -> Key {
    (
        u.agent_id.clone(),
        u.framework_id.clone(),
        u.task_id.clone(),
    )
}

/// Runs blocking file work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CheckpointError> + Send + 'static,
) -> Result<T, CheckpointError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(CheckpointError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("checkpoint task failed: {e}")),
        })
    })
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut done_rx: mpsc::Receiver<Done>) {
        if let Checkpointing::Disk(layout) = &self.config.checkpointing {
            let frameworks = layout.frameworks_dir();
            match blocking(move || Ok(recover(&frameworks))).await {
                Ok(recovered) => self.adopt(recovered),
                Err(e) => tracing::error!(error = %e, "status update recovery failed"),
            }
        }
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Update { update, reply }) => {
                        let r = self.accept(update).await;
                        let _ = reply.send(r);
                    }
                    Some(Command::Pending { reply }) => {
                        let _ = reply.send(self.pending_total);
                    }
                    None => break,
                },
                Some(done) = done_rx.recv() => self.finished(done).await,
                // Reap finished senders so the set does not grow.
                Some(_) = self.senders.join_next(), if !self.senders.is_empty() => {}
            }
        }
    }

    fn log_path(&self, key: &Key) -> Option<PathBuf> {
        match &self.config.checkpointing {
            Checkpointing::Disk(layout) => {
                Some(TaskDir(layout.task_dir(&key.1, &key.2)).updates_log())
            }
            Checkpointing::Memory => None,
        }
    }

    async fn append(&self, key: &Key, record: Record) -> Result<(), CheckpointError> {
        let Some(path) = self.log_path(key) else {
            return Ok(());
        };
        blocking(move || {
            if let Some(dir) = path.parent() {
                checkpoint::create_dir_all_durable(dir)?;
            }
            checkpoint::append_record(&path, &record)
        })
        .await
    }

    fn adopt(&mut self, recovered: Vec<(Key, Vec<StatusUpdate>, HashSet<Uuid>)>) {
        let (mut updates, mut tasks) = (0usize, 0usize);
        for (key, pending, seen) in recovered {
            if pending.is_empty() {
                // Remembered so that a late resend from its executor is recognised.
                if self.idle.len() < MAX_IDLE_TASKS {
                    self.idle.push_back(key.clone());
                    self.streams.insert(
                        key,
                        Stream {
                            seen,
                            idle: true,
                            ..Stream::default()
                        },
                    );
                }
                continue;
            }
            tasks += 1;
            updates += pending.len();
            self.pending_total += pending.len();
            self.streams.insert(
                key.clone(),
                Stream {
                    queue: pending.into(),
                    in_flight: false,
                    seen,
                    idle: false,
                },
            );
            self.maybe_send(&key);
        }
        if updates > 0 {
            tracing::info!(
                updates,
                tasks,
                "recovered unacknowledged status updates; resending"
            );
        }
    }

    async fn accept(&mut self, update: StatusUpdate) -> Result<(), UpdateError> {
        let update = update.bounded();
        let key = key_of(&update);
        if let Some(s) = self.streams.get(&key) {
            if s.seen.contains(&update.uuid) {
                return Ok(());
            }
            if s.queue.len() >= MAX_PENDING_PER_TASK {
                return Err(UpdateError::QueueFull("per task"));
            }
            if s.seen.len() >= MAX_UPDATES_PER_TASK {
                return Err(UpdateError::QueueFull("updates per task"));
            }
        }
        if self.pending_total >= MAX_PENDING_TOTAL {
            return Err(UpdateError::QueueFull("all tasks"));
        }
        self.append(
            &key,
            Record::Update {
                update: update.clone(),
            },
        )
        .await?;
        tracing::debug!(
            task = %update.task_id,
            framework = %update.framework_id,
            state = ?update.state,
            uuid = %update.uuid,
            "status update checkpointed"
        );
        let stream = self.streams.entry(key.clone()).or_default();
        stream.seen.insert(update.uuid);
        stream.queue.push_back(update);
        if stream.idle {
            stream.idle = false;
            self.idle.retain(|k| k != &key);
        }
        self.pending_total += 1;
        self.maybe_send(&key);
        Ok(())
    }

    fn maybe_send(&mut self, key: &Key) {
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        if stream.in_flight {
            return;
        }
        let Some(update) = stream.queue.front().cloned() else {
            return;
        };
        stream.in_flight = true;
        let (client, config, done_tx, key) = (
            self.client.clone(),
            self.config.clone(),
            self.done_tx.clone(),
            key.clone(),
        );
        self.senders.spawn(async move {
            let uuid = update.uuid;
            let outcome = send_until_done(&client, &config, &update).await;
            let _ = done_tx.send(Done { key, uuid, outcome }).await;
        });
    }

    async fn finished(&mut self, done: Done) {
        let record = match &done.outcome {
            Outcome::Acked => {
                m::status_update(m::OUTCOME_ACKED);
                Record::Acked { uuid: done.uuid }
            }
            Outcome::Dropped(reason) => {
                m::status_update(m::OUTCOME_DROPPED);
                Record::Dropped {
                    uuid: done.uuid,
                    reason: reason.clone(),
                }
            }
        };
        if let Err(e) = self.append(&done.key, record).await {
            // The update was delivered; without the record it is sent again after a restart,
            // and the master acknowledges a known uuid again without applying it twice.
            tracing::error!(error = %e, uuid = %done.uuid, "cannot record the acknowledgement");
        }
        let Some(stream) = self.streams.get_mut(&done.key) else {
            return;
        };
        stream.in_flight = false;
        if stream.queue.front().map(|u| u.uuid) == Some(done.uuid) {
            stream.queue.pop_front();
            self.pending_total = self.pending_total.saturating_sub(1);
        }
        if stream.queue.is_empty() {
            if !stream.idle {
                stream.idle = true;
                self.idle.push_back(done.key.clone());
            }
            while self.idle.len() > MAX_IDLE_TASKS {
                if let Some(old) = self.idle.pop_front() {
                    self.streams.remove(&old);
                }
            }
        } else {
            self.maybe_send(&done.key);
        }
    }
}

/// Whether the master refused the update for good (retrying cannot change the answer).
fn permanent(code: Code) -> bool {
    matches!(
        code,
        Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument
    )
}

/// Sends one update until the master acknowledges or refuses it for good.
async fn send_until_done(client: &MasterClient, config: &Config, update: &StatusUpdate) -> Outcome {
    let request = update.to_request();
    let want = update.uuid.to_string();
    let mut backoff = config.backoff_min;
    let mut attempt = 0u64;
    loop {
        m::status_update(if attempt == 0 {
            m::OUTCOME_SENT
        } else {
            m::OUTCOME_RETRIED
        });
        attempt += 1;
        let result = client
            .call_idempotent(|channel, time_left| {
                let mut r = tonic::Request::new(request.clone());
                r.set_timeout(time_left);
                async move {
                    Ok(AgentRegistryClient::new(channel)
                        .update_status(r)
                        .await?
                        .into_inner())
                }
            })
            .await;
        match result {
            Ok(ack) if ack.uuid == want => {
                tracing::debug!(task = %update.task_id, state = ?update.state, uuid = %want, attempt, "status update acknowledged");
                return Outcome::Acked;
            }
            Ok(ack) => tracing::warn!(
                task = %update.task_id,
                uuid = %want,
                acked = %ack.uuid,
                "master acknowledged a different uuid; sending again"
            ),
            Err(ClientError::Rejected(s)) if permanent(s.code()) => {
                let reason = format!("{:?}: {}", s.code(), s.message());
                tracing::warn!(
                    task = %update.task_id,
                    framework = %update.framework_id,
                    state = ?update.state,
                    uuid = %want,
                    %reason,
                    "master refused the status update; dropping it"
                );
                return Outcome::Dropped(reason);
            }
            Err(e) => tracing::warn!(
                task = %update.task_id,
                uuid = %want,
                attempt,
                retry_in_ms = backoff.as_millis() as u64,
                error = %e,
                "status update not acknowledged; will send again"
            ),
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Reads every task's `updates.log` under `frameworks`: per task, the updates neither
/// acknowledged nor dropped (in order) and every uuid seen.
fn recover(frameworks: &Path) -> Vec<(Key, Vec<StatusUpdate>, HashSet<Uuid>)> {
    let mut out = Vec::new();
    let Ok(fws) = std::fs::read_dir(frameworks) else {
        return out;
    };
    for fw in fws.filter_map(Result::ok) {
        let Ok(tasks) = std::fs::read_dir(fw.path().join("tasks")) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            let path = TaskDir(task.path()).updates_log();
            if let Some(r) = recover_log(&path) {
                out.push(r);
            }
        }
    }
    out
}

fn recover_log(path: &Path) -> Option<(Key, Vec<StatusUpdate>, HashSet<Uuid>)> {
    let replay = match checkpoint::read_records::<Record>(path) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "skipping an unreadable status update log");
            return None;
        }
    };
    for s in &replay.skipped {
        tracing::warn!(path = %path.display(), line = s.line, reason = %s.reason, "skipping a bad status update record");
    }
    if replay.torn_tail {
        if let Err(e) = checkpoint::truncate_torn_tail(path, replay.complete_len) {
            tracing::warn!(error = %e, "cannot cut the torn tail off a status update log");
        }
    }
    let mut updates: Vec<StatusUpdate> = Vec::new();
    let mut done = HashSet::new();
    for r in replay.records {
        match r {
            Record::Update { update } => {
                if !updates.iter().any(|u| u.uuid == update.uuid) {
                    updates.push(update)
                }
            }
            Record::Acked { uuid } | Record::Dropped { uuid, .. } => {
                done.insert(uuid);
            }
        }
    }
    let key = key_of(updates.first()?);
    let seen = updates.iter().map(|u| u.uuid).collect();
    let pending = updates
        .into_iter()
        .filter(|u| !done.contains(&u.uuid) && key_of(u) == key)
        .collect();
    Some((key, pending, seen))
}

#[cfg(test)]
mod tests;
