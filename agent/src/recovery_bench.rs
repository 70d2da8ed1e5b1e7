//! `drover bench agent-recovery`: how long a restarted agent takes to read back its work
//! directory ([`crate::recovery::scan`]) when it holds the directories of many ended tasks, as
//! an agent that has run for a while does (a 10-minute chaos run leaves about 6 000 per agent).
//!
//! Owns only the benchmark's own work directory: it writes `tasks` ended task directories the
//! way the agent leaves them (`task.json`, an `updates.log` of acknowledged updates, the
//! executor's `executor_updates.log`, the `command.pid` of a group long gone), then times
//! whole scans. Nothing here is used by the agent itself.

use std::path::Path;
use std::time::{Duration, Instant};

use drover_resources::Resources;

use crate::cgroups::CgroupMode;
use crate::checkpoint::{self, CheckpointError};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::layout::{Layout, TaskDir};
use crate::task::{LaunchSpec, TaskSpec, LAUNCH_SPEC_VERSION};
use crate::update::{StatusSource, StatusUpdate, TaskState};

/// What one benchmark run measured.
#[derive(Clone, Debug)]
pub struct ScanFigures {
    /// Task directories each scan read.
    pub task_dirs: usize,
    /// Processes in `/proc` when the scans began.
    pub processes: usize,
    /// Every scan's duration, sorted.
    pub samples: Vec<Duration>,
}

/// Writes `tasks` ended task directories of one framework under `work_dir`.
pub fn populate(work_dir: &Path, tasks: usize) -> Result<(), CheckpointError> {
    let layout = Layout::new(work_dir);
    let agent = AgentId::new("bench-agent").expect("a valid id");
    let framework = FrameworkId::new("bench-framework").expect("a valid id");
    let resources: Resources = "cpus:0.05;mem:8".parse().expect("valid resources");
    for i in 0..tasks {
        let task = TaskId::new(&format!("task-{i}")).expect("a valid id");
        let dir = TaskDir(layout.task_dir(&framework, &task));
        checkpoint::create_dir_all_durable(&dir.sandbox())?;
        let spec = LaunchSpec {
            version: LAUNCH_SPEC_VERSION,
            agent_id: agent.clone(),
            framework_id: framework.clone(),
            task: TaskSpec {
                task_id: task.clone(),
                name: String::new(),
                resources: resources.clone(),
                shell: "echo $DROVER_TASK_ID >> launches.log".into(),
                environment: Default::default(),
                kill_grace_ms: None,
                health_check: None,
                executor: None,
                data: Vec::new(),
                task_group: None,
                container: None,
                arguments: Vec::new(),
                user: String::new(),
            },
            default_kill_grace_ms: 3000,
            cgroups: CgroupMode::None {
                reason: "benchmark".into(),
            },
            docker: None,
            run_as: None,
        };
        let json = serde_json::to_vec(&spec).map_err(|e| CheckpointError::Io {
            path: dir.task_json(),
            source: std::io::Error::other(e),
        })?;
        write(&dir.task_json(), &json)?;
        let updates: Vec<StatusUpdate> =
            [TaskState::Starting, TaskState::Running, TaskState::Finished]
                .into_iter()
                .map(|state| {
                    let u = StatusUpdate::new(
                        agent.clone(),
                        framework.clone(),
                        task.clone(),
                        state,
                        StatusSource::Executor,
                        "",
                        "",
                    );
                    u.with_exit_code(state.is_terminal().then_some(0))
                })
                .collect();
        crate::status_updates::write_acknowledged_log(&dir.updates_log(), &updates)?;
        let mut executor_log = Vec::new();
        for u in &updates {
            executor_log.extend(checkpoint::encode_record(&dir.executor_updates_log(), u)?);
        }
        write(&dir.executor_updates_log(), &executor_log)?;
        // The group of a command long gone (above any pid in use on a usual host).
        write(&dir.command_pid(), format!("{}", 3_000_000 + i).as_bytes())?;
    }
    Ok(())
}

/// Times `samples` whole scans of `work_dir`.
pub fn time_scans(work_dir: &Path, samples: usize) -> ScanFigures {
    let layout = Layout::new(work_dir);
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(0);
    let mut task_dirs = 0;
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        task_dirs = crate::recovery::scan(&layout).len();
        took.push(start.elapsed());
    }
    took.sort();
    ScanFigures {
        task_dirs,
        processes,
        samples: took,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    std::fs::write(path, bytes).map_err(checkpoint::io_err(path))
}
