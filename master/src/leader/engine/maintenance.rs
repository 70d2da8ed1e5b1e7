//! Agents' state changes: by an operator (drain, reactivate, remove) or by the leader's
//! timeouts (see `heartbeat`). Committed, the agent's offers are rescinded, the master's
//! updates forwarded, and a draining agent's tasks killed.

use super::{Engine, Pending};
use crate::ids::AgentId;
use crate::leader::answer::{Refusal, Reply};
use crate::metrics as m;
use crate::registry::cluster::{AgentState, ClusterOp, ClusterOutcome};

impl Engine {
    /// Operator maintenance of an agent (drain, reactivate, remove). Asking for the state the
    /// agent is in changes nothing and answers its live tasks (`drain --wait` polls so).
    pub(super) fn maintain_agent(&mut self, agent: AgentId, to: AgentState, reply: Reply<u64>) {
        let state = self.state();
        if let Some(a) = state.agent(&agent) {
            if a.state == to {
                self.answer(reply, Ok(state.live_tasks_on(&agent).count() as u64));
                return;
            }
        }
        let cause = match to {
            AgentState::Draining => "operator_drain",
            AgentState::Active => "operator_reactivate",
            AgentState::Gone => "operator_remove",
            AgentState::Unreachable => {
                self.answer(
                    reply,
                    Err(Refusal::InvalidArgument(
                        "action: an operator cannot mark an agent unreachable".into(),
                    )),
                );
                return;
            }
        };
        self.propose_agent_state(agent, to, cause, Some(reply));
    }

    /// Proposes a state change of `agent` (`cause` for logs and metrics).
    pub(super) fn propose_agent_state(
        &mut self,
        agent: AgentId,
        state: AgentState,
        cause: &'static str,
        reply: Option<Reply<u64>>,
    ) {
        let by_operator = reply.is_some();
        // The leader's own decisions (timeouts) hold only if the agent has not changed
        // state since, e.g. registered while this proposal was in flight.
        let if_state_since_ms = if by_operator {
            None
        } else {
            self.liveness.begin_marking(&agent);
            self.state().agent(&agent).map(|a| a.state_since_ms)
        };
        self.propose(
            ClusterOp::SetAgentState {
                agent: agent.clone(),
                state,
                by_operator,
                if_state_since_ms,
            },
            Pending::AgentStateSet {
                agent,
                state,
                cause,
                reply,
            },
        );
    }

    /// An agent state change committed.
    pub(super) fn agent_state_set(
        &mut self,
        agent: AgentId,
        to: AgentState,
        cause: &'static str,
        outcome: ClusterOutcome,
        reply: Option<Reply<u64>>,
    ) {
        self.liveness.marked(&agent);
        let ClusterOutcome::AgentStateSet { removed, updates } = outcome else {
            if let Some(r) = reply {
                self.answer(r, Err(Refusal::Internal("unexpected outcome".into())));
            }
            return;
        };
        metrics::counter!(m::AGENT_STATE_CHANGES_TOTAL, "state" => format!("{to:?}").to_lowercase(), "cause" => cause)
            .increment(1);
        self.rescind(&removed, None, None);
        let known = self.allocator.agent_total(&agent).is_some();
        self.forward_master_updates(&updates, known);
        let state = self.state();
        match to {
            AgentState::Active => {
                let _ = self.allocator.set_agent_active(&agent, true);
                self.allocate_soon();
            }
            AgentState::Draining => {
                let _ = self.allocator.set_agent_active(&agent, false);
                self.kill_all_on(&state, &agent);
            }
            AgentState::Unreachable | AgentState::Gone => {
                let _ = self.allocator.set_agent_active(&agent, false);
                self.liveness.forget(&agent);
                self.settled(&agent);
            }
        }
        tracing::warn!(%agent, state = ?to, cause, tasks_changed = updates.len(), "agent state changed");
        if let Some(r) = reply {
            let live = state.live_tasks_on(&agent).count() as u64;
            self.answer(r, Ok(live));
        }
    }
}
