//! Rebuilding the leader's soft state from the registry when a leadership starts: the
//! allocator (frameworks, agents with what is allocated on them, role weights), offers'
//! expiry, agents awaited, frameworks' failover timers; launches and kills the previous leader
//! may not have delivered are sent again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use drover_proto::agent_api::MAX_TASKS_PER_RUN;
use drover_resources::Resources;

use super::{Engine, Rebuilt};
use crate::allocator::{Allocator, AllocatorConfig};
use crate::ids::{AgentId, FrameworkId};
use crate::metrics as m;
use crate::registry::cluster::{AgentState, ClusterState, TaskSpec};

pub(super) type Used = Vec<(FrameworkId, Resources)>;

/// What is allocated on every agent, by framework: outstanding offers and live tasks. One
/// pass over the registry (rebuilding after failover).
pub(super) fn used_by_agent(state: &ClusterState) -> HashMap<AgentId, Used> {
    let mut used: HashMap<AgentId, BTreeMap<FrameworkId, Resources>> = HashMap::new();
    let offers = state
        .offers()
        .map(|o| (&o.agent, &o.framework, &o.resources));
    let tasks = state
        .tasks()
        .filter(|t| !t.state.is_terminal())
        .map(|t| (&t.agent, &t.framework, &t.spec.resources));
    for (a, f, r) in offers.chain(tasks) {
        let e = used
            .entry(a.clone())
            .or_default()
            .entry(f.clone())
            .or_default();
        match e.checked_add(r) {
            Ok(sum) => *e = sum,
            Err(err) => {
                tracing::error!(agent = %a, error = %err, "registry holds an overflowing sum")
            }
        }
    }
    used.into_iter()
        .map(|(a, m)| (a, m.into_iter().collect()))
        .collect()
}

/// What is allocated on one agent (an agent whose resources changed re-registering).
pub(super) fn used_on(state: &ClusterState, agent: &AgentId) -> Used {
    used_by_agent(state).remove(agent).unwrap_or_default()
}

impl Engine {
    /// Rebuilds the soft state from the registry: frameworks (none connected yet, so none is
    /// offered anything until it subscribes), agents with what is allocated on them
    /// (outstanding offers and live tasks), role weights, offer expiry times.
    pub(super) fn rebuild(&mut self, state: &ClusterState) -> Rebuilt {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        for (role, weight) in state.role_weights() {
            if let Err(e) = allocator.set_weight(role.clone(), weight) {
                tracing::error!(error = %e, "rebuilding the allocator");
            }
        }
        for f in state.frameworks() {
            if let Err(e) = allocator.add_framework(f.id.clone(), f.role.clone()) {
                tracing::error!(error = %e, "rebuilding the allocator");
            }
            let _ = allocator.suppress(&f.id);
            if f.torn_down {
                self.frameworks.tear_down(&f.id);
            }
        }
        let now = self.now.mono;
        let mut used = used_by_agent(state);
        for a in state.agents() {
            if a.state == AgentState::Gone {
                continue;
            }
            let used = used.remove(&a.id).unwrap_or_default();
            if let Err(e) = allocator.add_agent(a.id.clone(), a.total.clone(), used) {
                tracing::error!(agent = %a.id, error = %e, "rebuilding the allocator");
                continue;
            }
            if a.state == AgentState::Active {
                self.liveness.heard(&a.id, now);
            } else {
                let _ = allocator.set_agent_active(&a.id, false);
            }
        }
        for o in state.offers() {
            self.offers.insert(o);
        }
        self.allocator = allocator;
        // Launches and kills the previous leader may not have delivered: RunTask for every
        // STAGING task (the agent ignores a launch it already has), KillTask for every live
        // task of a torn-down framework.
        for t in state.tasks() {
            if !t.state.is_terminal() && self.frameworks.is_torn_down(&t.framework) {
                self.kill_on_agent(
                    state,
                    &t.framework,
                    &t.agent,
                    &t.spec.id,
                    t.spec.kill_grace_ms,
                );
            }
        }
        let relaunched = self.relaunch_staging(state);
        self.start_recovery(state);
        Rebuilt {
            relaunched,
            agents: self.liveness.len(),
            offers: self.offers.len(),
        }
    }

    /// At the start of a leadership: every agent that was up is awaited, every framework is
    /// disconnected (with at least the re-registration timeout), and draining agents' tasks
    /// are killed (again).
    pub(super) fn start_recovery(&mut self, state: &ClusterState) {
        let now = self.now.mono;
        let wait = self.config.agent_reregister_timeout;
        for a in state.agents() {
            if a.state.is_reachable() {
                self.recovery.awaiting.insert(a.id.clone(), now + wait);
            }
            if a.state == AgentState::Draining {
                self.kill_all_on(state, &a.id);
            }
        }
        if !self.recovery.awaiting.is_empty() {
            self.recovery.reconciling_since = Some(now);
        }
        for f in state.frameworks().filter(|f| !f.torn_down) {
            let timeout = Duration::from_millis(f.failover_timeout_ms).max(wait);
            self.recovery
                .disconnected
                .insert(f.id.clone(), now + timeout);
        }
        self.awaiting_gauge();
    }

    pub(super) fn awaiting_gauge(&self) {
        metrics::gauge!(m::AGENTS_AWAITING_REREGISTRATION).set(self.recovery.awaiting.len() as f64);
    }

    /// The tasks of one RunTask at most, per framework (relaunches after failover).
    pub(super) fn relaunch_staging(&mut self, state: &ClusterState) -> usize {
        let mut staging: HashMap<(FrameworkId, AgentId), Vec<TaskSpec>> = HashMap::new();
        for t in state.tasks() {
            if t.state == crate::registry::TaskState::Staging
                && !self.frameworks.is_torn_down(&t.framework)
            {
                staging
                    .entry((t.framework.clone(), t.agent.clone()))
                    .or_default()
                    .push(t.spec.clone());
            }
        }
        let mut n = 0;
        for ((framework, agent), tasks) in staging {
            n += tasks.len();
            for run in crate::leader::convert::runs_keeping_groups(&tasks, MAX_TASKS_PER_RUN) {
                self.run_on_agent(state, &framework, &agent, &run);
            }
        }
        n
    }
}
