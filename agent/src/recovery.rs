//! What a restarted agent finds on disk and in the process table (DESIGN.md, "Status updates
//! and failover": an agent restarted, SIGKILL included, with the same work directory).
//!
//! Owns the reading side of recovery: one pass over `WORK_DIR/frameworks/*/tasks/*` and one
//! over `/proc`, off the runtime, before the agent registers. For each task directory it
//! reports ([`Found`]) what `task.json` says (or why it cannot be read), the last update the
//! agent checkpointed, the updates the executor made that the agent never checkpointed (it was
//! down when the executor sent them), and whether the executor and the command still run. A
//! directory that cannot be read is reported on its own and does not hold up the others.
//!
//! What to do with each is the task table's business ([`crate::launcher`]): re-attach to a
//! live executor (it reconnects to the agent's socket by itself), take the true end of a task
//! that ended meanwhile from the executor's log, report `TASK_FAILED` (reason
//! `executor_terminated`) for one whose executor died without reporting its end, and with
//! `--recover cleanup` kill what still runs.
//!
//! It also walks the runs of custom executors (`frameworks/*/executors/*/runs/*`,
//! [`FoundRun`]): each one's `executor.json`, whether its supervisor (`drover executor
//! --executor-dir RUN`) still runs, and the executor's exit status if it ended.
//!
//! Executors are found by their command line (`drover executor --task-dir DIR …`), not by
//! `executor.pid`: a pid file can be missing (the agent died between spawning and recording
//! it) or name a reused pid, a command line with the task's directory cannot.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::ids::{ExecutorId, FrameworkId, TaskId};
use crate::layout::{Layout, RunDir, TaskDir};
use crate::status_updates;
use crate::task::{ExecutorLaunch, LaunchSpec};
use crate::update::{StatusUpdate, TaskState};

/// `--recover`: what to do with tasks an earlier life of the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RecoverMode {
    /// Re-attach to executors still running and report what ended meanwhile (Mesos's
    /// `reconnect`).
    #[default]
    Reconnect,
    /// Kill every task an earlier life started (reported TASK_KILLED, reason
    /// `agent_cleanup`), then run as usual (Mesos's `cleanup`, without the exit).
    Cleanup,
}

/// One task directory as recovery found it.
#[derive(Debug)]
pub struct Found {
    pub framework: FrameworkId,
    pub task: TaskId,
    pub dir: TaskDir,
    /// `task.json`, or why it cannot be used.
    pub spec: Result<LaunchSpec, String>,
    /// The latest state the agent checkpointed for it, if any.
    pub checkpointed: Option<TaskState>,
    /// Updates in the executor's log that the agent's log does not have, in order.
    pub unseen: Vec<StatusUpdate>,
    /// The pid of its executor, if one runs.
    pub executor: Option<i32>,
    /// The process group of its command, if a process of it runs (in the task's sandbox).
    pub command_group: Option<i32>,
    /// For a task of a custom executor: the run its `sandbox` links to.
    pub run: Option<RunDir>,
}

/// One run of a custom executor as recovery found it.
#[derive(Debug)]
pub struct FoundRun {
    pub framework: FrameworkId,
    pub executor: ExecutorId,
    pub run: RunDir,
    /// `executor.json`, or why it cannot be used.
    pub launch: Result<ExecutorLaunch, String>,
    /// The pid of its supervisor, if one runs.
    pub supervisor: Option<i32>,
    /// The executor's raw wait status, once it ended.
    pub exit_status: Option<i32>,
    /// Its end was told to its framework already (see [`RunDir::exit_reported`]).
    pub exit_reported: bool,
}

impl FoundRun {
    /// Its executor may still run: the supervisor is there and has not recorded an end.
    pub fn alive(&self) -> bool {
        self.supervisor.is_some() && self.exit_status.is_none()
    }
}

impl Found {
    /// The latest state known from either log.
    pub fn latest_state(&self) -> Option<TaskState> {
        self.unseen
            .last()
            .map(|u| u.status.state)
            .or(self.checkpointed)
    }
}

/// Kills whatever still runs of a found task: its executor's process group and its
/// command's.
pub fn kill_leftovers(f: &Found) {
    use crate::executor::group::signal_group;
    use nix::sys::signal::Signal;
    if let Some(pid) = f.executor {
        signal_group(pid, Signal::SIGKILL);
    }
    if let Some(pgid) = f.command_group {
        signal_group(pgid, Signal::SIGKILL);
    }
}

/// Kills every task under the work directory (an agent the masters removed: its tasks are
/// over for them). Blocking.
pub fn kill_everything(layout: &Layout) -> usize {
    let found = scan(layout);
    let mut killed = 0;
    for f in &found {
        if f.executor.is_some() || f.command_group.is_some() {
            // A task whose end was recorded has nothing of its own left to kill.
            if f.executor.is_none() && f.latest_state().is_some_and(TaskState::is_terminal) {
                continue;
            }
            kill_leftovers(f);
            killed += 1;
        }
    }
    killed + kill_executor_runs(layout)
}

/// Kills every run of a custom executor under the work directory that still has processes
/// (its command's group, while a process of it works in the run's sandbox: a recorded group id
/// alone can name another's group once it was reused). Blocking. The number of runs signalled.
pub fn kill_executor_runs(layout: &Layout) -> usize {
    let procs = ProcessTable::read();
    scan_runs(layout, &procs)
        .iter()
        .filter(|r| kill_run_group(&r.run, &procs))
        .count()
}

/// Kills the command group of `run` if one of its processes works in the run's sandbox
/// (reads the process table). Blocking. Whether it did.
pub fn kill_run_leftovers(run: &RunDir) -> bool {
    kill_run_group(run, &ProcessTable::read())
}

fn kill_run_group(run: &RunDir, procs: &ProcessTable) -> bool {
    use crate::executor::group::signal_group;
    use nix::sys::signal::Signal;
    match read_pid(&run.command_pid()) {
        Some(pgid) if procs.group_works_in(pgid, &run.sandbox()) => {
            signal_group(pgid, Signal::SIGKILL);
            true
        }
        _ => false,
    }
}

/// A pid file's pid (a positive number on its first line), if there is one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

/// Scans the work directory and the process table. Blocking.
///
/// The process table is read once for the whole scan, however many task directories there
/// are: reading `/proc` once per directory made a restart after thousands of tasks take half a
/// minute (when every ended task's directory stayed under `frameworks/`; the sandbox collector,
/// [`crate::gc`], now moves them out once their end is acknowledged).
pub fn scan(layout: &Layout) -> Vec<Found> {
    scan_with(layout, &ProcessTable::read())
}

/// [`scan`], and the runs of custom executors (`frameworks/*/executors/*/runs/*`), from one
/// read of the process table. Blocking.
pub fn scan_all(layout: &Layout) -> (Vec<Found>, Vec<FoundRun>) {
    let procs = ProcessTable::read();
    (scan_with(layout, &procs), scan_runs(layout, &procs))
}

/// The paths of the entries of directory `p` (none if it cannot be read). Blocking.
fn names(p: PathBuf) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
}

fn scan_runs(layout: &Layout, procs: &ProcessTable) -> Vec<FoundRun> {
    let mut found = Vec::new();
    for fw in names(layout.frameworks_dir()) {
        let Some(framework) = fw
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| FrameworkId::new(n).ok())
        else {
            continue;
        };
        for e in names(fw.join("executors")) {
            let Some(executor) = e
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| ExecutorId::new(n).ok())
            else {
                tracing::warn!(path = %e.display(), "recovery: skipping a directory that is not an executor id");
                continue;
            };
            for r in names(e.join("runs")) {
                let run = RunDir(r);
                found.push(FoundRun {
                    framework: framework.clone(),
                    executor: executor.clone(),
                    launch: read_launch(&run),
                    supervisor: procs.supervisors.get(&run.0).copied(),
                    exit_status: crate::executor::supervise::read_exit_status(&run),
                    exit_reported: run.exit_reported().exists(),
                    run,
                });
            }
        }
    }
    found
}

/// The runs of custom executors that have ended, each with when it ended: those whose
/// supervisor recorded the executor's end (`exit_status`, its time), and those whose supervisor
/// started (`supervisor.pid`, its time) and runs no more. A run still starting (no supervisor
/// yet) is not one: its pid file is read before the process is looked for, so a supervisor
/// that wrote it is seen alive. Blocking.
pub fn ended_runs(layout: &Layout) -> Vec<(RunDir, std::time::SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut ended = Vec::new();
    for fw in names(layout.frameworks_dir()) {
        for e in names(fw.join("executors")) {
            for r in names(e.join("runs")) {
                let run = RunDir(r);
                if let Some(at) = modified(&run.exit_status()) {
                    ended.push((run, at));
                    continue;
                }
                let Some(pid) = read_pid(&run.supervisor_pid()) else {
                    continue;
                };
                if let (false, Some(at)) = (supervises(pid, &run), modified(&run.supervisor_pid()))
                {
                    ended.push((run, at));
                }
            }
        }
    }
    ended
}

/// Whether process `pid` is the supervisor of `run` (a pid reused by another process is not).
/// Blocking.
pub(crate) fn supervises(pid: i32, run: &RunDir) -> bool {
    is_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|c| supervisor_run_dir(&c))
            .is_some_and(|d| d == run.0)
}

/// Whether a task directory of the run's framework (`frameworks/<fw>/tasks/*`) still has its
/// sandbox in `run` (a task of the run whose end the master has not settled). Blocking.
pub fn run_has_live_task(run: &RunDir) -> bool {
    // frameworks/<fw>/executors/<e>/runs/<container>
    let Some(fw) = run.0.ancestors().nth(4) else {
        return false;
    };
    let sandbox = run.sandbox();
    std::fs::read_dir(fw.join("tasks"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|t| std::fs::read_link(TaskDir(t.path()).sandbox()).is_ok_and(|l| l == sandbox))
}

/// The run's `executor.json`, as its supervisor reads it (size, format, version checked).
fn read_launch(run: &RunDir) -> Result<ExecutorLaunch, String> {
    crate::executor::supervise::read_launch(run).map_err(|e| e.to_string())
}

/// The task directories as [`scan`] reads them, without reading the process table
/// (`executor` and `command_group` are then `None`): what a running agent's state endpoint
/// shows, where processes do not matter. Blocking.
pub fn scan_task_dirs(layout: &Layout) -> Vec<Found> {
    scan_with(layout, &ProcessTable::default())
}

fn scan_with(layout: &Layout, procs: &ProcessTable) -> Vec<Found> {
    let mut found = Vec::new();
    let Ok(frameworks) = std::fs::read_dir(layout.frameworks_dir()) else {
        return found;
    };
    for fw in frameworks.filter_map(Result::ok) {
        let Some(framework) = fw
            .file_name()
            .to_str()
            .and_then(|n| FrameworkId::new(n).ok())
        else {
            tracing::warn!(path = %fw.path().display(), "recovery: skipping a directory that is not a framework id");
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(fw.path().join("tasks")) else {
            continue;
        };
        for t in tasks.filter_map(Result::ok) {
            let Some(task) = t.file_name().to_str().and_then(|n| TaskId::new(n).ok()) else {
                tracing::warn!(path = %t.path().display(), "recovery: skipping a directory that is not a task id");
                continue;
            };
            found.push(inspect(framework.clone(), task, TaskDir(t.path()), procs));
        }
    }
    found
}

fn inspect(framework: FrameworkId, task: TaskId, dir: TaskDir, procs: &ProcessTable) -> Found {
    let spec = read_spec(&dir);
    let agent_log = status_updates::checkpointed_updates(&dir.updates_log());
    let seen: HashSet<uuid::Uuid> = agent_log.iter().map(|u| u.status.uuid).collect();
    let unseen = executor_updates(&dir.executor_updates_log())
        .into_iter()
        .filter(|u| {
            !seen.contains(&u.status.uuid) && u.framework_id == framework && u.task_id == task
        })
        .collect();
    let executor = procs.executors.get(&dir.0).copied();
    // A recorded process group is the task's only while one of its processes works in the
    // task's sandbox: a group id can be reused once the task's processes are gone.
    let sandbox = dir.sandbox();
    let command_group =
        read_pid(&dir.command_pid()).filter(|pgid| procs.group_works_in(*pgid, &sandbox));
    // A custom executor's task: its sandbox is a link to its run's.
    let run = std::fs::read_link(&sandbox)
        .ok()
        .and_then(|target| target.parent().map(|p| RunDir(p.to_path_buf())));
    Found {
        framework,
        task,
        checkpointed: agent_log.last().map(|u| u.status.state),
        unseen,
        executor,
        command_group,
        spec,
        dir,
        run,
    }
}

/// What recovery needs of the process table, read in one pass over `/proc`.
#[derive(Debug, Default)]
struct ProcessTable {
    /// Live (not zombie) `drover executor` processes by the `--task-dir` of their command line.
    executors: HashMap<PathBuf, i32>,
    /// Every process (zombies included) by its process group.
    groups: HashMap<i32, Vec<i32>>,
    /// Live `drover executor --executor-dir` supervisors by their run directory.
    supervisors: HashMap<PathBuf, i32>,
}

impl ProcessTable {
    /// Reads `/proc` once. A process that ends meanwhile is simply not in the table.
    ///
    /// A process an executor forks carries the executor's command line until it execs: of
    /// two processes claiming one task directory where one is the other's parent, the parent
    /// is the executor.
    fn read() -> Self {
        let mut table = ProcessTable::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return table;
        };
        let mut claims: HashMap<PathBuf, Vec<(i32, i32)>> = HashMap::new();
        let mut run_claims: HashMap<PathBuf, Vec<(i32, i32)>> = HashMap::new();
        for e in dir.filter_map(Result::ok) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some((state, pgrp)) = crate::executor::group::state_and_group(&stat) else {
                continue;
            };
            table.groups.entry(pgrp).or_default().push(pid);
            if matches!(state, "Z" | "X") {
                continue;
            }
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            if let Some(task_dir) = executor_task_dir(&cmdline) {
                let ppid = parent_of(&stat).unwrap_or(0);
                claims.entry(task_dir).or_default().push((pid, ppid));
            } else if let Some(run_dir) = supervisor_run_dir(&cmdline) {
                let ppid = parent_of(&stat).unwrap_or(0);
                run_claims.entry(run_dir).or_default().push((pid, ppid));
            }
        }
        // Of two processes claiming one directory where one is the other's parent (a child
        // not yet exec'd), the parent is the executor or supervisor.
        let eldest = |pids: &[(i32, i32)]| {
            pids.iter()
                .find(|(_, ppid)| !pids.iter().any(|(p, _)| p == ppid))
                .or(pids.first())
                .map(|(pid, _)| *pid)
        };
        for (task_dir, pids) in claims {
            if let Some(pid) = eldest(&pids) {
                table.executors.insert(task_dir, pid);
            }
        }
        for (run_dir, pids) in run_claims {
            if let Some(pid) = eldest(&pids) {
                table.supervisors.insert(run_dir, pid);
            }
        }
        table
    }

    /// Whether a process of group `pgid` works in `sandbox` (or below it).
    fn group_works_in(&self, pgid: i32, sandbox: &Path) -> bool {
        self.groups.get(&pgid).is_some_and(|pids| {
            pids.iter().any(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(sandbox))
            })
        })
    }
}

/// The task's `task.json`, as its executor reads it (size, format, version checked).
fn read_spec(dir: &TaskDir) -> Result<LaunchSpec, String> {
    crate::executor::read_spec(dir).map_err(|e| e.to_string())
}

/// The executor's own log of its updates (what it made, whether or not the agent got it).
fn executor_updates(path: &Path) -> Vec<StatusUpdate> {
    match crate::checkpoint::read_records::<StatusUpdate>(path) {
        Ok(replay) => {
            for s in &replay.skipped {
                tracing::warn!(path = %path.display(), line = s.line, reason = %s.reason, "recovery: skipping a bad record of an executor's log");
            }
            replay.records
        }
        Err(_) => Vec::new(),
    }
}

/// The parent pid of a `/proc/<pid>/stat` line (the field after the state).
fn parent_of(stat: &str) -> Option<i32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether an executor for the task directory `dir` runs now. Blocking.
pub fn executor_running(dir: &Path) -> bool {
    ProcessTable::read().executors.contains_key(dir)
}

/// The `--task-dir` of an executor's NUL-separated command line, if it is one.
pub(crate) fn executor_task_dir(cmdline: &[u8]) -> Option<PathBuf> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if !args.iter().any(|a| *a == b"executor") {
        return None;
    }
    let i = args.iter().position(|a| *a == b"--task-dir")?;
    let dir = args.get(i + 1)?;
    Some(PathBuf::from(String::from_utf8_lossy(dir).into_owned()))
}

/// The `--executor-dir` of a supervisor's NUL-separated command line, if it is one.
pub(crate) fn supervisor_run_dir(cmdline: &[u8]) -> Option<PathBuf> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if !args.iter().any(|a| *a == b"executor") {
        return None;
    }
    let i = args.iter().position(|a| *a == b"--executor-dir")?;
    let dir = args.get(i + 1)?;
    Some(PathBuf::from(String::from_utf8_lossy(dir).into_owned()))
}

/// Whether process `pid` exists and is not a zombie (`/proc/<pid>/stat` state `Z` or `X`).
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            crate::executor::group::state_and_group(&stat)
                .map(|(state, _)| !matches!(state, "Z" | "X"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_executor_is_known_by_its_task_dir() {
        let line = b"/usr/bin/drover\0executor\0--task-dir\0/w/frameworks/f/tasks/t\0--agent-socket\0/w/agent.sock\0";
        assert_eq!(
            executor_task_dir(line),
            Some(PathBuf::from("/w/frameworks/f/tasks/t"))
        );
        assert_eq!(executor_task_dir(b"/bin/sleep\0infinity\0"), None);
        assert_eq!(executor_task_dir(b"drover\0executor\0--task-dir"), None);
        let line =
            b"/usr/bin/drover\0executor\0--executor-dir\0/w/frameworks/f/executors/e/runs/c\0";
        assert_eq!(
            supervisor_run_dir(line),
            Some(PathBuf::from("/w/frameworks/f/executors/e/runs/c"))
        );
        assert_eq!(executor_task_dir(line), None);
        assert_eq!(supervisor_run_dir(b"/bin/sleep\0infinity\0"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(is_alive(std::process::id() as i32));
        assert!(!is_alive(i32::MAX));
    }

    /// Children of the test, killed and reaped however the test ends.
    struct Children(Vec<std::process::Child>);

    impl Drop for Children {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    #[test]
    fn one_scan_finds_each_tasks_executor_and_the_command_group_working_in_its_sandbox() {
        use std::os::unix::process::CommandExt;
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        let fw = FrameworkId::new("fw").unwrap();
        let dir = |t: &str| TaskDir(layout.task_dir(&fw, &TaskId::new(t).unwrap()));
        let (a, b, c) = (dir("a"), dir("b"), dir("c"));
        for d in [&a, &b, &c] {
            std::fs::create_dir_all(d.sandbox()).unwrap();
        }
        let mut children = Children(Vec::new());
        // A stand-in for a's executor: known by its command line only.
        children.0.push(
            std::process::Command::new("/bin/sh")
                .args(["-c", "sleep 30; true", "executor", "--task-dir"])
                .arg(&a.0)
                .spawn()
                .unwrap(),
        );
        // a's command, in its own group, working in a's sandbox.
        children.0.push(
            std::process::Command::new("/bin/sh")
                .args(["-c", "sleep 30; true"])
                .current_dir(a.sandbox())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let (executor, command) = (children.0[0].id() as i32, children.0[1].id() as i32);
        std::fs::write(a.command_pid(), command.to_string()).unwrap();
        // b recorded the same group, but nothing of it works in b's sandbox (a reused id).
        std::fs::write(b.command_pid(), command.to_string()).unwrap();
        // c's recorded group does not exist.
        std::fs::write(c.command_pid(), i32::MAX.to_string()).unwrap();

        let found = scan(&layout);
        let get = |t: &str| found.iter().find(|f| f.task.as_str() == t).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(get("a").executor, Some(executor));
        assert_eq!(get("a").command_group, Some(command));
        assert!(get("a").spec.is_err(), "a has no task.json");
        for t in ["b", "c"] {
            assert_eq!(get(t).executor, None, "{t}");
            assert_eq!(get(t).command_group, None, "{t}");
        }
        assert!(executor_running(&a.0));
        assert!(!executor_running(&b.0));
    }
}
