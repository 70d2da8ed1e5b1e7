//! Recovery state on the leader: what makes the cluster converge after a leader change, an
//! agent restart or partition, or a framework failover (DESIGN.md, "Status updates and
//! failover"). All of it is rebuilt from the registry when a leadership starts
//! ([`super::rebuild`]); the rules that use it are in the operations:
//!
//! - **Agents to hear from.** A new leader waits for every agent that was up (ACTIVE or
//!   DRAINING) to register again with its task report ([`super::register_agent`]); their
//!   heartbeats are answered `reregister` until they do, and one not back within
//!   `agent_reregister_timeout` is marked UNREACHABLE ([`super::heartbeat`]).
//! - **Framework failover.** A framework without a stream is torn down once its failover
//!   timeout passes ([`super::teardown`]); a new leader gives every framework at least
//!   `agent_reregister_timeout` to subscribe again.
//! - **Reconciliation.** Answers about tasks on agents still awaited are held until the agent
//!   settles, and RECONCILE calls are rate-limited per framework ([`super::reconcile`]).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::ids::{AgentId, FrameworkId, TaskId};

/// Reconciliation answers held for agents not yet re-registered, in all; past it a task is
/// answered at once from the registry.
pub const MAX_DEFERRED: usize = 200_000;

/// The recovery part of the leader's soft state.
#[derive(Default)]
pub struct Recovery {
    /// Agents this leader waits for to register again, with the deadline.
    pub(super) awaiting: HashMap<AgentId, Instant>,
    /// When this leadership began, while agents are still awaited (for the metric).
    pub(super) reconciling_since: Option<Instant>,
    /// Frameworks without a stream, with the time their failover timeout ends.
    pub(super) disconnected: HashMap<FrameworkId, Instant>,
    /// Reconciliation answers held until the task's agent is settled (each task once; at most
    /// [`MAX_DEFERRED`] in all).
    pub(super) deferred: HashMap<AgentId, HashSet<(FrameworkId, TaskId)>>,
    pub(super) deferred_count: usize,
    /// Per framework: RECONCILE tokens left and when they were counted.
    pub(super) reconcile_tokens: HashMap<FrameworkId, (f64, Instant)>,
    /// Frameworks whose teardown for a failover timeout is in flight.
    pub(super) timing_out: HashSet<FrameworkId>,
}

impl Recovery {
    /// Whether the leader still waits for `agent` to register again.
    pub fn awaits(&self, agent: &AgentId) -> bool {
        self.awaiting.contains_key(agent)
    }
}
