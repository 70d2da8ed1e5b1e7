//! Agent lifecycle in the registry: registration and re-registration with the agent's task
//! report, UNREACHABLE, DRAINING and GONE, and the status updates the master makes for an
//! agent's tasks on the way (DESIGN.md, "Status updates and failover").
//!
//! Owns the reconciliation rules, as Mesos 1.x keeps them:
//!
//! - **Re-registration** (the agent reports every task it has that is live, or whose updates
//!   the master has not acknowledged yet). A live task the registry has on the agent and the
//!   agent does not report: STAGING means its RunTask has not arrived yet (the leader sends it
//!   again); any later state means the agent lost it: TASK_LOST (TASK_DROPPED for a
//!   partition-aware framework), reason `task_unknown_to_agent`. An UNREACHABLE task the agent
//!   reports RUNNING (or KILLING) comes back in that state, reason `agent_reregistered`. A
//!   live task the agent reports and the registry does not have live on it (unknown, ended,
//!   on another agent, or of a torn-down framework) is to be killed.
//! - **UNREACHABLE** (missed heartbeats, no re-registration after a leader change): the
//!   agent's live tasks become TASK_UNREACHABLE for partition-aware frameworks (their resources
//!   stay held: the tasks may be running) and TASK_LOST for the others (a LOST task that turns
//!   up again is killed when its agent re-registers).
//! - **GONE** (removal timeout, or an operator): the live tasks end as TASK_GONE
//!   (TASK_GONE_BY_OPERATOR) for partition-aware frameworks, TASK_LOST for the others. A GONE
//!   agent never comes back under its id: its registration is refused.
//! - **DRAINING** (operator): no offers; the tasks are left to the leader, which kills them
//!   (a STAGING task a draining agent does not have is not launched again: it is
//!   `TASK_DROPPED`/`TASK_LOST`). The agent stays draining whenever it is reachable, across a
//!   partition or a leader change, until an operator makes it ACTIVE again. An UNREACHABLE
//!   agent becomes ACTIVE (or DRAINING, or DEACTIVATED) only by registering.
//! - **DEACTIVATED** (operator, Mesos's DEACTIVATE_AGENT): no offers, its outstanding ones
//!   removed; its tasks are left as they are. Remembered as draining is, until an operator
//!   reactivates it (or drains it: draining goes further). Deactivating a draining agent
//!   changes nothing: it is deactivated already, and its kills go on.
//! - **Stale decisions** are refused: an UNREACHABLE decided by the leader names the moment the
//!   agent entered the state it saw, and does nothing if a registration committed meanwhile.
//! - **A truncated report** (more tasks than a registration may carry) never makes a missing
//!   task lost: only the reported tasks are reconciled.
//!
//! Every update made here has a uuid derived from the operation's [`Stamp`], so that each
//! replica records the same one and the framework acknowledges it like any other.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{
    AgentRecord, AgentState, ClusterError, ClusterOutcome, ClusterState, MasterUpdate, Stamp,
    StatusSource, TaskKey, TaskStatus,
};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::registry::TaskState;

pub use drover_proto::agent_api::MAX_REPORTED_TASKS;

/// A task an agent reports having when it registers, in the state it knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedTask {
    pub framework: FrameworkId,
    pub task: TaskId,
    pub state: TaskState,
}

/// Reasons on the updates made here (the `reason` field frameworks see).
pub mod reason {
    pub const TASK_UNKNOWN_TO_AGENT: &str = "task_unknown_to_agent";
    pub const AGENT_REREGISTERED: &str = "agent_reregistered";
    pub const AGENT_UNREACHABLE: &str = "agent_unreachable";
    pub const AGENT_REMOVED: &str = "agent_removed";
    pub const AGENT_REMOVED_BY_OPERATOR: &str = "agent_removed_by_operator";
}

impl ClusterState {
    fn partition_aware(&self, framework: &FrameworkId) -> bool {
        self.frameworks
            .get(framework)
            .is_some_and(|f| f.partition_aware)
    }

    fn live_keys_on(&self, agent: &AgentId) -> Vec<TaskKey> {
        self.live
            .get(agent)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes and records a master update moving the task at `key` to `state`, if that move is
    /// legal; returns it for the leader to forward.
    fn master_update(
        &mut self,
        key: &TaskKey,
        state: TaskState,
        reason: &str,
        message: String,
        stamp: &Stamp,
    ) -> Option<MasterUpdate> {
        let t = self.tasks.get(key)?;
        let next = t.state.transition(state).ok()?;
        let agent = t.agent.clone();
        let update = TaskStatus {
            uuid: stamp.uuid_for(&key.0, &key.1),
            state,
            source: StatusSource::Master,
            reason: reason.to_string(),
            message,
            exit_code: None,
            signal: None,
            at_ms: stamp.now_ms,
        };
        let released = self.record(key, next, update.clone());
        Some(MasterUpdate {
            framework: key.0.clone(),
            task: key.1.clone(),
            agent,
            update,
            released,
        })
    }

    pub(super) fn register_agent(
        &mut self,
        a: &AgentRecord,
        report: Option<&[ReportedTask]>,
        truncated: bool,
        stamp: &Stamp,
    ) -> Result<ClusterOutcome, ClusterError> {
        let known = self.agents.get(&a.id).map(|k| (k.state, k.draining));
        if known.is_some_and(|(s, _)| s == AgentState::Gone) {
            return Err(ClusterError::AgentGone(a.id.clone()));
        }
        let draining = known.is_some_and(|(_, d)| d);
        let deactivated = self.deactivated.contains(&a.id);
        // Worked out on a copy (O(1)), kept only if nothing is refused.
        let mut next = self.clone();
        let removed = next.remove_offers(&next.offers_on(&a.id));
        let mut record = a.clone();
        record.state_since_ms = stamp.now_ms;
        record.draining = draining;
        if draining {
            record.state = AgentState::Draining;
        } else if deactivated {
            record.state = AgentState::Deactivated;
        }
        next.agents.insert(a.id.clone(), record);
        let (mut updates, mut relaunch, mut kill) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(report) = report {
            let reported: HashMap<TaskKey, TaskState> = report
                .iter()
                .map(|r| ((r.framework.clone(), r.task.clone()), r.state))
                .collect();
            for key in next.live_keys_on(&a.id) {
                let Some(state) = next.tasks.get(&key).map(|t| t.state) else {
                    continue;
                };
                let made = match (reported.get(&key), state) {
                    (None, _) if truncated => None,
                    (None, TaskState::Staging) if !draining => {
                        if let Some(t) = next.tasks.get(&key) {
                            relaunch.push((key.0.clone(), t.spec.clone()));
                        }
                        None
                    }
                    (None, _) => {
                        let to = if next.partition_aware(&key.0) {
                            TaskState::Dropped
                        } else {
                            TaskState::Lost
                        };
                        let message = format!(
                            "agent {} re-registered without this task (it restarted and lost it, or its executor is gone)",
                            a.id
                        );
                        next.master_update(&key, to, reason::TASK_UNKNOWN_TO_AGENT, message, stamp)
                    }
                    (
                        Some(r @ (TaskState::Running | TaskState::Killing)),
                        TaskState::Unreachable,
                    ) => {
                        let message = format!("agent {} is reachable again", a.id);
                        next.master_update(&key, *r, reason::AGENT_REREGISTERED, message, stamp)
                    }
                    (Some(_), _) => None,
                };
                updates.extend(made);
            }
            for r in report.iter().filter(|r| !r.state.is_terminal()) {
                let key = (r.framework.clone(), r.task.clone());
                let runs_here = next
                    .tasks
                    .get(&key)
                    .is_some_and(|t| t.agent == a.id && !t.state.is_terminal());
                let torn_down = next
                    .frameworks
                    .get(&r.framework)
                    .is_none_or(|f| f.torn_down);
                if !runs_here || torn_down {
                    kill.push(key);
                }
            }
        }
        let live = next.committed_on(&a.id);
        if !a.total.contains(&live) {
            return Err(ClusterError::ShrunkBelowTasks {
                agent: a.id.clone(),
                total: a.total.to_string(),
                live: live.to_string(),
            });
        }
        *self = next;
        Ok(ClusterOutcome::AgentRegistered {
            removed,
            updates,
            relaunch,
            kill,
        })
    }

    pub(super) fn set_agent_state(
        &mut self,
        agent: &AgentId,
        to: AgentState,
        by_operator: bool,
        stamp: &Stamp,
    ) -> Result<ClusterOutcome, ClusterError> {
        let from = self
            .agents
            .get(agent)
            .ok_or_else(|| ClusterError::UnknownAgent(agent.clone()))?
            .state;
        let unchanged = Ok(ClusterOutcome::AgentStateSet {
            removed: Vec::new(),
            updates: Vec::new(),
        });
        let legal = match (from, to) {
            (AgentState::Gone, _) => return Err(ClusterError::AgentGone(agent.clone())),
            (f, t) if f == t => return unchanged,
            // A draining agent is deactivated already.
            (AgentState::Draining, AgentState::Deactivated) => return unchanged,
            (_, AgentState::Gone)
            | (AgentState::Active | AgentState::Draining, AgentState::Unreachable)
            | (AgentState::Deactivated, AgentState::Unreachable)
            | (AgentState::Active, AgentState::Draining | AgentState::Deactivated)
            | (AgentState::Deactivated, AgentState::Draining | AgentState::Active)
            | (AgentState::Draining, AgentState::Active) => true,
            _ => false,
        };
        if !legal {
            return Err(ClusterError::AgentTransition {
                agent: agent.clone(),
                from,
                to,
            });
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.state = to;
            a.state_since_ms = stamp.now_ms;
            match to {
                AgentState::Draining => a.draining = true,
                AgentState::Active => a.draining = false,
                _ => {}
            }
        }
        match to {
            AgentState::Deactivated => {
                self.deactivated.insert(agent.clone());
            }
            AgentState::Active | AgentState::Draining | AgentState::Gone => {
                self.deactivated.remove(agent);
            }
            AgentState::Unreachable => {}
        }
        let removed = if to == AgentState::Active {
            Vec::new()
        } else {
            self.remove_offers(&self.offers_on(agent))
        };
        let mut updates = Vec::new();
        for key in self.live_keys_on(agent) {
            let aware = self.partition_aware(&key.0);
            if self.tasks.get(&key).map(|t| t.state) == Some(TaskState::Unreachable)
                && to == AgentState::Unreachable
            {
                continue;
            }
            let (state, why, message) = match (to, aware) {
                (AgentState::Unreachable, true) => (
                    TaskState::Unreachable,
                    reason::AGENT_UNREACHABLE,
                    format!("agent {agent} is unreachable; the task may still be running"),
                ),
                (AgentState::Unreachable, false) => (
                    TaskState::Lost,
                    reason::AGENT_UNREACHABLE,
                    format!(
                        "agent {agent} is unreachable; the task will be killed if it comes back"
                    ),
                ),
                (AgentState::Gone, true) if by_operator => (
                    TaskState::GoneByOperator,
                    reason::AGENT_REMOVED_BY_OPERATOR,
                    format!("agent {agent} was removed by an operator"),
                ),
                (AgentState::Gone, true) => (
                    TaskState::Gone,
                    reason::AGENT_REMOVED,
                    format!("agent {agent} stayed unreachable past its removal timeout"),
                ),
                (AgentState::Gone, false) => (
                    TaskState::Lost,
                    if by_operator {
                        reason::AGENT_REMOVED_BY_OPERATOR
                    } else {
                        reason::AGENT_REMOVED
                    },
                    format!("agent {agent} was removed"),
                ),
                _ => continue,
            };
            updates.extend(self.master_update(&key, state, why, message, stamp));
        }
        Ok(ClusterOutcome::AgentStateSet { removed, updates })
    }
}
