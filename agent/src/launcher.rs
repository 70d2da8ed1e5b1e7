//! The real agent's task table: starts one `drover executor` per task, routes kill requests to
//! it, and notices executors that die without reporting.
//!
//! One actor owns the table; the Agent service, the executor socket and the executors'
//! waiters reach it through [`Launcher`], a bounded channel. What it keeps:
//!
//! - **RunTask is idempotent** per (framework, task): a task in the table, or with a
//!   `task.json` on disk (an earlier life of this agent ran it), is not started again.
//! - **Checkpoint before start**: the task directory, `sandbox/` and `task.json` are created
//!   and fsynced before the executor is spawned (and before RunTask is answered); the
//!   executor's pid is recorded in `executor.pid`. The file work runs off the actor, so tasks
//!   are prepared concurrently and a burst of launches is not a queue of fsyncs; the task is
//!   in the table from the start, so a repeated RunTask or a kill meanwhile finds it. The executor is spawned in its own process group (and ignores SIGHUP), and is never killed
//!   when the agent stops: it outlives the agent by design.
//! - **No silent ends**: an executor that cannot be started makes the agent report
//!   `TASK_FAILED` (source agent, reason `executor_failed`); one that exits before its task's
//!   terminal update reached the agent makes it report `TASK_FAILED` (reason
//!   `executor_terminated`).
//! - **Bounded**: finished tasks are remembered (for the task gauge and kill answers) up to
//!   [`MAX_COMPLETED_TASKS`]; the oldest are forgotten.
//! - **Recovery** ([`Launcher::recover`], before the agent registers): every task an earlier
//!   life of the agent started is taken back into the table from what [`crate::recovery`]
//!   found. Updates the executor made while the agent was down are checkpointed and sent
//!   (the task's true end, if it ended); a live executor is re-attached (it reconnects by
//!   itself); one that died without reporting the end makes the agent report `TASK_FAILED`
//!   (reason `executor_terminated`) after killing what is left of the command; with
//!   `--recover cleanup` every live task is killed and reported `TASK_KILLED` (reason
//!   `agent_cleanup`). An unreadable `task.json` fails that task alone (reason
//!   `checkpoint_corrupt`). A re-attached executor is not this agent's child: if it
//!   disconnects and does not come back within [`ADOPTED_RECONNECT_GRACE`] while no such
//!   process runs, its task is reported `TASK_FAILED` (`executor_terminated`) too.
//! - **Report** ([`Launcher::report`]): what the agent tells a master when it registers
//!   again: its live tasks, and its ended ones whose updates the master has not acknowledged.
//!   From the report until the registration is answered, RunTask is refused as retryable
//!   (`Registering`): a task launched meanwhile would be missing from the report, and the
//!   master would take it for lost.

mod custom;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::cgroups::CgroupMode;
use crate::checkpoint::{self, CheckpointError};
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::layout::{Layout, TaskDir};
use crate::metrics as m;
use crate::protocol::ToExecutor;
use crate::recovery::{kill_leftovers, Found, RecoverMode};
use crate::status_updates::StatusUpdates;
use crate::task::{KillTask, LaunchSpec, RunTask, LAUNCH_SPEC_VERSION};
use crate::update::{StatusSource, StatusUpdate, TaskState};

pub use custom::{CustomError, ExecKey, SubscribedRun, ToCustom, EXECUTOR_EVENT_QUEUE};
use custom::{CustomPrep, ExecEntry};

/// Finished tasks remembered.
pub const MAX_COMPLETED_TASKS: usize = 1000;
/// How long a re-attached executor (not this agent's child) may stay disconnected while no
/// such process runs before its task is reported failed.
pub const ADOPTED_RECONNECT_GRACE: Duration = Duration::from_secs(3);

/// What recovery did, by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoverySummary {
    /// Live tasks whose executor still runs (re-attached).
    pub reattached: usize,
    /// Tasks that had ended (their end checkpointed now if the agent had missed it).
    pub ended: usize,
    /// Tasks whose executor died without reporting the end: reported TASK_FAILED.
    pub executor_gone: usize,
    /// Tasks killed by `--recover cleanup`.
    pub cleaned: usize,
    /// Task directories with an unreadable `task.json`: reported TASK_FAILED.
    pub corrupt: usize,
    /// Runs of custom executors re-attached (their executors subscribe again).
    pub executor_runs: usize,
}
/// Depth of the launcher's request channel.
const CHANNEL_DEPTH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("agent_id: this agent is {actual}, not {requested}")]
    WrongAgent { requested: AgentId, actual: AgentId },
    #[error("agent_id: no agent of this process is {0}")]
    UnknownAgent(AgentId),
    #[error("this agent has not registered with a master yet; try again")]
    NotRegistered,
    #[error("this agent is registering again with its task report; try again once it has")]
    Registering,
    #[error("task {task} of framework {framework} is not known here")]
    NotFound {
        framework: FrameworkId,
        task: TaskId,
    },
    #[error("cannot checkpoint the task: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the agent is shutting down")]
    Stopped,
}

#[derive(Clone, Debug)]
pub struct LauncherConfig {
    pub layout: Layout,
    /// Program and leading arguments that start an executor (`drover executor`).
    pub executor_command: Vec<OsString>,
    pub default_kill_grace: Duration,
    pub cgroups: CgroupMode,
    /// Where custom executors reach the agent's HTTP API (`ip:port`, `MESOS_AGENT_ENDPOINT`).
    pub executor_endpoint: String,
    /// How long a custom executor may take to subscribe before it is killed.
    pub executor_registration_timeout: Duration,
    /// How long a custom executor found running after a restart may take to subscribe again.
    pub executor_reregistration_timeout: Duration,
    /// How long a custom executor with no live task runs before it is shut down.
    pub executor_idle_timeout: Duration,
    /// From SHUTDOWN to SIGKILL, for a custom executor that set no grace.
    pub executor_shutdown_grace: Duration,
    /// The Docker engine container tasks run through, when the agent has one.
    pub docker: Option<crate::docker::DockerEngine>,
    /// Whom tasks run as.
    pub users: crate::users::UserPolicy,
}

impl LauncherConfig {
    /// Custom executors' timeouts as Mesos's defaults have them (registration 1 min, a
    /// shutdown grace of 5 s), shut down after 5 s idle.
    pub const EXECUTOR_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
    /// pymesos retries with a backoff of up to 15 s: longer than that.
    pub const EXECUTOR_REREGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
    pub const EXECUTOR_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
    pub const EXECUTOR_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
}

type Key = (FrameworkId, TaskId);

/// A task to run and who waits for the answer.
type RunRequest = (RunTask, oneshot::Sender<Result<(), TaskError>>);

enum Msg {
    Run {
        // Boxed: a task (its resources held inline) is much larger than the other messages.
        req: Box<RunTask>,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    /// A task group's tasks, placed in one step: none is given to its executor before the
    /// others are in its run.
    RunGroup(Vec<RunRequest>),
    Kill {
        req: KillTask,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    Connected {
        key: Key,
        conn: mpsc::Sender<ToExecutor>,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    Disconnected {
        key: Key,
        conn: mpsc::Sender<ToExecutor>,
    },
    StateSeen {
        key: Key,
        state: TaskState,
        /// The update says its container's image could not be had
        /// ([`crate::executor::container::REASON_IMAGE_PULL_FAILED`]).
        image_pull_failed: bool,
    },
    Exited {
        key: Key,
        status: Result<ExitStatus, String>,
    },
    Registered(AgentId),
    Recover {
        found: Vec<Found>,
        runs: Vec<crate::recovery::FoundRun>,
        mode: RecoverMode,
        stored_id: Option<AgentId>,
        reply: oneshot::Sender<RecoverySummary>,
    },
    Report {
        agent: AgentId,
        reply: oneshot::Sender<Vec<(FrameworkId, TaskId, TaskState)>>,
    },
    /// A re-attached executor disconnected a while ago: is it back or still running?
    CheckAdopted(Key),
    /// The off-actor part of a custom executor's task's launch ended.
    CustomPrepared {
        key: Key,
        dir: TaskDir,
        outcome: CustomPrep,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    /// A run of a custom executor ended (its supervisor exited), with the executor's raw
    /// wait status when it is known.
    RunExited {
        exec: ExecKey,
        run: crate::layout::RunDir,
        status: Option<i32>,
    },
    RegistrationTimeout {
        exec: ExecKey,
        run: crate::layout::RunDir,
    },
    IdleCheck {
        exec: ExecKey,
        run: crate::layout::RunDir,
    },
    ShutdownDeadline {
        exec: ExecKey,
        run: crate::layout::RunDir,
    },
    ReportEnd {
        key: Key,
        state: TaskState,
        reason: &'static str,
        message: String,
    },
    ExecSubscribe {
        exec: ExecKey,
        unacknowledged: HashSet<TaskId>,
        conn: mpsc::Sender<ToCustom>,
        reply: oneshot::Sender<Result<SubscribedRun, CustomError>>,
    },
    ExecDisconnected {
        exec: ExecKey,
        conn: mpsc::Sender<ToCustom>,
    },
    ExecCheck {
        exec: ExecKey,
        task: Option<TaskId>,
        reply: oneshot::Sender<Result<AgentId, CustomError>>,
    },
    ExecAck {
        exec: ExecKey,
        task: TaskId,
        uuid: uuid::Uuid,
    },
    /// A framework's message for a custom executor, or its SHUTDOWN (`shutdown`).
    ToExecutor {
        call: crate::task::ExecutorCall,
        shutdown: bool,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    /// The off-actor part of a launch ended.
    Prepared {
        key: Key,
        dir: TaskDir,
        outcome: Launch,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
}

/// How the off-actor part of a launch (checkpoint, then start the executor) ended.
enum Launch {
    /// `task.json` was already there: an earlier life of this agent started the task.
    Adopted,
    /// Checkpointed and started: the executor's pid.
    Started(u32),
    /// Checkpointed, but the executor could not be started.
    SpawnFailed(std::io::Error),
    /// Not checkpointed: not started.
    CheckpointFailed(CheckpointError),
}

/// The handle to the task table. Cheap to clone.
#[derive(Clone)]
pub struct Launcher {
    tx: mpsc::Sender<Msg>,
}

struct Entry {
    agent_id: AgentId,
    state: TaskState,
    kill_grace: Option<Duration>,
    /// The connected executor, if any.
    conn: Option<mpsc::Sender<ToExecutor>>,
    /// The grace of a kill asked for; re-sent to an executor that reconnects.
    kill_requested: Option<Duration>,
    /// While the launch is being prepared off the actor: the answers owed to RunTasks for
    /// the same task that came meanwhile (they get the first one's outcome).
    preparing: Option<Vec<oneshot::Sender<Result<(), TaskError>>>>,
    /// The executor is not this agent's child (an earlier life started it): its exit is
    /// noticed by its absence, not by waiting on it.
    adopted: bool,
    /// The custom executor that runs it, if not Drover's own.
    executor: Option<ExecutorId>,
    /// It runs in a Docker container: since when this agent has been starting it (`None` for
    /// one an earlier life started), for the start latency.
    container: Option<Option<std::time::Instant>>,
}

impl Entry {
    /// A task this agent is starting now.
    fn new(agent_id: AgentId, kill_grace: Option<Duration>) -> Self {
        Entry {
            agent_id,
            state: TaskState::Staging,
            kill_grace,
            conn: None,
            kill_requested: None,
            preparing: Some(Vec::new()),
            adopted: false,
            executor: None,
            container: None,
        }
    }

    /// A task an earlier life of the agent started.
    fn recovered(agent_id: AgentId, state: TaskState, kill_grace: Option<Duration>) -> Self {
        Entry {
            agent_id,
            state,
            kill_grace,
            conn: None,
            kill_requested: None,
            preparing: None,
            adopted: true,
            executor: None,
            container: None,
        }
    }
}

struct Actor {
    config: LauncherConfig,
    updates: StatusUpdates,
    /// Custom executors' ends go to their frameworks through it.
    relay: crate::relay::Relay,
    agent_id: Option<AgentId>,
    /// A task report was made and the registration it is for is not answered yet.
    registering: bool,
    tasks: HashMap<Key, Entry>,
    /// The runs of custom executors.
    executors: HashMap<ExecKey, ExecEntry>,
    /// Runs that ended while the agent was down, not yet told to their frameworks: they are
    /// once the agent is registered again (see [`custom`]).
    exits_while_down: Vec<custom::EndedRun>,
    completed: VecDeque<Key>,
    waiters: JoinSet<()>,
    me: mpsc::WeakSender<Msg>,
}

impl Launcher {
    /// Starts the task table. It stops when every handle is gone, or with the returned task.
    pub fn start(
        config: LauncherConfig,
        updates: StatusUpdates,
        relay: crate::relay::Relay,
    ) -> (Launcher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let actor = Actor {
            config,
            updates,
            relay,
            agent_id: None,
            registering: false,
            tasks: HashMap::new(),
            executors: HashMap::new(),
            exits_while_down: Vec::new(),
            completed: VecDeque::new(),
            waiters: JoinSet::new(),
            me: tx.downgrade(),
        };
        (Launcher { tx }, tokio::spawn(actor.run(rx)))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, TaskError>>) -> Msg,
    ) -> Result<T, TaskError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| TaskError::Stopped)?;
        rx.await.map_err(|_| TaskError::Stopped)?
    }

    /// Starts the tasks of one RunTask, prepared concurrently (see [`run_all`]).
    pub async fn run_tasks(&self, reqs: Vec<RunTask>) -> Vec<Result<(), TaskError>> {
        // A task group's tasks go in one message. Every message is sent before any answer
        // is awaited: a task may be answered only once a run of its executor ends.
        let mut batches: Vec<Vec<RunTask>> = Vec::new();
        let mut group_at: HashMap<String, usize> = HashMap::new();
        for req in reqs {
            match req.task.task_group.clone() {
                Some(g) => match group_at.get(&g) {
                    Some(&i) => batches[i].push(req),
                    None => {
                        group_at.insert(g, batches.len());
                        batches.push(vec![req]);
                    }
                },
                None => batches.push(vec![req]),
            }
        }
        let mut pending = Vec::new();
        for batch in batches {
            let grouped = batch.first().is_some_and(|r| r.task.task_group.is_some());
            let (requests, replies): (Vec<RunRequest>, Vec<_>) = batch
                .into_iter()
                .map(|req| {
                    let (reply, rx) = oneshot::channel();
                    ((req, reply), rx)
                })
                .unzip();
            let msg = if !grouped && requests.len() == 1 {
                let mut requests = requests;
                let (req, reply) = requests.remove(0);
                Msg::Run {
                    req: Box::new(req),
                    reply,
                }
            } else {
                Msg::RunGroup(requests)
            };
            let sent = self.tx.send(msg).await.is_ok();
            pending.extend(replies.into_iter().map(|rx| sent.then_some(rx)));
        }
        let mut answers = Vec::with_capacity(pending.len());
        for rx in pending {
            answers.push(match rx {
                Some(rx) => rx.await.unwrap_or(Err(TaskError::Stopped)),
                None => Err(TaskError::Stopped),
            });
        }
        answers
    }

    pub async fn kill_task(&self, req: KillTask) -> Result<(), TaskError> {
        self.ask(|reply| Msg::Kill { req, reply }).await
    }

    /// An executor said hello: kill requests for its task go to `conn` from now on.
    pub async fn connected(
        &self,
        framework: FrameworkId,
        task: TaskId,
        conn: mpsc::Sender<ToExecutor>,
    ) -> Result<(), TaskError> {
        self.ask(|reply| Msg::Connected {
            key: (framework, task),
            conn,
            reply,
        })
        .await
    }

    pub async fn disconnected(
        &self,
        framework: FrameworkId,
        task: TaskId,
        conn: mpsc::Sender<ToExecutor>,
    ) {
        let _ = self
            .tx
            .send(Msg::Disconnected {
                key: (framework, task),
                conn,
            })
            .await;
    }

    /// An update of the task, with `state`, was checkpointed (call before acknowledging it to
    /// the executor); `image_pull_failed`: its reason is [`REASON_IMAGE_PULL_FAILED`].
    pub async fn state_seen(
        &self,
        framework: FrameworkId,
        task: TaskId,
        state: TaskState,
        image_pull_failed: bool,
    ) {
        let _ = self
            .tx
            .send(Msg::StateSeen {
                key: (framework, task),
                state,
                image_pull_failed,
            })
            .await;
    }

    /// A custom executor subscribed on `conn`: what SUBSCRIBED tells it (its LAUNCHes and
    /// KILLs follow on `conn`).
    pub async fn executor_subscribe(
        &self,
        exec: ExecKey,
        unacknowledged: HashSet<TaskId>,
        conn: mpsc::Sender<ToCustom>,
    ) -> Result<SubscribedRun, CustomError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::ExecSubscribe {
            exec,
            unacknowledged,
            conn,
            reply,
        };
        self.tx.send(msg).await.map_err(|_| CustomError::Stopped)?;
        rx.await.map_err(|_| CustomError::Stopped)?
    }

    /// A custom executor's subscription on `conn` ended. Callable from `Drop`.
    pub fn executor_disconnected(&self, exec: ExecKey, conn: mpsc::Sender<ToCustom>) {
        let tx = self.tx.clone();
        let msg = Msg::ExecDisconnected { exec, conn };
        if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }

    /// Whether the custom executor is subscribed and (for an UPDATE) runs `task`; the agent
    /// the task runs as.
    pub async fn executor_check(
        &self,
        exec: ExecKey,
        task: Option<TaskId>,
    ) -> Result<AgentId, CustomError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::ExecCheck { exec, task, reply };
        self.tx.send(msg).await.map_err(|_| CustomError::Stopped)?;
        rx.await.map_err(|_| CustomError::Stopped)?
    }

    /// A framework's message for one of its custom executors: a MESSAGE event if it is
    /// subscribed, else dropped.
    pub async fn framework_message(
        &self,
        call: crate::task::ExecutorCall,
    ) -> Result<(), TaskError> {
        self.ask(|reply| Msg::ToExecutor {
            call,
            shutdown: false,
            reply,
        })
        .await
    }

    /// A framework shuts one of its custom executors down: SHUTDOWN, then SIGKILL after its
    /// grace (at once if it is not subscribed). Its tasks that have not ended then fail.
    pub async fn shutdown_executor(
        &self,
        call: crate::task::ExecutorCall,
    ) -> Result<(), TaskError> {
        self.ask(|reply| Msg::ToExecutor {
            call,
            shutdown: true,
            reply,
        })
        .await
    }

    /// Tells a custom executor that its update of `task` is checkpointed (ACKNOWLEDGED).
    pub async fn executor_acknowledge(&self, exec: ExecKey, task: TaskId, uuid: uuid::Uuid) {
        let _ = self.tx.send(Msg::ExecAck { exec, task, uuid }).await;
    }

    /// The agent (re)registered under `id`.
    pub async fn registered(&self, id: AgentId) {
        let _ = self.tx.send(Msg::Registered(id)).await;
    }

    /// Takes back the tasks an earlier life of the agent started (see the module doc);
    /// `stored_id` is the agent's id from its work directory.
    pub async fn recover(
        &self,
        found: Vec<Found>,
        runs: Vec<crate::recovery::FoundRun>,
        mode: RecoverMode,
        stored_id: Option<AgentId>,
    ) -> RecoverySummary {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Recover {
            found,
            runs,
            mode,
            stored_id,
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return RecoverySummary::default();
        }
        rx.await.unwrap_or_default()
    }

    /// The tasks to report when registering again as `agent`: the live ones, and the ended
    /// ones whose updates the master has not acknowledged, each in the state the agent knows.
    pub async fn report(&self, agent: AgentId) -> Vec<(FrameworkId, TaskId, TaskState)> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Report { agent, reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// One launch on its way: the task, its directory, its launch spec as written to disk, and
/// who waits for the outcome.
struct Launching {
    key: Key,
    dir: TaskDir,
    json: Vec<u8>,
    reply: oneshot::Sender<Result<(), TaskError>>,
}

/// A launch's off-actor part: checkpoints the launch spec (unless an earlier life of the agent
/// did: then the task is adopted), starts the executor, tells the actor ([`Msg::Prepared`]),
/// then waits for the executor to exit and tells it that too ([`Msg::Exited`]).
async fn prepare_and_start(
    launch: Launching,
    program: Vec<OsString>,
    socket: PathBuf,
    me: mpsc::WeakSender<Msg>,
) {
    let Launching {
        key,
        dir,
        json,
        reply,
    } = launch;
    let d = dir.clone();
    let prepared = checkpoint::off_runtime(dir.0.clone(), move || {
        if read_launch_spec(&d).is_some() {
            return Ok(false);
        }
        checkpoint::create_dir_all_durable(&d.sandbox())?;
        checkpoint::write_atomic(&d.task_json(), &json)?;
        Ok(true)
    })
    .await;
    let (outcome, child) = match prepared {
        Ok(false) => (Launch::Adopted, None),
        Err(e) => (Launch::CheckpointFailed(e), None),
        Ok(true) => {
            let spawned = match executor_command(&program, &socket, &dir) {
                Ok(mut cmd) => tokio::task::spawn_blocking(move || cmd.spawn())
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
                Err(e) => Err(e),
            };
            match spawned {
                Ok(child) => (Launch::Started(child.id().unwrap_or(0)), Some(child)),
                Err(e) => (Launch::SpawnFailed(e), None),
            }
        }
    };
    let Some(tx) = me.upgrade() else {
        return;
    };
    let _ = tx
        .send(Msg::Prepared {
            key: key.clone(),
            dir,
            outcome,
            reply,
        })
        .await;
    if let Some(mut child) = child {
        let status = child.wait().await.map_err(|e| e.to_string());
        let _ = tx.send(Msg::Exited { key, status }).await;
    }
}

/// The command that starts the executor of the task in `dir`, working in that directory (as a
/// Mesos executor works in its sandbox: nothing of the agent's own directory is its business),
/// its output to the task's `executor.log`. `dir` is absolute (the work directory is
/// canonicalized at start).
fn executor_command(
    command: &[OsString],
    socket: &std::path::Path,
    dir: &TaskDir,
) -> std::io::Result<tokio::process::Command> {
    let mut cmd = detached_command(command, &dir.0, &dir.executor_log())?;
    cmd.arg("--task-dir")
        .arg(&dir.0)
        .arg("--agent-socket")
        .arg(socket);
    Ok(cmd)
}

/// `drover executor` (the configured `command`) working in `dir`, its output appended to
/// `log`, never killed with the agent: its own process group, so that a signal to the
/// agent's group (Ctrl-C in a terminal, a supervisor stopping the agent) does not reach it.
/// No `pre_exec`, so the standard library can use posix_spawn instead of forking the agent.
/// The caller adds the mode's arguments.
fn detached_command(
    command: &[OsString],
    dir: &std::path::Path,
    log: &std::path::Path,
) -> std::io::Result<tokio::process::Command> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no executor command configured"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false)
        .process_group(0);
    Ok(cmd)
}

/// Reads `task.json` of a task directory, if there is a valid one.
fn read_launch_spec(dir: &TaskDir) -> Option<LaunchSpec> {
    let bytes = std::fs::read(dir.task_json()).ok()?;
    serde_json::from_slice::<LaunchSpec>(&bytes)
        .ok()
        .filter(|s| s.version == LAUNCH_SPEC_VERSION)
}

/// `value` as the JSON of the checkpoint at `path`.
fn checkpoint_json<T: serde::Serialize>(value: &T, path: PathBuf) -> Result<Vec<u8>, TaskError> {
    serde_json::to_vec_pretty(value)
        .map_err(|source| TaskError::Checkpoint(CheckpointError::Encode { path, source }))
}

impl Actor {
    /// The `task.json` of `req`, whose directory is `dir`.
    fn launch_spec_json(
        &self,
        req: &RunTask,
        dir: &TaskDir,
        run_as: Option<crate::users::RunAs>,
    ) -> Result<Vec<u8>, TaskError> {
        let spec = LaunchSpec {
            version: LAUNCH_SPEC_VERSION,
            agent_id: req.agent_id.clone(),
            framework_id: req.framework_id.clone(),
            task: req.task.clone(),
            default_kill_grace_ms: self.config.default_kill_grace.as_millis() as u64,
            cgroups: self.config.cgroups.clone(),
            docker: self.config.docker.clone(),
            run_as,
        };
        checkpoint_json(&spec, dir.task_json())
    }

    /// Forgets a task that will not start, answering its RunTask with `error`.
    fn not_launched(
        &mut self,
        key: &Key,
        reply: oneshot::Sender<Result<(), TaskError>>,
        error: TaskError,
    ) {
        if let Some(e) = self.tasks.remove(key) {
            m::task_state_changed(Some(e.state), None);
        }
        let _ = reply.send(Err(error));
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Some(_) = self.waiters.join_next(), if !self.waiters.is_empty() => {}
            }
        }
        // Dropping the waiters (with the actor) leaves the executors running: they outlive
        // the agent.
        for (_, e) in self.tasks.drain() {
            m::task_state_changed(Some(e.state), None);
            if e.container.is_some() {
                m::container_state_changed(Some(e.state), None);
            }
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Run { req, reply } => self.run_task(*req, reply),
            Msg::RunGroup(members) => {
                for (req, reply) in members {
                    self.run_task(req, reply);
                }
            }
            Msg::Prepared {
                key,
                dir,
                outcome,
                reply,
            } => self.prepared(key, dir, outcome, reply).await,
            Msg::Kill { req, reply } => {
                let r = self.kill_task(req).await;
                let _ = reply.send(r);
            }
            Msg::Connected { key, conn, reply } => {
                let r = self.connected(key, conn).await;
                let _ = reply.send(r);
            }
            Msg::Disconnected { key, conn } => {
                if let Some(e) = self.tasks.get_mut(&key) {
                    if e.conn.as_ref().is_some_and(|c| c.same_channel(&conn)) {
                        e.conn = None;
                        if e.adopted && !e.state.is_terminal() {
                            self.check_adopted_later(key);
                        }
                    }
                }
            }
            Msg::CheckAdopted(key) => self.check_adopted(key).await,
            Msg::Recover {
                found,
                runs,
                mode,
                stored_id,
                reply,
            } => {
                let summary = self.recover(found, runs, mode, stored_id).await;
                let _ = reply.send(summary);
            }
            Msg::Report { agent, reply } => {
                let report = self.report(&agent).await;
                let _ = reply.send(report);
            }
            Msg::StateSeen {
                key,
                state,
                image_pull_failed,
            } => {
                if image_pull_failed {
                    m::image_pull_failed();
                }
                self.set_state(&key, state)
            }
            Msg::CustomPrepared {
                key,
                dir,
                outcome,
                reply,
            } => self.custom_prepared(key, dir, outcome, reply).await,
            Msg::RunExited { exec, run, status } => self.run_exited(exec, run, status).await,
            Msg::RegistrationTimeout { exec, run } => self.registration_timeout(exec, run).await,
            Msg::IdleCheck { exec, run } => self.idle_check(exec, run),
            Msg::ShutdownDeadline { exec, run } => self.shutdown_deadline(exec, run),
            Msg::ReportEnd {
                key,
                state,
                reason,
                message,
            } => self.report_end(&key, state, reason, message).await,
            Msg::ExecSubscribe {
                exec,
                unacknowledged,
                conn,
                reply,
            } => {
                let r = self.executor_subscribe(exec, unacknowledged, conn);
                let _ = reply.send(r);
            }
            Msg::ExecDisconnected { exec, conn } => self.executor_disconnected(&exec, &conn),
            Msg::ExecCheck { exec, task, reply } => {
                let _ = reply.send(self.executor_check(&exec, task.as_ref()));
            }
            Msg::ExecAck { exec, task, uuid } => self.executor_acknowledge(&exec, task, uuid),
            Msg::ToExecutor {
                call,
                shutdown,
                reply,
            } => {
                let r = self.check_agent(&call.agent_id).map(|()| {
                    let exec = (call.framework_id, call.executor_id);
                    if shutdown {
                        self.shutdown_run(exec);
                    } else {
                        self.message_executor(&exec, call.data);
                    }
                });
                let _ = reply.send(r);
            }
            Msg::Exited { key, status } => self.exited(key, status).await,
            Msg::Registered(id) => {
                if self.agent_id.as_ref() != Some(&id) {
                    tracing::info!(agent_id = %id, "task table now answers as this agent");
                }
                self.registering = false;
                self.report_exits_while_down(&id);
                self.agent_id = Some(id);
            }
        }
    }

    fn check_agent(&self, requested: &AgentId) -> Result<(), TaskError> {
        match &self.agent_id {
            None => Err(TaskError::NotRegistered),
            Some(actual) if actual != requested => Err(TaskError::WrongAgent {
                requested: requested.clone(),
                actual: actual.clone(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn set_state(&mut self, key: &Key, state: TaskState) {
        let Some(e) = self.tasks.get_mut(key) else {
            return;
        };
        let was = e.state;
        if was.is_terminal() {
            return;
        }
        e.state = state;
        let custom = e.executor.is_some();
        m::task_state_changed(Some(was), Some(state));
        if let Some(started) = e.container {
            m::container_state_changed(Some(was), Some(state));
            if let (TaskState::Running, Some(at)) = (state, started) {
                m::container_started(at.elapsed());
                // Once: a RUNNING that reports health is not a start.
                e.container = Some(None);
            }
        }
        if state.is_terminal() {
            if custom {
                self.custom_task_ended(key);
            }
            self.completed.push_back(key.clone());
            while self.completed.len() > MAX_COMPLETED_TASKS {
                if let Some(old) = self.completed.pop_front() {
                    if let Some(e) = self.tasks.remove(&old) {
                        m::task_state_changed(Some(e.state), None);
                        if e.container.is_some() {
                            m::container_state_changed(Some(e.state), None);
                        }
                    }
                }
            }
        }
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        m::task_state_changed(None, Some(entry.state));
        if entry.container.is_some() {
            m::container_state_changed(None, Some(entry.state));
        }
        self.tasks.insert(key, entry);
    }

    /// Takes a task an earlier life of this agent started back into the table.
    async fn adopt(&mut self, key: &Key) -> bool {
        if self.tasks.contains_key(key) {
            return true;
        }
        let dir = TaskDir(self.config.layout.task_dir(&key.0, &key.1));
        let Ok(Some(spec)) = tokio::task::spawn_blocking(move || read_launch_spec(&dir)).await
        else {
            return false;
        };
        tracing::info!(task = %key.1, framework = %key.0, "adopting a task started before this agent's restart");
        self.insert(
            key.clone(),
            Entry {
                agent_id: spec.agent_id,
                state: TaskState::Staging,
                kill_grace: spec.task.kill_grace_ms.map(Duration::from_millis),
                conn: None,
                kill_requested: None,
                preparing: None,
                adopted: true,
                executor: None,
                container: spec.task.container.is_some().then_some(None),
            },
        );
        true
    }

    /// Takes a RunTask: a task already in the table is not started again; a new one enters
    /// the table at once and is prepared on disk off the actor ([`Msg::Prepared`] follows).
    fn run_task(&mut self, req: RunTask, reply: oneshot::Sender<Result<(), TaskError>>) {
        if let Err(e) = self.check_agent(&req.agent_id) {
            let _ = reply.send(Err(e));
            return;
        }
        let known = self
            .tasks
            .contains_key(&(req.framework_id.clone(), req.task.task_id.clone()));
        if self.registering && !known {
            let _ = reply.send(Err(TaskError::Registering));
            return;
        }
        let key = (req.framework_id.clone(), req.task.task_id.clone());
        if let Some(entry) = self.tasks.get_mut(&key) {
            match &mut entry.preparing {
                // Answered with the launch's outcome: a failed preparation must not have
                // been answered as a success.
                Some(owed) => owed.push(reply),
                None => {
                    tracing::debug!(task = %key.1, framework = %key.0, "RunTask for a known task: nothing to do");
                    let _ = reply.send(Ok(()));
                }
            }
            return;
        }
        if req.task.executor.is_some() {
            let name = req.framework_name.clone();
            self.run_custom(req, name, reply);
            return;
        }
        let dir = TaskDir(self.config.layout.task_dir(&key.0, &key.1));
        let mut entry = Entry::new(
            req.agent_id.clone(),
            req.task.kill_grace_ms.map(Duration::from_millis),
        );
        // A container's user is the image's, handed to the engine; a command's is one of
        // this host's accounts, under the agent's policy.
        let run_as = match req.task.container {
            Some(_) => None,
            None => match self
                .config
                .users
                .decide(&req.task.user, &crate::users::HostAccounts)
            {
                Ok(run_as) => run_as,
                Err(why) => {
                    // In the table (answered and reported like any other task), but it runs
                    // nowhere: it fails at once, saying why.
                    tracing::warn!(task = %key.1, framework = %key.0, error = %why, "refusing the task's user");
                    entry.preparing = None;
                    self.insert(key.clone(), entry);
                    let _ = reply.send(Ok(()));
                    self.report_later(key, TaskState::Failed, "executor_failed", why.to_string());
                    return;
                }
            },
        };
        let json = match self.launch_spec_json(&req, &dir, run_as) {
            Ok(j) => j,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if req.task.container.is_some() {
            entry.container = Some(Some(std::time::Instant::now()));
        }
        self.insert(key.clone(), entry);
        let (program, socket) = (
            self.config.executor_command.clone(),
            self.config.layout.socket(),
        );
        // Checkpoint, start and wait for the executor, off the actor: several launches go on
        // at once, and the actor keeps serving (spawning waits for the child's exec, which on
        // a busy host takes milliseconds).
        self.waiters.spawn(prepare_and_start(
            Launching {
                key,
                dir,
                json,
                reply,
            },
            program,
            socket,
            self.me.clone(),
        ));
    }

    /// A launch's off-actor part ended: record the executor, or report why it cannot run.
    async fn prepared(
        &mut self,
        key: Key,
        dir: TaskDir,
        outcome: Launch,
        reply: oneshot::Sender<Result<(), TaskError>>,
    ) {
        let owed = self
            .tasks
            .get_mut(&key)
            .and_then(|e| e.preparing.take())
            .unwrap_or_default();
        // What the RunTasks that came during the preparation are told: the same as `reply`.
        let failure = match &outcome {
            Launch::CheckpointFailed(e) => Some(e.to_string()),
            _ => None,
        };
        for r in owed {
            let _ = r.send(match &failure {
                None => Ok(()),
                Some(why) => Err(TaskError::Checkpoint(CheckpointError::Io {
                    path: dir.task_json(),
                    source: std::io::Error::other(why.clone()),
                })),
            });
        }
        match outcome {
            Launch::Adopted => {
                tracing::info!(task = %key.1, framework = %key.0, "adopting a task started before this agent's restart");
                let _ = reply.send(Ok(()));
            }
            Launch::CheckpointFailed(e) => {
                // Not started: out of the table, so that a retry prepares it again.
                if let Some(e) = self.tasks.remove(&key) {
                    m::task_state_changed(Some(e.state), None);
                }
                let _ = reply.send(Err(TaskError::Checkpoint(e)));
            }
            Launch::Started(pid) => {
                tracing::info!(task = %key.1, framework = %key.0, executor_pid = pid, "task launched");
                let path = dir.executor_pid();
                let task = key.1.clone();
                // Nothing waits for the pid file: only recovery reads it.
                tokio::task::spawn_blocking(move || {
                    if checkpoint::write_atomic(&path, format!("{pid}\n").as_bytes()).is_err() {
                        tracing::warn!(%task, "cannot record the executor's pid");
                    }
                });
                let _ = reply.send(Ok(()));
            }
            Launch::SpawnFailed(e) => {
                tracing::error!(task = %key.1, framework = %key.0, error = %e, "cannot start the executor");
                self.report_failure(
                    &key,
                    "executor_failed",
                    format!("cannot start the executor: {e}"),
                )
                .await;
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Reports the end of a task on the executor's behalf.
    async fn report_failure(&mut self, key: &Key, reason: &str, message: String) {
        self.report_end(key, TaskState::Failed, reason, message)
            .await;
    }

    /// Reports that a task ended in `state`, on the executor's behalf (source agent).
    async fn report_end(&mut self, key: &Key, state: TaskState, reason: &str, message: String) {
        let Some(agent_id) = self.tasks.get(key).map(|e| e.agent_id.clone()) else {
            return;
        };
        let update = StatusUpdate::new(
            agent_id,
            key.0.clone(),
            key.1.clone(),
            state,
            StatusSource::Agent,
            reason,
            message,
        );
        if let Err(e) = self.updates.update(update).await {
            tracing::error!(task = %key.1, error = %e, "cannot report the task's end");
        }
        self.set_state(key, state);
        self.remove_container(key);
    }

    /// Removes the Docker container of a task the agent ended on its executor's behalf (the
    /// executor is gone, or was killed with the agent's cleanup): nothing of the task may run
    /// on without an executor to report on it. A task without a container has nothing to do.
    fn remove_container(&mut self, key: &Key) {
        let Some(docker) = &self.config.docker else {
            return;
        };
        let socket = docker.socket.clone();
        let file = TaskDir(self.config.layout.task_dir(&key.0, &key.1)).container_id();
        let task = key.1.clone();
        self.waiters.spawn(async move {
            let Ok(id) = tokio::fs::read_to_string(&file).await else {
                return;
            };
            let id = id.trim();
            let removed = match crate::docker::connect(&socket).await {
                Ok(d) => crate::docker::remove(&d, id).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => tracing::info!(%task, container = %id, "removed the container of a task that ended without its executor"),
                Err(e) => tracing::warn!(%task, container = %id, error = %e, "cannot remove the container of a task that ended without its executor"),
            }
        });
    }

    /// Takes back what an earlier life of the agent started; see the module doc.
    async fn recover(
        &mut self,
        found: Vec<Found>,
        runs: Vec<crate::recovery::FoundRun>,
        mode: RecoverMode,
        stored_id: Option<AgentId>,
    ) -> RecoverySummary {
        let mut summary = RecoverySummary {
            executor_runs: self.recover_runs(runs, mode),
            ..RecoverySummary::default()
        };
        for f in found {
            let key = (f.framework.clone(), f.task.clone());
            if self.tasks.contains_key(&key) {
                continue;
            }
            let spec = match &f.spec {
                Ok(spec) => spec.clone(),
                Err(why) => {
                    kill_leftovers(&f);
                    let already_over = f.latest_state().is_some_and(TaskState::is_terminal);
                    tracing::error!(task = %f.task, framework = %f.framework, error = %why, already_over, "recovery: the task's checkpoint is unreadable; what runs of it is killed");
                    let Some(agent_id) = stored_id.clone() else {
                        continue;
                    };
                    summary.corrupt += 1;
                    self.insert(
                        key.clone(),
                        Entry::recovered(agent_id, TaskState::Staging, None),
                    );
                    for u in &f.unseen {
                        self.checkpoint_unseen(&key, u).await;
                    }
                    if !already_over {
                        self.report_failure(
                            &key,
                            "checkpoint_corrupt",
                            format!("the agent cannot read the task's checkpoint after a restart: {why}"),
                        )
                        .await;
                    }
                    continue;
                }
            };
            let grace = spec.task.kill_grace_ms.map(Duration::from_millis);
            let mut entry = Entry::recovered(spec.agent_id.clone(), TaskState::Staging, grace);
            if spec.task.container.is_some() {
                entry.container = Some(None);
            }
            self.insert(key.clone(), entry);
            // The executor's updates the agent missed: its true end, if it ended meanwhile.
            for u in &f.unseen {
                self.checkpoint_unseen(&key, u).await;
            }
            let state = f.latest_state().unwrap_or(TaskState::Staging);
            self.set_state(&key, state);
            if state.is_terminal() {
                summary.ended += 1;
                continue;
            }
            let last = state.label();
            if let Some(run) = &f.run {
                if self.adopt_custom_task(&key, &spec.task, run, state) {
                    summary.reattached += 1;
                    tracing::info!(task = %key.1, framework = %key.0, state = last, "recovery: a task of a re-attached custom executor");
                    continue;
                }
            }
            match (f.executor, mode) {
                (Some(pid), RecoverMode::Reconnect) => {
                    summary.reattached += 1;
                    tracing::info!(task = %key.1, framework = %key.0, executor_pid = pid, state = last, "recovery: re-attaching to a running executor");
                    // It should reconnect at once; if it dies first, the check notices.
                    self.check_adopted_later(key.clone());
                }
                (_, RecoverMode::Cleanup) => {
                    kill_leftovers(&f);
                    summary.cleaned += 1;
                    self.report_end(
                        &key,
                        TaskState::Killed,
                        "agent_cleanup",
                        "killed by an agent restarted with --recover cleanup".into(),
                    )
                    .await;
                }
                (None, RecoverMode::Reconnect) => {
                    kill_leftovers(&f);
                    summary.executor_gone += 1;
                    self.report_failure(
                        &key,
                        "executor_terminated",
                        format!("the executor ended while the agent was down, without reporting the task's end (last state {last})"),
                    )
                    .await;
                }
            }
        }
        self.idle_runs_later();
        if let Some(agent) = stored_id {
            // Before registering (no task can start meanwhile, so none is taken for an
            // orphan).
            self.sweep_containers(agent).await;
        }
        summary
    }

    /// After recovery: removes the containers labelled with this agent that no task of it
    /// accounts for: a running one whose task is not live here (its executor died before it
    /// recorded the container, or its task directory is gone), and an ended one whose task
    /// directory is gone (the collector could not remove it then). An ended container of a
    /// task whose directory is kept stays until the collector removes both.
    async fn sweep_containers(&self, agent: AgentId) {
        let Some(engine) = &self.config.docker else {
            return;
        };
        let live: HashSet<(String, String)> = self
            .tasks
            .iter()
            .filter(|(_, e)| e.container.is_some() && !e.state.is_terminal())
            .map(|((f, t), _)| (f.to_string(), t.to_string()))
            .collect();
        let listed = match crate::docker::connect(&engine.socket).await {
            Ok(d) => crate::docker::list(&d, agent.as_str(), None)
                .await
                .map(|found| (d, found)),
            Err(e) => Err(e),
        };
        let (docker, found) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for containers no task accounts for");
                return;
            }
        };
        let layout = &self.config.layout;
        for c in found {
            let orphan = if c.running {
                !live.contains(&(c.framework.clone(), c.task.clone()))
            } else {
                // An ended one goes with its task's directory, wherever that is kept.
                match (FrameworkId::new(&c.framework), TaskId::new(&c.task)) {
                    (Ok(f), Ok(t)) => {
                        !layout.task_dir(&f, &t).exists()
                            && !layout
                                .completed_dir()
                                .join(f.as_str())
                                .join(t.as_str())
                                .exists()
                    }
                    _ => true,
                }
            };
            if !orphan {
                continue;
            }
            match crate::docker::remove(&docker, &c.id).await {
                Ok(()) => {
                    tracing::warn!(container = %c.id, task = %c.task, framework = %c.framework, running = c.running, "removed a container no task of this agent accounts for")
                }
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "cannot remove a container no task accounts for")
                }
            }
        }
    }

    /// Checkpoints and sends an update the executor made while the agent was down.
    async fn checkpoint_unseen(&mut self, key: &Key, u: &StatusUpdate) {
        if let Err(e) = self.updates.update(u.clone()).await {
            tracing::error!(task = %key.1, error = %e, "recovery: cannot checkpoint an update the executor made while the agent was down");
        }
    }

    /// Checks a re-attached executor's task after [`ADOPTED_RECONNECT_GRACE`].
    fn check_adopted_later(&mut self, key: Key) {
        let me = self.me.clone();
        self.waiters.spawn(async move {
            tokio::time::sleep(ADOPTED_RECONNECT_GRACE).await;
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(Msg::CheckAdopted(key)).await;
            }
        });
    }

    /// A re-attached executor is not connected [`ADOPTED_RECONNECT_GRACE`] after it was
    /// found, or after it disconnected: if no executor of the task runs, the task failed
    /// without a report; if one runs but has not connected yet, look again later.
    async fn check_adopted(&mut self, key: Key) {
        let Some(e) = self.tasks.get(&key) else {
            return;
        };
        if e.conn.is_some() || e.state.is_terminal() {
            return;
        }
        let dir = self.config.layout.task_dir(&key.0, &key.1);
        let running = tokio::task::spawn_blocking(move || crate::recovery::executor_running(&dir))
            .await
            .unwrap_or(true);
        if running {
            self.check_adopted_later(key);
            return;
        }
        tracing::warn!(task = %key.1, framework = %key.0, "a re-attached executor ended without reporting its task's end");
        self.report_failure(
            &key,
            "executor_terminated",
            "the executor ended without reporting the task's end".into(),
        )
        .await;
    }

    /// The report for registering again as `agent` (live tasks first); RunTask waits for the
    /// registration's answer from here.
    async fn report(&mut self, agent: &AgentId) -> Vec<(FrameworkId, TaskId, TaskState)> {
        self.registering = true;
        let pending = self
            .updates
            .unacknowledged_tasks()
            .await
            .unwrap_or_default();
        let mut out: HashMap<Key, TaskState> = self
            .tasks
            .iter()
            .filter(|(_, e)| &e.agent_id == agent && !e.state.is_terminal())
            .map(|(k, e)| (k.clone(), e.state))
            .collect();
        for ((a, f, t), state) in pending {
            if &a == agent {
                let key = (f, t);
                let known = self.tasks.get(&key).map(|e| e.state);
                out.entry(key).or_insert(known.unwrap_or(state));
            }
        }
        let mut out: Vec<(FrameworkId, TaskId, TaskState)> =
            out.into_iter().map(|((f, t), s)| (f, t, s)).collect();
        out.sort_by_key(|(_, _, s)| s.is_terminal());
        out
    }

    async fn kill_task(&mut self, req: KillTask) -> Result<(), TaskError> {
        self.check_agent(&req.agent_id)?;
        let key = (req.framework_id.clone(), req.task_id.clone());
        if !self.adopt(&key).await {
            return Err(TaskError::NotFound {
                framework: key.0,
                task: key.1,
            });
        }
        let default = self.config.default_kill_grace;
        let Some(e) = self.tasks.get_mut(&key) else {
            return Err(TaskError::NotFound {
                framework: key.0,
                task: key.1,
            });
        };
        if e.state.is_terminal() {
            return Ok(());
        }
        let grace = req.grace.or(e.kill_grace).unwrap_or(default);
        let grace = e.kill_requested.map_or(grace, |g| g.min(grace));
        e.kill_requested = Some(grace);
        if let Some(executor) = e.executor.clone() {
            tracing::info!(task = %key.1, framework = %key.0, %executor, grace_ms = grace.as_millis() as u64, "killing a custom executor's task");
            self.kill_custom(&key, (key.0.clone(), executor), grace)
                .await;
            return Ok(());
        }
        tracing::info!(task = %key.1, framework = %key.0, grace_ms = grace.as_millis() as u64, connected = e.conn.is_some(), "killing task");
        if let Some(conn) = &e.conn {
            let kill = ToExecutor::Kill {
                grace_ms: grace.as_millis() as u64,
            };
            if conn.try_send(kill).is_err() {
                tracing::warn!(task = %key.1, "executor busy; the kill goes when it reconnects");
            }
        }
        Ok(())
    }

    async fn connected(
        &mut self,
        key: Key,
        conn: mpsc::Sender<ToExecutor>,
    ) -> Result<(), TaskError> {
        if !self.adopt(&key).await {
            return Err(TaskError::NotFound {
                framework: key.0,
                task: key.1,
            });
        }
        if let Some(e) = self.tasks.get_mut(&key) {
            if let Some(grace) = e.kill_requested {
                let _ = conn.try_send(ToExecutor::Kill {
                    grace_ms: grace.as_millis() as u64,
                });
            }
            e.conn = Some(conn);
        }
        Ok(())
    }

    async fn exited(&mut self, key: Key, status: Result<ExitStatus, String>) {
        let how = match &status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        let Some(e) = self.tasks.get(&key) else {
            return;
        };
        if e.state.is_terminal() {
            tracing::debug!(task = %key.1, status = %how, "executor exited");
            return;
        }
        tracing::warn!(task = %key.1, framework = %key.0, status = %how, "executor exited before its task ended");
        self.report_failure(
            &key,
            "executor_terminated",
            format!("the executor ended ({how}) before reporting the end of the task"),
        )
        .await;
    }
}

/// The default executor command: this program, `executor`.
pub fn default_executor_command() -> std::io::Result<Vec<OsString>> {
    let exe: PathBuf = std::env::current_exe()?;
    Ok(vec![exe.into_os_string(), OsString::from("executor")])
}

/// Hands every task of a RunTask to an actor (`wrap` makes its message, with the reply to
/// send) before awaiting any answer, so that the actor works on all of them at once; returns
/// the answers in the request's order.
pub(crate) async fn run_all<M>(
    actor: &mpsc::Sender<M>,
    reqs: Vec<RunTask>,
    wrap: impl Fn(RunTask, oneshot::Sender<Result<(), TaskError>>) -> M,
) -> Vec<Result<(), TaskError>> {
    let mut answers = Vec::with_capacity(reqs.len());
    for req in reqs {
        let (reply, rx) = oneshot::channel();
        let sent = actor.send(wrap(req, reply)).await;
        answers.push(sent.ok().map(|()| rx));
    }
    let mut out = Vec::with_capacity(answers.len());
    for rx in answers {
        out.push(match rx {
            Some(rx) => rx.await.unwrap_or(Err(TaskError::Stopped)),
            None => Err(TaskError::Stopped),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_updates::{Checkpointing, Config};
    use crate::testing::FakeMaster;
    use drover_proto::v1;

    fn run(task: &str) -> RunTask {
        let req = v1::RunTaskRequest {
            agent_id: "agent-1".into(),
            framework_id: "fw".into(),
            framework_name: String::new(),
            tasks: vec![v1::TaskInfo {
                task_id: task.into(),
                name: task.into(),
                resources: "cpus:0.1"
                    .parse::<drover_resources::Resources>()
                    .unwrap()
                    .to_proto(),
                command: Some(v1::CommandInfo {
                    shell: "true".into(),
                    environment: Default::default(),
                    ..Default::default()
                }),
                kill_grace_seconds: 0.0,
                health_check: None,
                ..Default::default()
            }],
        };
        RunTask::from_proto(&req).unwrap().remove(0)
    }

    /// From a task report until the registration is answered, no new task starts (it would be
    /// missing from the report, and the master would take it for lost); known ones still do.
    #[tokio::test]
    async fn no_new_task_starts_between_a_report_and_the_registration() {
        let dir = tempfile::tempdir().unwrap();
        let (updates, _manager) = StatusUpdates::start(
            FakeMaster::client("127.0.0.1:1"),
            Config::new(Checkpointing::Memory),
        );
        let (relay, _relay) = crate::relay::Relay::start(FakeMaster::client("127.0.0.1:1"));
        let (launcher, _actor) = Launcher::start(
            LauncherConfig {
                layout: Layout::new(dir.path()),
                // Exits at once: the launches below fail to start their task, which is fine.
                executor_command: vec!["/bin/false".into()],
                default_kill_grace: Duration::from_secs(1),
                cgroups: CgroupMode::none("test"),
                executor_endpoint: "127.0.0.1:1".into(),
                executor_registration_timeout: LauncherConfig::EXECUTOR_REGISTRATION_TIMEOUT,
                executor_reregistration_timeout: LauncherConfig::EXECUTOR_REREGISTRATION_TIMEOUT,
                executor_idle_timeout: LauncherConfig::EXECUTOR_IDLE_TIMEOUT,
                executor_shutdown_grace: LauncherConfig::EXECUTOR_SHUTDOWN_GRACE,
                docker: None,
                users: crate::users::UserPolicy::as_agent(),
            },
            updates,
            relay,
        );
        let me = AgentId::new("agent-1").unwrap();
        launcher.registered(me.clone()).await;
        assert!(launcher.run_tasks(vec![run("before")]).await[0].is_ok());
        let report = launcher.report(me.clone()).await;
        assert!(report.iter().any(|(_, t, _)| t.as_str() == "before"));
        assert!(matches!(
            launcher.run_tasks(vec![run("during")]).await[0],
            Err(TaskError::Registering)
        ));
        assert!(
            launcher.run_tasks(vec![run("before")]).await[0].is_ok(),
            "a known task is answered as before"
        );
        launcher.registered(me).await;
        assert!(launcher.run_tasks(vec![run("after")]).await[0].is_ok());
    }
}
