//! What `/v2` answers about apps and tasks: [`AppView`] and [`TaskView`], with only the keys
//! Marathon writes.
//!
//! Some Marathon clients build objects with `cls(**fields)` and fail on any key they do not
//! know (marathon-python does, see `scheduler/MARATHON.md` §3.7), so these types are the
//! whole of what goes out: an app is its definition plus Marathon's counts, deployments and
//! version info (and, when asked for, its tasks and last failure); a task carries Marathon's
//! task keys and no others.

use serde::Serialize;

use super::app::AppDefinition;
use super::time::Timestamp;

/// A deployment an app is part of, as an app names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeploymentRef {
    pub id: String,
}

/// When an app last changed, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub last_scaling_at: Timestamp,
    pub last_config_change_at: Timestamp,
}

/// An app's tasks by where they are in their life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    pub tasks_staged: u32,
    pub tasks_running: u32,
    pub tasks_healthy: u32,
    pub tasks_unhealthy: u32,
}

/// The last task of an app that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailure {
    pub app_id: String,
    pub task_id: String,
    pub host: String,
    pub slave_id: String,
    pub state: String,
    pub message: String,
    pub timestamp: Timestamp,
    pub version: Timestamp,
}

/// An app as `/v2/apps` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    #[serde(flatten)]
    pub app: AppDefinition,
    #[serde(flatten)]
    pub counts: TaskCounts,
    pub deployments: Vec<DeploymentRef>,
    pub version_info: VersionInfo,
    /// With `embed=apps.tasks`, and always on `GET /v2/apps/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_task_failure: Option<TaskFailure>,
}

/// One address of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: String,
    pub protocol: String,
}

/// The latest result of one health check of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    pub alive: bool,
    pub consecutive_failures: u32,
    pub first_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    pub last_failure_cause: Option<String>,
    pub instance_id: String,
}

/// A task as `/v2/tasks` and `/v2/apps/{id}/tasks` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub app_id: String,
    pub host: String,
    pub slave_id: String,
    /// A Mesos state name (`TASK_RUNNING`).
    pub state: String,
    pub staged_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub version: Timestamp,
    pub ports: Vec<u64>,
    /// At least as many as `ports` (clients index one by the other).
    pub service_ports: Vec<u64>,
    pub ip_addresses: Vec<IpAddress>,
    pub health_check_results: Vec<HealthCheckResult>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::marathon::app::parse_app;

    /// The keys marathon-python 0.13.0's `MarathonApp` accepts (MARATHON.md §3.7).
    const APP_KEYS: &[&str] = &[
        "acceptedResourceRoles",
        "args",
        "backoffFactor",
        "backoffSeconds",
        "cmd",
        "constraints",
        "container",
        "cpus",
        "dependencies",
        "deployments",
        "disk",
        "env",
        "executor",
        "healthChecks",
        "id",
        "role",
        "instances",
        "killSelection",
        "labels",
        "lastTaskFailure",
        "maxLaunchDelaySeconds",
        "mem",
        "ports",
        "requirePorts",
        "storeUrls",
        "taskRateLimit",
        "tasks",
        "tasksRunning",
        "tasksStaged",
        "tasksHealthy",
        "taskKillGracePeriodSeconds",
        "tasksUnhealthy",
        "upgradeStrategy",
        "unreachableStrategy",
        "uris",
        "user",
        "version",
        "versionInfo",
        "ipAddress",
        "fetch",
        "taskStats",
        "readinessChecks",
        "readinessCheckResults",
        "secrets",
        "portDefinitions",
        "residency",
        "gpus",
        "networks",
    ];
    /// The keys its `MarathonTask` accepts.
    const TASK_KEYS: &[&str] = &[
        "appId",
        "healthCheckResults",
        "host",
        "id",
        "ports",
        "servicePorts",
        "slaveId",
        "stagedAt",
        "startedAt",
        "version",
        "ipAddresses",
        "state",
        "localVolumes",
        "region",
        "zone",
        "role",
    ];
    /// Its `MarathonTaskFailure`'s and `MarathonHealthCheckResult`'s.
    const FAILURE_KEYS: &[&str] = &[
        "appId",
        "host",
        "message",
        "taskId",
        "instanceId",
        "slaveId",
        "state",
        "timestamp",
        "version",
    ];
    const RESULT_KEYS: &[&str] = &[
        "alive",
        "consecutiveFailures",
        "firstSuccess",
        "lastFailure",
        "lastSuccess",
        "taskId",
        "lastFailureCause",
        "instanceId",
    ];

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    fn only(v: &Value, allowed: &[&str]) {
        let extra: Vec<String> = keys(v)
            .into_iter()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "keys a Marathon client refuses: {extra:?} in {v}"
        );
    }

    fn task() -> TaskView {
        TaskView {
            id: "web.instance-1._app.1".into(),
            app_id: "/web".into(),
            host: "h1".into(),
            slave_id: "a1".into(),
            state: "TASK_RUNNING".into(),
            staged_at: Some(Timestamp(1)),
            started_at: None,
            version: Timestamp(0),
            ports: vec![31000],
            service_ports: vec![10000],
            ip_addresses: vec![IpAddress {
                ip_address: "127.0.0.1".into(),
                protocol: "IPv4".into(),
            }],
            health_check_results: vec![HealthCheckResult {
                alive: true,
                consecutive_failures: 0,
                first_success: Some(Timestamp(2)),
                last_failure: None,
                last_success: Some(Timestamp(3)),
                last_failure_cause: None,
                instance_id: "web.instance-1".into(),
            }],
        }
    }

    #[test]
    fn apps_and_tasks_carry_only_marathons_keys() {
        let body = r#"{"id": "/web", "cmd": "x", "constraints": [["hostname", "UNIQUE"]],
            "healthChecks": [{"protocol": "TCP"}], "labels": {"a": "b"}, "env": {"A": "1"},
            "taskKillGracePeriodSeconds": 3, "user": "nobody", "role": "web"}"#;
        let app = parse_app(body.as_bytes()).unwrap();
        let view = AppView {
            app,
            counts: TaskCounts {
                tasks_running: 1,
                ..TaskCounts::default()
            },
            deployments: vec![DeploymentRef { id: "d1".into() }],
            version_info: VersionInfo {
                last_scaling_at: Timestamp(0),
                last_config_change_at: Timestamp(0),
            },
            tasks: Some(vec![task()]),
            last_task_failure: Some(TaskFailure {
                app_id: "/web".into(),
                task_id: "t".into(),
                host: "h1".into(),
                slave_id: "a1".into(),
                state: "TASK_FAILED".into(),
                message: "exited with status 1".into(),
                timestamp: Timestamp(5),
                version: Timestamp(0),
            }),
        };
        let json = serde_json::to_value(&view).unwrap();
        only(&json, APP_KEYS);
        for k in [
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "version",
            "versionInfo",
        ] {
            assert!(json.get(k).is_some(), "an app always carries {k}: {json}");
        }
        assert_eq!(json["tasksRunning"], 1);
        assert_eq!(
            json["versionInfo"]["lastScalingAt"],
            "1970-01-01T00:00:00.000Z"
        );
        only(&json["tasks"][0], TASK_KEYS);
        only(&json["tasks"][0]["healthCheckResults"][0], RESULT_KEYS);
        only(&json["lastTaskFailure"], FAILURE_KEYS);
        assert_eq!(json["tasks"][0]["startedAt"], Value::Null);
    }
}
