//! Where everything lives under the agent's work directory. The one place that builds paths,
//! so the layout below is the whole truth:
//!
//! ```text
//! WORK_DIR/
//!   meta/format                         the work directory's format (see [`crate::format`])
//!   meta/agent_id                       the id the master assigned (atomic write)
//!   agent.sock                          Unix socket executors connect to
//!   frameworks/<framework_id>/tasks/<task_id>/
//!     task.json                         the task as launched: the executor's input (atomic)
//!     executor.pid                      pid of the task's `drover executor` (atomic)
//!     executor.log                      the executor's own log (its stderr)
//!     command.pid                       pid (= process group id) of the task's command
//!     updates.log                       status updates and their acks (record log, agent)
//!     executor_updates.log              every update the executor made (record log, executor)
//!     sandbox/                          the command's working directory
//!       stdout, stderr                  the command's output
//!                                       (for a task of a custom executor: a symlink to its
//!                                       executor run's sandbox)
//!   frameworks/<framework_id>/executors/<executor_id>/runs/<container_id>/
//!                                       one run of a custom executor (as Mesos lays it out;
//!                                       removed in place by [`crate::gc`] after --gc-delay
//!                                       once it ended and its tasks' ends are settled)
//!     executor.json                     the run as launched: the supervisor's input (atomic)
//!     supervisor.pid                    pid of the run's `drover executor --executor-dir`
//!     supervisor.log                    the supervisor's own log
//!     command.pid                       pid (= process group id) of the executor's command
//!     exit_status                       the command's raw wait status, once it ended (atomic)
//!     exit_reported                     empty, once the end went to the framework (FAILURE)
//!     sandbox/                          MESOS_SANDBOX: the executor's working directory
//!       stdout, stderr                  its output
//!   completed/<framework_id>/<task_id>[.n]/
//!                                       an ended task's directory once the master acknowledged
//!                                       its end (moved by [`crate::gc`], removed after
//!                                       --gc-delay); `.n` for a later life of the same id
//!   sim-<i>/meta/agent_id               one per simulated agent (--simulate)
//! ```
//!
//! Ids are validated (see [`crate::ids`]) before they are used here, so a path built from them
//! stays inside the work directory.

use std::path::{Path, PathBuf};

use crate::ids::{ExecutorId, FrameworkId, TaskId};

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

#[derive(Clone, Debug)]
pub struct Layout {
    work_dir: PathBuf,
}

impl Layout {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
        }
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The work directory's format stamp (see [`crate::format`]).
    pub fn format_file(&self) -> PathBuf {
        self.work_dir.join("meta").join("format")
    }

    /// The agent id file of the real agent.
    pub fn agent_id_file(&self) -> PathBuf {
        self.work_dir.join("meta").join("agent_id")
    }

    /// The agent id file of simulated agent `index`.
    pub fn sim_agent_id_file(&self, index: usize) -> PathBuf {
        self.work_dir
            .join(format!("sim-{index}"))
            .join("meta")
            .join("agent_id")
    }

    pub fn socket(&self) -> PathBuf {
        self.work_dir.join("agent.sock")
    }

    pub fn frameworks_dir(&self) -> PathBuf {
        self.work_dir.join("frameworks")
    }

    /// Where ended tasks' directories wait for removal (see [`crate::gc`]).
    pub fn completed_dir(&self) -> PathBuf {
        self.work_dir.join("completed")
    }

    /// Where life `life` of an ended task is kept once moved: `completed/<fw>/<task>` for the
    /// first (0), `<task>.<life>` for a later life of the same id.
    pub fn completed_task_dir(&self, framework: &FrameworkId, task: &TaskId, life: u32) -> PathBuf {
        let parent = self.completed_dir().join(framework.as_str());
        if life == 0 {
            parent.join(task.as_str())
        } else {
            parent.join(format!("{}.{life}", task.as_str()))
        }
    }

    /// Every run of one custom executor.
    pub fn executor_runs_dir(&self, framework: &FrameworkId, executor: &ExecutorId) -> PathBuf {
        self.frameworks_dir()
            .join(framework.as_str())
            .join("executors")
            .join(executor.as_str())
            .join("runs")
    }

    /// One run of a custom executor; `container` is a uuid the agent made.
    pub fn executor_run_dir(
        &self,
        framework: &FrameworkId,
        executor: &ExecutorId,
        container: &str,
    ) -> RunDir {
        RunDir(self.executor_runs_dir(framework, executor).join(container))
    }

    pub fn task_dir(&self, framework: &FrameworkId, task: &TaskId) -> PathBuf {
        self.frameworks_dir()
            .join(framework.as_str())
            .join("tasks")
            .join(task.as_str())
    }
}

/// The files of one task directory.
#[derive(Clone, Debug)]
pub struct TaskDir(pub PathBuf);

impl TaskDir {
    pub fn task_json(&self) -> PathBuf {
        self.0.join("task.json")
    }
    pub fn executor_pid(&self) -> PathBuf {
        self.0.join("executor.pid")
    }
    pub fn executor_log(&self) -> PathBuf {
        self.0.join("executor.log")
    }
    pub fn command_pid(&self) -> PathBuf {
        self.0.join("command.pid")
    }
    pub fn updates_log(&self) -> PathBuf {
        self.0.join("updates.log")
    }
    pub fn executor_updates_log(&self) -> PathBuf {
        self.0.join("executor_updates.log")
    }
    /// The Docker container the task runs in, when it has one (its id, written when created).
    pub fn container_id(&self) -> PathBuf {
        self.0.join("container.id")
    }
    pub fn sandbox(&self) -> PathBuf {
        self.0.join("sandbox")
    }
}

/// The files of one run of a custom executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn executor_json(&self) -> PathBuf {
        self.0.join("executor.json")
    }
    pub fn supervisor_pid(&self) -> PathBuf {
        self.0.join("supervisor.pid")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.0.join("supervisor.log")
    }
    pub fn command_pid(&self) -> PathBuf {
        self.0.join("command.pid")
    }
    pub fn exit_status(&self) -> PathBuf {
        self.0.join("exit_status")
    }
    /// There once the run's end was handed to the relay for its framework (FAILURE), so that
    /// a later life of the agent does not tell it again.
    pub fn exit_reported(&self) -> PathBuf {
        self.0.join("exit_reported")
    }
    pub fn sandbox(&self) -> PathBuf {
        self.0.join("sandbox")
    }
    /// The run's container id: its directory's name.
    pub fn container_id(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}
