//! The status update manager: gets every task status update to the leading master, reliably
//! and in order (DESIGN.md, "Status updates and failover", hop 1).
//!
//! One task (the actor) owns all of its state; the rest of the agent reaches it through
//! [`StatusUpdates`], a bounded channel. The rules it keeps:
//!
//! - **Checkpoint before send.** [`StatusUpdates::update`] returns only once the update is
//!   appended to the task's `updates.log` and fsynced; only then may the caller (the executor
//!   link) acknowledge it to the executor. Nothing is sent to the master before that.
//!   Checkpoint writes run off the actor, one at a time per task (so a task's log keeps its
//!   order) and concurrently across tasks (so a burst of launches is not a queue of fsyncs,
//!   and the filesystem can commit them together); the actor keeps serving meanwhile.
//!   The record of an acknowledgement is written the same way, but nothing waits for it: if
//!   it is lost, the update is sent again after a restart and the master acknowledges a known
//!   uuid again.
//! - **Per task, in order, one in flight.** Each task has a queue; its head is sent with
//!   `AgentRegistry.UpdateStatus` through [`MasterClient`] (which follows the leader), retried
//!   with exponential backoff ([`BACKOFF_MIN`] → [`BACKOFF_MAX`], jittered) until the master
//!   acknowledges its uuid; the ack is recorded and the next one goes.
//! - **Batched across tasks.** The heads ready to go wait in one queue; up to
//!   [`MAX_BATCHES_IN_FLIGHT`] calls carry them, each with up to [`MAX_BATCH_UPDATES`]
//!   updates (of different tasks) and [`MAX_BATCH_BYTES`]. Nothing lingers: a batch leaves as
//!   soon as a call slot is free, so batches grow only while the master is busy (a burst of
//!   launches, many simulated agents in one process), and one call then carries what would
//!   have been hundreds. A call that fails as a whole is retried as a whole (the updates that
//!   did commit are acknowledged again as duplicates); one refused as a whole for a reason
//!   retrying cannot fix is split into single updates, so that one bad update does not take
//!   the others down with it.
//! - **Refusals retrying cannot fix** (`FAILED_PRECONDITION`, `NOT_FOUND`, `INVALID_ARGUMENT`)
//!   are logged and the update dropped, recorded as dropped.
//! - **Duplicates are harmless.** An update whose uuid this task already has is acknowledged
//!   to the caller again and not queued twice (the master also applies a uuid once). The
//!   uuids remembered per task are the newest [`MAX_UPDATES_PER_TASK`]: an executor resends
//!   only what the agent has not acknowledged to it, which is always among the newest.
//! - **Recovery.** At start, every task's `updates.log` is read back and whatever was neither
//!   acknowledged nor dropped is queued again, in order; a torn last line is skipped with a
//!   warning and cut off.
//! - **Bounded.** At most [`MAX_PENDING_PER_TASK`] unacknowledged updates per task and
//!   [`MAX_PENDING_TOTAL`] in all; beyond that callers get [`UpdateError::QueueFull`] (an
//!   executor keeps the update and sends it again). A log never grows past what the reader
//!   accepts: one that would is rewritten with every unacknowledged update and the newest
//!   others ([`compact_log`]).
//! - **Ends are handed on.** Once the record settling a task's terminal update is written (at
//!   run time, or found in a log at start), the sandbox collector ([`crate::gc`]) is told, so
//!   that the task's directory leaves the tree a restart reads.
//!
//! Simulated agents use [`Checkpointing::Memory`]: the same queueing and retrying, without the
//! files (a simulated agent's updates do not survive its process).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_client::{Backoff, ClientError, MasterClient};
use drover_proto::agent_api::{is_final_refusal, MAX_UPDATES_PER_CALL};
use drover_proto::v1;
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
use crate::update::{StatusUpdate, TaskState};

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
/// Most distinct updates remembered per task (for recognising resends); the oldest are
/// forgotten first.
pub const MAX_UPDATES_PER_TASK: usize = 1024;
/// Tasks with nothing pending whose uuids are still remembered; the oldest are forgotten.
pub const MAX_IDLE_TASKS: usize = 10_000;
/// Most updates in one UpdateStatus call (the master takes up to
/// [`MAX_UPDATES_PER_CALL`]).
pub const MAX_BATCH_UPDATES: usize = 256;
const _: () = assert!(MAX_BATCH_UPDATES <= MAX_UPDATES_PER_CALL);
/// Most encoded bytes of updates in one call (the master takes requests up to 1 MiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// UpdateStatus calls in flight at once.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
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
    /// Told of every task whose terminal update the master acknowledged (and whose log
    /// records it), at run time and in the logs recovered at start: the sandbox collector
    /// ([`crate::gc`]). A full channel loses the notice; the task's directory then stays
    /// until the next start offers it again.
    pub ended: Option<mpsc::Sender<crate::gc::Ended>>,
}

impl Config {
    pub fn new(checkpointing: Checkpointing) -> Self {
        Self {
            checkpointing,
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            send_timeout: SEND_TIMEOUT,
            ended: None,
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
pub enum Record {
    Update { update: StatusUpdate },
    Acked { uuid: Uuid },
    Dropped { uuid: Uuid, reason: String },
}

/// The uuids of the updates the master acknowledged, as the task's `updates.log` at `path`
/// records them (the chaos checkers compare them with every replica's registry: each was
/// committed before it was acknowledged).
pub fn acked_in_log(path: &Path) -> Result<Vec<Uuid>, CheckpointError> {
    let replay = checkpoint::read_records::<Record>(path)?;
    Ok(replay
        .records
        .into_iter()
        .filter_map(|r| match r {
            Record::Acked { uuid } => Some(uuid),
            Record::Update { .. } | Record::Dropped { .. } => None,
        })
        .collect())
}

/// The uuids of a task's latest updates, for recognising an executor's resend: at most
/// [`MAX_UPDATES_PER_TASK`], the oldest forgotten first. Forgetting is safe because an
/// executor resends only updates the agent has not acknowledged to it, and those are the
/// newest (at most [`MAX_PENDING_PER_TASK`] of them).
#[derive(Debug, Default)]
struct SeenIds {
    order: VecDeque<Uuid>,
    set: HashSet<Uuid>,
}

impl SeenIds {
    fn contains(&self, uuid: &Uuid) -> bool {
        self.set.contains(uuid)
    }

    fn insert(&mut self, uuid: Uuid) {
        if self.set.insert(uuid) {
            self.order.push_back(uuid);
            while self.order.len() > MAX_UPDATES_PER_TASK {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, uuid: &Uuid) {
        if self.set.remove(uuid) {
            self.order.retain(|u| u != uuid);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.order.len(), self.set.len());
        self.set.len()
    }
}

// Compaction always has room for what must survive: every unacknowledged update at its
// largest fits in the half of a log that compaction keeps.
const _: () = assert!(
    (MAX_PENDING_PER_TASK * checkpoint::MAX_RECORD_BYTES) as u64 <= checkpoint::MAX_LOG_BYTES / 2
);

/// What a full `updates.log` keeps when it is rewritten: every update neither acknowledged nor
/// dropped (they must be sent after a restart), then the newest others within half the log's
/// bound and [`MAX_UPDATES_PER_TASK`] (for recognising resends and for recovery's view of the
/// latest state), each with its acknowledgement or drop record. Order is kept. Pure.
fn compact_log(records: Vec<Record>) -> Vec<Record> {
    let LogContents { updates, mut done } = LogContents::of(records);
    let size = |r: &Record| checkpoint::line_len(r);
    let mut budget = checkpoint::MAX_LOG_BYTES / 2;
    let mut keep = vec![false; updates.len()];
    // Unacknowledged first: they always stay.
    for (i, u) in updates.iter().enumerate() {
        if !done.contains_key(&u.status.uuid) {
            keep[i] = true;
            budget = budget.saturating_sub(size(&Record::Update { update: u.clone() }));
        }
    }
    let mut kept = keep.iter().filter(|k| **k).count();
    for (i, u) in updates.iter().enumerate().rev() {
        if keep[i] {
            continue;
        }
        let n =
            size(&Record::Update { update: u.clone() }) + done.get(&u.status.uuid).map_or(0, size);
        if n > budget || kept >= MAX_UPDATES_PER_TASK {
            break;
        }
        budget -= n;
        keep[i] = true;
        kept += 1;
    }
    let mut out = Vec::new();
    for (u, k) in updates.into_iter().zip(keep) {
        if !k {
            continue;
        }
        let uuid = u.status.uuid;
        out.push(Record::Update { update: u });
        if let Some(d) = done.remove(&uuid) {
            out.push(d);
        }
    }
    out
}

/// What a task's log says: its updates, each once, in order, and the acknowledgement or drop
/// record of those that are settled.
struct LogContents {
    updates: Vec<StatusUpdate>,
    done: HashMap<Uuid, Record>,
}

impl LogContents {
    fn of(records: Vec<Record>) -> Self {
        let mut seen = HashSet::new();
        let mut updates = Vec::new();
        let mut done = HashMap::new();
        for r in records {
            match r {
                Record::Update { update } => {
                    if seen.insert(update.status.uuid) {
                        updates.push(update);
                    }
                }
                Record::Acked { uuid } | Record::Dropped { uuid, .. } => {
                    done.insert(uuid, r);
                }
            }
        }
        LogContents { updates, done }
    }
}

/// A task as the manager keys it: agent, framework, task.
pub type Key = (AgentId, FrameworkId, TaskId);

enum Command {
    Update {
        update: StatusUpdate,
        reply: oneshot::Sender<Result<(), UpdateError>>,
    },
    Pending {
        reply: oneshot::Sender<usize>,
    },
    UnacknowledgedTasks {
        reply: oneshot::Sender<Vec<(Key, TaskState)>>,
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
        let actor = Actor {
            client: client.with_deadline(config.send_timeout),
            config,
            streams: HashMap::new(),
            idle: VecDeque::new(),
            next_idle_stamp: 0,
            pending_total: 0,
            ready: VecDeque::new(),
            batches: JoinSet::new(),
            writers: JoinSet::new(),
        };
        let handle = tokio::spawn(actor.run(rx));
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

    /// The tasks with updates the master has not acknowledged yet, each with the state of its
    /// latest such update (an agent registering again reports them, so that the master waits
    /// for their updates instead of calling the tasks lost).
    pub async fn unacknowledged_tasks(&self) -> Result<Vec<(Key, TaskState)>, UpdateError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::UnacknowledgedTasks { reply })
            .await
            .map_err(|_| UpdateError::Stopped)?;
        rx.await.map_err(|_| UpdateError::Stopped)
    }
}

/// A record waiting for (or being written to) a task's log.
struct Write {
    record: Record,
    /// For an update: who waits for it to be durable (the caller, and any resend meanwhile).
    waiters: Vec<oneshot::Sender<Result<(), UpdateError>>>,
    /// The record settles (acknowledges or drops) the task's terminal update, this one: once
    /// it is written, the task's directory is the sandbox collector's.
    ends_task: Option<Uuid>,
}

#[derive(Default)]
struct Stream {
    /// Durable and not yet acknowledged by the master, in order; the head is sent.
    queue: VecDeque<StatusUpdate>,
    /// The head is waiting in `Actor::ready` or is in a call.
    in_flight: bool,
    seen: SeenIds,
    /// An append to the task's log succeeded in this process (its directory entry is durable).
    log_durable: bool,
    /// Records not yet in the log, in order; the head is being written when `writing`.
    to_write: VecDeque<Write>,
    writing: bool,
    /// The stamp of the task's current entry in `Actor::idle`, while it is idle.
    idle_since: Option<u64>,
}

impl Stream {
    /// Updates accepted but not yet acknowledged (durable or still being written).
    fn unacknowledged(&self) -> usize {
        self.queue.len()
            + self
                .to_write
                .iter()
                .filter(|w| matches!(w.record, Record::Update { .. }))
                .count()
    }

    /// The state of the latest update not acknowledged yet, if any.
    fn latest_unacknowledged(&self) -> Option<TaskState> {
        let writing = self.to_write.iter().rev().find_map(|w| match &w.record {
            Record::Update { update } => Some(update.status.state),
            _ => None,
        });
        writing.or_else(|| self.queue.back().map(|u| u.status.state))
    }

    /// The waiters of an update still being written, if `uuid` is one.
    fn waiters_of(
        &mut self,
        uuid: Uuid,
    ) -> Option<&mut Vec<oneshot::Sender<Result<(), UpdateError>>>> {
        self.to_write.iter_mut().find_map(|w| match &w.record {
            Record::Update { update } if update.status.uuid == uuid => Some(&mut w.waiters),
            _ => None,
        })
    }
}

/// A checkpoint write that ended.
struct Written {
    key: Key,
    result: Result<(), CheckpointError>,
}

struct Actor {
    client: MasterClient,
    config: Config,
    streams: HashMap<Key, Stream>,
    /// Streams with nothing pending, oldest first, each with the stamp it went idle with (an
    /// entry whose stamp is not its stream's current one is stale): forgotten beyond
    /// [`MAX_IDLE_TASKS`].
    idle: VecDeque<(Key, u64)>,
    next_idle_stamp: u64,
    pending_total: usize,
    /// Tasks whose head waits for a call, in the order they became ready.
    ready: VecDeque<Key>,
    /// UpdateStatus calls in flight (each until all its updates are decided).
    batches: JoinSet<Vec<Done>>,
    /// Checkpoint writes in flight, one per task at most.
    writers: JoinSet<Written>,
}

fn key_of(u: &StatusUpdate) -> Key {
    (
        u.agent_id.clone(),
        u.framework_id.clone(),
        u.task_id.clone(),
    )
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        if let Checkpointing::Disk(layout) = &self.config.checkpointing {
            let frameworks = layout.frameworks_dir();
            let dir = frameworks.clone();
            match checkpoint::off_runtime(dir, move || Ok(recover(&frameworks))).await {
                Ok(recovered) => self.adopt(recovered),
                Err(e) => tracing::error!(error = %e, "status update recovery failed"),
            }
        }
        self.pump();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Update { update, reply }) => self.accept(update, reply),
                    Some(Command::Pending { reply }) => {
                        let _ = reply.send(self.pending_total);
                    }
                    Some(Command::UnacknowledgedTasks { reply }) => {
                        let keys = self
                            .streams
                            .iter()
                            .filter_map(|(k, s)| Some((k.clone(), s.latest_unacknowledged()?)))
                            .collect();
                        let _ = reply.send(keys);
                    }
                    None => break,
                },
                Some(b) = self.batches.join_next(), if !self.batches.is_empty() => match b {
                    Ok(done) => {
                        for d in done {
                            self.finished(d);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "a status update call failed to run"),
                },
                Some(w) = self.writers.join_next(), if !self.writers.is_empty() => match w {
                    Ok(w) => self.written(w),
                    Err(e) => tracing::error!(error = %e, "a checkpoint write failed to run"),
                },
            }
            // Once per event, after all it made ready: the free call slots take as much as
            // there is.
            self.pump();
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

    /// Queues `write` for the task's log and starts it if none is in flight for the task.
    fn queue_write(&mut self, key: &Key, write: Write) {
        let stream = self.streams.entry(key.clone()).or_default();
        stream.to_write.push_back(write);
        self.start_write(key);
    }

    /// Starts the next write of the task's log, off the actor, unless one is in flight.
    fn start_write(&mut self, key: &Key) {
        let path = self.log_path(key);
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        if stream.writing {
            return;
        }
        let Some(head) = stream.to_write.front() else {
            return;
        };
        stream.writing = true;
        let Some(path) = path else {
            // In memory: nothing to wait for.
            self.written(Written {
                key: key.clone(),
                result: Ok(()),
            });
            return;
        };
        let record = head.record.clone();
        let durable = stream.log_durable;
        let key = key.clone();
        self.writers.spawn(async move {
            let result = checkpoint::off_runtime(path.clone(), move || {
                if let Some(dir) = path.parent() {
                    checkpoint::create_dir_all_durable(dir)?;
                }
                checkpoint::append_record(&path, &record, durable, compact_log)
            })
            .await;
            Written { key, result }
        });
    }

    /// A write of a task's log ended: an update becomes sendable (or is refused to its
    /// callers), and the task's next write starts.
    fn written(&mut self, w: Written) {
        let Some(stream) = self.streams.get_mut(&w.key) else {
            return;
        };
        stream.writing = false;
        let Some(done) = stream.to_write.pop_front() else {
            return;
        };
        if w.result.is_ok() {
            stream.log_durable = true;
            if let Some(last) = done.ends_task {
                if stream.queue.is_empty() && stream.to_write.is_empty() {
                    self.task_ended(&w.key, last);
                }
            }
        }
        let Some(stream) = self.streams.get_mut(&w.key) else {
            return;
        };
        match (done.record, w.result) {
            (Record::Update { update }, Ok(())) => {
                tracing::debug!(
                    task = %update.task_id,
                    framework = %update.framework_id,
                    state = ?update.status.state,
                    uuid = %update.status.uuid,
                    "status update checkpointed"
                );
                stream.queue.push_back(update);
                for reply in done.waiters {
                    let _ = reply.send(Ok(()));
                }
                self.maybe_send(&w.key);
            }
            (Record::Update { update }, Err(e)) => {
                tracing::error!(task = %update.task_id, uuid = %update.status.uuid, error = %e, "cannot checkpoint a status update");
                stream.seen.remove(&update.status.uuid);
                self.pending_total = self.pending_total.saturating_sub(1);
                // Everyone who sent this update (the first time or again) learns why.
                let why = e.to_string();
                for reply in done.waiters {
                    let _ = reply.send(Err(UpdateError::Checkpoint(CheckpointError::Io {
                        path: PathBuf::new(),
                        source: std::io::Error::other(why.clone()),
                    })));
                }
            }
            (Record::Acked { uuid } | Record::Dropped { uuid, .. }, Err(e)) => {
                // The update was delivered; without the record it is sent again after a
                // restart, and the master acknowledges a known uuid again without applying
                // it twice.
                tracing::error!(error = %e, %uuid, "cannot record the acknowledgement");
            }
            (_, Ok(())) => {}
        }
        self.start_write(&w.key);
        self.maybe_idle(&w.key);
    }

    fn adopt(&mut self, recovered: Vec<Recovered>) {
        let (mut updates, mut tasks) = (0usize, 0usize);
        for Recovered {
            key,
            pending,
            seen,
            ended,
        } in recovered
        {
            if let Some(last) = ended {
                self.task_ended(&key, last);
            }
            if pending.is_empty() {
                // Remembered so that a late resend from its executor is recognised.
                if self.idle.len() < MAX_IDLE_TASKS {
                    let stamp = self.idle_stamp();
                    self.idle.push_back((key.clone(), stamp));
                    self.streams.insert(
                        key,
                        Stream {
                            seen,
                            idle_since: Some(stamp),
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
                    seen,
                    ..Stream::default()
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

    /// Takes an update from the executor link: known uuids are answered at once (or when
    /// their write ends), new ones are queued for their task's log; `reply` is answered once
    /// the update is durable.
    fn accept(&mut self, update: StatusUpdate, reply: oneshot::Sender<Result<(), UpdateError>>) {
        let update = update.bounded();
        let key = key_of(&update);
        if let Some(s) = self.streams.get_mut(&key) {
            if s.seen.contains(&update.status.uuid) {
                match s.waiters_of(update.status.uuid) {
                    Some(waiters) => waiters.push(reply),
                    None => {
                        let _ = reply.send(Ok(()));
                    }
                }
                return;
            }
            if s.unacknowledged() >= MAX_PENDING_PER_TASK {
                let _ = reply.send(Err(UpdateError::QueueFull("per task")));
                return;
            }
        }
        if self.pending_total >= MAX_PENDING_TOTAL {
            let _ = reply.send(Err(UpdateError::QueueFull("all tasks")));
            return;
        }
        let stream = self.streams.entry(key.clone()).or_default();
        stream.seen.insert(update.status.uuid);
        // Its entry in `self.idle`, if any, goes stale.
        stream.idle_since = None;
        self.pending_total += 1;
        self.queue_write(
            &key,
            Write {
                record: Record::Update { update },
                waiters: vec![reply],
                ends_task: None,
            },
        );
    }

    /// Queues the task's head for a call, unless it is already queued or in one.
    fn maybe_send(&mut self, key: &Key) {
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        if stream.in_flight || stream.queue.is_empty() {
            return;
        }
        stream.in_flight = true;
        self.ready.push_back(key.clone());
    }

    /// Starts calls for the ready heads while call slots are free.
    fn pump(&mut self) {
        while self.batches.len() < MAX_BATCHES_IN_FLIGHT && !self.ready.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < MAX_BATCH_UPDATES {
                let Some(key) = self.ready.front() else {
                    break;
                };
                let Some(head) = self.streams.get(key).and_then(|s| s.queue.front()) else {
                    // Nothing left to send for it (cannot happen while it is in flight).
                    self.ready.pop_front();
                    continue;
                };
                let size = head.wire_len();
                if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
                    break;
                }
                bytes += size;
                batch.push(head.clone());
                self.ready.pop_front();
            }
            if batch.is_empty() {
                break;
            }
            let (client, config) = (self.client.clone(), self.config.clone());
            self.batches
                .spawn(async move { send_until_done(&client, &config, batch).await });
        }
    }

    /// An update was decided (acknowledged or refused for good): it leaves its task's queue,
    /// the outcome is recorded, and the task's next update becomes ready.
    fn finished(&mut self, done: Done) {
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
        let Some(stream) = self.streams.get_mut(&done.key) else {
            return;
        };
        stream.in_flight = false;
        let mut ends_task = None;
        if stream.queue.front().map(|u| u.status.uuid) == Some(done.uuid) {
            // Acknowledged or refused for good, a terminal update settles the task: a master
            // that forgot a completed task refuses a late resend of its end (NOT_FOUND).
            let head = stream.queue.pop_front();
            if stream.queue.is_empty() {
                ends_task = head
                    .filter(|u| u.status.state.is_terminal())
                    .map(|u| u.status.uuid);
            }
            self.pending_total = self.pending_total.saturating_sub(1);
        }
        // In memory there is no log to record the outcome in.
        if matches!(self.config.checkpointing, Checkpointing::Disk(_)) {
            self.queue_write(
                &done.key,
                Write {
                    record,
                    waiters: Vec::new(),
                    ends_task,
                },
            );
        }
        self.maybe_send(&done.key);
        self.maybe_idle(&done.key);
    }

    /// Tells the sandbox collector that the task is over for the master.
    fn task_ended(&self, key: &Key, last: Uuid) {
        if let Some(tx) = &self.config.ended {
            if tx.try_send((key.1.clone(), key.2.clone(), last)).is_err() {
                tracing::debug!(task = %key.2, "sandbox collector busy; the task's directory stays for now");
            }
        }
    }

    fn idle_stamp(&mut self) -> u64 {
        self.next_idle_stamp += 1;
        self.next_idle_stamp
    }

    /// A task with nothing pending and nothing to write joins the idle ones; beyond
    /// [`MAX_IDLE_TASKS`] the oldest are forgotten.
    fn maybe_idle(&mut self, key: &Key) {
        let stamp = self.next_idle_stamp + 1;
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        if !stream.queue.is_empty() || !stream.to_write.is_empty() || stream.idle_since.is_some() {
            return;
        }
        self.next_idle_stamp = stamp;
        stream.idle_since = Some(stamp);
        self.idle.push_back((key.clone(), stamp));
        while self.idle.len() > MAX_IDLE_TASKS {
            let Some((old, stamp)) = self.idle.pop_front() else {
                break;
            };
            // Only an entry that is still its stream's current one: the stream is idle since
            // then, so nothing is pending or being written.
            if self
                .streams
                .get(&old)
                .is_some_and(|s| s.idle_since == Some(stamp))
            {
                self.streams.remove(&old);
            }
        }
    }
}

/// Sends `updates` (each of a different task) until the master has acknowledged or refused
/// each for good.
async fn send_until_done(
    client: &MasterClient,
    config: &Config,
    updates: Vec<StatusUpdate>,
) -> Vec<Done> {
    let mut out = Vec::with_capacity(updates.len());
    // Batches still to send; a batch refused as a whole comes back as single updates.
    let mut todo = vec![updates];
    while let Some(mut batch) = todo.pop() {
        let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
        let mut attempt = 0u64;
        while !batch.is_empty() {
            let outcome = if attempt == 0 {
                m::OUTCOME_SENT
            } else {
                m::OUTCOME_RETRIED
            };
            for _ in &batch {
                m::status_update(outcome);
            }
            attempt += 1;
            let request = v1::StatusUpdateRequest {
                updates: batch.iter().map(StatusUpdate::to_wire).collect(),
            };
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
                Ok(reply) if reply.outcomes.len() == batch.len() => {
                    let mut again = Vec::new();
                    for (update, o) in batch.drain(..).zip(reply.outcomes) {
                        let done = |outcome| Done {
                            key: key_of(&update),
                            uuid: update.status.uuid,
                            outcome,
                        };
                        let code = Code::from(o.code);
                        if Uuid::try_parse(&o.uuid).ok() != Some(update.status.uuid) {
                            tracing::warn!(task = %update.task_id, uuid = %update.status.uuid, acked = %o.uuid, "master answered for a different uuid; sending again");
                            again.push(update);
                        } else if code == Code::Ok {
                            tracing::debug!(task = %update.task_id, state = ?update.status.state, uuid = %update.status.uuid, attempt, "status update acknowledged");
                            out.push(done(Outcome::Acked));
                        } else if is_final_refusal(code) {
                            let reason = format!("{code:?}: {}", o.message);
                            tracing::warn!(
                                task = %update.task_id,
                                framework = %update.framework_id,
                                state = ?update.status.state,
                                uuid = %update.status.uuid,
                                %reason,
                                "master refused the status update; dropping it"
                            );
                            out.push(done(Outcome::Dropped(reason)));
                        } else {
                            again.push(update);
                        }
                    }
                    batch = again;
                    if batch.is_empty() {
                        break;
                    }
                }
                Ok(reply) => tracing::warn!(
                    updates = batch.len(),
                    outcomes = reply.outcomes.len(),
                    "master answered a different number of updates; sending again"
                ),
                Err(ClientError::Rejected(s)) if is_final_refusal(s.code()) && batch.len() > 1 => {
                    tracing::warn!(updates = batch.len(), code = ?s.code(), error = s.message(), "master refused a whole batch; sending its updates one by one");
                    todo.extend(batch.drain(..).map(|u| vec![u]));
                    break;
                }
                Err(ClientError::Rejected(s)) if is_final_refusal(s.code()) => {
                    let reason = format!("{:?}: {}", s.code(), s.message());
                    for update in batch.drain(..) {
                        tracing::warn!(task = %update.task_id, uuid = %update.status.uuid, %reason, "master refused the status update; dropping it");
                        out.push(Done {
                            key: key_of(&update),
                            uuid: update.status.uuid,
                            outcome: Outcome::Dropped(reason.clone()),
                        });
                    }
                    break;
                }
                Err(e) => tracing::warn!(
                    updates = batch.len(),
                    attempt,
                    retry_within_ms = backoff.step().as_millis() as u64,
                    error = %e,
                    "status updates not acknowledged; will send again"
                ),
            }
            backoff.wait().await;
        }
    }
    out
}

/// Writes a task's `updates.log` as the agent leaves it once every one of `updates` was
/// checkpointed and acknowledged by the master (not fsynced: for building the work directory
/// of a benchmark).
pub fn write_acknowledged_log(
    path: &Path,
    updates: &[StatusUpdate],
) -> Result<(), CheckpointError> {
    let mut bytes = Vec::new();
    for u in updates {
        bytes.extend(checkpoint::encode_record(
            path,
            &Record::Update { update: u.clone() },
        )?);
        bytes.extend(checkpoint::encode_record(
            path,
            &Record::Acked {
                uuid: u.status.uuid,
            },
        )?);
    }
    std::fs::write(path, bytes).map_err(checkpoint::io_err(path))
}

/// Every update recorded in a task's `updates.log`, in order (acknowledged or not); empty when
/// the log is missing or unreadable. Agent recovery reads what the agent last knew from it.
pub fn checkpointed_updates(path: &Path) -> Vec<StatusUpdate> {
    match checkpoint::read_records::<Record>(path) {
        Ok(replay) => replay
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::Update { update } => Some(update),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Reads every task's `updates.log` under `frameworks`: per task, the updates neither
/// acknowledged nor dropped (in order) and every uuid seen.
fn recover(frameworks: &Path) -> Vec<Recovered> {
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

fn recover_log(path: &Path) -> Option<Recovered> {
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
    let LogContents { updates, done } = LogContents::of(replay.records);
    let key = key_of(updates.first()?);
    // The newest only: a log written before logs were compacted may hold many more.
    let mut seen = SeenIds::default();
    for u in &updates {
        seen.insert(u.status.uuid);
    }
    let ended = updates
        .last()
        .filter(|u| {
            u.status.state.is_terminal()
                && updates.iter().all(|u| done.contains_key(&u.status.uuid))
        })
        .map(|u| u.status.uuid);
    let pending = updates
        .into_iter()
        .filter(|u| !done.contains_key(&u.status.uuid) && key_of(u) == key)
        .collect();
    Some(Recovered {
        key,
        pending,
        seen,
        ended,
    })
}

/// What one task's recovered log holds.
struct Recovered {
    key: Key,
    /// Updates neither acknowledged nor dropped, in order.
    pending: Vec<StatusUpdate>,
    seen: SeenIds,
    /// Its last update is terminal and every update is settled: the task is over; the uuid of
    /// that last update.
    ended: Option<Uuid>,
}

#[cfg(test)]
mod tests;
