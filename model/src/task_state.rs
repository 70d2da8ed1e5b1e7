//! Task states and the one function that decides which moves between them are legal.
//!
//! Owns the task lifecycle rule the whole system leans on (DESIGN.md invariant 2: states only
//! move forward, nothing leaves a terminal state). The registry applies a status update only
//! if [`TaskState::transition`] allows it; the agent, the scheduler driver and the chaos
//! checkers use the same states and the same rule.
//!
//! The states are Mesos's. Forward means: STAGING → STARTING → RUNNING → KILLING → a terminal
//! state, skipping allowed. UNREACHABLE (the agent is partitioned away) is the one detour: any
//! live state may become UNREACHABLE, and an UNREACHABLE task may come back as RUNNING or
//! KILLING when its agent re-registers (partition-aware frameworks, as Mesos 1.x), or end.
//! Repeating a live state (a second RUNNING, e.g. a health change) is allowed; repeating a
//! terminal one is not.

//!
//! Encoded, a state is its Mesos name (`TASK_RUNNING`) in text formats (the agent's JSON
//! checkpoints) and its position in the declaration in binary ones (the master's postcard
//! log and snapshots): the order below is part of the master's on-disk format.

use drover_proto::v1;
use serde::{Deserialize, Serialize};

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskState {
    /// Committed by ACCEPT; the agent has not reported it yet.
    #[serde(rename = "TASK_STAGING")]
    Staging,
    /// The executor is starting the command.
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    /// A kill was requested; the grace period is running.
    #[serde(rename = "TASK_KILLING")]
    Killing,
    /// The agent is unreachable; the task may still be running.
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    /// Exited with status 0.
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    /// Exited non-zero or was killed by a signal it was not asked to take.
    #[serde(rename = "TASK_FAILED")]
    Failed,
    /// Killed on request.
    #[serde(rename = "TASK_KILLED")]
    Killed,
    /// Its fate is unknown and it will not come back (executor or agent gone).
    #[serde(rename = "TASK_LOST")]
    Lost,
    /// The launch was invalid.
    #[serde(rename = "TASK_ERROR")]
    Error,
    /// Never started (the agent refused or lost it before starting).
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    /// Its agent was removed; it is certainly not running.
    #[serde(rename = "TASK_GONE")]
    Gone,
    /// Its agent was marked gone by an operator.
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
}

/// A refused status update: the move from `from` to `to` is not legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("illegal task state transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub from: TaskState,
    pub to: TaskState,
}

impl TaskState {
    /// Every state, in declaration order.
    pub const ALL: [TaskState; 13] = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
        TaskState::Unreachable,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Lost,
        TaskState::Error,
        TaskState::Dropped,
        TaskState::Gone,
        TaskState::GoneByOperator,
    ];

    /// Whether the task is over for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// Position on the forward path; UNREACHABLE is off it.
    fn rank(self) -> Option<u8> {
        match self {
            TaskState::Staging => Some(0),
            TaskState::Starting => Some(1),
            TaskState::Running => Some(2),
            TaskState::Killing => Some(3),
            TaskState::Unreachable => None,
            _ => Some(4),
        }
    }

    /// The state after an update to `to`, or why the update is refused.
    pub fn transition(self, to: TaskState) -> Result<TaskState, IllegalTransition> {
        let legal = if self.is_terminal() {
            false
        } else if to == TaskState::Unreachable || self == TaskState::Unreachable {
            // Into the detour from any live state; out of it to RUNNING, KILLING or an end.
            to == TaskState::Unreachable
                || matches!(to, TaskState::Running | TaskState::Killing)
                || to.is_terminal()
        } else {
            to.rank() >= self.rank()
        };
        if legal {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// The Mesos name, e.g. `TASK_RUNNING`.
    pub fn mesos_name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Lost => "TASK_LOST",
            TaskState::Error => "TASK_ERROR",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
        }
    }

    /// Short lowercase name, used as a metric label (`running`, `gone_by_operator`).
    pub fn label(self) -> &'static str {
        match self {
            TaskState::Staging => "staging",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Killing => "killing",
            TaskState::Unreachable => "unreachable",
            TaskState::Finished => "finished",
            TaskState::Failed => "failed",
            TaskState::Killed => "killed",
            TaskState::Lost => "lost",
            TaskState::Error => "error",
            TaskState::Dropped => "dropped",
            TaskState::Gone => "gone",
            TaskState::GoneByOperator => "gone_by_operator",
        }
    }

    /// The state named `name` (its Mesos name, e.g. `TASK_RUNNING`), if it is one.
    pub fn from_mesos_name(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.mesos_name() == name)
    }

    /// The wire state.
    pub fn to_proto(self) -> v1::TaskState {
        match self {
            TaskState::Staging => v1::TaskState::TaskStaging,
            TaskState::Starting => v1::TaskState::TaskStarting,
            TaskState::Running => v1::TaskState::TaskRunning,
            TaskState::Killing => v1::TaskState::TaskKilling,
            TaskState::Unreachable => v1::TaskState::TaskUnreachable,
            TaskState::Finished => v1::TaskState::TaskFinished,
            TaskState::Failed => v1::TaskState::TaskFailed,
            TaskState::Killed => v1::TaskState::TaskKilled,
            TaskState::Lost => v1::TaskState::TaskLost,
            TaskState::Error => v1::TaskState::TaskError,
            TaskState::Dropped => v1::TaskState::TaskDropped,
            TaskState::Gone => v1::TaskState::TaskGone,
            TaskState::GoneByOperator => v1::TaskState::TaskGoneByOperator,
        }
    }

    /// The state a wire state names; none for UNSPECIFIED and UNKNOWN (an answer about a task
    /// the master has no record of, never a state a task is in).
    pub fn from_proto(state: v1::TaskState) -> Option<TaskState> {
        Some(match state {
            v1::TaskState::TaskStaging => TaskState::Staging,
            v1::TaskState::TaskStarting => TaskState::Starting,
            v1::TaskState::TaskRunning => TaskState::Running,
            v1::TaskState::TaskKilling => TaskState::Killing,
            v1::TaskState::TaskUnreachable => TaskState::Unreachable,
            v1::TaskState::TaskFinished => TaskState::Finished,
            v1::TaskState::TaskFailed => TaskState::Failed,
            v1::TaskState::TaskKilled => TaskState::Killed,
            v1::TaskState::TaskLost => TaskState::Lost,
            v1::TaskState::TaskError => TaskState::Error,
            v1::TaskState::TaskDropped => TaskState::Dropped,
            v1::TaskState::TaskGone => TaskState::Gone,
            v1::TaskState::TaskGoneByOperator => TaskState::GoneByOperator,
            v1::TaskState::Unspecified | v1::TaskState::TaskUnknown => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::TaskState::*;
    use super::*;

    #[test]
    fn the_usual_lives_are_legal() {
        for path in [
            &[Staging, Starting, Running, Finished][..],
            &[Staging, Running, Running, Killing, Killed],
            &[Staging, Failed],
            &[Staging, Starting, Running, Unreachable, Running, Finished],
            &[Staging, Unreachable, Lost],
            &[Running, Unreachable, Unreachable, Gone],
        ] {
            let mut s = path[0];
            for &next in &path[1..] {
                s = s
                    .transition(next)
                    .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            }
        }
    }

    #[test]
    fn backwards_and_out_of_terminal_are_refused() {
        for (from, to) in [
            (Running, Starting),
            (Starting, Staging),
            (Killing, Running),
            (Finished, Running),
            (Finished, Finished),
            (Killed, Failed),
            (Lost, Unreachable),
            (Unreachable, Starting),
            (Unreachable, Staging),
        ] {
            assert_eq!(
                from.transition(to),
                Err(IllegalTransition { from, to }),
                "{from:?} -> {to:?}"
            );
        }
    }

    fn state() -> impl Strategy<Value = TaskState> {
        prop::sample::select(TaskState::ALL.to_vec())
    }

    proptest! {
        /// Whatever updates arrive, the states a task goes through never leave a terminal
        /// state and never step back on the forward path, except through UNREACHABLE.
        #[test]
        fn applied_histories_only_move_forward(updates in prop::collection::vec(state(), 0..40)) {
            let mut s = Staging;
            let mut history = vec![s];
            for u in updates {
                if let Ok(next) = s.transition(u) {
                    s = next;
                    history.push(s);
                }
            }
            for w in history.windows(2) {
                prop_assert!(!w[0].is_terminal(), "left terminal {:?}", w[0]);
                if let (Some(a), Some(b)) = (w[0].rank(), w[1].rank()) {
                    prop_assert!(b >= a, "{:?} -> {:?}", w[0], w[1]);
                }
            }
            // Coming back from UNREACHABLE never goes behind RUNNING.
            for w in history.windows(2) {
                if w[0] == Unreachable && w[1] != Unreachable {
                    prop_assert!(w[1].rank() >= Running.rank());
                }
            }
            let terminals = history.iter().filter(|s| s.is_terminal()).count();
            prop_assert!(terminals <= 1);
        }
    }

    #[test]
    fn every_state_round_trips_through_its_name_the_wire_and_json() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_mesos_name(s.mesos_name()), Some(s));
            assert_eq!(TaskState::from_proto(s.to_proto()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.mesos_name()));
            assert_eq!(serde_json::from_str::<TaskState>(&json).unwrap(), s);
        }
        assert_eq!(TaskState::from_mesos_name("TASK_UNKNOWN"), None);
        assert_eq!(TaskState::from_proto(v1::TaskState::TaskUnknown), None);
    }
}
