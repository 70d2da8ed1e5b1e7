//! `drover executor`: the process that runs one task for the agent and reports on it.
//!
//! The agent starts one per task, in its own session, so that it outlives the agent (an agent
//! restart or upgrade does not touch running tasks). The executor reads the task's
//! `task.json`, reports `TASK_STARTING`, puts the command's processes in the task's cgroup
//! (when the agent found cgroups usable), runs the command with `/bin/sh -c` in its own
//! process group with the sandbox as working directory and `sandbox/stdout`, `sandbox/stderr`
//! as output, reports `TASK_RUNNING`, and when the command ends reports `TASK_FINISHED` (exit
//! 0), `TASK_FAILED` (another exit status, or a signal it was not asked to take) or
//! `TASK_KILLED` (after a kill request). Every update gets a fresh uuid here, is first
//! appended to `executor_updates.log` in the task directory, then goes to the agent over the
//! socket (see [`crate::protocol`]) until acknowledged.
//!
//! With a health check in its task (see [`health`]), the executor runs it beside the command
//! once the command runs, reports the task's health on a RUNNING update whenever it changes
//! (reason `task_healthy` or `task_unhealthy`), and kills the task after too many failures
//! in a row (it then ends KILLED with reason `task_unhealthy`).
//!
//! A kill is SIGTERM to the command's process group, then SIGKILL to the group once the grace
//! period is over. SIGTERM to the executor itself is taken as a kill request with the task's
//! grace. After the command ends, whatever is left of its process group and cgroup is
//! killed. The executor exits once its terminal update is acknowledged, or after
//! [`MAX_ACK_WAIT`], logging that it gave up.
//!
//! The task's environment is built, not inherited: `PATH` (the executor's, or a default),
//! then the task's `command.environment`, then the agent's own variables, which win:
//! `PORT0`…`PORTn`, `PORT` (= `PORT0`) and `PORTS` (comma list) from the task's `ports` in
//! order, `DROVER_SANDBOX`, `DROVER_TASK_ID`, `DROVER_FRAMEWORK_ID`, `DROVER_AGENT_ID`.
//!
//! A task with a container runs as a Docker container instead (see [`container`]), with the
//! same statuses, kills and acknowledgements.

pub mod container;
pub(crate) mod group;
pub mod health;
mod link;
pub mod supervise;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::cgroups::{self, MemoryLimitHit, TaskCgroup};
use crate::checkpoint;
use crate::layout::TaskDir;
use crate::protocol::FromExecutor;
use crate::task::{LaunchSpec, LAUNCH_SPEC_VERSION};
use crate::update::{StatusSource, StatusUpdate, TaskState};
use crate::users::RunAs;
use drover_model::health::{
    HealthCheckSpec, HealthState, HealthVerdict, REASON_HEALTHY, REASON_UNHEALTHY,
};

use group::signal_group;

pub use link::Link;

/// How long an executor waits for the agent to acknowledge its last update before it exits
/// anyway.
pub const MAX_ACK_WAIT: Duration = Duration::from_secs(300);
/// `PATH` for a task when the executor has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Largest `task.json` (or a custom executor's `executor.json`) read, bytes.
const MAX_TASK_JSON_BYTES: u64 = 1024 * 1024;

/// Exit status of an executor that delivered its terminal update.
pub const EXIT_OK: i32 = 0;
/// Exit status of an executor that gave up waiting for the agent's acknowledgement.
pub const EXIT_UNACKNOWLEDGED: i32 = 2;

/// `drover executor`: internal, started by the agent: the executor of one task
/// (`--task-dir`, `--agent-socket`), or the supervisor of a custom executor's run
/// (`--executor-dir`, see [`supervise`]).
#[derive(clap::Args, Debug, Clone)]
pub struct ExecutorArgs {
    /// The task's directory (holds task.json; the sandbox is inside).
    #[arg(
        long,
        env = "DROVER_EXECUTOR_TASK_DIR",
        required_unless_present = "executor_dir",
        conflicts_with = "executor_dir",
        requires = "agent_socket"
    )]
    pub task_dir: Option<PathBuf>,
    /// The agent's Unix socket.
    #[arg(long, env = "DROVER_EXECUTOR_AGENT_SOCKET")]
    pub agent_socket: Option<PathBuf>,
    /// A custom executor's run directory (holds executor.json): supervise that executor.
    #[arg(long)]
    pub executor_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("{path}: {source}")]
    ReadTask {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_TASK_JSON_BYTES} bytes")]
    TaskTooLarge { path: PathBuf },
    #[error("{path}: not a task this executor understands: {source}")]
    DecodeTask {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: version {found}, this executor reads version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("cannot listen for SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error("give --task-dir and --agent-socket, or --executor-dir")]
    Usage,
}

/// Runs the executor until its task is over and reported. Returns the process exit status:
/// [`EXIT_OK`], or [`EXIT_UNACKNOWLEDGED`] when the agent never acknowledged the end.
pub async fn run_executor(args: ExecutorArgs) -> Result<i32, ExecutorError> {
    // The executor outlives the agent and the terminal it may have been started from: the
    // end of that terminal's session must not end the task. SIGHUP is caught and dropped,
    // not ignored: an ignored signal stays ignored across exec, and the task's command must
    // start with SIGHUP at its default (a caught one is reset at exec).
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move { while hangups.recv().await.is_some() {} });
        }
        Err(e) => tracing::warn!(error = %e, "cannot catch SIGHUP"),
    }
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ExecutorError::Signal)?;
    if let Some(dir) = args.executor_dir {
        return supervise::supervise(crate::layout::RunDir(dir), sigterm).await;
    }
    run(args, Some(sigterm)).await
}

/// A task's `task.json`, checked: its size, its format and its version.
pub(crate) fn read_spec(dir: &TaskDir) -> Result<LaunchSpec, ExecutorError> {
    let path = dir.task_json();
    let spec: LaunchSpec = read_checkpoint(&path)?;
    if spec.version != LAUNCH_SPEC_VERSION {
        return Err(ExecutorError::Version {
            path,
            found: spec.version,
            expected: LAUNCH_SPEC_VERSION,
        });
    }
    Ok(spec)
}

/// A JSON checkpoint the agent wrote for this process (`task.json`, `executor.json`), read
/// whole once its size is checked.
pub(crate) fn read_checkpoint<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, ExecutorError> {
    let path = path.to_path_buf();
    let meta = std::fs::metadata(&path).map_err(|source| ExecutorError::ReadTask {
        path: path.clone(),
        source,
    })?;
    if meta.len() > MAX_TASK_JSON_BYTES {
        return Err(ExecutorError::TaskTooLarge { path });
    }
    let bytes = std::fs::read(&path).map_err(|source| ExecutorError::ReadTask {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ExecutorError::DecodeTask { path, source })
}

/// The command's environment (see the module docs).
pub fn environment(spec: &LaunchSpec, sandbox: &std::path::Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()),
    );
    if let Some(user) = &spec.run_as {
        env.insert("USER".to_string(), user.user.clone());
        env.insert("LOGNAME".to_string(), user.user.clone());
    }
    env.extend(spec.task.environment.clone());
    let ports = spec.task.ports();
    for (i, p) in ports.iter().enumerate() {
        env.insert(format!("PORT{i}"), p.to_string());
    }
    if let Some(p) = ports.first() {
        env.insert("PORT".to_string(), p.to_string());
    }
    env.insert(
        "PORTS".to_string(),
        ports
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    env.insert("DROVER_SANDBOX".to_string(), sandbox.display().to_string());
    env.insert("DROVER_TASK_ID".to_string(), spec.task.task_id.to_string());
    env.insert(
        "DROVER_FRAMEWORK_ID".to_string(),
        spec.framework_id.to_string(),
    );
    env.insert("DROVER_AGENT_ID".to_string(), spec.agent_id.to_string());
    env
}

/// Reports and checkpoints the executor's updates.
struct Reporter {
    spec: LaunchSpec,
    dir: TaskDir,
    link: Link,
    /// An append to the task's `executor.updates` succeeded (its directory entry is durable).
    log_durable: bool,
}

impl Reporter {
    async fn report(
        &mut self,
        state: TaskState,
        reason: &str,
        message: String,
        status: Option<ExitStatus>,
    ) {
        let update = StatusUpdate::new(
            self.spec.agent_id.clone(),
            self.spec.framework_id.clone(),
            self.spec.task.task_id.clone(),
            state,
            StatusSource::Executor,
            reason,
            message,
        )
        .with_exit_code(status.and_then(|s| s.code()))
        .with_signal(status.and_then(|s| s.signal()));
        tracing::info!(task = %update.task_id, state = ?state, reason, message = %update.status.message, uuid = %update.status.uuid, "status update");
        let path = self.dir.executor_updates_log();
        let record = update.clone();
        let durable = self.log_durable;
        // Recovery needs the latest update only; a long-lived task's log keeps its newest.
        let r = tokio::task::spawn_blocking(move || {
            checkpoint::append_record(&path, &record, durable, |old| {
                checkpoint::newest_within(old, checkpoint::MAX_LOG_BYTES / 2)
            })
        })
        .await;
        match r {
            Ok(Ok(())) => self.log_durable = true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot checkpoint the update locally; sending it anyway")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot checkpoint the update locally; sending it anyway")
            }
        }
        self.link.send(update).await;
    }
}

impl Reporter {
    /// Reports the task's end: what its exit status means (see [`terminal`]), or TASK_FAILED
    /// (`executor_failed`, with `lost`) when the executor lost track of it.
    async fn report_end(
        &mut self,
        ended: Result<ExitStatus, String>,
        kill: Option<&KillState>,
        memory: Option<&MemoryLimitHit>,
    ) {
        match ended {
            Ok(status) => {
                let (state, reason, message) = terminal(status, kill, memory);
                self.report(state, reason, message, Some(status)).await;
            }
            Err(lost) => {
                self.report(TaskState::Failed, "executor_failed", lost, None)
                    .await
            }
        }
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// The reason of a task the kernel killed for going over its memory limit.
pub const REASON_MEMORY_LIMIT: &str = "memory_limit";

/// What the command's end means for the task.
fn terminal(
    status: ExitStatus,
    killed: Option<&KillState>,
    memory: Option<&MemoryLimitHit>,
) -> (TaskState, &'static str, String) {
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by {}", signal_name(s)),
        (None, None) => format!("ended ({status})"),
    };
    // Over its limit, a task that did not succeed fails for it, whatever its command made of
    // the kill (a shell may turn its child's SIGKILL into exit status 137), and even while a
    // kill was under way: the kernel ended it, not the request (Mesos:
    // REASON_CONTAINER_LIMITATION_MEMORY). A command that exited 0 despite an OOM kill in
    // one of its processes finished.
    if let Some(hit) = memory.filter(|_| !status.success()) {
        return (
            TaskState::Failed,
            REASON_MEMORY_LIMIT,
            format!(
                "memory limit of {} MiB exceeded: the kernel's OOM killer killed {} process{} of the task; the command {how}",
                hit.limit_bytes / (1024 * 1024),
                hit.oom_kills,
                if hit.oom_kills == 1 { "" } else { "es" },
            ),
        );
    }
    if let Some(why) = killed.and_then(|k| k.unhealthy.as_ref()) {
        return (
            TaskState::Killed,
            REASON_UNHEALTHY,
            format!("{why}; the command {how}"),
        );
    }
    if let Some(k) = killed {
        let escalated = if k.sigkill_sent {
            " after the grace period ran out"
        } else {
            ""
        };
        return (
            TaskState::Killed,
            "killed",
            format!("killed on request: {how}{escalated}"),
        );
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => (TaskState::Finished, "command_exited", how),
        (Some(_), _) => (TaskState::Failed, "command_exited", how),
        (None, Some(_)) => (TaskState::Failed, "command_signaled", how),
        (None, None) => (TaskState::Failed, "command_exited", how),
    }
}

struct KillState {
    deadline: Instant,
    sigkill_sent: bool,
    /// Why the health check had the task killed, when it did.
    unhealthy: Option<String>,
}

/// The health check under way: its results, its spec and what it found so far.
struct Checking {
    results: tokio::sync::mpsc::Receiver<health::CheckResult>,
    spec: HealthCheckSpec,
    state: HealthState,
    started: Instant,
}

impl Checking {
    /// Starts the task's health check at `place`, if the task has one.
    fn start(spec: &LaunchSpec, place: impl FnOnce() -> health::CheckPlace) -> Option<Checking> {
        let h = spec.task.health_check.clone()?;
        Some(Checking {
            results: health::start(h.clone(), place()),
            spec: h,
            state: HealthState::default(),
            started: Instant::now(),
        })
    }

    /// The next result of the check, if there is one under way (else never).
    async fn next(checking: &mut Option<&mut Checking>) -> Option<health::CheckResult> {
        match checking.as_mut() {
            Some(c) => c.results.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Takes one result: reports the task's health when it changed; `Some(why)` when the
    /// task must be killed for it.
    async fn observe(
        &mut self,
        result: health::CheckResult,
        reporter: &mut Reporter,
    ) -> Option<String> {
        match self
            .state
            .observe(&self.spec, result.passed, self.started.elapsed())
        {
            HealthVerdict::Quiet => None,
            HealthVerdict::Report { healthy } => {
                let (reason, message) = if healthy {
                    (REASON_HEALTHY, "the health check passed".to_string())
                } else {
                    (
                        REASON_UNHEALTHY,
                        format!("the health check failed: {}", result.detail),
                    )
                };
                reporter
                    .report(TaskState::Running, reason, message, None)
                    .await;
                None
            }
            HealthVerdict::Kill { failures } => Some(format!(
                "killed after {failures} failed health checks in a row (the last: {})",
                result.detail
            )),
        }
    }
}

/// The executor, with an optional SIGTERM stream (tests run it in-process without one).
pub(crate) async fn run(
    args: ExecutorArgs,
    mut sigterm: Option<tokio::signal::unix::Signal>,
) -> Result<i32, ExecutorError> {
    let (Some(task_dir), Some(socket)) = (args.task_dir, args.agent_socket) else {
        return Err(ExecutorError::Usage);
    };
    let dir = TaskDir(task_dir);
    let spec = read_spec(&dir)?;
    group::become_subreaper();
    tracing::info!(
        task = %spec.task.task_id,
        framework = %spec.framework_id,
        pid = std::process::id(),
        "executor starting"
    );
    let link = Link::start(
        socket,
        FromExecutor::Hello {
            framework_id: spec.framework_id.clone(),
            task_id: spec.task.task_id.clone(),
            pid: std::process::id(),
        },
    );
    let mut reporter = Reporter {
        spec: spec.clone(),
        dir: dir.clone(),
        link,
        log_durable: false,
    };
    reporter
        .report(
            TaskState::Starting,
            "starting",
            "starting the command".into(),
            None,
        )
        .await;

    if let Some(container) = spec.task.container.clone() {
        container::run(&spec, &dir, &container, &mut reporter, &mut sigterm).await;
        return finish(reporter).await;
    }
    let cgroup = match TaskCgroup::create(
        &spec.cgroups,
        &cgroups::cgroup_name(spec.framework_id.as_str(), spec.task.task_id.as_str()),
        &spec.task.resources,
    ) {
        Ok(cg) => cg,
        Err(e) => {
            reporter
                .report(
                    TaskState::Failed,
                    "executor_failed",
                    format!("cannot set up the task's limits: {e}"),
                    None,
                )
                .await;
            return finish(reporter).await;
        }
    };
    let child = match spawn(&spec, &dir, cgroup.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            if let Some(cg) = cgroup {
                if let Err(e) = cg.remove() {
                    tracing::warn!(error = %e, "cannot remove the task's cgroup");
                }
            }
            reporter
                .report(
                    TaskState::Failed,
                    "executor_failed",
                    format!("cannot start the command: {e}"),
                    None,
                )
                .await;
            return finish(reporter).await;
        }
    };
    let mut child = child;
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    if let Err(e) = checkpoint::write_atomic(&dir.command_pid(), format!("{pgid}\n").as_bytes()) {
        tracing::warn!(error = %e, "cannot record the command's pid");
    }
    reporter
        .report(
            TaskState::Running,
            "running",
            format!("command running as process group {pgid}"),
            None,
        )
        .await;

    let mut checking = Checking::start(&spec, || {
        let sandbox = dir.sandbox();
        health::CheckPlace::Sandbox {
            env: environment(&spec, &sandbox),
            sandbox,
            run_as: spec.run_as.clone(),
        }
    });
    let (status, kill) = supervise(
        &mut child,
        pgid,
        &spec,
        &mut reporter,
        &mut sigterm,
        checking.as_mut(),
    )
    .await;
    drop(checking);
    let memory_hit = clean_up(pgid, cgroup).await;
    reporter
        .report_end(
            status.map_err(|e| format!("lost track of the command: {e}")),
            kill.as_ref(),
            memory_hit.as_ref(),
        )
        .await;
    finish(reporter).await
}

/// Waits for the command to end, killing its process group when the agent asks (or on
/// SIGTERM): SIGTERM first, SIGKILL when the grace period is over. Returns how it ended and
/// the kill under way, if any.
async fn supervise(
    child: &mut tokio::process::Child,
    pgid: i32,
    spec: &LaunchSpec,
    reporter: &mut Reporter,
    sigterm: &mut Option<tokio::signal::unix::Signal>,
    mut checking: Option<&mut Checking>,
) -> (std::io::Result<ExitStatus>, Option<KillState>) {
    let mut kill: Option<KillState> = None;
    let status = loop {
        let deadline = kill
            .as_ref()
            .filter(|k| !k.sigkill_sent)
            .map(|k| k.deadline);
        tokio::select! {
            status = child.wait() => break status,
            grace = reporter.link.kills.recv() => {
                if let Some(grace) = grace {
                    request_kill(&mut kill, pgid, grace);
                }
            }
            Some(()) = async {
                match sigterm.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("SIGTERM: killing the task");
                let grace = spec.kill_grace(None);
                request_kill(&mut kill, pgid, grace);
            }
            Some(result) = Checking::next(&mut checking) => {
                if kill.is_some() {
                    continue;
                }
                let Some(c) = checking.as_mut() else { continue };
                if let Some(why) = c.observe(result, reporter).await {
                    tracing::info!(pgid, "unhealthy: killing the task");
                    request_kill(&mut kill, pgid, spec.kill_grace(None));
                    if let Some(k) = kill.as_mut() {
                        k.unhealthy = Some(why);
                    }
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!(pgid, "grace period over: SIGKILL to the process group");
                signal_group(pgid, Signal::SIGKILL);
                if let Some(k) = kill.as_mut() {
                    k.sigkill_sent = true;
                }
            }
        }
    };
    (status, kill)
}

/// Nothing of the task outlives its command: kills and reaps the rest of its process group,
/// then its cgroup. Whether the kernel's OOM killer acted is read from the cgroup before it
/// goes.
async fn clean_up(pgid: i32, cgroup: Option<TaskCgroup>) -> Option<MemoryLimitHit> {
    let cleanup = tokio::task::spawn_blocking(move || {
        if !group::kill_and_reap(pgid) {
            tracing::warn!(pgid, "processes of the task's group are still there");
        }
        let cg = cgroup?;
        let hit = cg.memory_limit_hit();
        cg.kill_all();
        if let Err(e) = cg.remove() {
            tracing::warn!(error = %e, "cannot remove the task's cgroup");
        }
        hit
    })
    .await;
    cleanup.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cleaning up after the task failed");
        None
    })
}

/// Waits for the agent to acknowledge everything; the executor's exit status.
async fn finish(mut reporter: Reporter) -> Result<i32, ExecutorError> {
    if reporter.link.all_acked(MAX_ACK_WAIT).await {
        tracing::info!("terminal update acknowledged; executor exiting");
        Ok(EXIT_OK)
    } else {
        tracing::error!(
            wait_s = MAX_ACK_WAIT.as_secs(),
            "the agent did not acknowledge the terminal update; giving up"
        );
        Ok(EXIT_UNACKNOWLEDGED)
    }
}

fn request_kill(kill: &mut Option<KillState>, pgid: i32, grace: Duration) {
    if KillState::request(kill, grace) == KillRequest::First {
        tracing::info!(
            pgid,
            grace_ms = grace.as_millis() as u64,
            "kill requested: SIGTERM to the process group"
        );
        signal_group(pgid, Signal::SIGTERM);
    }
}

/// What a kill request changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillRequest {
    /// The first: the kill starts now.
    First,
    /// A later one with a shorter grace: the deadline moved closer.
    Shortened,
    /// A later one with a longer grace: nothing.
    Unchanged,
}

impl KillState {
    /// Records a kill request with `grace` in `kill`: a first one starts the kill, a later
    /// one may only shorten the grace.
    fn request(kill: &mut Option<KillState>, grace: Duration) -> KillRequest {
        let deadline = Instant::now() + grace;
        match kill {
            Some(k) if deadline < k.deadline => {
                k.deadline = deadline;
                KillRequest::Shortened
            }
            Some(_) => KillRequest::Unchanged,
            None => {
                *kill = Some(KillState {
                    deadline,
                    sigkill_sent: false,
                    unhealthy: None,
                });
                KillRequest::First
            }
        }
    }
}

/// Starts `/bin/sh -c COMMAND` in its own process group (and cgroup).
fn spawn(
    spec: &LaunchSpec,
    dir: &TaskDir,
    cgroup: Option<&TaskCgroup>,
) -> std::io::Result<tokio::process::Child> {
    let sandbox = dir.sandbox();
    let env = environment(spec, &sandbox);
    spawn_shell(
        &spec.task.shell,
        env,
        &sandbox,
        cgroup,
        spec.run_as.as_ref(),
    )
}

/// Starts `/bin/sh -c shell` with exactly `env`, in `sandbox` (made if missing) with its
/// `stdout` and `stderr` there, in a process group of its own and, from its first
/// instruction, in `cgroup`, as `run_as` when given (the sandbox is then the user's): how a
/// task's command and a custom executor are started.
pub(crate) fn spawn_shell<I, K, V>(
    shell: &str,
    env: I,
    sandbox: &std::path::Path,
    cgroup: Option<&TaskCgroup>,
    run_as: Option<&RunAs>,
) -> std::io::Result<tokio::process::Child>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    std::fs::create_dir_all(sandbox)?;
    let output = |name: &str| {
        use std::os::unix::fs::OpenOptionsExt;
        // Never through a link: a task may have run in this sandbox before, as a user.
        OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(sandbox.join(name))
    };
    let (stdout, stderr) = (output("stdout")?, output("stderr")?);
    if let Some(user) = run_as {
        user.prepare_sandbox(sandbox, &[&stdout, &stderr])?;
    }
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(shell)
        .current_dir(sandbox)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cg) = cgroup {
        let fds = cg.procs_fds();
        // SAFETY: join_in_child only calls write(2) on descriptors the parent keeps open
        // until spawn returns; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || cgroups::join_in_child(&fds));
        }
    }
    // After the cgroup's hook, which needs root; the working directory is entered before
    // any hook runs, so the directories above the sandbox need not be the user's to reach.
    if let Some(user) = run_as {
        user.apply(&mut cmd);
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests;
