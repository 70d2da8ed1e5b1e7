//! Agents' liveness: heartbeats, and the leader's timeouts. An agent silent past
//! `agent_timeout`, or not registered again within `agent_reregister_timeout` of a leader
//! change, is marked UNREACHABLE; one UNREACHABLE past `agent_removal_timeout` (by the
//! registry's clock, so the wait survives leader changes) is marked GONE.

use super::Engine;
use crate::ids::AgentId;
use crate::leader::answer::Reply;
use crate::registry::cluster::AgentState;

impl Engine {
    pub(super) fn heartbeat(&mut self, agent: AgentId, reply: Reply<bool>) {
        // Up: ACTIVE, DRAINING or DEACTIVATED. An agent a new leader has not heard from since it was
        // elected registers again, with its tasks.
        let up = self
            .state()
            .agent(&agent)
            .is_some_and(|a| a.state.is_reachable());
        if up {
            self.liveness.heard(&agent, self.now.mono);
        }
        self.answer(reply, Ok(!up || self.recovery.awaits(&agent)));
    }

    /// Marks UNREACHABLE the agents not heard from within `agent_timeout`.
    pub(super) fn mark_silent_agents(&mut self) {
        let timeout = self.config.agent_timeout;
        let silent = self.liveness.silent(self.now.mono, timeout);
        for agent in silent {
            tracing::warn!(%agent, ?timeout, "agent missed its heartbeats");
            self.propose_agent_state(agent, AgentState::Unreachable, "heartbeat_timeout", None);
        }
    }

    /// Marks UNREACHABLE the agents awaited past the re-registration timeout, and GONE those
    /// UNREACHABLE past the removal timeout (by the registry's clock).
    pub(super) fn mark_late_agents(&mut self) {
        let now = self.now.mono;
        let late: Vec<AgentId> = self
            .recovery
            .awaiting
            .iter()
            .filter(|(id, deadline)| **deadline <= now && !self.liveness.is_marking(id))
            .map(|(id, _)| id.clone())
            .collect();
        for agent in late {
            tracing::warn!(%agent, timeout = ?self.config.agent_reregister_timeout, "agent did not register again after the leader change");
            self.propose_agent_state(agent, AgentState::Unreachable, "reregister_timeout", None);
        }

        let removal = self.config.agent_removal_timeout.as_millis() as u64;
        let wall = self.now.wall_ms;
        let state = self.state();
        let expired: Vec<AgentId> = state
            .agents()
            .filter(|a| {
                a.state == AgentState::Unreachable
                    && wall.saturating_sub(a.state_since_ms) >= removal
                    && !self.liveness.is_marking(&a.id)
            })
            .map(|a| a.id.clone())
            .collect();
        for agent in expired {
            tracing::warn!(%agent, "agent unreachable past its removal timeout; marking it gone");
            self.propose_agent_state(agent, AgentState::Gone, "removal_timeout", None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Command;
    use crate::registry::cluster::ClusterOp;

    #[test]
    fn a_silent_agent_is_marked_unreachable_once_and_a_heartbeat_keeps_it() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        sim.register_agent("a1", "cpus:1;mem:128");
        sim.register_agent("a2", "cpus:1;mem:128");
        let timeout = sim.c.config.agent_timeout;
        let marks = |sim: &Sim, id: &str| {
            sim.proposed_ops()
                .into_iter()
                .filter(|op| {
                    matches!(op, ClusterOp::SetAgentState { agent, state: AgentState::Unreachable, .. } if agent.to_string() == id)
                })
                .count()
        };
        // a2 heartbeats every interval; a1 is silent.
        let step = sim.c.config.agent_heartbeat_interval;
        let mut waited = Duration::ZERO;
        while waited <= timeout {
            let reply = sim.reply();
            sim.command(Command::AgentHeartbeat {
                agent: AgentId::new("a2").unwrap(),
                reply,
            });
            sim.advance(step);
            waited += step;
        }
        assert_eq!(marks(&sim, "a1"), 1, "{:?}", sim.proposed_ops());
        assert_eq!(marks(&sim, "a2"), 0, "{:?}", sim.proposed_ops());
        sim.advance(step);
        assert_eq!(
            marks(&sim, "a1"),
            1,
            "proposed twice: {:?}",
            sim.proposed_ops()
        );
        sim.settle();
        assert_eq!(
            sim.registry
                .agent(&AgentId::new("a1").unwrap())
                .unwrap()
                .state,
            AgentState::Unreachable
        );
    }
}
