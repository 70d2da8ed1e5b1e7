//! The sandbox collector: takes ended tasks' directories out of the agent's way and removes
//! them after `--gc-delay`, sooner when the work directory's disk fills, oldest first (as a
//! Mesos agent collects sandboxes); the same for ended runs of custom executors.
//!
//! Owns `WORK_DIR/completed/` and the directories of ended runs. A task's directory moves
//! there from `frameworks/<framework>/tasks/<task>` once its end is settled for everyone: the
//! master acknowledged its terminal status update (the status update manager reports it, at
//! run time and for the logs it recovers at start) and no executor works in it any more. The
//! agent's restart scan reads every directory under `frameworks/`, so it then reads live tasks
//! only, however many the agent ever ran (a 10-minute chaos run used to leave 7 700 behind).
//!
//! A custom executor's run (`frameworks/<framework>/executors/<executor>/runs/<container>`) is
//! removed where it is, its age counting from the executor's end (see
//! [`crate::recovery::ended_runs`], read at start and at every disk watch): it is not moved,
//! since the directories of its ended tasks link their `sandbox` to the run's, and `/files`
//! follows those links. A run that a task directory still in `frameworks/` links to waits
//! until that task's end is settled too.
//!
//! In `completed/` a directory is removed once it is older than the current maximum age,
//! `gc_delay × max(0, 1 − headroom − disk usage)` (Mesos's formula), recomputed every
//! `disk_watch_interval` from the file system holding the work directory: with the disk
//! nearly full everything completed goes, oldest first. A directory's age counts from its
//! move (or, after a restart, from its last modification).
//!
//! A task that ran a Docker container leaves it (stopped) until its directory goes: the
//! container is removed then (its id is in the directory's `container.id`), so `docker logs`
//! and `docker inspect` tell about it as long as the sandbox does.
//!
//! Never does: remove or move anything that is not an ended task's directory or an ended
//! run's; block the runtime (file work runs on the blocking pool); hold more than
//! [`MAX_TRACKED`] entries (the oldest beyond it is removed at once) or queue more than
//! [`QUEUE_DEPTH`] moves.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use drover_model::unix_ms;
use tokio::sync::mpsc;

use crate::ids::{FrameworkId, TaskId};
use crate::layout::{Layout, RunDir, TaskDir};
use crate::metrics as m;

/// Completed task directories and ended runs tracked for removal; beyond it the oldest is
/// removed at once.
pub const MAX_TRACKED: usize = 100_000;
/// Tasks waiting to be moved (the status update manager's notices).
pub const QUEUE_DEPTH: usize = 65_536;
/// How long a move waits for the task's executor to exit before trying again.
const EXECUTOR_RETRY: Duration = Duration::from_secs(1);
/// Tries before a task whose executor still runs is left where it is (the next restart's
/// recovery offers it again).
const MAX_MOVE_TRIES: u32 = 30;

/// The collector's settings (`--gc-delay`, `--gc-disk-headroom`, `--disk-watch-interval`).
#[derive(Clone, Debug)]
pub struct GcConfig {
    pub layout: Layout,
    /// How long an ended task's directory is kept when the disk has room.
    pub gc_delay: Duration,
    /// The fraction of the disk to keep free (0 to 1): the fuller the disk past
    /// `1 - headroom`, the sooner directories go.
    pub disk_headroom: f64,
    /// How often the disk's usage is read and old directories removed.
    pub disk_watch_interval: Duration,
    /// Where the disk's usage comes from: the file system, or a fixed figure (tests).
    pub disk_usage: DiskUsage,
    /// The Docker engine's socket, when the agent runs containers: a task's ended container
    /// is removed with its directory.
    pub docker_socket: Option<PathBuf>,
}

/// The source of the disk usage the maximum age is computed from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DiskUsage {
    /// Read from the file system holding the work directory.
    Measured,
    /// This fraction, whatever the disk holds.
    Fixed(f64),
}

/// A task whose terminal update the master settled, with that update's uuid (which names the
/// life of the task: a framework may use the id again once the master forgot the first).
pub type Ended = (FrameworkId, TaskId, uuid::Uuid);

/// Mesos's maximum age of a completed sandbox: the delay, shortened in proportion as the
/// disk's usage eats into the headroom (zero once usage passes `1 - headroom`). Pure.
pub fn max_age(gc_delay: Duration, headroom: f64, disk_usage: f64) -> Duration {
    let left = (1.0 - headroom - disk_usage).clamp(0.0, 1.0);
    gc_delay.mul_f64(left)
}

/// The entries of `tracked` (by age stamp, milliseconds since the epoch) to remove now:
/// those older than `max_age`, and the oldest beyond `cap`. Pure.
pub fn due(
    tracked: &BTreeSet<(u64, PathBuf)>,
    now_ms: u64,
    max_age: Duration,
    cap: usize,
) -> Vec<(u64, PathBuf)> {
    let cutoff = now_ms.saturating_sub(max_age.as_millis() as u64);
    let over = tracked.len().saturating_sub(cap);
    tracked
        .iter()
        .enumerate()
        .take_while(|(i, (at, _))| *i < over || *at <= cutoff)
        .map(|(_, e)| e.clone())
        .collect()
}

/// Runs the collector until every sender of `ended` is gone.
pub async fn run(config: GcConfig, mut ended: mpsc::Receiver<Ended>) {
    let layout = config.layout.clone();
    // Directories by age stamp (milliseconds since the epoch). An ended run is under
    // `frameworks/` (removed in place), a task's directory under `completed/`.
    let mut tracked: BTreeSet<(u64, PathBuf)> =
        tokio::task::spawn_blocking(move || scan_completed(&layout))
            .await
            .unwrap_or_default();
    let completed = tracked.len();
    track_ended_runs(&config.layout, &mut tracked).await;
    tracing::info!(
        completed,
        ended_runs = tracked.len() - completed,
        gc_delay = ?config.gc_delay,
        headroom = config.disk_headroom,
        "sandbox collector started"
    );
    let mut waiting: VecDeque<(Ended, u32)> = VecDeque::new();
    let mut watch = tokio::time::interval(config.disk_watch_interval);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(EXECUTOR_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            e = ended.recv() => match e {
                Some(e) => {
                    if let Some(path) = move_one(&config.layout, &e, &mut waiting, 0).await {
                        tracked.insert((unix_ms(), path));
                        if tracked.len() > MAX_TRACKED {
                            collect(&config, &mut tracked).await;
                        }
                    }
                }
                None => return,
            },
            _ = retry.tick(), if !waiting.is_empty() => {
                for _ in 0..waiting.len() {
                    let Some((e, tries)) = waiting.pop_front() else { break };
                    if let Some(path) = move_one(&config.layout, &e, &mut waiting, tries).await {
                        tracked.insert((unix_ms(), path));
                    }
                }
            }
            _ = watch.tick() => {
                track_ended_runs(&config.layout, &mut tracked).await;
                collect(&config, &mut tracked).await;
            }
        }
        metrics::gauge!(m::GC_COMPLETED_SANDBOXES).set(tracked.len() as f64);
    }
}

/// Tracks the runs that ended, aged from their end. A run already tracked is found again
/// with the same stamp (its end file's time), so the set holds it once.
async fn track_ended_runs(layout: &Layout, tracked: &mut BTreeSet<(u64, PathBuf)>) {
    let layout = layout.clone();
    let ended = tokio::task::spawn_blocking(move || crate::recovery::ended_runs(&layout))
        .await
        .unwrap_or_default();
    for (run, at) in ended {
        let at = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        tracked.insert((at, run.0));
    }
}

/// Moves an ended task's directory to `completed/`, unless its executor still runs (then it
/// waits in `waiting`, up to [`MAX_MOVE_TRIES`]). Returns the new path.
async fn move_one(
    layout: &Layout,
    e: &Ended,
    waiting: &mut VecDeque<(Ended, u32)>,
    tries: u32,
) -> Option<PathBuf> {
    let (layout2, e2) = (layout.clone(), e.clone());
    let r = tokio::task::spawn_blocking(move || move_to_completed(&layout2, &e2.0, &e2.1, e2.2))
        .await
        .unwrap_or_else(|err| Err(Move::Failed(err.to_string())));
    match r {
        Ok(path) => Some(path),
        Err(Move::ExecutorRunning) if tries + 1 < MAX_MOVE_TRIES => {
            if waiting.len() < QUEUE_DEPTH {
                waiting.push_back((e.clone(), tries + 1));
            }
            None
        }
        Err(Move::ExecutorRunning) => {
            tracing::warn!(task = %e.1, framework = %e.0, "an ended task's executor still runs; its directory stays");
            None
        }
        Err(Move::Missing) => None,
        Err(Move::Failed(why)) => {
            tracing::warn!(task = %e.1, framework = %e.0, error = %why, "cannot move an ended task's directory");
            None
        }
    }
}

enum Move {
    ExecutorRunning,
    Missing,
    Failed(String),
}

/// The move itself. Blocking.
fn move_to_completed(
    layout: &Layout,
    framework: &FrameworkId,
    task: &TaskId,
    last: uuid::Uuid,
) -> Result<PathBuf, Move> {
    let from = layout.task_dir(framework, task);
    if !from.is_dir() {
        return Err(Move::Missing);
    }
    // Another life of the same id (started after the one that ended) is not moved.
    let latest = crate::status_updates::checkpointed_updates(&TaskDir(from.clone()).updates_log())
        .last()
        .map(|u| u.status.uuid);
    if latest != Some(last) {
        return Err(Move::Missing);
    }
    if executor_runs_in(&TaskDir(from.clone())) {
        return Err(Move::ExecutorRunning);
    }
    let parent = layout.completed_dir().join(framework.as_str());
    crate::checkpoint::create_dir_all_durable(&parent).map_err(|e| Move::Failed(e.to_string()))?;
    // A task id may come back (a framework reusing it once the master forgot the first):
    // each life gets its own directory, the first free one.
    let to = (0..)
        .map(|life| layout.completed_task_dir(framework, task, life))
        .find(|dir| !dir.exists())
        .expect("an unbounded range ends with a free directory");
    std::fs::rename(&from, &to).map_err(|e| Move::Failed(format!("{}: {e}", from.display())))?;
    // Not durable on purpose beyond this: a move lost to a crash leaves the directory in
    // `frameworks/`, and the next start's recovery offers it again.
    tracing::debug!(from = %from.display(), to = %to.display(), "ended task's directory moved");
    Ok(to)
}

/// Whether the executor recorded in the task's `executor.pid` still runs, working for it.
fn executor_runs_in(dir: &TaskDir) -> bool {
    let Some(pid) = std::fs::read_to_string(dir.executor_pid())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return false;
    };
    if !crate::recovery::is_alive(pid) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| crate::recovery::executor_task_dir(&c))
        .is_some_and(|d| d == dir.0)
}

/// What became of a due directory.
enum Removal {
    Removed,
    /// Not removed (an error, or a run a live task still links to): tried again at the next
    /// watch.
    Kept,
}

/// Removes what is due, oldest first, off the runtime.
async fn collect(config: &GcConfig, tracked: &mut BTreeSet<(u64, PathBuf)>) {
    let usage = match config.disk_usage {
        DiskUsage::Fixed(u) => Some(u),
        DiskUsage::Measured => {
            let work_dir = config.layout.work_dir().to_path_buf();
            tokio::task::spawn_blocking(move || disk_usage(&work_dir))
                .await
                .ok()
                .flatten()
        }
    };
    let age = max_age(config.gc_delay, config.disk_headroom, usage.unwrap_or(0.0));
    if let Some(u) = usage {
        metrics::gauge!(m::GC_DISK_USAGE_RATIO).set(u);
    }
    let due = due(tracked, unix_ms(), age, MAX_TRACKED);
    if due.is_empty() {
        return;
    }
    for e in &due {
        tracked.remove(e);
    }
    let n = due.len();
    let frameworks = config.layout.frameworks_dir();
    if let Some(socket) = &config.docker_socket {
        remove_containers(socket, &due, &frameworks).await;
    }
    let outcomes = tokio::task::spawn_blocking(move || {
        due.into_iter()
            .map(|e| {
                let run = e.1.starts_with(&frameworks);
                let outcome = remove_due(&e.1, run);
                (e, outcome)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut removed = 0;
    for (e, outcome) in outcomes {
        match outcome {
            Removal::Removed => removed += 1,
            Removal::Kept => {
                tracked.insert(e);
            }
        }
    }
    metrics::counter!(m::GC_REMOVED_TOTAL).increment(removed as u64);
    tracing::info!(removed, due = n, max_age = ?age, disk_usage = ?usage, "removed completed task directories and ended runs");
}

/// Removes the containers of the due task directories that ran one (their `container.id`).
/// A container that cannot be removed is logged and left (the directory goes anyway).
async fn remove_containers(socket: &Path, due: &[(u64, PathBuf)], frameworks: &Path) {
    let dirs: Vec<PathBuf> = due
        .iter()
        .filter(|(_, p)| !p.starts_with(frameworks))
        .map(|(_, p)| p.clone())
        .collect();
    let ids = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .filter_map(|d| std::fs::read_to_string(TaskDir(d.clone()).container_id()).ok())
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    if ids.is_empty() {
        return;
    }
    let docker = match crate::docker::connect(socket).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, containers = ids.len(), "cannot remove ended containers");
            return;
        }
    };
    for id in ids {
        match crate::docker::remove(&docker, &id).await {
            Ok(()) => metrics::counter!(m::GC_CONTAINERS_REMOVED_TOTAL).increment(1),
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot remove an ended container")
            }
        }
    }
}

/// Removes one due directory (`run`: an ended run, kept while a live task links to it).
/// Blocking.
fn remove_due(path: &Path, run: bool) -> Removal {
    if run && crate::recovery::run_has_live_task(&RunDir(path.to_path_buf())) {
        return Removal::Kept;
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Removal::Removed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Removal::Removed,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a completed directory");
            Removal::Kept
        }
    }
}

/// Every directory under `completed/<framework>/`, with its last modification. Blocking;
/// reads directory entries and one `stat` each, never a file's content.
fn scan_completed(layout: &Layout) -> BTreeSet<(u64, PathBuf)> {
    let mut out = BTreeSet::new();
    let Ok(frameworks) = std::fs::read_dir(layout.completed_dir()) else {
        return out;
    };
    for fw in frameworks.filter_map(Result::ok) {
        let Ok(tasks) = std::fs::read_dir(fw.path()) else {
            continue;
        };
        for t in tasks.filter_map(Result::ok) {
            let at = t
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.insert((at, t.path()));
        }
    }
    out
}

/// The used fraction of the file system holding `path`, as `df` reports it: used blocks over
/// used plus those available to unprivileged users (blocks reserved for root count as
/// neither).
fn disk_usage(path: &Path) -> Option<f64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let used = s.blocks().saturating_sub(s.blocks_free()) as f64;
    let usable = used + s.blocks_available() as f64;
    if usable <= 0.0 {
        return None;
    }
    Some((used / usable).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests;
