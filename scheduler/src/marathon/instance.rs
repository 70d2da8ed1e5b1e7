//! Instances: the slots of an app that the scheduler keeps a task running in, and the record
//! of each that the framework store holds.
//!
//! Owns the id scheme (Marathon's, `scheduler/MARATHON.md` §4.3): an instance is
//! `<safe app id>.instance-<uuid>`, and the n-th task launched for it is
//! `<instance id>._app.<n>`, so a task id names its instance and its incarnation. An instance
//! is relaunched (incarnation n + 1) only after its task n is known to have ended, and its
//! record, naming task n, is in the store before task n is launched: whoever takes the
//! scheduler over finds every task that may exist, so a slot never runs two tasks.

use drover_resources::Attributes;
use serde::{Deserialize, Serialize};

use super::path::PathId;
use super::time::Timestamp;
use crate::driver::{AgentId, TaskId};

/// `<safe app id>.instance-<uuid>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(String);

/// What separates an instance id from the incarnation in a task id.
const INCARNATION_MARK: &str = "._app.";
const INSTANCE_MARK: &str = ".instance-";

impl InstanceId {
    /// A new instance of `app`.
    pub fn new(app: &PathId) -> InstanceId {
        InstanceId(format!(
            "{}{INSTANCE_MARK}{}",
            app.safe(),
            uuid::Uuid::new_v4()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of its `incarnation`-th task (from 1).
    pub fn task_id(&self, incarnation: u32) -> TaskId {
        TaskId::new(format!("{}{INCARNATION_MARK}{incarnation}", self.0))
    }

    /// The instance and incarnation a task id names, if it is one of this scheme's.
    pub fn of_task(task: &str) -> Option<(InstanceId, u32)> {
        let (instance, n) = task.rsplit_once(INCARNATION_MARK)?;
        let n: u32 = n.parse().ok()?;
        if n == 0 || !instance.contains(INSTANCE_MARK) {
            return None;
        }
        Some((InstanceId(instance.to_string()), n))
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the scheduler wants of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Goal {
    /// Keep a task running in it.
    Running,
    /// Kill its task and forget it (scaled down, replaced, its app deleted).
    Stopped,
}

/// Where an instance's task was placed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub agent_id: AgentIdText,
    pub hostname: String,
    pub attributes: Attributes,
    /// Host ports, one per port definition of the app.
    pub ports: Vec<u64>,
}

/// An agent id as stored (the driver's [`AgentId`] is not serialisable).
pub type AgentIdText = String;

impl Placed {
    pub fn agent(&self) -> AgentId {
        AgentId::new(self.agent_id.clone())
    }
}

/// Where an instance is in its life: Marathon's instance conditions (the ones `/v2` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Waits for an offer; no task yet (or its last task ended and it is to be relaunched).
    Scheduled,
    /// The task is chosen and recorded; ACCEPT sent or about to be.
    Provisioned,
    Staging,
    Starting,
    Running,
    Killing,
    /// Its agent is unreachable; the task may still run.
    Unreachable,
    /// Unreachable longer than the app's `inactiveAfterSeconds`: replaced, still known.
    UnreachableInactive,
    Finished,
    Failed,
    Killed,
    Error,
    Gone,
    Dropped,
    Lost,
    Unknown,
}

impl Condition {
    /// Whether the instance's task has ended (or was never launched).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Condition::Finished
                | Condition::Failed
                | Condition::Killed
                | Condition::Error
                | Condition::Gone
                | Condition::Dropped
                | Condition::Lost
                | Condition::Unknown
        )
    }

    /// Whether a task of the instance may be alive on an agent.
    pub fn may_run(self) -> bool {
        !self.is_terminal() && self != Condition::Scheduled
    }

    /// The Mesos state name `/v2` shows for the task.
    pub fn mesos_state(self) -> &'static str {
        match self {
            Condition::Scheduled | Condition::Provisioned | Condition::Staging => "TASK_STAGING",
            Condition::Starting => "TASK_STARTING",
            Condition::Running => "TASK_RUNNING",
            Condition::Killing => "TASK_KILLING",
            Condition::Unreachable | Condition::UnreachableInactive => "TASK_UNREACHABLE",
            Condition::Finished => "TASK_FINISHED",
            Condition::Failed => "TASK_FAILED",
            Condition::Killed => "TASK_KILLED",
            Condition::Error => "TASK_ERROR",
            Condition::Gone => "TASK_GONE",
            Condition::Dropped => "TASK_DROPPED",
            Condition::Lost => "TASK_LOST",
            Condition::Unknown => "TASK_UNKNOWN",
        }
    }

    /// The condition a task state puts an instance in.
    pub fn of_state(state: drover_proto::v1::TaskState) -> Condition {
        use drover_proto::v1::TaskState as S;
        match state {
            S::TaskStaging => Condition::Staging,
            S::TaskStarting => Condition::Starting,
            S::TaskRunning => Condition::Running,
            S::TaskKilling => Condition::Killing,
            S::TaskUnreachable => Condition::Unreachable,
            S::TaskFinished => Condition::Finished,
            S::TaskFailed => Condition::Failed,
            S::TaskKilled => Condition::Killed,
            S::TaskError => Condition::Error,
            S::TaskGone | S::TaskGoneByOperator => Condition::Gone,
            S::TaskDropped => Condition::Dropped,
            S::TaskLost => Condition::Lost,
            S::TaskUnknown | S::Unspecified => Condition::Unknown,
        }
    }

    /// Marathon's name for the condition (`instance_changed_event`).
    pub fn name(self) -> &'static str {
        match self {
            Condition::Scheduled => "Scheduled",
            Condition::Provisioned => "Provisioned",
            Condition::Staging => "Staging",
            Condition::Starting => "Starting",
            Condition::Running => "Running",
            Condition::Killing => "Killing",
            Condition::Unreachable => "Unreachable",
            Condition::UnreachableInactive => "UnreachableInactive",
            Condition::Finished => "Finished",
            Condition::Failed => "Failed",
            Condition::Killed => "Killed",
            Condition::Error => "Error",
            Condition::Gone => "Gone",
            Condition::Dropped => "Dropped",
            Condition::Lost => "Lost",
            Condition::Unknown => "Unknown",
        }
    }
}

/// One instance, as the scheduler keeps it and the store records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub app_id: PathId,
    /// The app's configuration version (`lastConfigChangeAt`) its task runs.
    pub version: Timestamp,
    /// The number of its current (or last) task; 0 before the first launch.
    pub incarnation: u32,
    pub goal: Goal,
    pub condition: Condition,
    /// Where its current task runs, once placed.
    pub placed: Option<Placed>,
    pub staged_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    /// Since when its agent is unreachable, ms since the epoch.
    pub unreachable_since_ms: Option<u64>,
}

impl Instance {
    /// A new instance of `app_id` at configuration `version`, waiting for an offer.
    pub fn scheduled(app_id: &PathId, version: Timestamp) -> Instance {
        Instance {
            id: InstanceId::new(app_id),
            app_id: app_id.clone(),
            version,
            incarnation: 0,
            goal: Goal::Running,
            condition: Condition::Scheduled,
            placed: None,
            staged_at: None,
            started_at: None,
            unreachable_since_ms: None,
        }
    }

    /// Its current task, once one was chosen.
    pub fn task_id(&self) -> Option<TaskId> {
        (self.incarnation > 0).then(|| self.id.task_id(self.incarnation))
    }

    /// The host its current task was placed on ("" before it was placed).
    pub fn host(&self) -> &str {
        self.placed.as_ref().map_or("", |p| p.hostname.as_str())
    }

    /// The host ports of its current task (none before it was placed).
    pub fn ports(&self) -> &[u64] {
        self.placed.as_ref().map_or(&[], |p| p.ports.as_slice())
    }

    /// Whether it counts toward its app's instances: wanted, and not given up on.
    pub fn counts(&self) -> bool {
        self.goal == Goal::Running && self.condition != Condition::UnreachableInactive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_name_their_instance_and_incarnation() {
        let app = PathId::parse("/prod/web").unwrap();
        let id = InstanceId::new(&app);
        assert!(id.as_str().starts_with("prod_web.instance-"), "{id}");
        let task = id.task_id(3);
        assert!(task.as_str().ends_with("._app.3"));
        assert_eq!(InstanceId::of_task(task.as_str()), Some((id.clone(), 3)));
        for bad in [
            "prod_web.instance-x._app.0",
            "prod_web.instance-x._app.",
            "prod_web.instance-x",
            "other._app.1",
            "prod_web.instance-x._app.1x",
        ] {
            assert_eq!(InstanceId::of_task(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip_through_json() {
        let app = PathId::parse("/a").unwrap();
        let mut i = Instance::scheduled(&app, Timestamp(5));
        i.incarnation = 2;
        i.condition = Condition::Running;
        i.placed = Some(Placed {
            agent_id: "agent-1".into(),
            hostname: "h".into(),
            attributes: "rack:r1".parse().unwrap(),
            ports: vec![31000],
        });
        let json = serde_json::to_vec(&i).unwrap();
        assert_eq!(serde_json::from_slice::<Instance>(&json).unwrap(), i);
        assert_eq!(i.task_id().unwrap().as_str(), format!("{}._app.2", i.id));
    }
}
