//! What a task is to the agent: [`TaskSpec`], checked out of a `RunTask` request, and
//! [`LaunchSpec`], the `task.json` checkpoint the agent writes before it starts an executor
//! and the executor reads to know what to run.
//!
//! Owns the validation of everything a master can put in a `RunTask` or `KillTask`: every
//! field is bounded and checked here, and a refusal names the field, so nothing unchecked
//! reaches a file name, an environment or a process.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model::container::{check_arguments, ContainerSpec};
use drover_model::health::HealthCheckSpec;
use drover_proto::agent_api::MAX_TASKS_PER_RUN;
use drover_proto::v1;
use drover_resources::Resources;
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupMode;
use crate::docker::DockerEngine;
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::users::RunAs;

/// Longest shell command, bytes.
pub const MAX_SHELL_BYTES: usize = 64 * 1024;
/// Most environment variables a task may set, and its largest environment (names and values
/// together), bytes: the master's bounds.
pub use drover_model::limits::{MAX_ENV_TOTAL_BYTES as MAX_ENV_BYTES, MAX_ENV_VARS};
/// Longest task name, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest opaque `data` of a task or an executor, bytes.
pub use drover_model::limits::MAX_EXECUTOR_DATA_BYTES as MAX_DATA_BYTES;
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
    /// The custom executor that runs it (then `shell` and `environment` are empty and unused),
    /// if not Drover's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
    /// Opaque bytes for the custom executor.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "drover_mesos::json::bytes_required"
    )]
    pub data: Vec<u8>,
    /// The task group it was launched in (Mesos's LAUNCH_GROUP): its executor gets the
    /// group's tasks together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_group: Option<String>,
    /// The Docker container it runs in (then an empty `shell` runs the image's own command,
    /// with `arguments` when there are some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// A container's entrypoint arguments (Docker's CMD; then `shell` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// The user its command named (empty: none; see [`crate::users`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
}

/// A custom executor as its tasks name it (see `v1::ExecutorInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    pub executor_id: ExecutorId,
    #[serde(default)]
    pub name: String,
    /// Run with `/bin/sh -c` in the executor's sandbox.
    pub shell: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// What the executor itself uses, beside its tasks.
    pub resources: Resources,
    /// From SHUTDOWN to SIGKILL, when it set one.
    #[serde(default)]
    pub shutdown_grace_ms: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "drover_mesos::json::bytes_required"
    )]
    pub data: Vec<u8>,
    /// The task's resources include the executor's (see `v1::ExecutorInfo.charged`).
    #[serde(default)]
    pub charged: bool,
    /// The user its command named (empty: none; see [`crate::users`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
}

impl ExecutorSpec {
    /// Whether `other` names the same executor the same way (who was charged aside).
    pub fn same_as(&self, other: &ExecutorSpec) -> bool {
        ExecutorSpec {
            charged: other.charged,
            ..self.clone()
        } == *other
    }

    fn from_proto(e: &v1::ExecutorInfo, at: &str) -> Result<Self, InvalidField> {
        let field = |f: &str| format!("{at}.{f}");
        let executor_id = ExecutorId::new(&e.executor_id)
            .map_err(|err| invalid(field("executor_id"), err.to_string()))?;
        if e.name.len() > MAX_NAME_BYTES {
            return Err(invalid(
                field("name"),
                format!("longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        let command = e
            .command
            .as_ref()
            .ok_or_else(|| invalid(field("command"), "missing: set command.shell"))?;
        let (shell, environment) = check_command(command, &field("command"))?;
        check_user(&command.user, &field("command.user"))?;
        let resources = Resources::from_proto(&e.resources)
            .map_err(|err| invalid(field("resources"), err.to_string()))?;
        let grace = grace_from_seconds(&field("shutdown_grace_seconds"), e.shutdown_grace_seconds)?;
        check_data(&e.data, &field("data"))?;
        Ok(ExecutorSpec {
            executor_id,
            name: e.name.clone(),
            shell,
            environment,
            resources,
            shutdown_grace_ms: grace.map(|g| g.as_millis() as u64),
            data: e.data.clone(),
            charged: e.charged,
            user: command.user.clone(),
        })
    }
}

/// Checks the user a command names (empty: none).
fn check_user(user: &str, field: &str) -> Result<(), InvalidField> {
    match user {
        "" => Ok(()),
        u => drover_model::limits::user_name_error(u).map_or(Ok(()), |e| Err(invalid(field, e))),
    }
}

fn check_data(data: &[u8], field: &str) -> Result<(), InvalidField> {
    if data.len() > MAX_DATA_BYTES {
        return Err(invalid(
            field,
            format!("larger than {MAX_DATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a command (`field` names it): its shell and its environment.
fn check_command(
    command: &v1::CommandInfo,
    field: &str,
) -> Result<(String, BTreeMap<String, String>), InvalidField> {
    let field = |f: &str| format!("{field}.{f}");
    if command.shell.trim().is_empty() {
        return Err(invalid(field("shell"), "empty: give the command to run"));
    }
    if command.shell.len() > MAX_SHELL_BYTES {
        return Err(invalid(
            field("shell"),
            format!("longer than {MAX_SHELL_BYTES} bytes"),
        ));
    }
    if command.shell.contains('\0') {
        return Err(invalid(field("shell"), "contains a NUL byte"));
    }
    Ok((
        command.shell.clone(),
        check_environment(&command.environment, &field("environment"))?,
    ))
}

/// Checks a command's environment (`field` names it).
fn check_environment(
    environment: &std::collections::HashMap<String, String>,
    field: &str,
) -> Result<BTreeMap<String, String>, InvalidField> {
    if environment.len() > MAX_ENV_VARS {
        return Err(invalid(
            field,
            format!("more than {MAX_ENV_VARS} variables"),
        ));
    }
    let mut env_bytes = 0usize;
    for (k, v) in environment {
        env_bytes += k.len() + v.len();
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(invalid(
                field,
                format!(
                    "{:?} is not a valid variable name",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
        if v.contains('\0') {
            return Err(invalid(
                field,
                format!("the value of {k} contains a NUL byte"),
            ));
        }
    }
    if env_bytes > MAX_ENV_BYTES {
        return Err(invalid(field, format!("larger than {MAX_ENV_BYTES} bytes")));
    }
    Ok(environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
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

pub use drover_model::limits::MAX_TASK_GROUP_BYTES;

/// A task's group, checked: only a custom executor's task is in one.
fn task_group(
    task: &v1::TaskInfo,
    executor: &Option<ExecutorSpec>,
    field: &str,
) -> Result<Option<String>, InvalidField> {
    if task.task_group.is_empty() {
        return Ok(None);
    }
    if executor.is_none() {
        return Err(invalid(
            field.to_string(),
            "only a custom executor's tasks form groups",
        ));
    }
    if task.task_group.len() > MAX_TASK_GROUP_BYTES {
        return Err(invalid(
            field.to_string(),
            format!("at most {MAX_TASK_GROUP_BYTES} bytes"),
        ));
    }
    Ok(Some(task.task_group.clone()))
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
        let executor = task
            .executor
            .as_ref()
            .map(|e| ExecutorSpec::from_proto(e, &field("executor")))
            .transpose()?;
        let container = task
            .container
            .as_ref()
            .map(|c| ContainerSpec::from_proto(c, &field("container")))
            .transpose()
            .map_err(|e| invalid(e.field, e.reason))?
            .flatten();
        if let Some(c) = &task.command {
            check_arguments(
                &c.arguments,
                &c.shell,
                container.is_some() && executor.is_none(),
                &field("command"),
            )
            .map_err(|e| invalid(e.field, e.reason))?;
            check_user(&c.user, &field("command.user"))?;
        }
        if let Some(c) = &container {
            if executor.is_some() {
                return Err(invalid(
                    field("container"),
                    "a custom executor's task cannot have a container of its own",
                ));
            }
            c.check_host_ports(
                &resources.ports().values().collect::<Vec<_>>(),
                &field("container"),
            )
            .map_err(|e| invalid(e.field, e.reason))?;
        }
        let (shell, environment) = match (&task.command, &executor) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    field("command"),
                    "set either command or executor, not both",
                ))
            }
            // A container's command may be left out: its image's own runs.
            (None, None) if container.is_some() => (String::new(), BTreeMap::new()),
            (Some(command), None) if container.is_some() && command.shell.is_empty() => (
                String::new(),
                check_environment(&command.environment, &field("command.environment"))?,
            ),
            (Some(command), None) => check_command(command, &field("command"))?,
            (None, Some(_)) => (String::new(), BTreeMap::new()),
            (None, None) => {
                return Err(invalid(
                    field("command"),
                    "missing: set command.shell (or an executor)",
                ))
            }
        };
        if executor.is_some() && task.health_check.is_some() {
            return Err(invalid(
                field("health_check"),
                "a custom executor runs its tasks' checks itself: not supported with executor",
            ));
        }
        check_data(&task.data, &field("data"))?;
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
            shell,
            environment,
            kill_grace_ms: grace.map(|g| g.as_millis() as u64),
            health_check,
            task_group: task_group(task, &executor, &field("task_group"))?,
            executor,
            data: task.data.clone(),
            container,
            arguments: task
                .command
                .as_ref()
                .map(|c| c.arguments.clone())
                .unwrap_or_default(),
            user: task
                .command
                .as_ref()
                .map(|c| c.user.clone())
                .unwrap_or_default(),
        })
    }

    /// The ports the task was given, in order (`PORT0`…).
    pub fn ports(&self) -> Vec<u64> {
        self.resources.ports().values().collect()
    }

    /// The task's own resources: without its executor's, when it was charged for them.
    pub fn own_resources(&self) -> Resources {
        match &self.executor {
            Some(e) if e.charged => self
                .resources
                .checked_sub(&e.resources)
                .unwrap_or_else(|_| self.resources.clone()),
            _ => self.resources.clone(),
        }
    }
}

/// A validated `RunTask`.
#[derive(Debug, Clone)]
pub struct RunTask {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    /// What custom executors are told the framework is called.
    pub framework_name: String,
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
        if req.framework_name.len() > MAX_NAME_BYTES {
            return Err(invalid(
                "framework_name",
                format!("longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
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
                    framework_name: req.framework_name.clone(),
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

/// Longest message between a framework and a custom executor, bytes.
pub use drover_model::limits::MAX_EXECUTOR_MESSAGE_BYTES as MAX_MESSAGE_BYTES;

/// A validated `SendFrameworkMessage` or `ShutdownExecutor`: the executor it is for, and the
/// message (empty for a shutdown).
#[derive(Debug, Clone)]
pub struct ExecutorCall {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub data: Vec<u8>,
}

impl ExecutorCall {
    pub fn from_proto(
        agent_id: &str,
        framework_id: &str,
        executor_id: &str,
        data: &[u8],
    ) -> Result<Self, InvalidField> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(invalid(
                "data",
                format!("larger than {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        Ok(ExecutorCall {
            agent_id: AgentId::new(agent_id).map_err(|e| invalid("agent_id", e.to_string()))?,
            framework_id: FrameworkId::new(framework_id)
                .map_err(|e| invalid("framework_id", e.to_string()))?,
            executor_id: ExecutorId::new(executor_id)
                .map_err(|e| invalid("executor_id", e.to_string()))?,
            data: data.to_vec(),
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
    /// The agent's Docker engine, when it runs containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerEngine>,
    /// The account the task's command runs as, when not the executor's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<RunAs>,
}

impl LaunchSpec {
    /// The grace for a kill: the request's, else the task's, else the agent's default.
    pub fn kill_grace(&self, requested: Option<Duration>) -> Duration {
        requested
            .or(self.task.kill_grace_ms.map(Duration::from_millis))
            .unwrap_or(Duration::from_millis(self.default_kill_grace_ms))
    }
}

/// Version of the `executor.json` format.
pub const EXECUTOR_LAUNCH_VERSION: u32 = 1;

/// `executor.json`: one run of a custom executor as the agent started it, the input of its
/// supervisor (`drover executor --executor-dir`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutorLaunch {
    pub version: u32,
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    /// What SUBSCRIBED tells the executor its framework is called.
    #[serde(default)]
    pub framework_name: String,
    pub executor: ExecutorSpec,
    /// The command's whole environment (the agent builds it: Mesos's executor variables).
    pub environment: BTreeMap<String, String>,
    /// What the run's cgroup allows: the executor's resources and its first tasks'.
    pub limits: Resources,
    /// How to limit them.
    pub cgroups: CgroupMode,
    /// From a shutdown (SIGTERM to the supervisor) to SIGKILL of the executor's group.
    pub shutdown_grace_ms: u64,
    /// The account the executor's command runs as, when not the supervisor's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<RunAs>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> v1::RunTaskRequest {
        v1::RunTaskRequest {
            agent_id: "agent-1".into(),
            framework_id: "fw-1".into(),
            framework_name: "web framework".into(),
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
                    ..Default::default()
                }),
                kill_grace_seconds: 0.5,
                health_check: None,
                ..Default::default()
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

    fn with_executor(mut r: v1::RunTaskRequest) -> v1::RunTaskRequest {
        r.tasks[0].command = None;
        r.tasks[0].executor = Some(v1::ExecutorInfo {
            executor_id: "e1".into(),
            command: Some(v1::CommandInfo {
                shell: "python3 executor.py".into(),
                environment: Default::default(),
                ..Default::default()
            }),
            resources: "cpus:0.1;mem:32"
                .parse::<Resources>()
                .expect("resources")
                .to_proto(),
            charged: true,
            ..Default::default()
        });
        r.tasks[0].data = b"task data".to_vec();
        r
    }

    #[test]
    fn a_task_of_a_custom_executor_parses_and_round_trips() {
        let r = RunTask::from_proto(&with_executor(good()))
            .expect("valid")
            .remove(0);
        assert_eq!(r.framework_name, "web framework");
        let e = r.task.executor.as_ref().expect("executor");
        assert_eq!(e.executor_id.as_str(), "e1");
        assert!(r.task.shell.is_empty());
        assert_eq!(
            r.task.own_resources(),
            "cpus:0.9;mem:96;ports:[31000-31001]"
                .parse::<Resources>()
                .unwrap(),
            "a charged task's own resources leave out its executor's"
        );
        let json = serde_json::to_string(&r.task).expect("encode");
        assert!(json.contains("\"data\":\"dGFzayBkYXRh\""), "{json}");
        let back: TaskSpec = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, r.task);
        // A task.json of the build before (no executor, no data) still reads.
        let mut old: serde_json::Value = serde_json::to_value(good_spec()).expect("value");
        old.as_object_mut().expect("object").remove("data");
        let spec: TaskSpec = serde_json::from_value(old).expect("older task.json");
        assert!(spec.executor.is_none() && spec.data.is_empty());
    }

    fn good_spec() -> TaskSpec {
        RunTask::from_proto(&good()).expect("valid").remove(0).task
    }

    #[test]
    fn a_task_group_needs_a_custom_executor_and_a_short_name() {
        let mut r = good();
        r.tasks[0].task_group = "g".into();
        assert_eq!(
            field_of(r),
            "tasks[0].task_group",
            "a command task in a group"
        );
        let mut r = with_executor(good());
        r.tasks[0].task_group = "g".repeat(MAX_TASK_GROUP_BYTES + 1);
        assert_eq!(field_of(r), "tasks[0].task_group");
        let mut r = with_executor(good());
        r.tasks[0].task_group = "g".into();
        let task = RunTask::from_proto(&r).expect("valid").remove(0).task;
        assert_eq!(task.task_group.as_deref(), Some("g"));
        // Checkpointed and read back with it; a task.json without it reads as no group.
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(serde_json::from_str::<TaskSpec>(&json).unwrap(), task);
        let plain = serde_json::to_string(&good_spec()).unwrap();
        assert!(!plain.contains("task_group"), "{plain}");
    }

    #[test]
    fn custom_executor_refusals_name_the_field() {
        let mut r = with_executor(good());
        r.tasks[0].command = good().tasks[0].command.clone();
        assert_eq!(field_of(r), "tasks[0].command", "command and executor both");
        let mut r = with_executor(good());
        r.tasks[0].executor.as_mut().expect("e").executor_id = "..".into();
        assert_eq!(field_of(r), "tasks[0].executor.executor_id");
        let mut r = with_executor(good());
        r.tasks[0].executor.as_mut().expect("e").command = None;
        assert_eq!(field_of(r), "tasks[0].executor.command");
        let mut r = with_executor(good());
        r.tasks[0].executor.as_mut().expect("e").data = vec![0; MAX_DATA_BYTES + 1];
        assert_eq!(field_of(r), "tasks[0].executor.data");
        let mut r = with_executor(good());
        r.tasks[0].data = vec![0; MAX_DATA_BYTES + 1];
        assert_eq!(field_of(r), "tasks[0].data");
        let mut r = with_executor(good());
        r.tasks[0]
            .executor
            .as_mut()
            .expect("e")
            .shutdown_grace_seconds = f64::NAN;
        assert_eq!(field_of(r), "tasks[0].executor.shutdown_grace_seconds");
        let mut r = with_executor(good());
        r.tasks[0].health_check = Some(v1::HealthCheck::default());
        assert_eq!(field_of(r), "tasks[0].health_check");
        let mut r = good();
        r.framework_name = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(field_of(r), "framework_name");
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
