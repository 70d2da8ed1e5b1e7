//! `drover executor --executor-dir RUN_DIR`: the supervisor of one run of a custom executor
//! (Mesos's `mesos-containerizer launch`), started by the agent and outliving it.
//!
//! Owns the executor's process group and cgroup. It reads the run's `executor.json`, records
//! its own pid, makes the run's cgroup, starts the executor's command with `/bin/sh -c` in its
//! own process group (custom executors such as pymesos's end with `killpg(0, SIGKILL)`), in
//! the cgroup from its first instruction, with the environment the agent built, the sandbox
//! as working directory and `sandbox/stdout`, `sandbox/stderr` as output, and records the
//! group in `command.pid`. SIGTERM to the supervisor is a shutdown: SIGTERM to the group,
//! SIGKILL after the grace. Orphans of the executor, reparented to the supervisor (a
//! subreaper), are reaped as they exit. When the command ends the supervisor writes its raw
//! wait status
//! to `exit_status` (atomically: the agent, or a later life of it, reads how the executor
//! ended from there), kills and reaps what is left of the group and the cgroup, and exits.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::group::{self, signal_group};
use super::ExecutorError;
use crate::cgroups::{self, TaskCgroup};
use crate::checkpoint;
use crate::ids::{ExecutorId, FrameworkId};
use crate::layout::RunDir;
use crate::task::{ExecutorLaunch, EXECUTOR_LAUNCH_VERSION};

/// Exit status of a supervisor whose executor could not be started (its `exit_status` then
/// holds [`NOT_STARTED_STATUS`]).
pub const EXIT_NOT_STARTED: i32 = 3;

/// What `exit_status` holds when the command never ran.
pub const NOT_STARTED_STATUS: i32 = -1;

/// A run's `executor.json`, checked: its size, its format and its version.
pub(crate) fn read_launch(dir: &RunDir) -> Result<ExecutorLaunch, ExecutorError> {
    let path = dir.executor_json();
    let launch: ExecutorLaunch = super::read_checkpoint(&path)?;
    if launch.version != EXECUTOR_LAUNCH_VERSION {
        return Err(ExecutorError::Version {
            path,
            found: launch.version,
            expected: EXECUTOR_LAUNCH_VERSION,
        });
    }
    Ok(launch)
}

/// The name of a run's cgroup: `<framework>_<executor>@<container>`, which no task's cgroup
/// (`<framework>_<task>`) can have (`@` is in no id) and no other run's either.
pub fn run_cgroup_name(framework: &FrameworkId, executor: &ExecutorId, dir: &RunDir) -> String {
    cgroups::cgroup_name(
        framework.as_str(),
        &format!("{executor}@{}", dir.container_id()),
    )
}

/// Reads a run's `exit_status`: the raw wait status, [`NOT_STARTED_STATUS`], or `None` when
/// the command has not ended (or the supervisor died before it could say).
pub fn read_exit_status(dir: &RunDir) -> Option<i32> {
    std::fs::read_to_string(dir.exit_status())
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_exit_status(dir: &RunDir, raw: i32) {
    if let Err(e) = checkpoint::write_atomic(&dir.exit_status(), format!("{raw}\n").as_bytes()) {
        tracing::error!(error = %e, "cannot record how the executor ended");
    }
}

/// Supervises the run in `dir` until its executor has ended; the process exit status.
pub(crate) async fn supervise(
    dir: RunDir,
    mut sigterm: tokio::signal::unix::Signal,
) -> Result<i32, ExecutorError> {
    let launch = read_launch(&dir)?;
    group::become_subreaper();
    let me = std::process::id();
    if let Err(e) = checkpoint::write_atomic(&dir.supervisor_pid(), format!("{me}\n").as_bytes()) {
        tracing::warn!(error = %e, "cannot record the supervisor's pid");
    }
    let executor = launch.executor.executor_id.clone();
    tracing::info!(%executor, framework = %launch.framework_id, pid = me, "executor supervisor starting");
    let cgroup = match TaskCgroup::create(
        &launch.cgroups,
        &run_cgroup_name(&launch.framework_id, &launch.executor.executor_id, &dir),
        &launch.limits,
    ) {
        Ok(cg) => cg,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the executor's limits");
            write_exit_status(&dir, NOT_STARTED_STATUS);
            return Ok(EXIT_NOT_STARTED);
        }
    };
    let mut child = match super::spawn_shell(
        &launch.executor.shell,
        &launch.environment,
        &dir.sandbox(),
        cgroup.as_ref(),
        launch.run_as.as_ref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the executor");
            if let Some(cg) = cgroup {
                if let Err(e) = cg.remove() {
                    tracing::warn!(error = %e, "cannot remove the executor's cgroup");
                }
            }
            write_exit_status(&dir, NOT_STARTED_STATUS);
            return Ok(EXIT_NOT_STARTED);
        }
    };
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    if let Err(e) = checkpoint::write_atomic(&dir.command_pid(), format!("{pgid}\n").as_bytes()) {
        tracing::warn!(error = %e, "cannot record the executor's process group");
    }
    let grace = Duration::from_millis(launch.shutdown_grace_ms);
    let mut sigkill_at: Option<Instant> = None;
    let mut reap = tokio::time::interval(REAP_INTERVAL);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = reap.tick() => reap_orphans(pgid),
            Some(()) = sigterm.recv() => {
                if sigkill_at.is_none() {
                    tracing::info!(pgid, grace_ms = grace.as_millis() as u64, "shutdown: SIGTERM to the executor's group");
                    signal_group(pgid, Signal::SIGTERM);
                    sigkill_at = Some(Instant::now() + grace);
                }
            }
            () = tokio::time::sleep_until(sigkill_at.unwrap_or_else(Instant::now)), if sigkill_at.is_some() => {
                tracing::info!(pgid, "shutdown grace over: SIGKILL to the executor's group");
                signal_group(pgid, Signal::SIGKILL);
                sigkill_at = None;
            }
        }
    };
    match &status {
        Ok(s) => write_exit_status(&dir, s.into_raw()),
        // No status is recorded: the agent then reports the end as of unknown status.
        Err(e) => tracing::error!(error = %e, "lost track of the executor"),
    }
    tracing::info!(pgid, status = ?status, "executor ended");
    let _ = tokio::task::spawn_blocking(move || {
        if !group::kill_and_reap(pgid) {
            tracing::warn!(pgid, "processes of the executor's group are still there");
        }
        if let Some(cg) = cgroup {
            cg.kill_all();
            if let Err(e) = cg.remove() {
                tracing::warn!(error = %e, "cannot remove the executor's cgroup");
            }
        }
    })
    .await;
    Ok(0)
}

/// How often orphans of the executor (reparented to the supervisor, a subreaper) are reaped.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Reaps every exited child other than the executor itself (`executor`, which the runtime
/// waits for): a long-lived executor's orphans must not pile up as zombies.
fn reap_orphans(executor: i32) {
    use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
    loop {
        // Peek (WNOWAIT) at which child exited, so the executor's status is left for its
        // waiter.
        let peek = waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let pid = match peek {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => return,
            },
        };
        if pid.as_raw() == executor {
            return;
        }
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}
