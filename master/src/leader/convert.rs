//! Conversions between the wire types of the framework and agent APIs (`drover.v1`) and the
//! registry's types, with the validation every field from the network gets: ids, names, sizes,
//! resources, states. Errors name the field at fault (they become INVALID_ARGUMENT).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use drover_model::container::{check_arguments, ContainerSpec};
use drover_model::health::HealthCheckSpec;
use drover_proto::v1;
use drover_resources::{Attributes, Resources};
use prost::Message;
use tonic::Status;

use crate::ids::{AgentId, FrameworkId, OfferId, Role, TaskId};
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterState, FrameworkRecord, OfferRecord, ReportedTask,
    StatusRecord, StatusSource, TaskExtensions, TaskRecord, TaskSpec, TaskStatus,
    MAX_OFFERS_PER_ACCEPT, MAX_REPORTED_TASKS, MAX_TASKS_PER_ACCEPT,
};
use crate::registry::TaskState;

/// Longest name, principal, hostname, reason or address accepted, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest shell command; most environment variables per task, and the longest name or value.
pub use drover_model::limits::{
    MAX_COMMAND_BYTES, MAX_ENV_BYTES, MAX_ENV_TOTAL_BYTES, MAX_ENV_VARS,
};
/// Longest status message kept, bytes (longer ones are cut, not refused).
pub use drover_model::status::MAX_MESSAGE_BYTES;
/// Longest failover timeout or refuse filter accepted: a week.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

pub fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

/// A refusal of the field of item `i` of the request's list `list`: the error of a check that
/// named the field alone gets the item's place in front (`updates[3].agent_id: …`). Field
/// names are so built only on failure.
pub fn in_item(list: &str, i: usize) -> impl Fn(Status) -> Status + '_ {
    move |e| Status::new(e.code(), format!("{list}[{i}].{}", e.message()))
}

pub fn framework_id(field: &str, s: &str) -> Result<FrameworkId, Status> {
    FrameworkId::new(s).map_err(|e| invalid(field, e))
}
pub fn agent_id(field: &str, s: &str) -> Result<AgentId, Status> {
    AgentId::new(s).map_err(|e| invalid(field, e))
}
pub fn task_id(field: &str, s: &str) -> Result<TaskId, Status> {
    TaskId::new(s).map_err(|e| invalid(field, e))
}
pub fn executor_id(field: &str, s: &str) -> Result<crate::ids::ExecutorId, Status> {
    crate::ids::ExecutorId::new(s).map_err(|e| invalid(field, e))
}
pub fn offer_id(field: &str, s: &str) -> Result<OfferId, Status> {
    OfferId::new(s).map_err(|e| invalid(field, e))
}

pub fn text(field: &str, s: &str, max: usize) -> Result<String, Status> {
    if s.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "holds control characters"));
    }
    Ok(s.to_string())
}

/// Seconds from the network to milliseconds: finite, non-negative, at most [`MAX_SECONDS`].
pub fn seconds_to_ms(field: &str, s: f64) -> Result<u64, Status> {
    if !s.is_finite() || !(0.0..=MAX_SECONDS).contains(&s) {
        return Err(invalid(
            field,
            format!("{s} is not between 0 and {MAX_SECONDS} seconds"),
        ));
    }
    Ok((s * 1000.0).round() as u64)
}

pub fn uuid(field: &str, s: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(s).map_err(|e| invalid(field, e))
}

/// A new, unique id for an offer, framework or agent.
pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The state a reported wire state names; UNSPECIFIED, UNKNOWN and unknown numbers are refused
/// naming `field`.
pub fn state_from_proto(field: &str, raw: i32) -> Result<TaskState, Status> {
    let s =
        v1::TaskState::try_from(raw).map_err(|_| invalid(field, format!("unknown state {raw}")))?;
    TaskState::from_proto(s)
        .ok_or_else(|| invalid(field, format!("{} cannot be reported", s.as_str_name())))
}

/// A status update an agent reports; the agent names only executor or agent sources.
pub fn status_from_proto(s: &v1::TaskStatus) -> Result<(TaskId, TaskStatus), Status> {
    let task = task_id("status.task_id", &s.task_id)?;
    let source = match StatusSource::from_proto(s.source) {
        Some(source @ (StatusSource::Executor | StatusSource::Agent)) => source,
        _ => {
            return Err(invalid(
                "status.source",
                "must be SOURCE_EXECUTOR or SOURCE_AGENT",
            ))
        }
    };
    let message = drover_model::status::cut(s.message.clone(), MAX_MESSAGE_BYTES);
    Ok((
        task,
        TaskStatus {
            uuid: uuid("status.uuid", &s.uuid)?,
            state: state_from_proto("status.state", s.state)?,
            source,
            reason: text("status.reason", &s.reason, MAX_NAME_BYTES)?,
            message,
            exit_code: s.exit_code,
            signal: s.signal,
            at_ms: s.timestamp_ms,
        },
    ))
}

/// A recorded update as the framework sees it.
pub fn status_to_proto(task: &TaskRecord, u: &TaskStatus) -> v1::TaskStatus {
    v1::TaskStatus {
        executor_id: executor_id_of(task),
        ..u.to_proto(task.spec.id.as_str(), task.agent.as_str())
    }
}

/// The id of the custom executor that runs the task (empty: Drover's own).
fn executor_id_of(task: &TaskRecord) -> String {
    executor_of(&task.spec)
        .map(|e| e.executor_id)
        .unwrap_or_default()
}

/// The task's latest state, for RECONCILE: no uuid (not to be acknowledged).
pub fn reconciliation_status(task: &TaskRecord, now_ms: u64) -> v1::TaskStatus {
    let last: Option<&StatusRecord> = task.updates.last();
    v1::TaskStatus {
        task_id: task.spec.id.to_string(),
        agent_id: task.agent.to_string(),
        state: task.state.to_proto() as i32,
        uuid: String::new(),
        source: v1::StatusSource::SourceMaster as i32,
        reason: "reconciliation".into(),
        message: last.map(|u| u.update.message.clone()).unwrap_or_default(),
        exit_code: last.and_then(|u| u.update.exit_code),
        signal: last.and_then(|u| u.update.signal),
        timestamp_ms: now_ms,
        // A scheduler that took over learns the health its checks last reported.
        healthy: task
            .updates
            .iter()
            .rev()
            .find_map(|u| u.update.healthy())
            .filter(|_| !task.state.is_terminal()),
        executor_id: executor_id_of(task),
    }
}

/// RECONCILE's answer for a task the master has no record of (never heard of, or completed
/// and forgotten), given the agent the framework says it was launched on (and that agent's
/// state, if the registry knows it), as Mesos 1.x answers: GONE on a registered agent,
/// UNREACHABLE or GONE from an unreachable or removed agent's state, UNKNOWN when the agent
/// is not named or not known; LOST for a framework that is not partition-aware.
pub fn unknown_task_status(
    task: &str,
    agent: Option<(&str, Option<AgentState>)>,
    partition_aware: bool,
    now_ms: u64,
) -> v1::TaskStatus {
    let (state, message) = match agent.and_then(|(_, s)| s) {
        _ if !partition_aware => (
            v1::TaskState::TaskLost,
            "the master has no record of this task",
        ),
        Some(AgentState::Unreachable) => (
            v1::TaskState::TaskUnreachable,
            "the master has no record of this task, and its agent is unreachable",
        ),
        Some(AgentState::Gone) => (
            v1::TaskState::TaskGone,
            "the master has no record of this task, and its agent was removed",
        ),
        // As Mesos: a task unknown on a registered agent is not running there (it ended and
        // was forgotten, or it never ran).
        Some(AgentState::Active | AgentState::Draining | AgentState::Deactivated) => (
            v1::TaskState::TaskGone,
            "the master has no record of this task (it ended and was forgotten, or never ran), and its agent is registered",
        ),
        None => (
            v1::TaskState::TaskUnknown,
            "the master has no record of this task",
        ),
    };
    v1::TaskStatus {
        task_id: task.to_string(),
        agent_id: agent.map(|(a, _)| a.to_string()).unwrap_or_default(),
        state: state as i32,
        source: v1::StatusSource::SourceMaster as i32,
        reason: "reconciliation".into(),
        message: message.into(),
        timestamp_ms: now_ms,
        ..Default::default()
    }
}

/// RECONCILE's answer for a task whose ACCEPT is being committed: TASK_STAGING, as a Mesos
/// master answers for a task it is launching (the framework is not told it is unknown while
/// it is about to run).
pub fn staging_status(task: &TaskId, agent: Option<&AgentId>, now_ms: u64) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task.to_string(),
        agent_id: agent.map(ToString::to_string).unwrap_or_default(),
        state: v1::TaskState::TaskStaging as i32,
        source: v1::StatusSource::SourceMaster as i32,
        reason: "reconciliation".into(),
        message: "the task's ACCEPT is being committed".into(),
        timestamp_ms: now_ms,
        ..Default::default()
    }
}

pub fn resources(field: &str, items: &[v1::Resource]) -> Result<Resources, Status> {
    Resources::from_proto(items).map_err(|e| invalid(field, e))
}

/// Longest opaque `data` of a task or a custom executor, bytes.
pub use drover_model::limits::MAX_EXECUTOR_DATA_BYTES as MAX_DATA_BYTES;

/// A command's shell and environment, checked (`field` names the command).
fn command_from_proto(
    field: &str,
    command: &v1::CommandInfo,
) -> Result<(String, BTreeMap<String, String>), Status> {
    if command.shell.trim().is_empty() {
        return Err(invalid(&format!("{field}.shell"), "empty"));
    }
    command_or_environment(field, command)
}

/// A command whose shell may be empty (a container's: the image's own command runs then).
fn command_or_environment(
    field: &str,
    command: &v1::CommandInfo,
) -> Result<(String, BTreeMap<String, String>), Status> {
    let field = |f: &str| format!("{field}.{f}");
    if !command.shell.is_empty() && command.shell.trim().is_empty() {
        return Err(invalid(&field("shell"), "blank"));
    }
    if command.shell.len() > MAX_COMMAND_BYTES {
        return Err(invalid(
            &field("shell"),
            format!("longer than {MAX_COMMAND_BYTES} bytes"),
        ));
    }
    if command.shell.contains('\0') {
        return Err(invalid(&field("shell"), "holds a NUL byte"));
    }
    if command.environment.len() > MAX_ENV_VARS {
        return Err(invalid(
            &field("environment"),
            format!("more than {MAX_ENV_VARS} variables"),
        ));
    }
    let mut environment = BTreeMap::new();
    for (k, v) in &command.environment {
        let ok_name = k.len() <= MAX_NAME_BYTES && drover_model::limits::is_env_name(k);
        if !ok_name {
            return Err(invalid(
                &field("environment"),
                format!("{k:?} is not a variable name"),
            ));
        }
        if v.len() > MAX_ENV_BYTES || v.contains('\0') {
            return Err(invalid(
                &field(&format!("environment.{k}")),
                format!("at most {MAX_ENV_BYTES} bytes, no NUL"),
            ));
        }
        environment.insert(k.clone(), v.clone());
    }
    if drover_model::limits::env_total_bytes(&environment) > MAX_ENV_TOTAL_BYTES {
        return Err(invalid(
            &field("environment"),
            format!("larger than {MAX_ENV_TOTAL_BYTES} bytes (names and values together)"),
        ));
    }
    Ok((command.shell.clone(), environment))
}

fn data(field: &str, bytes: &[u8]) -> Result<(), Status> {
    if bytes.len() > MAX_DATA_BYTES {
        return Err(invalid(
            field,
            format!("larger than {MAX_DATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A task's custom executor, checked; `charged` is the master's to set, so it is cleared.
fn executor_from_proto(field: &str, e: &v1::ExecutorInfo) -> Result<v1::ExecutorInfo, Status> {
    let at = |f: &str| format!("{field}.{f}");
    executor_id(&at("executor_id"), &e.executor_id)?;
    text(&at("name"), &e.name, MAX_NAME_BYTES)?;
    let command = e
        .command
        .as_ref()
        .ok_or_else(|| invalid(&at("command"), "missing"))?;
    check_arguments(&command.arguments, &command.shell, false, &at("command"))
        .map_err(|e| invalid(&e.field, e.reason))?;
    command_from_proto(&at("command"), command)?;
    user(&at("command.user"), &command.user)?;
    resources(&at("resources"), &e.resources)?;
    seconds_to_ms(&at("shutdown_grace_seconds"), e.shutdown_grace_seconds)?;
    data(&at("data"), &e.data)?;
    Ok(v1::ExecutorInfo {
        charged: false,
        ..e.clone()
    })
}

/// The user a command runs as: empty (the agent's default) or a user name.
fn user(field: &str, name: &str) -> Result<(), Status> {
    match name {
        "" => Ok(()),
        n => drover_model::limits::user_name_error(n).map_or(Ok(()), |e| Err(invalid(field, e))),
    }
}

/// A task to launch, from ACCEPT: a command, or a custom executor of the framework's that
/// runs it (exactly one of the two).
pub fn task_from_proto(i: usize, t: &v1::TaskInfo) -> Result<TaskSpec, Status> {
    let field = |f: &str| format!("launch[{i}].{f}");
    let container = container_from_proto(i, t)?;
    if let Some(c) = &t.command {
        check_arguments(
            &c.arguments,
            &c.shell,
            container.is_some(),
            &field("command"),
        )
        .map_err(|e| invalid(&e.field, e.reason))?;
        user(&field("command.user"), &c.user)?;
    }
    let (command, environment) = match (&t.command, &t.executor) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                &field("command"),
                "set either command or executor, not both",
            ))
        }
        (_, Some(_)) if container.is_some() => {
            return Err(invalid(
                &field("container"),
                "a custom executor's task cannot have a container of its own",
            ))
        }
        // A container without a command runs its image's own.
        (None, None) if container.is_some() => (String::new(), BTreeMap::new()),
        (None, None) => return Err(invalid(&field("command"), "missing")),
        (Some(command), None) if container.is_some() => {
            command_or_environment(&field("command"), command)?
        }
        (Some(command), None) => command_from_proto(&field("command"), command)?,
        (None, Some(_)) => {
            if t.health_check.is_some() {
                return Err(invalid(
                    &field("health_check"),
                    "a custom executor runs its tasks' checks itself",
                ));
            }
            (String::new(), BTreeMap::new())
        }
    };
    let resources = resources(&field("resources"), &t.resources)?;
    if resources.is_empty() {
        return Err(invalid(&field("resources"), "a task needs some resources"));
    }
    if let Some(c) = &container {
        let ports: Vec<u64> = resources.ports().values().collect();
        c.check_host_ports(&ports, &field("container"))
            .map_err(|e| invalid(&e.field, e.reason))?;
    }
    Ok(TaskSpec {
        id: task_id(&field("task_id"), &t.task_id)?,
        name: text(&field("name"), &t.name, MAX_NAME_BYTES)?,
        resources,
        command,
        environment,
        kill_grace_ms: seconds_to_ms(&field("kill_grace_seconds"), t.kill_grace_seconds)?,
        extensions: extensions_from_proto(i, t, container.as_ref())?,
    })
}

/// A task's container, checked; `None` without one (or for a MESOS one: a plain process).
fn container_from_proto(i: usize, t: &v1::TaskInfo) -> Result<Option<ContainerSpec>, Status> {
    let Some(c) = &t.container else {
        return Ok(None);
    };
    ContainerSpec::from_proto(c, &format!("launch[{i}].container"))
        .map_err(|e| invalid(&e.field, e.reason))
}

/// The fields of `t` the registry keeps as [`TaskExtensions`] (a health check, a custom
/// executor, the task's data, its container), checked; `None` when it has none.
fn extensions_from_proto(
    i: usize,
    t: &v1::TaskInfo,
    container: Option<&ContainerSpec>,
) -> Result<Option<TaskExtensions>, Status> {
    let health_check = t
        .health_check
        .as_ref()
        .map(|check| {
            HealthCheckSpec::from_proto(check, &format!("launch[{i}].health_check"))
                .map(|c| c.to_proto())
                .map_err(|e| invalid(&e.field, e.reason))
        })
        .transpose()?;
    let executor = t
        .executor
        .as_ref()
        .map(|e| executor_from_proto(&format!("launch[{i}].executor"), e))
        .transpose()?;
    data(&format!("launch[{i}].data"), &t.data)?;
    if !t.task_group.is_empty() {
        if executor.is_none() {
            return Err(invalid(
                &format!("launch[{i}].task_group"),
                "only a custom executor's tasks form groups",
            ));
        }
        text(
            &format!("launch[{i}].task_group"),
            &t.task_group,
            MAX_TASK_GROUP_BYTES,
        )?;
    }
    let container = container.map(ContainerSpec::to_proto);
    let user = t.command.as_ref().is_some_and(|c| !c.user.is_empty());
    if health_check.is_none()
        && executor.is_none()
        && t.data.is_empty()
        && container.is_none()
        && !user
    {
        return Ok(None);
    }
    let kept = v1::TaskInfo {
        health_check,
        executor,
        data: t.data.clone(),
        task_group: t.task_group.clone(),
        container,
        // A container's entrypoint arguments and the command's user (the registry's command
        // is its shell).
        command: t
            .command
            .as_ref()
            .filter(|c| !c.arguments.is_empty() || !c.user.is_empty())
            .map(|c| v1::CommandInfo {
                arguments: c.arguments.clone(),
                user: c.user.clone(),
                ..Default::default()
            }),
        ..Default::default()
    };
    Ok(Some(TaskExtensions(kept.encode_to_vec())))
}

/// What a task's extensions hold (nothing when it has none).
pub fn extensions_of(t: &TaskSpec) -> v1::TaskInfo {
    // Checked when accepted; a record that does not decode (it cannot, short of a bug) loses
    // its extensions rather than its task.
    t.extensions
        .as_ref()
        .and_then(|e| v1::TaskInfo::decode(e.0.as_slice()).ok())
        .unwrap_or_default()
}

/// The custom executor that runs a task, if one does.
pub fn executor_of(t: &TaskSpec) -> Option<v1::ExecutorInfo> {
    t.extensions.as_ref()?;
    extensions_of(t).executor
}

/// The container a task runs in, if it has one.
pub fn container_of(t: &TaskSpec) -> Option<v1::ContainerInfo> {
    t.extensions.as_ref()?;
    extensions_of(t).container
}

/// `t` with its custom executor's `charged` set: its resources then include the executor's.
pub fn with_executor_charged(
    t: &TaskSpec,
    executor: &v1::ExecutorInfo,
) -> Result<TaskSpec, Status> {
    let mut kept = extensions_of(t);
    kept.executor = Some(v1::ExecutorInfo {
        charged: true,
        ..executor.clone()
    });
    let extra =
        Resources::from_proto(&executor.resources).map_err(|e| invalid("executor.resources", e))?;
    let resources = t
        .resources
        .checked_add(&extra)
        .map_err(|e| invalid("executor.resources", e))?;
    Ok(TaskSpec {
        resources,
        extensions: Some(TaskExtensions(kept.encode_to_vec())),
        ..t.clone()
    })
}

pub fn task_to_proto(t: &TaskSpec) -> v1::TaskInfo {
    let extended = extensions_of(t);
    v1::TaskInfo {
        task_id: t.id.to_string(),
        name: t.name.clone(),
        resources: t.resources.to_proto(),
        command: extended.executor.is_none().then(|| {
            let kept = extended.command.unwrap_or_default();
            v1::CommandInfo {
                shell: t.command.clone(),
                environment: t.environment.clone().into_iter().collect(),
                arguments: kept.arguments,
                user: kept.user,
            }
        }),
        kill_grace_seconds: t.kill_grace_ms as f64 / 1000.0,
        health_check: extended.health_check,
        executor: extended.executor,
        data: extended.data,
        task_group: extended.task_group,
        container: extended.container,
    }
}

/// The validated parts of an ACCEPT.
pub fn accept_from_proto(
    offer_ids: &[String],
    launch: &[v1::TaskInfo],
) -> Result<(Vec<OfferId>, Vec<TaskSpec>), Status> {
    if offer_ids.is_empty() || offer_ids.len() > MAX_OFFERS_PER_ACCEPT {
        return Err(invalid(
            "offer_ids",
            format!("between 1 and {MAX_OFFERS_PER_ACCEPT} offers"),
        ));
    }
    if launch.len() > MAX_TASKS_PER_ACCEPT {
        return Err(invalid(
            "launch",
            format!("at most {MAX_TASKS_PER_ACCEPT} tasks"),
        ));
    }
    let offers = offer_ids
        .iter()
        .enumerate()
        .map(|(i, o)| offer_id(&format!("offer_ids[{i}]"), o))
        .collect::<Result<_, _>>()?;
    let tasks = launch
        .iter()
        .enumerate()
        .map(|(i, t)| task_from_proto(i, t))
        .collect::<Result<_, _>>()?;
    same_executor_per_group(launch)?;
    Ok((offers, tasks))
}

pub use drover_model::limits::MAX_TASK_GROUP_BYTES;

/// The tasks of one group name one executor (their executor gets them together).
fn same_executor_per_group(launch: &[v1::TaskInfo]) -> Result<(), Status> {
    let mut executors: HashMap<&str, &str> = HashMap::new();
    for (i, t) in launch.iter().enumerate() {
        let Some(e) = t.executor.as_ref().filter(|_| !t.task_group.is_empty()) else {
            continue;
        };
        let first = *executors
            .entry(t.task_group.as_str())
            .or_insert(e.executor_id.as_str());
        if first != e.executor_id {
            return Err(invalid(
                &format!("launch[{i}].executor"),
                format!(
                    "task group {} names executor {first}; every task of a group names the same",
                    t.task_group
                ),
            ));
        }
    }
    Ok(())
}

/// `tasks` cut into runs of at most `max` for RunTask calls, never splitting a task group
/// (an agent gives a group's tasks to their executor together only if they come together);
/// a group longer than `max` (it cannot be: one ACCEPT's tasks fit one call) goes whole.
pub fn runs_keeping_groups(tasks: &[TaskSpec], max: usize) -> Vec<Vec<TaskSpec>> {
    let mut groups: Vec<(Option<String>, Vec<TaskSpec>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let group = (t.extensions.is_some())
            .then(|| extensions_of(t).task_group)
            .filter(|g| !g.is_empty());
        match group {
            Some(g) => match at.get(&g) {
                Some(&i) => groups[i].1.push(t.clone()),
                None => {
                    at.insert(g.clone(), groups.len());
                    groups.push((Some(g), vec![t.clone()]));
                }
            },
            None => groups.push((None, vec![t.clone()])),
        }
    }
    let mut runs: Vec<Vec<TaskSpec>> = Vec::new();
    for (_, members) in groups {
        match runs.last_mut() {
            Some(run) if run.len() + members.len() <= max => run.extend(members),
            _ => runs.push(members),
        }
    }
    runs
}

/// Most offers one DECLINE may name.
pub const MAX_OFFERS_PER_DECLINE: usize = 10_000;

pub fn offer_ids(field: &str, ids: &[String]) -> Result<Vec<OfferId>, Status> {
    if ids.is_empty() || ids.len() > MAX_OFFERS_PER_DECLINE {
        return Err(invalid(
            field,
            format!("between 1 and {MAX_OFFERS_PER_DECLINE} offers"),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, o)| offer_id(&format!("{field}[{i}]"), o))
        .collect()
}

/// An offer as frameworks see it, with its agent's details and the framework's custom
/// executors running there (from the state `state`).
pub fn offer_to_proto(o: &OfferRecord, state: &ClusterState) -> v1::Offer {
    let agent = state.agent(&o.agent);
    let executor_ids: BTreeSet<String> = state
        .live_tasks_on(&o.agent)
        .filter(|t| t.framework == o.framework)
        .filter_map(|t| executor_of(&t.spec))
        .map(|e| e.executor_id)
        .collect();
    v1::Offer {
        id: o.id.to_string(),
        framework_id: o.framework.to_string(),
        agent_id: o.agent.to_string(),
        hostname: agent.map(|a| a.hostname.clone()).unwrap_or_default(),
        resources: o.resources.to_proto(),
        attributes: agent.map(|a| a.attributes.to_proto()).unwrap_or_default(),
        expires_at_ms: o.expires_at_ms,
        agent_addr: agent.map(|a| a.addr.clone()).unwrap_or_default(),
        executor_ids: executor_ids.into_iter().collect(),
    }
}

/// A framework's subscription, validated; the id is the given one or a fresh one.
pub fn framework_from_proto(f: &v1::FrameworkInfo, now_ms: u64) -> Result<FrameworkRecord, Status> {
    if f.name.trim().is_empty() {
        return Err(invalid("framework.name", "empty"));
    }
    let role = if f.role.is_empty() {
        Role::default_role()
    } else {
        Role::new(&f.role).map_err(|e| invalid("framework.role", e))?
    };
    let id = if f.id.is_empty() {
        FrameworkId::new(&fresh_id()).map_err(|e| Status::internal(e.to_string()))?
    } else {
        framework_id("framework.id", &f.id)?
    };
    Ok(FrameworkRecord {
        id,
        name: text("framework.name", &f.name, MAX_NAME_BYTES)?,
        role,
        principal: text("framework.principal", &f.principal, MAX_NAME_BYTES)?,
        failover_timeout_ms: seconds_to_ms(
            "framework.failover_timeout_seconds",
            f.failover_timeout_seconds,
        )?,
        subscribed_at_ms: now_ms,
        torn_down: false,
        partition_aware: capabilities(&f.capabilities)?,
    })
}

/// Whether the capabilities name PARTITION_AWARE; an unknown capability is refused.
fn capabilities(raw: &[i32]) -> Result<bool, Status> {
    let mut partition_aware = false;
    for (i, c) in raw.iter().enumerate() {
        match v1::FrameworkCapability::try_from(*c) {
            Ok(v1::FrameworkCapability::PartitionAware) => partition_aware = true,
            _ => {
                return Err(invalid(
                    &format!("framework.capabilities[{i}]"),
                    format!("unknown capability {c}"),
                ))
            }
        }
    }
    Ok(partition_aware)
}

/// An agent's registration: the agent, and on a re-registration (the agent gave its id) the
/// tasks it reports.
pub fn registration_from_proto(
    r: &v1::RegisterRequest,
    now_ms: u64,
) -> Result<(AgentRecord, Option<Vec<ReportedTask>>, bool), Status> {
    let info = r
        .agent
        .as_ref()
        .ok_or_else(|| invalid("agent", "missing"))?;
    if info.id.is_empty() && !r.tasks.is_empty() {
        return Err(invalid(
            "tasks",
            "a new agent (no agent.id) cannot report tasks",
        ));
    }
    if r.tasks.len() > MAX_REPORTED_TASKS {
        return Err(invalid(
            "tasks",
            format!("at most {MAX_REPORTED_TASKS}, got {}", r.tasks.len()),
        ));
    }
    let agent = agent_from_proto(info, now_ms)?;
    if info.id.is_empty() {
        return Ok((agent, None, false));
    }
    let mut tasks = Vec::with_capacity(r.tasks.len());
    for (i, t) in r.tasks.iter().enumerate() {
        let at = in_item("tasks", i);
        tasks.push(ReportedTask {
            framework: framework_id("framework_id", &t.framework_id).map_err(&at)?,
            task: task_id("task_id", &t.task_id).map_err(&at)?,
            state: state_from_proto("state", t.state).map_err(&at)?,
        });
    }
    Ok((agent, Some(tasks), r.tasks_truncated))
}

/// An agent's registration, validated; the id is the given one or a fresh one.
pub fn agent_from_proto(a: &v1::AgentInfo, now_ms: u64) -> Result<AgentRecord, Status> {
    let id = if a.id.is_empty() {
        AgentId::new(&fresh_id()).map_err(|e| Status::internal(e.to_string()))?
    } else {
        agent_id("agent.id", &a.id)?
    };
    let addr = text("agent.addr", &a.addr, MAX_NAME_BYTES)?;
    if drover_client::channel::endpoint(&addr).is_err() || addr.is_empty() {
        return Err(invalid("agent.addr", format!("{addr:?} is not host:port")));
    }
    let total = resources("agent.resources", &a.resources)?;
    if total.is_empty() {
        return Err(invalid("agent.resources", "an agent needs some resources"));
    }
    Ok(AgentRecord {
        id,
        hostname: text("agent.hostname", &a.hostname, MAX_NAME_BYTES)?,
        addr,
        total,
        attributes: Attributes::from_proto(&a.attributes)
            .map_err(|e| invalid("agent.attributes", e))?,
        state: AgentState::Active,
        registered_at_ms: now_ms,
        state_since_ms: now_ms,
        draining: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mesos 1.x's table for a task the master has no record of (issue 16: a completed task
    /// forgotten by a prune is answered the same way).
    #[test]
    fn a_task_without_a_record_is_answered_from_its_agents_state_as_mesos_does() {
        let answer = |agent: Option<(&str, Option<AgentState>)>, pa: bool| {
            let s = unknown_task_status("t", agent, pa, 7);
            assert_eq!(s.reason, "reconciliation");
            assert_eq!(s.source, v1::StatusSource::SourceMaster as i32);
            v1::TaskState::try_from(s.state).unwrap()
        };
        use v1::TaskState as T;
        for registered in [AgentState::Active, AgentState::Draining] {
            assert_eq!(answer(Some(("a", Some(registered))), true), T::TaskGone);
        }
        assert_eq!(
            answer(Some(("a", Some(AgentState::Unreachable))), true),
            T::TaskUnreachable
        );
        assert_eq!(
            answer(Some(("a", Some(AgentState::Gone))), true),
            T::TaskGone
        );
        assert_eq!(answer(Some(("a", None)), true), T::TaskUnknown);
        assert_eq!(answer(None, true), T::TaskUnknown);
        for agent in [None, Some(("a", Some(AgentState::Active)))] {
            assert_eq!(answer(agent, false), T::TaskLost);
        }
    }

    #[test]
    fn every_state_round_trips() {
        for s in TaskState::ALL {
            assert_eq!(state_from_proto("s", s.to_proto() as i32).unwrap(), s);
        }
        assert!(state_from_proto("s", 0).is_err());
        assert!(state_from_proto("s", 999).is_err());
        assert!(state_from_proto("s", v1::TaskState::TaskUnknown as i32).is_err());
    }

    /// A task the master accepts: `true` on one cpu, a grace of 1 s.
    fn good_task() -> v1::TaskInfo {
        v1::TaskInfo {
            task_id: "t".into(),
            name: "t".into(),
            resources: "cpus:1".parse::<Resources>().unwrap().to_proto(),
            command: Some(v1::CommandInfo {
                shell: "true".into(),
                environment: Default::default(),
                ..Default::default()
            }),
            kill_grace_seconds: 1.0,
            health_check: None,
            ..Default::default()
        }
    }

    fn custom_task() -> v1::TaskInfo {
        v1::TaskInfo {
            command: None,
            executor: Some(v1::ExecutorInfo {
                executor_id: "e1".into(),
                command: Some(v1::CommandInfo {
                    shell: "python3 executor.py".into(),
                    environment: Default::default(),
                    ..Default::default()
                }),
                resources: "cpus:0.1;mem:32".parse::<Resources>().unwrap().to_proto(),
                charged: true,
                ..Default::default()
            }),
            data: b"task data".to_vec(),
            ..good_task()
        }
    }

    /// Each variable within its bound, the whole over what the agent takes: refused here, not
    /// committed and then refused by the agent.
    #[test]
    fn an_environment_larger_than_the_agent_takes_is_refused_naming_it() {
        let with_env = |vars: usize, value_bytes: usize| {
            let mut t = good_task();
            if let Some(c) = t.command.as_mut() {
                c.environment = (0..vars)
                    .map(|i| (format!("V{i}"), "x".repeat(value_bytes)))
                    .collect();
            }
            t
        };
        assert!(task_from_proto(0, &with_env(3, MAX_ENV_BYTES)).is_ok());
        let e = task_from_proto(0, &with_env(5, MAX_ENV_BYTES)).expect_err("80 KiB");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("launch[0].command.environment")
                && e.message().contains(&MAX_ENV_TOTAL_BYTES.to_string()),
            "{}",
            e.message()
        );
    }

    #[test]
    fn task_groups_keep_their_name_share_one_executor_and_are_never_split_across_runs() {
        let member = |id: &str, group: &str, executor: &str| {
            let mut t = custom_task();
            t.task_id = id.into();
            t.task_group = group.into();
            if let Some(e) = t.executor.as_mut() {
                e.executor_id = executor.into();
            }
            t
        };
        let launch = vec![
            member("a", "", "e1"),
            member("g1", "g", "e1"),
            member("b", "", "e1"),
            member("g2", "g", "e1"),
        ];
        let (_, tasks) = accept_from_proto(&["o1".to_string()], &launch).expect("valid");
        assert_eq!(task_to_proto(&tasks[1]).task_group, "g");
        // Runs of at most 2: the group's tasks go together, whatever their order.
        let ids = |runs: Vec<Vec<TaskSpec>>| -> Vec<Vec<String>> {
            runs.iter()
                .map(|r| r.iter().map(|t| t.id.to_string()).collect())
                .collect()
        };
        assert_eq!(
            ids(runs_keeping_groups(&tasks, 2)),
            vec![vec!["a"], vec!["g1", "g2"], vec!["b"]]
        );
        assert_eq!(
            ids(runs_keeping_groups(&tasks, 4)),
            vec![vec!["a", "g1", "g2", "b"]]
        );
        // A group names one executor; a command task is in none.
        let mixed = vec![member("g1", "g", "e1"), member("g2", "g", "e2")];
        let e = accept_from_proto(&["o1".to_string()], &mixed).unwrap_err();
        assert!(
            e.message().contains("launch[1].executor"),
            "{}",
            e.message()
        );
        let mut plain = good_task();
        plain.task_group = "g".into();
        let e = task_from_proto(0, &plain).unwrap_err();
        assert!(
            e.message().contains("launch[0].task_group"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_custom_executor_s_task_keeps_its_executor_and_data_in_its_extensions() {
        let spec = task_from_proto(0, &custom_task()).expect("valid");
        assert!(spec.command.is_empty());
        let e = executor_of(&spec).expect("executor kept");
        assert_eq!(e.executor_id, "e1");
        assert!(!e.charged, "only the master charges");
        let back = task_to_proto(&spec);
        assert!(back.command.is_none());
        assert_eq!(back.data, b"task data");
        assert_eq!(
            back.executor.as_ref().map(|e| e.executor_id.as_str()),
            Some("e1")
        );
        let charged = with_executor_charged(&spec, &e).expect("charged");
        assert_eq!(
            charged.resources,
            "cpus:1.1;mem:32".parse::<Resources>().unwrap()
        );
        assert!(executor_of(&charged).expect("executor").charged);
        // A plain command task has no extensions at all (written as older builds read it).
        assert!(task_from_proto(0, &good_task())
            .unwrap()
            .extensions
            .is_none());
    }

    #[test]
    fn bad_custom_executor_tasks_name_the_field() {
        type Mutation = Box<dyn Fn(&mut v1::TaskInfo)>;
        fn executor(t: &mut v1::TaskInfo) -> &mut v1::ExecutorInfo {
            t.executor.as_mut().unwrap()
        }
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|t| t.command = good_task().command),
                "launch[2].command",
            ),
            (
                Box::new(|t| executor(t).executor_id = "..".into()),
                "launch[2].executor.executor_id",
            ),
            (
                Box::new(|t| executor(t).command = None),
                "launch[2].executor.command",
            ),
            (
                Box::new(|t| executor(t).command.as_mut().unwrap().shell = String::new()),
                "launch[2].executor.command.shell",
            ),
            (
                Box::new(|t| executor(t).data = vec![0; MAX_DATA_BYTES + 1]),
                "launch[2].executor.data",
            ),
            (
                Box::new(|t| t.data = vec![0; MAX_DATA_BYTES + 1]),
                "launch[2].data",
            ),
            (
                Box::new(|t| executor(t).shutdown_grace_seconds = -1.0),
                "launch[2].executor.shutdown_grace_seconds",
            ),
            (
                Box::new(|t| t.health_check = Some(v1::HealthCheck::default())),
                "launch[2].health_check",
            ),
        ];
        for (mutate, field) in cases {
            let mut t = custom_task();
            mutate(&mut t);
            let e = task_from_proto(2, &t).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().starts_with(field),
                "{} should name {field}",
                e.message()
            );
        }
    }

    #[test]
    fn bad_tasks_name_the_field() {
        let good = good_task();
        assert!(task_from_proto(0, &good).is_ok());
        type Mutation = Box<dyn Fn(&mut v1::TaskInfo)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|t| t.task_id = "a b".into()), "launch[3].task_id"),
            // The agent names a directory after the task: the master refuses what it would.
            (Box::new(|t| t.task_id = "..".into()), "launch[3].task_id"),
            (Box::new(|t| t.command = None), "launch[3].command"),
            (
                Box::new(|t| t.command.as_mut().unwrap().shell = " ".into()),
                "launch[3].command.shell",
            ),
            (Box::new(|t| t.resources.clear()), "launch[3].resources"),
            (
                Box::new(|t| t.kill_grace_seconds = f64::INFINITY),
                "launch[3].kill_grace_seconds",
            ),
            (
                Box::new(|t| {
                    t.command
                        .as_mut()
                        .unwrap()
                        .environment
                        .insert("1BAD".into(), "x".into());
                }),
                "launch[3].command.environment",
            ),
        ];
        for (mutate, field) in cases {
            let mut t = good.clone();
            mutate(&mut t);
            let e = task_from_proto(3, &t).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().starts_with(field),
                "{} should name {field}",
                e.message()
            );
        }
    }

    #[test]
    fn a_health_check_is_kept_as_an_extension_and_sent_back_whole() {
        let check = v1::HealthCheck {
            delay_seconds: 1.0,
            interval_seconds: 2.0,
            timeout_seconds: 3.0,
            consecutive_failures: 4,
            grace_period_seconds: 5.0,
            command: Some(v1::CommandInfo {
                shell: "test -f ready".into(),
                environment: Default::default(),
                ..Default::default()
            }),
        };
        let task = v1::TaskInfo {
            health_check: Some(check.clone()),
            ..good_task()
        };
        let spec = task_from_proto(0, &task).unwrap();
        assert!(spec.extensions.is_some());
        assert_eq!(task_to_proto(&spec), task);
        let plain = task_from_proto(
            0,
            &v1::TaskInfo {
                health_check: None,
                ..task.clone()
            },
        )
        .unwrap();
        assert_eq!(plain.extensions, None);
        let bad = v1::TaskInfo {
            health_check: Some(v1::HealthCheck {
                interval_seconds: -1.0,
                ..check
            }),
            ..task
        };
        let e = task_from_proto(2, &bad).unwrap_err();
        assert!(
            e.message()
                .contains("launch[2].health_check.interval_seconds"),
            "{e:?}"
        );
    }
}
