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
//!   (`executor_terminated`, with the executor's wait status), the framework is told
//!   ([`crate::relay`]) and the run is forgotten.
//! - **Ended while the agent was down**: its tasks fail through their own recovery, and its
//!   framework hears of the executor's end (FAILURE, with the recorded wait status) once the
//!   agent is registered again. Each end is told once: `exit_reported` in the run's directory
//!   marks it, so a later restart does not tell it again.
//! - **Agent restart**: a run whose supervisor still runs is taken back (its executor, told
//!   `MESOS_CHECKPOINT=1`, subscribes again by itself and is re-sent its kills and the tasks it
//!   does not list); one that has not subscribed again within
//!   `executor_reregistration_timeout` is killed, its tasks FAILED
//!   (`executor_reregistration_timeout`). The supervisor is then not the agent's child: its
//!   end is noticed by polling for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;
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
use crate::recovery::{read_pid, supervises, FoundRun, RecoverMode};
use crate::task::{ExecutorLaunch, ExecutorSpec, RunTask, TaskSpec, EXECUTOR_LAUNCH_VERSION};
use crate::update::TaskState;

/// A custom executor of a framework.
pub type ExecKey = (FrameworkId, ExecutorId);

/// A run that ended while the agent was down, for its framework to hear of: the agent it ran
/// on, its executor, its raw wait status (if recorded) and its directory.
pub(super) struct EndedRun {
    agent: AgentId,
    exec: ExecKey,
    status: Option<i32>,
    run: RunDir,
}

/// Events queued for one subscribed executor.
pub const EXECUTOR_EVENT_QUEUE: usize = 4096;
/// `PATH` for an executor when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the agent sends a subscribed executor (the executor API turns each into a Mesos
/// event).
#[derive(Debug, Clone)]
pub enum ToCustom {
    Launch(Box<TaskSpec>),
    /// A task group's tasks, together (Mesos's LAUNCH_GROUP).
    LaunchGroup(Vec<TaskSpec>),
    Kill {
        task: TaskId,
        grace: Duration,
    },
    Acknowledged {
        task: TaskId,
        uuid: Uuid,
    },
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
    /// An earlier life of the agent started it: it is not this agent's child.
    adopted: bool,
    conn: Option<mpsc::Sender<ToCustom>>,
    /// Every task of the run.
    tasks: BTreeSet<TaskId>,
    /// What each task of the run that has not ended runs (what LAUNCH gives the executor).
    specs: HashMap<TaskId, TaskSpec>,
    /// Tasks given to the executor on its current subscription (or listed by it as its own).
    launched: HashSet<TaskId>,
    /// Tasks given to the executor on any subscription.
    ever_launched: HashSet<TaskId>,
    /// Tasks for the next run: they came while this one was going away.
    deferred: Vec<Deferred>,
}

/// A RunTask waiting for the next run of its executor.
pub(super) struct Deferred {
    req: RunTask,
    framework_name: String,
    reply: oneshot::Sender<Result<(), TaskError>>,
}

/// The tasks to LAUNCH now, in id order: checkpointed (`ready`), still STAGING, neither given
/// on this subscription nor ended.
fn to_launch<'a>(
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

/// What to give the executor of `to_launch`'s tasks: alone, or with their group (in the
/// order of its first task) once every task of the group the run holds is ready to go (one
/// still being written holds its group back). Pure.
fn launches(
    ready: Vec<TaskId>,
    group_of: impl Fn(&TaskId) -> Option<String>,
    waiting: &HashSet<TaskId>,
    members: impl Fn(&str) -> Vec<TaskId>,
) -> Vec<Vec<TaskId>> {
    let mut out: Vec<Vec<TaskId>> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for t in ready {
        match group_of(&t) {
            None => out.push(vec![t]),
            Some(g) => {
                if !seen.insert(g.clone()) {
                    continue;
                }
                let all = members(&g);
                if all.iter().any(|m| waiting.contains(m)) {
                    continue;
                }
                out.push(all);
            }
        }
    }
    out
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
    let mut cmd = super::detached_command(program, &run.0, &run.supervisor_log())?;
    cmd.arg("--executor-dir").arg(&run.0);
    Ok(cmd)
}

/// Ends a live run now: SIGKILL to its executor's group (its supervisor then records the end
/// and exits); before the group is recorded, SIGTERM to the supervisor, which then stops the
/// executor it starts (SIGTERM, SIGKILL after the grace). Blocking.
fn kill_run(run: &RunDir) {
    if read_exit_status(run).is_some() {
        return;
    }
    match read_pid(&run.command_pid()) {
        Some(pgid) => signal_group(pgid, Signal::SIGKILL),
        None => {
            if let Some(pid) = read_pid(&run.supervisor_pid()).filter(|p| supervises(*p, run)) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }
}

/// Marks the run's end as told to its framework, off the actor. Not durable on purpose: an
/// end told twice after a crash is a duplicate FAILURE, which frameworks take (best effort,
/// as in Mesos).
fn mark_exit_reported(run: RunDir) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::write(run.exit_reported(), b"") {
            tracing::warn!(run = %run.0.display(), error = %e, "cannot mark a run's end as told");
        }
    });
}

/// How often an adopted run's supervisor is looked for.
const ADOPTED_POLL: Duration = Duration::from_millis(500);

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
        let Some(executor) = req.task.executor.as_ref() else {
            return;
        };
        let key: Key = (req.framework_id.clone(), req.task.task_id.clone());
        let mut entry = Entry::new(
            req.agent_id.clone(),
            req.task.kill_grace_ms.map(Duration::from_millis),
        );
        entry.executor = Some(executor.executor_id.clone());
        self.insert(key, entry);
        self.place_custom(req, framework_name, reply);
    }

    /// Puts a custom executor's task (in the table already) in a run: the live run of its
    /// executor, a new one, or, while the executor's run is going away, the next one.
    fn place_custom(
        &mut self,
        req: RunTask,
        framework_name: String,
        reply: oneshot::Sender<Result<(), TaskError>>,
    ) {
        let Some(executor) = req.task.executor.clone() else {
            return;
        };
        let key: Key = (req.framework_id.clone(), req.task.task_id.clone());
        if self.tasks.get(&key).is_none_or(|e| e.state.is_terminal()) {
            // Killed while it waited for the next run.
            let _ = reply.send(Ok(()));
            return;
        }
        let exec: ExecKey = (req.framework_id.clone(), executor.executor_id.clone());
        let dir = TaskDir(self.config.layout.task_dir(&key.0, &key.1));
        // The executor's command runs as the user it names (its tasks are its business).
        let run_as = self
            .config
            .users
            .decide(&executor.user, &crate::users::HostAccounts);
        let json = match self.launch_spec_json(&req, &dir, None) {
            Ok(j) => j,
            Err(e) => return self.not_launched(&key, reply, e),
        };
        let live = self.live_tasks_of(&exec);
        enum Place {
            Join(RunDir),
            Defer,
            /// The run is idle with another ExecutorInfo: it goes, the task waits for the next.
            Replace,
            Refuse(String),
            Start,
        }
        let place = match self.executors.get(&exec) {
            Some(run) if run.state == RunState::ShuttingDown => Place::Defer,
            Some(run) if run.spec.same_as(&executor) => Place::Join(run.run.clone()),
            Some(_) if live == 0 => Place::Replace,
            Some(run) => Place::Refuse(format!(
                "executor {} runs here with another ExecutorInfo (container {})",
                exec.1,
                run.run.container_id()
            )),
            None => Place::Start,
        };
        // Held to the agent's policy now, whether it joins a run or starts one (a run from
        // before a restart with stricter flags takes no more tasks).
        let place = match (place, &run_as) {
            (Place::Join(_) | Place::Start, Err(why)) => Place::Refuse(why.to_string()),
            (place, _) => place,
        };
        match place {
            Place::Join(run_dir) => {
                if let Some(run) = self.executors.get_mut(&exec) {
                    run.tasks.insert(key.1.clone());
                    run.specs.insert(key.1.clone(), req.task.clone());
                }
                let me = self.me.clone();
                self.waiters.spawn(async move {
                    let d = dir.clone();
                    let outcome = checkpoint::off_runtime(dir.0.clone(), move || {
                        prepare_task(&d, &json, &run_dir)
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
            Place::Defer | Place::Replace => {
                tracing::info!(task = %key.1, executor = %exec.1, "the executor's run is going away: the task waits for the next run");
                if let Some(run) = self.executors.get_mut(&exec) {
                    run.deferred.push(Deferred {
                        req,
                        framework_name,
                        reply,
                    });
                }
                if matches!(place, Place::Replace) {
                    self.shutdown_run(exec);
                }
            }
            Place::Refuse(why) => {
                // The task is in the table (it must be answered and reported like any other),
                // but it runs nowhere: it fails at once.
                if let Some(e) = self.tasks.get_mut(&key) {
                    e.preparing = None;
                }
                let _ = reply.send(Ok(()));
                self.report_later(key, TaskState::Failed, "executor_failed", why);
            }
            Place::Start => {
                // The run's cgroup holds the executor and its first task; later tasks raise
                // its limits as they join.
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
                    run_as.ok().flatten(),
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
        run_as: Option<crate::users::RunAs>,
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
            framework_name: framework_name.clone(),
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
            run_as,
        };
        let run_json = match super::checkpoint_json(&launch, run.executor_json()) {
            Ok(j) => j,
            Err(e) => return self.not_launched(&key, reply, e),
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
                adopted: false,
                conn: None,
                tasks: [key.1.clone()].into_iter().collect(),
                specs: [(key.1.clone(), task)].into_iter().collect(),
                launched: HashSet::new(),
                ever_launched: HashSet::new(),
                deferred: Vec::new(),
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
                    self.raise_run_limits(&exec);
                    self.launch_ready(&exec);
                }
                return;
            }
        };
        let failed_run = match outcome {
            Launch::CheckpointFailed(_) => self.exec_of(&key),
            _ => None,
        };
        if let Some(exec) = &failed_run {
            if let Some(run) = self.executors.get_mut(exec) {
                run.tasks.remove(&key.1);
                run.specs.remove(&key.1);
            }
        }
        self.prepared(key, dir, outcome, reply).await;
        if let Some(exec) = failed_run {
            // A group it held back goes without it; the run may have no task left: it goes
            // once idle.
            self.launch_ready(&exec);
            self.idle_later(exec);
        }
    }

    /// Raises the run's cgroup limits to its executor's resources and its live tasks' (never
    /// lowers them: a task's end does not shrink what the executor may still be using).
    fn raise_run_limits(&mut self, exec: &ExecKey) {
        if matches!(self.config.cgroups, crate::cgroups::CgroupMode::None { .. }) {
            return;
        }
        let Some(run) = self.executors.get(exec) else {
            return;
        };
        let mut needed = run.spec.resources.clone();
        for t in run.specs.values() {
            needed = needed
                .checked_add(&t.own_resources())
                .unwrap_or(needed.clone());
        }
        let name = crate::executor::supervise::run_cgroup_name(&exec.0, &exec.1, &run.run);
        let mode = self.config.cgroups.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::cgroups::raise_limits(&mode, &name, &needed) {
                tracing::warn!(error = %e, "cannot raise a custom executor's limits");
            }
        });
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
        // A group's tasks not given yet: those still being written hold it back.
        let waiting: HashSet<TaskId> = tasks
            .iter()
            .filter(|(t, ready, state)| {
                !*ready && *state == TaskState::Staging && !run.launched.contains(t)
            })
            .map(|(t, _, _)| t.clone())
            .collect();
        let group_of = |t: &TaskId| run.specs.get(t).and_then(|s| s.task_group.clone());
        let members = |g: &str| {
            tasks
                .iter()
                .filter(|(t, _, state)| {
                    *state == TaskState::Staging
                        && !run.launched.contains(t)
                        && run.specs.get(t).and_then(|s| s.task_group.as_deref()) == Some(g)
                })
                .map(|(t, _, _)| t.clone())
                .collect()
        };
        let batches = launches(ids, group_of, &waiting, members);
        for batch in batches {
            let Some(run) = self.executors.get(exec) else {
                return;
            };
            let specs: Vec<TaskSpec> = batch
                .iter()
                .filter_map(|t| run.specs.get(t).cloned())
                .collect();
            if specs.is_empty() {
                continue;
            }
            let mut specs = specs;
            let event = if specs[0].task_group.is_some() {
                ToCustom::LaunchGroup(specs)
            } else {
                ToCustom::Launch(Box::new(specs.swap_remove(0)))
            };
            if conn.try_send(event).is_err() {
                tracing::warn!(executor = %exec.1, "the executor's event queue is full; it gets the task when it subscribes again");
                self.drop_connection(exec);
                return;
            }
            if let Some(run) = self.executors.get_mut(exec) {
                for task in batch {
                    run.launched.insert(task.clone());
                    run.ever_launched.insert(task);
                }
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

    /// Whether the executor may report on `task` (`None`: any call but UPDATE): it subscribed
    /// (a call between two subscriptions is taken, as Mesos takes it: only one that never
    /// subscribed is refused), and the task is one of its own; the agent the task runs as.
    pub(super) fn executor_check(
        &self,
        exec: &ExecKey,
        task: Option<&TaskId>,
    ) -> Result<AgentId, CustomError> {
        let run = self
            .executors
            .get(exec)
            .ok_or(CustomError::ExecutorNotFound)?;
        if !run.ever_subscribed {
            return Err(CustomError::NotSubscribed);
        }
        let Some(task) = task else {
            return Ok(run.agent_id.clone());
        };
        self.tasks
            .get(&(exec.0.clone(), task.clone()))
            .filter(|e| e.executor.as_ref() == Some(&exec.1))
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
            // What a run remembers of a task ends with it: a long-lived executor's books stay
            // the size of its live tasks.
            run.specs.remove(&key.1);
            run.tasks.remove(&key.1);
            run.launched.remove(&key.1);
            run.ever_launched.remove(&key.1);
        }
        self.idle_later(exec);
    }

    /// Looks again in a while whether the run is idle (then shuts it down), if it has no live
    /// task now.
    fn idle_later(&mut self, exec: ExecKey) {
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

    /// The executor never subscribed (or, after the agent's restart, never again): its tasks
    /// fail, it is killed.
    pub(super) async fn registration_timeout(&mut self, exec: ExecKey, run: RunDir) {
        let Some(entry) = self.executors.get_mut(&exec) else {
            return;
        };
        if entry.run != run || entry.ever_subscribed {
            return;
        }
        entry.state = RunState::ShuttingDown;
        let tasks: Vec<TaskId> = entry.tasks.iter().cloned().collect();
        let (reason, message) = if entry.adopted {
            (
                "executor_reregistration_timeout",
                format!(
                    "the executor did not subscribe again within {:?} of the agent's restart",
                    self.config.executor_reregistration_timeout
                ),
            )
        } else {
            (
                "executor_registration_timeout",
                format!(
                    "the executor did not subscribe within {:?}",
                    self.config.executor_registration_timeout
                ),
            )
        };
        tracing::warn!(executor = %exec.1, framework = %exec.0, reason, "custom executor did not subscribe in time: killing it");
        for t in tasks {
            let key = (exec.0.clone(), t);
            if self.tasks.get(&key).is_some_and(|e| !e.state.is_terminal()) {
                self.report_end(&key, TaskState::Failed, reason, message.clone())
                    .await;
            }
        }
        tokio::task::spawn_blocking(move || kill_run(&run));
    }

    /// Takes back the runs an earlier life of the agent started (before its tasks, see
    /// [`Actor::adopt_custom_task`]): a run whose supervisor still runs is adopted, unless
    /// `mode` is cleanup or its `executor.json` cannot be read (then it is killed). Its
    /// executor subscribes again by itself; if it has not within
    /// `executor_reregistration_timeout`, its tasks fail and it is killed. A run that ended
    /// while the agent was down is left to its tasks' recovery (they fail); its end is kept
    /// for its framework, told once the agent is registered again.
    pub(super) fn recover_runs(&mut self, runs: Vec<FoundRun>, mode: RecoverMode) -> usize {
        let mut adopted = 0;
        for r in runs {
            let exec: ExecKey = (r.framework.clone(), r.executor.clone());
            if !r.alive() {
                if let (Ok(launch), false) = (&r.launch, r.exit_reported) {
                    self.exits_while_down.push(EndedRun {
                        agent: launch.agent_id.clone(),
                        exec,
                        status: r.exit_status,
                        run: r.run.clone(),
                    });
                }
                continue;
            }
            let launch = match (&r.launch, mode) {
                (Ok(launch), RecoverMode::Reconnect) if !self.executors.contains_key(&exec) => {
                    launch.clone()
                }
                (launch, _) => {
                    let why = match launch {
                        Err(e) => e.clone(),
                        Ok(_) if mode == RecoverMode::Cleanup => "--recover cleanup".into(),
                        Ok(_) => "another run of the same executor was taken back".into(),
                    };
                    tracing::warn!(executor = %exec.1, framework = %exec.0, run = %r.run.0.display(), %why, "recovery: killing a custom executor's run");
                    let run = r.run.clone();
                    tokio::task::spawn_blocking(move || kill_run(&run));
                    continue;
                }
            };
            tracing::info!(executor = %exec.1, framework = %exec.0, container = %r.run.container_id(), "recovery: re-attaching to a custom executor; it subscribes again");
            self.executors.insert(
                exec.clone(),
                ExecEntry {
                    agent_id: launch.agent_id.clone(),
                    framework_name: launch.framework_name.clone(),
                    spec: launch.executor.clone(),
                    run: r.run.clone(),
                    state: RunState::Waiting,
                    ever_subscribed: false,
                    adopted: true,
                    conn: None,
                    tasks: BTreeSet::new(),
                    specs: HashMap::new(),
                    launched: HashSet::new(),
                    ever_launched: HashSet::new(),
                    deferred: Vec::new(),
                },
            );
            adopted += 1;
            let me = self.me.clone();
            let timeout = self.config.executor_reregistration_timeout;
            let (e, run) = (exec.clone(), r.run.clone());
            self.waiters.spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(tx) = me.upgrade() {
                    let _ = tx.send(Msg::RegistrationTimeout { exec: e, run }).await;
                }
            });
            if let Some(pid) = r.supervisor {
                self.watch_adopted(exec, r.run, pid);
            }
        }
        adopted
    }

    /// Waits for an adopted run's supervisor (not this agent's child) to end, then reports it
    /// as [`Msg::RunExited`].
    fn watch_adopted(&mut self, exec: ExecKey, run: RunDir, supervisor: i32) {
        let me = self.me.clone();
        self.waiters.spawn(async move {
            loop {
                tokio::time::sleep(ADOPTED_POLL).await;
                if me.upgrade().is_none() {
                    return;
                }
                let r = run.clone();
                let ended = tokio::task::spawn_blocking(move || {
                    read_exit_status(&r).is_some() || !supervises(supervisor, &r)
                })
                .await
                .unwrap_or(false);
                if ended {
                    break;
                }
            }
            let r = run.clone();
            let status = tokio::task::spawn_blocking(move || read_exit_status(&r))
                .await
                .ok()
                .flatten();
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(Msg::RunExited { exec, run, status }).await;
            }
        });
    }

    /// A task an earlier life started, of the run `run` of its custom executor: into that run
    /// if it was adopted (true), else false (the run ended: the task fails as any whose
    /// executor ended).
    pub(super) fn adopt_custom_task(
        &mut self,
        key: &Key,
        task: &TaskSpec,
        run: &RunDir,
        state: TaskState,
    ) -> bool {
        let Some(executor) = &task.executor else {
            return false;
        };
        let exec: ExecKey = (key.0.clone(), executor.executor_id.clone());
        let Some(entry) = self.executors.get_mut(&exec) else {
            return false;
        };
        if &entry.run != run {
            return false;
        }
        entry.tasks.insert(key.1.clone());
        if !state.is_terminal() {
            entry.specs.insert(key.1.clone(), task.clone());
        }
        if state != TaskState::Staging {
            // The executor has it (it reported on it).
            entry.ever_launched.insert(key.1.clone());
        }
        if let Some(e) = self.tasks.get_mut(key) {
            e.executor = Some(executor.executor_id.clone());
            // Its end comes from the run's, not from a built-in executor's absence.
            e.adopted = false;
        }
        true
    }

    /// After recovery: every run with no live task is shut down once idle.
    pub(super) fn idle_runs_later(&mut self) {
        let runs: Vec<ExecKey> = self.executors.keys().cloned().collect();
        for exec in runs {
            self.idle_later(exec);
        }
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
        if status.is_none() {
            // The supervisor died without recording the end: whatever is left of the
            // executor goes with it.
            let run = run.clone();
            tokio::task::spawn_blocking(move || crate::recovery::kill_run_leftovers(&run));
        }
        if self.relay.exited(&entry.agent_id, &exec.0, &exec.1, status) {
            mark_exit_reported(run.clone());
        }
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
        let deferred = self
            .executors
            .remove(&exec)
            .map(|e| e.deferred)
            .unwrap_or_default();
        // The tasks that came while it went away start the next run.
        for d in deferred {
            self.place_custom(d.req, d.framework_name, d.reply);
        }
    }

    /// Registered as `agent`: the frameworks hear of the runs that ended on it while the agent
    /// was down (those of another agent id are forgotten: that agent is gone, and its
    /// frameworks learnt it from the master).
    pub(super) fn report_exits_while_down(&mut self, agent: &AgentId) {
        for e in std::mem::take(&mut self.exits_while_down) {
            if &e.agent != agent {
                continue;
            }
            tracing::info!(executor = %e.exec.1, framework = %e.exec.0, status = %describe_status(e.status), "a custom executor ended while the agent was down");
            if self.relay.exited(&e.agent, &e.exec.0, &e.exec.1, e.status) {
                mark_exit_reported(e.run);
            }
        }
    }

    /// Reports a task's end from a later turn of the actor (the caller cannot await).
    pub(super) fn report_later(
        &mut self,
        key: Key,
        state: TaskState,
        reason: &'static str,
        message: String,
    ) {
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
    fn a_group_goes_whole_once_none_of_its_tasks_is_still_being_written() {
        let (a, g1, g2, h1, h2) = (t("a"), t("g1"), t("g2"), t("h1"), t("h2"));
        let group_of = |x: &TaskId| match x.as_str() {
            "g1" | "g2" => Some("g".to_string()),
            "h1" | "h2" => Some("h".to_string()),
            _ => None,
        };
        let members = |g: &str| match g {
            "g" => vec![t("g1"), t("g2")],
            _ => vec![t("h1"), t("h2")],
        };
        // h2 is still being written: h waits; g goes whole, once, in its first task's place.
        let waiting: HashSet<TaskId> = [h2.clone()].into_iter().collect();
        let ready = vec![g2.clone(), a.clone(), g1.clone(), h1.clone()];
        assert_eq!(
            launches(ready, group_of, &waiting, members),
            vec![vec![g1.clone(), g2.clone()], vec![a]]
        );
        // Written: h goes whole.
        assert_eq!(
            launches(
                vec![h1.clone(), h2.clone()],
                group_of,
                &HashSet::new(),
                members
            ),
            vec![vec![h1, h2]]
        );
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
            user: String::new(),
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
