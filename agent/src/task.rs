//! What a task is to the agent: [`TaskSpec`], checked out of a `RunTask` request, and
//! [`LaunchSpec`], the `task.json` checkpoint the agent writes before it starts an executor
//! and the executor reads to know what to run.
//!
//! Owns the validation of everything a master can put in a `RunTask` or `KillTask`: every
//! field is bounded and checked here, and a refusal names the field, so nothing unchecked
//! reaches a file name, an environment or a process.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model::health::HealthCheckSpec;
use drover_proto::agent_api::MAX_TASKS_PER_RUN;
use drover_proto::v1;
use drover_resources::Resources;
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupMode;
use crate::ids::{AgentId, FrameworkId, TaskId};

/// Longest shell command, bytes.
pub const MAX_SHELL_BYTES: usize = 64 * 1024;
/// Most environment variables a task may set.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment (names and values together), bytes.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Longest task name, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest kill grace period accepted.
pub const MAX_KILL_GRACE: Duration = Duration::from_secs(3600);
/// Version of the `task.json` format.
pub const LAUNCH_SPEC_VERSION: u32 = 1;

/// A request field that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidField {
    InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A task as launched: what to run and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_id: TaskId,
    #[serde(default)]
    pub name: String,
    pub resources: Resources,
    /// Run with `/bin/sh -c`.
    pub shell: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The task's own SIGTERM-to-SIGKILL grace, when it set one.
    #[serde(default)]
    pub kill_grace_ms: Option<u64>,
    /// The check its executor runs beside it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
}

/// Checks a grace period in seconds from the wire: `None` for 0 (use the default).
pub fn grace_from_seconds(field: &str, seconds: f64) -> Result<Option<Duration>, InvalidField> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(invalid(
            field,
            "must be a finite number of seconds, 0 or more",
        ));
    }
    if seconds > MAX_KILL_GRACE.as_secs_f64() {
        return Err(invalid(
            field,
            format!("at most {} seconds", MAX_KILL_GRACE.as_secs()),
        ));
    }
    Ok((seconds > 0.0).then(|| Duration::from_secs_f64(seconds)))
}

impl TaskSpec {
    /// Validates a `RunTask`'s task; `at` names it in errors (`tasks[3]` gives fields such
    /// as `tasks[3].command.shell`).
    pub fn from_proto(task: &v1::TaskInfo, at: &str) -> Result<Self, InvalidField> {
        let field = |f: &str| format!("{at}.{f}");
        let task_id =
            TaskId::new(&task.task_id).map_err(|e| invalid(field("task_id"), e.to_string()))?;
        if task.name.len() > MAX_NAME_BYTES {
            return Err(invalid(
                field("name"),
                format!("longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        let resources = Resources::from_proto(&task.resources)
            .map_err(|e| invalid(field("resources"), e.to_string()))?;
        let command = task
            .command
            .as_ref()
            .ok_or_else(|| invalid(field("command"), "missing: set command.shell"))?;
        if command.shell.trim().is_empty() {
            return Err(invalid(
                field("command.shell"),
                "empty: give the command to run",
            ));
        }
        if command.shell.len() > MAX_SHELL_BYTES {
            return Err(invalid(
                field("command.shell"),
                format!("longer than {MAX_SHELL_BYTES} bytes"),
            ));
        }
        if command.shell.contains('\0') {
            return Err(invalid(field("command.shell"), "contains a NUL byte"));
        }
        if command.environment.len() > MAX_ENV_VARS {
            return Err(invalid(
                field("command.environment"),
                format!("more than {MAX_ENV_VARS} variables"),
            ));
        }
        let mut env_bytes = 0usize;
        for (k, v) in &command.environment {
            env_bytes += k.len() + v.len();
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(invalid(
                    field("command.environment"),
                    format!(
                        "{:?} is not a valid variable name",
                        k.chars().take(64).collect::<String>()
                    ),
                ));
            }
            if v.contains('\0') {
                return Err(invalid(
                    field("command.environment"),
                    format!("the value of {k} contains a NUL byte"),
                ));
            }
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(invalid(
                field("command.environment"),
                format!("larger than {MAX_ENV_BYTES} bytes"),
            ));
        }
        let grace = grace_from_seconds(&field("kill_grace_seconds"), task.kill_grace_seconds)?;
        let health_check = task
            .health_check
            .as_ref()
            .map(|h| HealthCheckSpec::from_proto(h, &field("health_check")))
            .transpose()
            .map_err(|e| invalid(e.field, e.reason))?;
        Ok(TaskSpec {
            task_id,
            name: task.name.clone(),
            resources,
            shell: command.shell.clone(),
            environment: command
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            kill_grace_ms: grace.map(|g| g.as_millis() as u64),
            health_check,
        })
    }

    /// The ports the task was given, in order (`PORT0`…).
    pub fn ports(&self) -> Vec<u64> {
        self.resources.ports().values().collect()
    }
}

/// A validated `RunTask`.
#[derive(Debug, Clone)]
pub struct RunTask {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub task: TaskSpec,
}

impl RunTask {
    /// The request's tasks, each validated (a bad one refuses the request, naming
    /// `tasks[i].field`).
    pub fn from_proto(req: &v1::RunTaskRequest) -> Result<Vec<Self>, InvalidField> {
        let agent_id =
            AgentId::new(&req.agent_id).map_err(|e| invalid("agent_id", e.to_string()))?;
        let framework_id = FrameworkId::new(&req.framework_id)
            .map_err(|e| invalid("framework_id", e.to_string()))?;
        if req.tasks.is_empty() {
            return Err(invalid("tasks", "name at least one task"));
        }
        if req.tasks.len() > MAX_TASKS_PER_RUN {
            return Err(invalid(
                "tasks",
                format!("at most {} per request", MAX_TASKS_PER_RUN),
            ));
        }
        req.tasks
            .iter()
            .enumerate()
            .map(|(i, task)| {
                let task = TaskSpec::from_proto(task, &format!("tasks[{i}]"))?;
                Ok(RunTask {
                    agent_id: agent_id.clone(),
                    framework_id: framework_id.clone(),
                    task,
                })
            })
            .collect()
    }
}

/// A validated `KillTask`.
#[derive(Debug, Clone)]
pub struct KillTask {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    /// `None`: the task's own grace, else the agent's default.
    pub grace: Option<Duration>,
}

impl KillTask {
    pub fn from_proto(req: &v1::KillTaskRequest) -> Result<Self, InvalidField> {
        Ok(KillTask {
            agent_id: AgentId::new(&req.agent_id)
                .map_err(|e| invalid("agent_id", e.to_string()))?,
            framework_id: FrameworkId::new(&req.framework_id)
                .map_err(|e| invalid("framework_id", e.to_string()))?,
            task_id: TaskId::new(&req.task_id).map_err(|e| invalid("task_id", e.to_string()))?,
            grace: grace_from_seconds("grace_seconds", req.grace_seconds)?,
        })
    }
}

/// `task.json`: everything the executor needs, written by the agent before it starts one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub version: u32,
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub task: TaskSpec,
    /// The agent's default kill grace, for a task that set none.
    pub default_kill_grace_ms: u64,
    /// How to limit the task's cpu and memory.
    pub cgroups: CgroupMode,
}

impl LaunchSpec {
    /// The grace for a kill: the request's, else the task's, else the agent's default.
    pub fn kill_grace(&self, requested: Option<Duration>) -> Duration {
        requested
            .or(self.task.kill_grace_ms.map(Duration::from_millis))
            .unwrap_or(Duration::from_millis(self.default_kill_grace_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> v1::RunTaskRequest {
        v1::RunTaskRequest {
            agent_id: "agent-1".into(),
            framework_id: "fw-1".into(),
            tasks: vec![v1::TaskInfo {
                task_id: "t1".into(),
                name: "web".into(),
                resources: "cpus:1;mem:128;ports:[31000-31001]"
                    .parse::<Resources>()
                    .expect("resources")
                    .to_proto(),
                command: Some(v1::CommandInfo {
                    shell: "echo hi".into(),
                    environment: [("A".to_string(), "1".to_string())].into_iter().collect(),
                }),
                kill_grace_seconds: 0.5,
                health_check: None,
            }],
        }
    }

    fn field_of(req: v1::RunTaskRequest) -> String {
        RunTask::from_proto(&req)
            .expect_err("must be refused")
            .field
    }

    #[test]
    fn a_good_request_parses() {
        let r = RunTask::from_proto(&good()).expect("valid").remove(0);
        assert_eq!(r.task.ports(), vec![31000, 31001]);
        assert_eq!(r.task.kill_grace_ms, Some(500));
    }

    #[test]
    fn refusals_name_the_field() {
        let mut r = good();
        r.agent_id.clear();
        assert_eq!(field_of(r), "agent_id");
        let mut r = good();
        r.framework_id = "../x".into();
        assert_eq!(field_of(r), "framework_id");
        let mut r = good();
        r.tasks.clear();
        assert_eq!(field_of(r), "tasks");
        let mut r = good();
        let second = r.tasks[0].clone();
        r.tasks.push(v1::TaskInfo {
            task_id: String::new(),
            ..second
        });
        assert_eq!(field_of(r), "tasks[1].task_id");
        let mut r = good();
        r.tasks[0].task_id = String::new();
        assert_eq!(field_of(r), "tasks[0].task_id");
        let mut r = good();
        r.tasks[0].command = None;
        assert_eq!(field_of(r), "tasks[0].command");
        let mut r = good();
        r.tasks[0].command.as_mut().expect("cmd").shell = " ".into();
        assert_eq!(field_of(r), "tasks[0].command.shell");
        let mut r = good();
        r.tasks[0].resources = vec![v1::Resource {
            name: "cpus".into(),
            value: Some(v1::resource::Value::Scalar(f64::NAN)),
        }];
        assert_eq!(field_of(r), "tasks[0].resources");
        let mut r = good();
        r.tasks[0].kill_grace_seconds = -1.0;
        assert_eq!(field_of(r), "tasks[0].kill_grace_seconds");
        let mut r = good();
        r.tasks[0].health_check = Some(v1::HealthCheck {
            interval_seconds: 1.0,
            timeout_seconds: 1.0,
            command: None,
            ..Default::default()
        });
        assert_eq!(field_of(r), "tasks[0].health_check.command");
        let mut r = good();
        r.tasks[0]
            .command
            .as_mut()
            .expect("cmd")
            .environment
            .insert("A=B".into(), "x".into());
        assert_eq!(field_of(r), "tasks[0].command.environment");
    }
}
