//! The executor API's conversions between Mesos's executor calls and events and the agent's
//! own types. Pure: no I/O, no state.

use drover_mesos::v1 as mesos;
use drover_mesos::v1::executor::{event, Call, Event};
use uuid::Uuid;

use super::StreamContext;
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::launcher::{ExecKey, SubscribedRun, ToCustom};
use crate::task::{ExecutorSpec, TaskSpec};
use crate::update::{StatusSource, StatusUpdate, TaskState, TaskStatus};

/// A call or a field of it that cannot be taken; says which.
pub use drover_mesos::Refused;

fn refused(field: impl Into<String>, reason: impl Into<String>) -> Refused {
    Refused::new(field, reason)
}

/// The executor a call is from.
pub fn exec_key(call: &Call) -> Result<ExecKey, Refused> {
    let framework = FrameworkId::new(&call.framework_id.value)
        .map_err(|e| refused("framework_id", e.to_string()))?;
    let executor = ExecutorId::new(&call.executor_id.value)
        .map_err(|e| refused("executor_id", e.to_string()))?;
    Ok((framework, executor))
}

pub use drover_mesos::convert::reason_from_mesos;

/// An executor's status update as the agent keeps it: its uuid (16 bytes) kept as is, its
/// state one an executor may report, stamped with the agent's id.
pub fn status_from_mesos(
    s: &mesos::TaskStatus,
    exec: &ExecKey,
    task: &TaskId,
    agent: &AgentId,
) -> Result<StatusUpdate, Refused> {
    let at = |f: &str| format!("update.status.{f}");
    let uuid = match s.uuid.as_deref() {
        None | Some([]) => return Err(refused(at("uuid"), "missing: every update needs one")),
        Some(bytes) => Uuid::from_slice(bytes)
            .map_err(|_| refused(at("uuid"), format!("{} bytes, not 16", bytes.len())))?,
    };
    let state = mesos::TaskState::try_from(s.state)
        .ok()
        .and_then(|m| TaskState::from_mesos_name(m.as_str_name()))
        .ok_or_else(|| refused(at("state"), "not a task state"))?;
    if matches!(
        state,
        TaskState::Staging
            | TaskState::Unreachable
            | TaskState::Dropped
            | TaskState::Gone
            | TaskState::GoneByOperator
    ) {
        return Err(refused(
            at("state"),
            format!("{} is not a state an executor reports", state.mesos_name()),
        ));
    }
    match s.source.map(mesos::task_status::Source::try_from) {
        None | Some(Ok(mesos::task_status::Source::Executor)) => {}
        Some(_) => {
            return Err(refused(
                at("source"),
                "an executor's update comes from SOURCE_EXECUTOR",
            ))
        }
    }
    if let Some(e) = &s.executor_id {
        if e.value != exec.1.as_str() {
            return Err(refused(
                at("executor_id"),
                format!("{:?} is not this executor ({})", e.value, exec.1),
            ));
        }
    }
    let mut status = TaskStatus::new(
        state,
        StatusSource::Executor,
        reason_from_mesos(s.reason, s.healthy),
        s.message.clone().unwrap_or_default(),
    );
    status.uuid = uuid;
    if let Some(t) = s.timestamp.filter(|t| t.is_finite() && *t > 0.0) {
        status.at_ms = (t * 1000.0) as u64;
    }
    Ok(StatusUpdate {
        agent_id: agent.clone(),
        framework_id: exec.0.clone(),
        task_id: task.clone(),
        status,
    })
}

fn duration(d: std::time::Duration) -> mesos::DurationInfo {
    mesos::DurationInfo {
        nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    }
}

fn command(shell: &str, env: &std::collections::BTreeMap<String, String>) -> mesos::CommandInfo {
    mesos::CommandInfo {
        value: Some(shell.to_string()),
        shell: Some(true),
        environment: (!env.is_empty()).then(|| mesos::Environment {
            variables: env
                .iter()
                .map(|(k, v)| mesos::environment::Variable {
                    name: k.clone(),
                    value: Some(v.clone()),
                    r#type: Some(mesos::environment::variable::Type::Value as i32),
                })
                .collect(),
        }),
        ..Default::default()
    }
}

/// An executor's `ExecutorInfo` as its framework gave it.
pub fn executor_info(spec: &ExecutorSpec, framework: &FrameworkId) -> mesos::ExecutorInfo {
    mesos::ExecutorInfo {
        r#type: Some(mesos::executor_info::Type::Custom as i32),
        executor_id: mesos::ExecutorId {
            value: spec.executor_id.to_string(),
        },
        framework_id: Some(mesos::FrameworkId {
            value: framework.to_string(),
        }),
        command: Some(command(&spec.shell, &spec.environment)),
        resources: drover_mesos::convert::resources_to_mesos(&spec.resources.to_proto(), None),
        name: (!spec.name.is_empty()).then(|| spec.name.clone()),
        data: (!spec.data.is_empty()).then(|| spec.data.clone()),
        shutdown_grace_period: spec
            .shutdown_grace_ms
            .map(|ms| duration(std::time::Duration::from_millis(ms))),
        ..Default::default()
    }
}

/// A task as its executor gets it in LAUNCH: its own resources (without its executor's).
pub fn task_info(task: &TaskSpec, framework: &FrameworkId, agent: &AgentId) -> mesos::TaskInfo {
    mesos::TaskInfo {
        name: task.name.clone(),
        task_id: mesos::TaskId {
            value: task.task_id.to_string(),
        },
        agent_id: mesos::AgentId {
            value: agent.to_string(),
        },
        resources: drover_mesos::convert::resources_to_mesos(
            &task.own_resources().to_proto(),
            None,
        ),
        executor: task.executor.as_ref().map(|e| executor_info(e, framework)),
        data: (!task.data.is_empty()).then(|| task.data.clone()),
        kill_policy: task.kill_grace_ms.map(|ms| mesos::KillPolicy {
            grace_period: Some(duration(std::time::Duration::from_millis(ms))),
        }),
        ..Default::default()
    }
}

pub fn heartbeat() -> Event {
    Event {
        r#type: Some(event::Type::Heartbeat as i32),
        ..Default::default()
    }
}

/// SUBSCRIBED: the executor, its framework (its id exactly `{"value": …}`: pymesos compares
/// them as dicts), the agent and the run.
pub fn subscribed(
    run: &SubscribedRun,
    framework: &FrameworkId,
    hostname: &str,
    port: u16,
) -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            executor_info: executor_info(&run.spec, framework),
            framework_info: mesos::FrameworkInfo {
                user: std::env::var("USER").unwrap_or_default(),
                name: run.framework_name.clone(),
                id: Some(mesos::FrameworkId {
                    value: framework.to_string(),
                }),
                checkpoint: Some(true),
                ..Default::default()
            },
            agent_info: mesos::AgentInfo {
                hostname: hostname.to_string(),
                port: Some(i32::from(port)),
                id: Some(mesos::AgentId {
                    value: run.agent_id.to_string(),
                }),
                ..Default::default()
            },
            container_id: Some(mesos::ContainerId {
                value: run.container_id.clone(),
                parent: None,
            }),
        }),
        ..Default::default()
    }
}

/// One event of the task table's for a subscribed executor.
pub fn event(e: &ToCustom, cx: &StreamContext) -> Event {
    match e {
        ToCustom::Launch(task) => Event {
            r#type: Some(event::Type::Launch as i32),
            launch: Some(event::Launch {
                task: task_info(task, &cx.framework, &cx.agent),
            }),
            ..Default::default()
        },
        ToCustom::LaunchGroup(tasks) => Event {
            r#type: Some(event::Type::LaunchGroup as i32),
            launch_group: Some(event::LaunchGroup {
                task_group: mesos::TaskGroupInfo {
                    tasks: tasks
                        .iter()
                        .map(|t| task_info(t, &cx.framework, &cx.agent))
                        .collect(),
                },
            }),
            ..Default::default()
        },
        ToCustom::Kill { task, grace } => Event {
            r#type: Some(event::Type::Kill as i32),
            kill: Some(event::Kill {
                task_id: mesos::TaskId {
                    value: task.to_string(),
                },
                kill_policy: Some(mesos::KillPolicy {
                    grace_period: Some(duration(*grace)),
                }),
            }),
            ..Default::default()
        },
        ToCustom::Acknowledged { task, uuid } => Event {
            r#type: Some(event::Type::Acknowledged as i32),
            acknowledged: Some(event::Acknowledged {
                task_id: mesos::TaskId {
                    value: task.to_string(),
                },
                uuid: uuid.as_bytes().to_vec(),
            }),
            ..Default::default()
        },
        ToCustom::Message(data) => Event {
            r#type: Some(event::Type::Message as i32),
            message: Some(event::Message { data: data.clone() }),
            ..Default::default()
        },
        ToCustom::Shutdown => Event {
            r#type: Some(event::Type::Shutdown as i32),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ExecKey {
        (
            FrameworkId::new("f1").unwrap(),
            ExecutorId::new("e1").unwrap(),
        )
    }

    /// pymesos's UPDATE as it sends it: an integer timestamp, a base64 uuid, no agent id.
    const PYMESOS_UPDATE: &str = r#"{"type": "UPDATE", "executor_id": {"value": "e1"},
        "framework_id": {"value": "f1"}, "update": {"status": {"task_id": {"value": "t1"},
        "state": "TASK_RUNNING", "timestamp": 1700000000, "uuid": "AAECAwQFBgcICQoLDA0ODw==",
        "source": "SOURCE_EXECUTOR"}}}"#;

    fn pymesos_status() -> mesos::TaskStatus {
        let call: Call = drover_mesos::from_json(PYMESOS_UPDATE.as_bytes()).expect("decodes");
        assert_eq!(exec_key(&call).unwrap(), key());
        call.update.expect("update").status
    }

    fn convert(s: &mesos::TaskStatus) -> Result<StatusUpdate, Refused> {
        status_from_mesos(
            s,
            &key(),
            &TaskId::new("t1").unwrap(),
            &AgentId::new("a1").unwrap(),
        )
    }

    #[test]
    fn pymesos_s_update_converts_with_its_own_uuid() {
        let u = convert(&pymesos_status()).expect("accepted");
        assert_eq!(
            u.status.uuid.as_bytes(),
            &core::array::from_fn::<u8, 16, _>(|i| i as u8)
        );
        assert_eq!(u.status.state, TaskState::Running);
        assert_eq!(u.status.source, StatusSource::Executor);
        assert_eq!(u.status.at_ms, 1_700_000_000_000);
        assert_eq!(u.agent_id.as_str(), "a1");
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |s: mesos::TaskStatus| convert(&s).expect_err("refused").field;
        let mut s = pymesos_status();
        s.uuid = Some(vec![1; 15]);
        assert_eq!(field(s), "update.status.uuid");
        let mut s = pymesos_status();
        s.uuid = None;
        assert_eq!(field(s), "update.status.uuid");
        let mut s = pymesos_status();
        s.state = mesos::TaskState::TaskStaging as i32;
        assert_eq!(field(s), "update.status.state");
        let mut s = pymesos_status();
        s.source = Some(mesos::task_status::Source::Agent as i32);
        assert_eq!(field(s), "update.status.source");
        let mut s = pymesos_status();
        s.executor_id = Some(mesos::ExecutorId { value: "e2".into() });
        assert_eq!(field(s), "update.status.executor_id");
        let call: Call = drover_mesos::from_json(
            br#"{"type":"HEARTBEAT","executor_id":{"value":".."},"framework_id":{"value":"f1"}}"#,
        )
        .expect("decodes");
        assert_eq!(exec_key(&call).expect_err("refused").field, "executor_id");
    }

    #[test]
    fn reasons_map_both_ways_of_health() {
        use drover_model::health::{REASON_HEALTHY, REASON_UNHEALTHY};
        use mesos::task_status::Reason;
        let health = Some(Reason::TaskHealthCheckStatusUpdated as i32);
        assert_eq!(reason_from_mesos(health, Some(true)), REASON_HEALTHY);
        assert_eq!(reason_from_mesos(health, Some(false)), REASON_UNHEALTHY);
        assert_eq!(
            reason_from_mesos(Some(Reason::ExecutorTerminated as i32), None),
            "executor_terminated"
        );
        assert_eq!(reason_from_mesos(None, None), "");
    }

    #[test]
    fn subscribed_names_the_ids_exactly() {
        let run = SubscribedRun {
            agent_id: AgentId::new("a1").unwrap(),
            framework_name: "fw".into(),
            spec: ExecutorSpec {
                executor_id: ExecutorId::new("e1").unwrap(),
                name: String::new(),
                shell: "python3 exec.py".into(),
                environment: Default::default(),
                resources: "cpus:0.1;mem:32".parse().unwrap(),
                shutdown_grace_ms: None,
                data: vec![],
                charged: true,
                user: String::new(),
            },
            container_id: "c1".into(),
        };
        let e = subscribed(&run, &FrameworkId::new("f1").unwrap(), "host", 5051);
        let json: serde_json::Value =
            serde_json::from_slice(&drover_mesos::to_ascii_json(&e)).expect("json");
        assert_eq!(json["type"], "SUBSCRIBED");
        let s = &json["subscribed"];
        assert_eq!(
            s["executor_info"]["executor_id"],
            serde_json::json!({"value": "e1"})
        );
        assert_eq!(
            s["framework_info"]["id"],
            serde_json::json!({"value": "f1"})
        );
        assert_eq!(s["executor_info"]["type"], "CUSTOM");
        assert_eq!(s["executor_info"]["command"]["value"], "python3 exec.py");
        assert_eq!(s["agent_info"]["id"], serde_json::json!({"value": "a1"}));
        assert_eq!(s["container_id"], serde_json::json!({"value": "c1"}));
    }
}
