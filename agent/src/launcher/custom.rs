//! Custom executors in the task table: tasks whose `TaskInfo` names an executor of their
//! framework's own, run by that executor (Mesos's custom executors), which speaks the Mesos v1
//! executor HTTP API to the agent ([`crate::executor_api`]).
//!
//! One run per (framework, executor id) at a time, shared by its tasks. The first task that
//! names an executor starts a run: its directory
//! (`frameworks/<fw>/executors/<e>/runs/<container>/`, see [`crate::layout`]) and
//! `executor.json` are written durably, then its supervisor (`drover executor
//! --executor-dir`, see [`crate::executor::supervise`]) starts the executor's command. Each
//! task keeps its own task directory (`task.json`, `updates.log`: the status update manager
//! is the same as for Drover's own executor), with `sandbox` a symlink to the run's.
//!
//! - **LAUNCH** goes to the subscribed executor once the task is checkpointed, never twice on
//!   one subscription ([`to_launch`]); a task the executor lists as unacknowledged on
//!   SUBSCRIBE is not launched again.
//! - **KILL** of a task the executor has not been given yet ends it at once (TASK_KILLED,
//!   reason `killed_before_launch`); otherwise the executor gets KILL, again on every
//!   re-subscription until the task ends.
//! - **Registration timeout**: a run whose executor has not subscribed within
//!   `executor_registration_timeout` is killed, its tasks FAILED
//!   (`executor_registration_timeout`).
//! - **Idle**: a run with no live task for `executor_idle_timeout` is shut down: SHUTDOWN to
//!   the executor, SIGKILL of its process group after its grace.
//! - **Exit**: when the supervisor ends, every task of the run that has not ended is FAILED
//!   (`executor_terminated`, with the executor's wait status) and the run is forgotten.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Actor, Entry, Key, Launch, Msg, TaskError};
use crate::checkpoint::{self, CheckpointError};
use crate::executor::group::signal_group;
use crate::executor::supervise::read_exit_status;
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::layout::{RunDir, TaskDir};
use crate::task::{
    ExecutorLaunch, ExecutorSpec, LaunchSpec, RunTask, TaskSpec, EXECUTOR_LAUNCH_VERSION,
    LAUNCH_SPEC_VERSION,
};
use crate::update::TaskState;

/// A custom executor of a framework.
pub type ExecKey = (FrameworkId, ExecutorId);

/// Events queued for one subscribed executor.
pub const EXECUTOR_EVENT_QUEUE: usize = 4096;
/// `PATH` for an executor when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the agent sends a subscribed executor (the executor API turns each into a Mesos
/// event).
#[derive(Debug, Clone)]
pub enum ToCustom {
    Launch(Box<TaskSpec>),
    Kill { task: TaskId, grace: Duration },
    Acknowledged { task: TaskId, uuid: Uuid },
    Message(Vec<u8>),
    Shutdown,
}

/// Why the executor API cannot take a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomError {
    #[error("Executor cannot be found")]
    ExecutorNotFound,
    #[error("Executor is not subscribed")]
    NotSubscribed,
    #[error("Task cannot be found")]
    TaskNotFound,
    #[error("the agent is shutting down")]
    Stopped,
}

/// What SUBSCRIBED tells the executor.
#[derive(Debug, Clone)]
pub struct SubscribedRun {
    pub agent_id: AgentId,
    pub framework_name: String,
    pub spec: ExecutorSpec,
    pub container_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunState {
    /// Started; its executor has not subscribed yet (or is away between subscriptions).
    Waiting,
    Subscribed,
    /// SHUTDOWN sent or its group killed: it takes no more tasks.
    ShuttingDown,
}

/// One run of a custom executor.
pub(super) struct ExecEntry {
    agent_id: AgentId,
    framework_name: String,
    spec: ExecutorSpec,
    run: RunDir,
    state: RunState,
    ever_subscribed: bool,
    conn: Option<mpsc::Sender<ToCustom>>,
    /// Every task of the run.
    tasks: BTreeSet<TaskId>,
    /// What each task of the run that has not ended runs (what LAUNCH gives the executor).
    specs: HashMap<TaskId, TaskSpec>,
    /// Tasks given to the executor on its current subscription (or listed by it as its own).
    launched: HashSet<TaskId>,
    /// Tasks given to the executor on any subscription.
    ever_launched: HashSet<TaskId>,
}

/// The tasks to LAUNCH now, in id order: checkpointed (`ready`), still STAGING, neither given
/// on this subscription nor ended.
pub fn to_launch<'a>(
    tasks: impl IntoIterator<Item = (&'a TaskId, bool, TaskState)>,
    launched: &HashSet<TaskId>,
) -> Vec<TaskId> {
    tasks
        .into_iter()
        .filter(|(t, ready, state)| {
            *ready && *state == TaskState::Staging && !launched.contains(*t)
        })
        .map(|(t, _, _)| t.clone())
        .collect()
}

/// The executor's environment: `PATH`, its command's variables, then Mesos's executor
/// variables (which win).
#[allow(clippy::too_many_arguments)]
pub fn environment(
    spec: &ExecutorSpec,
    agent_id: &AgentId,
    framework_id: &FrameworkId,
    endpoint: &str,
    sandbox: &Path,
    grace: Duration,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()),
    );
    env.extend(spec.environment.clone());
    let sandbox = sandbox.display().to_string();
    for (k, v) in [
        ("MESOS_FRAMEWORK_ID", framework_id.to_string()),
        ("MESOS_EXECUTOR_ID", spec.executor_id.to_string()),
        ("MESOS_AGENT_ENDPOINT", endpoint.to_string()),
        ("MESOS_DIRECTORY", sandbox.clone()),
        ("MESOS_SANDBOX", sandbox),
        ("MESOS_CHECKPOINT", "1".to_string()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            format!("{}ms", grace.as_millis()),
        ),
        ("MESOS_SLAVE_ID", agent_id.to_string()),
        ("MESOS_AGENT_ID", agent_id.to_string()),
        ("MESOS_SLAVE_PID", drover_mesos::agent_pid(endpoint)),
        ("MESOS_HTTP_COMMAND_EXECUTOR", "0".to_string()),
        ("MESOS_RECOVERY_TIMEOUT", "15mins".to_string()),
        ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    env
}

/// How the off-actor part of a custom task's launch ended.
pub(super) enum CustomPrep {
    /// `task.json` is there already: an earlier life of the agent started the task.
    Adopted,
    Checkpointed,
    Failed(CheckpointError),
}

/// Writes a custom task's directory: `task.json` and the `sandbox` symlink to its run's.
fn prepare_task(dir: &TaskDir, json: &[u8], run: &RunDir) -> Result<CustomPrep, CheckpointError> {
    if dir.task_json().exists() {
        return Ok(CustomPrep::Adopted);
    }
    checkpoint::create_dir_all_durable(&dir.0)?;
    let link = dir.sandbox();
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(run.sandbox(), &link).map_err(|source| CheckpointError::Io {
            path: link.clone(),
            source,
        })?;
    }
    checkpoint::write_atomic(&dir.task_json(), json)?;
    Ok(CustomPrep::Checkpointed)
}

/// Writes a new run's directory and `executor.json`, durably.
fn prepare_run(run: &RunDir, json: &[u8]) -> Result<(), CheckpointError> {
    checkpoint::create_dir_all_durable(&run.sandbox())?;
    checkpoint::write_atomic(&run.executor_json(), json)
}

/// The command that starts a run's supervisor, in its own process group (it outlives the
/// agent), its output to the run's `supervisor.log`.
fn supervisor_command(
    program: &[OsString],
    run: &RunDir,
) -> std::io::Result<tokio::process::Command> {
    let (program, args) = program
        .split_first()
        .ok_or_else(|| std::io::Error::other("no executor command configured"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.supervisor_log())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg("--executor-dir")
        .arg(&run.0)
        .current_dir(&run.0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false)
        .process_group(0);
    Ok(cmd)
}

/// SIGKILL to a run's executor group (its supervisor then records the end and exits).
fn kill_run(run: &RunDir) {
    let pgid = std::fs::read_to_string(run.command_pid())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    match pgid {
        Some(pgid) => signal_group(pgid, Signal::SIGKILL),
        None => {
            // Not started yet: stop the supervisor before it starts anything.
            if let Some(pid) = std::fs::read_to_string(run.supervisor_pid())
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                signal_group(pid, Signal::SIGKILL);
            }
        }
    }
}

/// A wait status as people read it.
fn describe_status(raw: Option<i32>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match raw {
        None => "unknown status".to_string(),
        Some(-1) => "never started".to_string(),
        Some(raw) => std::process::ExitStatus::from_raw(raw).to_string(),
    }
}

impl Actor {
    /// A RunTask for a task of a custom executor (`run_task` checked the agent and that the
    /// task is new).
    pub(super) fn run_custom(
        &mut self,
        req: RunTask,
        framework_name: String,
        reply: oneshot::Sender<Result<(), TaskError>>,
    ) {
        let Some(executor) = req.task.executor.clone() else {
            return;
        };
        let key: Key = (req.framework_id.clone(), req.task.task_id.clone());
        let exec: ExecKey = (req.framework_id.clone(), executor.executor_id.clone());
        let dir = TaskDir(self.config.layout.task_dir(&key.0, &key.1));
        let spec = LaunchSpec {
            version: LAUNCH_SPEC_VERSION,
            agent_id: req.agent_id.clone(),
            framework_id: req.framework_id.clone(),
            task: req.task.clone(),
            default_kill_grace_ms: self.config.default_kill_grace.as_millis() as u64,
            cgroups: self.config.cgroups.clone(),
        };
        let json = match serde_json::to_vec_pretty(&spec) {
            Ok(j) => j,
            Err(e) => {
                let _ = reply.send(Err(TaskError::Checkpoint(CheckpointError::Encode {
                    path: dir.task_json(),
                    source: e,
                })));
                return;
            }
        };
        let mut entry = Entry::new(
            req.agent_id.clone(),
            req.task.kill_grace_ms.map(Duration::from_millis),
        );
        entry.executor = Some(executor.executor_id.clone());
        // A run that is there and takes tasks: join it.
        let joined = match self.executors.get_mut(&exec) {
            Some(run) if run.state != RunState::ShuttingDown && run.spec.same_as(&executor) => {
                run.tasks.insert(key.1.clone());
                run.specs.insert(key.1.clone(), req.task.clone());
                Some(Ok(run.run.clone()))
            }
            Some(run) if run.state == RunState::ShuttingDown => Some(Err(
                "the executor is shutting down; launch the task again once it has ended"
                    .to_string(),
            )),
            Some(run) => Some(Err(format!(
                "executor {} runs here with another ExecutorInfo (container {})",
                exec.1,
                run.run.container_id()
            ))),
            None => None,
        };
        self.insert(key.clone(), entry);
        match joined {
            Some(Ok(run)) => {
                let me = self.me.clone();
                self.waiters.spawn(async move {
                    let d = dir.clone();
                    let outcome = checkpoint::off_runtime(dir.0.clone(), move || {
                        prepare_task(&d, &json, &run)
                    })
                    .await
                    .unwrap_or_else(CustomPrep::Failed);
                    if let Some(tx) = me.upgrade() {
                        let _ = tx
                            .send(Msg::CustomPrepared {
                                key,
                                dir,
                                outcome,
                                reply,
                            })
                            .await;
                    }
                });
            }
            Some(Err(why)) => {
                // The task is in the table (it must be answered and reported like any other),
                // but it runs nowhere: it fails at once.
                if let Some(e) = self.tasks.get_mut(&key) {
                    e.preparing = None;
                }
                let _ = reply.send(Ok(()));
                self.report_later(key, TaskState::Failed, "executor_failed", why);
            }
            None => {
                // The run's cgroup holds the executor and its first task; what later tasks
                // add is not enforced yet.
                let limits = executor
                    .resources
                    .checked_add(&req.task.own_resources())
                    .unwrap_or_else(|_| req.task.resources.clone());
                self.start_run(
                    key,
                    exec,
                    executor,
                    framework_name,
                    dir,
                    json,
                    limits,
                    req.task.clone(),
                    reply,
                )
            }
        }
    }

    /// Starts a new run of `executor` for the task `key`: the task's directory, the run's
    /// directory and `executor.json`, then the supervisor; waits for it to end.
    #[allow(clippy::too_many_arguments)]
    fn start_run(
        &mut self,
        key: Key,
        exec: ExecKey,
        executor: ExecutorSpec,
        framework_name: String,
        dir: TaskDir,
        task_json: Vec<u8>,
        limits: drover_resources::Resources,
        task: TaskSpec,
        reply: oneshot::Sender<Result<(), TaskError>>,
    ) {
        let Some(agent_id) = self.tasks.get(&key).map(|e| e.agent_id.clone()) else {
            return;
        };
        let container = Uuid::new_v4().to_string();
        let run = self
            .config
            .layout
            .executor_run_dir(&exec.0, &exec.1, &container);
        let grace = executor
            .shutdown_grace_ms
            .map(Duration::from_millis)
            .unwrap_or(self.config.executor_shutdown_grace);
        let launch = ExecutorLaunch {
            version: EXECUTOR_LAUNCH_VERSION,
            agent_id: agent_id.clone(),
            framework_id: exec.0.clone(),
            executor: executor.clone(),
            environment: environment(
                &executor,
                &agent_id,
                &exec.0,
                &self.config.executor_endpoint,
                &run.sandbox(),
                grace,
            ),
            limits,
            cgroups: self.config.cgroups.clone(),
            shutdown_grace_ms: grace.as_millis() as u64,
        };
        let run_json = match serde_json::to_vec_pretty(&launch) {
            Ok(j) => j,
            Err(e) => {
                if let Some(e) = self.tasks.remove(&key) {
                    crate::metrics::task_state_changed(Some(e.state), None);
                }
                let _ = reply.send(Err(TaskError::Checkpoint(CheckpointError::Encode {
                    path: run.executor_json(),
                    source: e,
                })));
                return;
            }
        };
        self.executors.insert(
            exec.clone(),
            ExecEntry {
                agent_id,
                framework_name,
                spec: executor,
                run: run.clone(),
                state: RunState::Waiting,
                ever_subscribed: false,
                conn: None,
                tasks: [key.1.clone()].into_iter().collect(),
                specs: [(key.1.clone(), task)].into_iter().collect(),
                launched: HashSet::new(),
                ever_launched: HashSet::new(),
            },
        );
        tracing::info!(executor = %exec.1, framework = %exec.0, container = %container, "starting a custom executor");
        let program = self.config.executor_command.clone();
        let me = self.me.clone();
        let timeout = self.config.executor_registration_timeout;
        self.waiters.spawn(async move {
            let (d, r) = (dir.clone(), run.clone());
            let prepared = checkpoint::off_runtime(dir.0.clone(), move || {
                prepare_run(&r, &run_json)?;
                prepare_task(&d, &task_json, &r)
            })
            .await
            .unwrap_or_else(CustomPrep::Failed);
            let start = matches!(prepared, CustomPrep::Checkpointed);
            let Some(tx) = me.upgrade() else {
                return;
            };
            let _ = tx
                .send(Msg::CustomPrepared {
                    key,
                    dir,
                    outcome: prepared,
                    reply,
                })
                .await;
            if !start {
                let _ = tx
                    .send(Msg::RunExited {
                        exec,
                        run,
                        status: Some(crate::executor::supervise::NOT_STARTED_STATUS),
                    })
                    .await;
                return;
            }
            let spawned = match supervisor_command(&program, &run) {
                Ok(mut cmd) => tokio::task::spawn_blocking(move || cmd.spawn())
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
                Err(e) => Err(e),
            };
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(executor = %exec.1, error = %e, "cannot start the executor's supervisor");
                    let _ = tx
                        .send(Msg::RunExited {
                            exec,
                            run,
                            status: Some(crate::executor::supervise::NOT_STARTED_STATUS),
                        })
                        .await;
                    return;
                }
            };
            let timer = {
                let (tx, exec, run) = (tx.clone(), exec.clone(), run.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    let _ = tx.send(Msg::RegistrationTimeout { exec, run }).await;
                })
            };
            let _ = child.wait().await;
            timer.abort();
            let r = run.clone();
            let status = tokio::task::spawn_blocking(move || read_exit_status(&r))
                .await
                .ok()
                .flatten();
            let _ = tx.send(Msg::RunExited { exec, run, status }).await;
        });
    }

    /// A custom task's directory is written (or could not be).
    pub(super) async fn custom_prepared(
        &mut self,
        key: Key,
        dir: TaskDir,
        outcome: CustomPrep,
        reply: oneshot::Sender<Result<(), TaskError>>,
    ) {
        let outcome = match outcome {
            CustomPrep::Adopted => Launch::Adopted,
            CustomPrep::Failed(e) => Launch::CheckpointFailed(e),
            CustomPrep::Checkpointed => {
                let owed = self
                    .tasks
                    .get_mut(&key)
                    .and_then(|e| e.preparing.take())
                    .unwrap_or_default();
                for r in owed {
                    let _ = r.send(Ok(()));
                }
                let _ = reply.send(Ok(()));
                tracing::info!(task = %key.1, framework = %key.0, "task of a custom executor checkpointed");
                if let Some(exec) = self.exec_of(&key) {
                    self.launch_ready(&exec);
                }
                return;
            }
        };
        if matches!(outcome, Launch::CheckpointFailed(_)) {
            if let Some(exec) = self.exec_of(&key) {
                if let Some(run) = self.executors.get_mut(&exec) {
                    run.tasks.remove(&key.1);
                }
            }
        }
        self.prepared(key, dir, outcome, reply).await;
    }

    fn exec_of(&self, key: &Key) -> Option<ExecKey> {
        let e = self.tasks.get(key)?;
        Some((key.0.clone(), e.executor.clone()?))
    }

    /// Sends LAUNCH for every task of the run that is ready and not given yet, if the
    /// executor is subscribed.
    fn launch_ready(&mut self, exec: &ExecKey) {
        let Some(run) = self.executors.get(exec) else {
            return;
        };
        let Some(conn) = run.conn.clone() else {
            return;
        };
        let tasks: Vec<(TaskId, bool, TaskState)> = run
            .tasks
            .iter()
            .filter_map(|t| {
                let e = self.tasks.get(&(exec.0.clone(), t.clone()))?;
                Some((t.clone(), e.preparing.is_none(), e.state))
            })
            .collect();
        let ids = to_launch(tasks.iter().map(|(t, r, s)| (t, *r, *s)), &run.launched);
        for task in ids {
            let Some(spec) = self
                .executors
                .get(exec)
                .and_then(|r| r.specs.get(&task))
                .cloned()
            else {
                continue;
            };
            if conn.try_send(ToCustom::Launch(Box::new(spec))).is_err() {
                tracing::warn!(executor = %exec.1, "the executor's event queue is full; it gets the task when it subscribes again");
                self.drop_connection(exec);
                return;
            }
            if let Some(run) = self.executors.get_mut(exec) {
                run.launched.insert(task.clone());
                run.ever_launched.insert(task);
            }
        }
    }

    /// Forgets a subscription whose queue overflowed: its stream ends, and the executor
    /// subscribes again.
    fn drop_connection(&mut self, exec: &ExecKey) {
        if let Some(run) = self.executors.get_mut(exec) {
            run.conn = None;
            run.launched.clear();
            if run.state == RunState::Subscribed {
                run.state = RunState::Waiting;
            }
        }
    }

    /// An executor subscribed (again): it gets SUBSCRIBED, then its tasks and pending kills.
    pub(super) fn executor_subscribe(
        &mut self,
        exec: ExecKey,
        unacknowledged: HashSet<TaskId>,
        conn: mpsc::Sender<ToCustom>,
    ) -> Result<SubscribedRun, CustomError> {
        let run = self
            .executors
            .get_mut(&exec)
            .ok_or(CustomError::ExecutorNotFound)?;
        if run.state == RunState::ShuttingDown {
            return Err(CustomError::ExecutorNotFound);
        }
        run.conn = Some(conn.clone());
        run.state = RunState::Subscribed;
        run.ever_subscribed = true;
        run.launched = unacknowledged
            .into_iter()
            .filter(|t| run.tasks.contains(t))
            .collect();
        run.ever_launched.extend(run.launched.iter().cloned());
        let answer = SubscribedRun {
            agent_id: run.agent_id.clone(),
            framework_name: run.framework_name.clone(),
            spec: run.spec.clone(),
            container_id: run.run.container_id(),
        };
        tracing::info!(executor = %exec.1, framework = %exec.0, "custom executor subscribed");
        // Kills still owed, for tasks it has.
        let kills: Vec<(TaskId, Duration)> = run
            .tasks
            .iter()
            .filter_map(|t| {
                let e = self.tasks.get(&(exec.0.clone(), t.clone()))?;
                let grace = e.kill_requested?;
                (!e.state.is_terminal() && run.ever_launched.contains(t))
                    .then(|| (t.clone(), grace))
            })
            .collect();
        self.launch_ready(&exec);
        for (task, grace) in kills {
            let _ = conn.try_send(ToCustom::Kill { task, grace });
        }
        Ok(answer)
    }

    pub(super) fn executor_disconnected(&mut self, exec: &ExecKey, conn: &mpsc::Sender<ToCustom>) {
        if let Some(run) = self.executors.get_mut(exec) {
            if run.conn.as_ref().is_some_and(|c| c.same_channel(conn)) {
                tracing::info!(executor = %exec.1, framework = %exec.0, "custom executor disconnected");
                run.conn = None;
                run.launched.clear();
                if run.state == RunState::Subscribed {
                    run.state = RunState::Waiting;
                }
            }
        }
    }

    /// Whether the subscribed executor may report on `task` (`None`: any call but UPDATE);
    /// the agent the task runs as.
    pub(super) fn executor_check(
        &self,
        exec: &ExecKey,
        task: Option<&TaskId>,
    ) -> Result<AgentId, CustomError> {
        let run = self
            .executors
            .get(exec)
            .ok_or(CustomError::ExecutorNotFound)?;
        if run.conn.is_none() {
            return Err(CustomError::NotSubscribed);
        }
        let Some(task) = task else {
            return Ok(run.agent_id.clone());
        };
        if !run.tasks.contains(task) {
            return Err(CustomError::TaskNotFound);
        }
        self.tasks
            .get(&(exec.0.clone(), task.clone()))
            .map(|e| e.agent_id.clone())
            .ok_or(CustomError::TaskNotFound)
    }

    pub(super) fn executor_acknowledge(&mut self, exec: &ExecKey, task: TaskId, uuid: Uuid) {
        if let Some(conn) = self.executors.get(exec).and_then(|r| r.conn.clone()) {
            if conn
                .try_send(ToCustom::Acknowledged { task, uuid })
                .is_err()
            {
                self.drop_connection(exec);
            }
        }
    }

    /// A kill of a custom executor's task (the table's checks done); `grace` as asked.
    pub(super) async fn kill_custom(&mut self, key: &Key, exec: ExecKey, grace: Duration) {
        let given = self
            .executors
            .get(&exec)
            .is_some_and(|r| r.ever_launched.contains(&key.1));
        if !given {
            tracing::info!(task = %key.1, framework = %key.0, "killed before its executor got it");
            self.report_end(
                key,
                TaskState::Killed,
                "killed_before_launch",
                "killed before its executor launched it".into(),
            )
            .await;
            return;
        }
        if let Some(conn) = self.executors.get(&exec).and_then(|r| r.conn.clone()) {
            if conn
                .try_send(ToCustom::Kill {
                    task: key.1.clone(),
                    grace,
                })
                .is_err()
            {
                self.drop_connection(&exec);
            }
        }
    }

    /// A task of a run ended: shut the run down once it has been idle a while.
    pub(super) fn custom_task_ended(&mut self, key: &Key) {
        let Some(exec) = self.exec_of(key) else {
            return;
        };
        if let Some(run) = self.executors.get_mut(&exec) {
            run.specs.remove(&key.1);
        }
        if self.live_tasks_of(&exec) > 0 {
            return;
        }
        let Some(run) = self.executors.get(&exec).map(|r| r.run.clone()) else {
            return;
        };
        let me = self.me.clone();
        let idle = self.config.executor_idle_timeout;
        self.waiters.spawn(async move {
            tokio::time::sleep(idle).await;
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(Msg::IdleCheck { exec, run }).await;
            }
        });
    }

    fn live_tasks_of(&self, exec: &ExecKey) -> usize {
        self.executors.get(exec).map_or(0, |r| {
            r.tasks
                .iter()
                .filter(|t| {
                    self.tasks
                        .get(&(exec.0.clone(), (*t).clone()))
                        .is_some_and(|e| !e.state.is_terminal())
                })
                .count()
        })
    }

    /// The run is still idle: SHUTDOWN, and SIGKILL after its grace.
    pub(super) fn idle_check(&mut self, exec: ExecKey, run: RunDir) {
        if self.live_tasks_of(&exec) > 0 {
            return;
        }
        if self.executors.get(&exec).is_some_and(|e| e.run == run) {
            tracing::info!(executor = %exec.1, framework = %exec.0, "custom executor idle: shutting it down");
            self.shutdown_run(exec);
        }
    }

    /// A framework's message for its executor: a MESSAGE event if it is subscribed.
    pub(super) fn message_executor(&mut self, exec: &ExecKey, data: Vec<u8>) {
        match self.executors.get(exec).and_then(|r| r.conn.clone()) {
            Some(conn) => {
                if conn.try_send(ToCustom::Message(data)).is_err() {
                    self.drop_connection(exec);
                }
            }
            None => {
                tracing::debug!(executor = %exec.1, framework = %exec.0, "framework message for an executor that is not subscribed: dropped");
            }
        }
    }

    /// Shuts the run down: SHUTDOWN if its executor is subscribed and SIGKILL of its group
    /// after its grace, else SIGKILL at once. Its tasks that have not ended fail when it ends.
    pub(super) fn shutdown_run(&mut self, exec: ExecKey) {
        let Some(entry) = self.executors.get_mut(&exec) else {
            return;
        };
        if entry.state == RunState::ShuttingDown {
            return;
        }
        let run = entry.run.clone();
        entry.state = RunState::ShuttingDown;
        let grace = entry
            .spec
            .shutdown_grace_ms
            .map(Duration::from_millis)
            .unwrap_or(self.config.executor_shutdown_grace);
        match entry.conn.clone() {
            Some(conn) if conn.try_send(ToCustom::Shutdown).is_ok() => {
                let me = self.me.clone();
                self.waiters.spawn(async move {
                    tokio::time::sleep(grace).await;
                    if let Some(tx) = me.upgrade() {
                        let _ = tx.send(Msg::ShutdownDeadline { exec, run }).await;
                    }
                });
            }
            _ => {
                tokio::task::spawn_blocking(move || kill_run(&run));
            }
        }
    }

    /// The grace after SHUTDOWN is over: whatever of the run is left is killed.
    pub(super) fn shutdown_deadline(&mut self, exec: ExecKey, run: RunDir) {
        if self.executors.get(&exec).is_some_and(|e| e.run == run) {
            tracing::info!(executor = %exec.1, "shutdown grace over: killing the executor");
            tokio::task::spawn_blocking(move || kill_run(&run));
        }
    }

    /// The executor never subscribed: its tasks fail, it is killed.
    pub(super) async fn registration_timeout(&mut self, exec: ExecKey, run: RunDir) {
        let Some(entry) = self.executors.get_mut(&exec) else {
            return;
        };
        if entry.run != run || entry.ever_subscribed {
            return;
        }
        entry.state = RunState::ShuttingDown;
        let tasks: Vec<TaskId> = entry.tasks.iter().cloned().collect();
        tracing::warn!(executor = %exec.1, framework = %exec.0, "custom executor did not subscribe in time: killing it");
        for t in tasks {
            let key = (exec.0.clone(), t);
            if self.tasks.get(&key).is_some_and(|e| !e.state.is_terminal()) {
                self.report_end(
                    &key,
                    TaskState::Failed,
                    "executor_registration_timeout",
                    format!(
                        "the executor did not subscribe within {:?}",
                        self.config.executor_registration_timeout
                    ),
                )
                .await;
            }
        }
        tokio::task::spawn_blocking(move || kill_run(&run));
    }

    /// The run's supervisor ended: its tasks that have not ended fail, the run is forgotten.
    pub(super) async fn run_exited(&mut self, exec: ExecKey, run: RunDir, status: Option<i32>) {
        let Some(entry) = self.executors.get(&exec) else {
            return;
        };
        if entry.run != run {
            return;
        }
        let how = describe_status(status);
        let tasks: Vec<TaskId> = entry.tasks.iter().cloned().collect();
        self.relay.exited(&entry.agent_id, &exec.0, &exec.1, status);
        let never_started = status == Some(crate::executor::supervise::NOT_STARTED_STATUS);
        tracing::info!(executor = %exec.1, framework = %exec.0, status = %how, "custom executor ended");
        for t in tasks {
            let key = (exec.0.clone(), t);
            if self.tasks.get(&key).is_some_and(|e| !e.state.is_terminal()) {
                let (reason, message) = if never_started {
                    ("executor_failed", "cannot start the executor".to_string())
                } else {
                    (
                        "executor_terminated",
                        format!("the executor ended ({how}) before the task did"),
                    )
                };
                self.report_end(&key, TaskState::Failed, reason, message)
                    .await;
            }
        }
        self.executors.remove(&exec);
    }

    /// Reports a task's end from a later turn of the actor (the caller cannot await).
    fn report_later(&mut self, key: Key, state: TaskState, reason: &'static str, message: String) {
        let me = self.me.clone();
        self.waiters.spawn(async move {
            if let Some(tx) = me.upgrade() {
                let _ = tx
                    .send(Msg::ReportEnd {
                        key,
                        state,
                        reason,
                        message,
                    })
                    .await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    #[test]
    fn to_launch_gives_each_ready_staging_task_once() {
        let (a, b, c, d) = (t("a"), t("b"), t("c"), t("d"));
        let launched: HashSet<TaskId> = [b.clone()].into_iter().collect();
        let tasks = vec![
            (&a, true, TaskState::Staging),
            // Given on this subscription already (or listed by the executor).
            (&b, true, TaskState::Staging),
            // Its executor reported on it: it has it.
            (&c, true, TaskState::Running),
            // Not checkpointed yet.
            (&d, false, TaskState::Staging),
        ];
        assert_eq!(to_launch(tasks, &launched), vec![a]);
    }

    #[test]
    fn the_environment_is_mesos_s() {
        let spec = ExecutorSpec {
            executor_id: ExecutorId::new("e1").unwrap(),
            name: String::new(),
            shell: "x".into(),
            environment: [
                ("A".to_string(), "1".to_string()),
                ("MESOS_SANDBOX".to_string(), "mine".to_string()),
            ]
            .into_iter()
            .collect(),
            resources: Default::default(),
            shutdown_grace_ms: None,
            data: vec![],
            charged: false,
        };
        let env = environment(
            &spec,
            &AgentId::new("a1").unwrap(),
            &FrameworkId::new("f1").unwrap(),
            "127.0.0.1:5051",
            Path::new("/w/s"),
            Duration::from_millis(2500),
        );
        assert_eq!(env["A"], "1");
        assert_eq!(env["MESOS_SANDBOX"], "/w/s", "the agent's variables win");
        assert_eq!(env["MESOS_DIRECTORY"], "/w/s");
        assert_eq!(env["MESOS_AGENT_ENDPOINT"], "127.0.0.1:5051");
        assert_eq!(env["MESOS_FRAMEWORK_ID"], "f1");
        assert_eq!(env["MESOS_EXECUTOR_ID"], "e1");
        assert_eq!(env["MESOS_CHECKPOINT"], "1");
        assert_eq!(env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "2500ms");
        assert_eq!(env["MESOS_SLAVE_PID"], "slave(1)@127.0.0.1:5051");
        assert!(env.contains_key("PATH"));
    }
}
