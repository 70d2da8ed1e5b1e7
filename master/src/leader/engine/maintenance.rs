//! Agents' state changes: by an operator (drain, reactivate, remove) or by the leader's
//! timeouts (see `heartbeat`). Committed, the agent's offers are rescinded, the master's
//! updates forwarded, and a draining agent's tasks killed.

use super::{Engine, Pending};
use crate::ids::AgentId;
use crate::leader::answer::{Refusal, Reply};
use crate::metrics as m;
use crate::registry::cluster::{AgentState, ClusterOp, ClusterOutcome};

impl Engine {
    /// Operator maintenance of an agent (drain, deactivate, reactivate, remove). Asking for the
    /// state the agent is in changes nothing and answers its live tasks (`drain --wait` polls
    /// so); so does deactivating a draining agent (it is deactivated already).
    pub(super) fn maintain_agent(&mut self, agent: AgentId, to: AgentState, reply: Reply<u64>) {
        let state = self.state();
        if let Some(a) = state.agent(&agent) {
            if a.state == to || (a.state, to) == (AgentState::Draining, AgentState::Deactivated) {
                self.answer(reply, Ok(state.live_tasks_on(&agent).count() as u64));
                return;
            }
        }
        let cause = match to {
            AgentState::Draining => "operator_drain",
            AgentState::Deactivated => "operator_deactivate",
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
            AgentState::Deactivated => {
                let _ = self.allocator.set_agent_active(&agent, false);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drover_proto::v1;

    use super::*;
    use crate::leader::agents::AgentMessage;
    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Command;
    use crate::registry::cluster::TaskSpec;

    /// An operator sets a1's state; returns the call its answer is for.
    fn set_state(sim: &mut Sim, state: AgentState) -> crate::leader::answer::CallId {
        let reply = sim.reply();
        let call = reply.id();
        sim.command(Command::SetAgentState {
            agent: AgentId::new("a1").unwrap(),
            state,
            reply,
        });
        call
    }

    fn offers_proposed(sim: &Sim) -> usize {
        sim.proposed_ops()
            .into_iter()
            .filter(|op| matches!(op, ClusterOp::CreateOffers(o) if o.iter().any(|o| o.agent.to_string() == "a1")))
            .count()
    }

    /// The rest of a1 beside its task, offered once ACCEPT's default filter passes; the
    /// agents' messages so far forgotten.
    fn rest_offered(sim: &mut Sim, stream: &mut Stream) -> Vec<v1::Offer> {
        let refuse = sim.c.config.default_refuse;
        sim.advance(refuse);
        sim.settle();
        let rest = Stream::offers(&stream.events());
        assert_eq!(rest.len(), 1, "{rest:?}");
        sim.to_agents.clear();
        rest
    }

    /// a1, `what` (draining, deactivated), is not offered for ten seconds.
    fn no_offers_for_ten_seconds(sim: &mut Sim, what: &str) {
        for second in 1..=10 {
            sim.advance(Duration::from_secs(1));
            assert_eq!(
                offers_proposed(sim),
                0,
                "a {what} agent offered {second} s after: {:?}",
                sim.proposed_ops()
            );
        }
    }

    /// a1 made active again with its one live task: offered within the allocation batch.
    fn reactivated_and_offered(sim: &mut Sim) {
        let call = set_state(sim, AgentState::Active);
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::LiveTasks(1))));
        let batch = sim.c.config.allocation_batch;
        sim.advance(batch);
        assert_eq!(
            offers_proposed(sim),
            1,
            "active again, offered within {batch:?}: {:?}",
            sim.proposed_ops()
        );
    }

    /// KillTask messages sent: (task, grace in seconds).
    fn kills(sim: &mut Sim) -> Vec<(String, f64)> {
        sim.to_agents
            .drain(..)
            .filter_map(|(_, m)| match m {
                AgentMessage::Kill(k) => Some((k.task_id, k.grace_seconds)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn draining_an_agent_kills_its_live_tasks_with_their_grace_and_stops_its_offers_until_active_again(
    ) {
        let (mut sim, mut stream) = one_agent_one_framework();
        let spec = TaskSpec {
            kill_grace_ms: 2_000,
            ..task("t1", "cpus:1;mem:128")
        };
        sim.launch_task(&mut stream, spec);
        let rest = rest_offered(&mut sim, &mut stream);

        let call = set_state(&mut sim, AgentState::Draining);
        assert!(
            sim.to_agents.is_empty() && sim.answer(call).is_none(),
            "acted on before the drain committed"
        );
        assert!(matches!(
            sim.commit(),
            ClusterOp::SetAgentState {
                state: AgentState::Draining,
                by_operator: true,
                ..
            }
        ));
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::LiveTasks(1))));
        assert_eq!(
            kills(&mut sim),
            [("t1".to_string(), 2.0)],
            "the live task killed with its grace"
        );
        let events = stream.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, v1::event::Event::Rescind(r) if r.offer_id == rest[0].id)),
            "the draining agent's offer is rescinded: {events:?}"
        );
        no_offers_for_ten_seconds(&mut sim, "draining");
        reactivated_and_offered(&mut sim);
        sim.settle();
        assert_eq!(Stream::offers(&stream.events()).len(), 1);
    }

    #[test]
    fn deactivating_an_agent_rescinds_and_stops_its_offers_and_leaves_its_tasks_running() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.launch(&mut stream, "t1", "cpus:1;mem:128");
        let rest = rest_offered(&mut sim, &mut stream);

        let call = set_state(&mut sim, AgentState::Deactivated);
        assert!(matches!(
            sim.commit(),
            ClusterOp::SetAgentState {
                state: AgentState::Deactivated,
                by_operator: true,
                ..
            }
        ));
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::LiveTasks(1))));
        assert!(
            kills(&mut sim).is_empty(),
            "a deactivated agent's task killed"
        );
        let events = stream.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, v1::event::Event::Rescind(r) if r.offer_id == rest[0].id)),
            "the deactivated agent's offer is rescinded: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, v1::event::Event::Update(_))),
            "its task changed: {events:?}"
        );
        no_offers_for_ten_seconds(&mut sim, "deactivated");
        reactivated_and_offered(&mut sim);
    }

    #[test]
    fn asking_for_the_state_an_agent_is_in_changes_nothing_and_answers_its_live_tasks() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.launch(&mut stream, "t1", "cpus:1;mem:128");
        sim.to_agents.clear();
        let call = set_state(&mut sim, AgentState::Active);
        assert_eq!(
            sim.answer(call),
            Some(Ok(Answer::LiveTasks(1))),
            "answered at once"
        );
        assert!(sim.proposed.is_empty(), "{:?}", sim.proposed_ops());
        // Draining, asked to drain again (`drain --wait` polls so): no second round of kills.
        let call = set_state(&mut sim, AgentState::Draining);
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::LiveTasks(1))));
        assert_eq!(kills(&mut sim).len(), 1);
        let call = set_state(&mut sim, AgentState::Draining);
        assert_eq!(sim.answer(call), Some(Ok(Answer::LiveTasks(1))));
        assert!(sim.proposed.is_empty(), "{:?}", sim.proposed_ops());
        let again = kills(&mut sim);
        assert!(again.is_empty(), "killed again: {again:?}");
    }

    #[test]
    fn an_operator_cannot_mark_an_agent_unreachable() {
        let (mut sim, _stream) = one_agent_one_framework();
        let call = set_state(&mut sim, AgentState::Unreachable);
        match sim.answer(call) {
            Some(Err(Refusal::InvalidArgument(m))) => {
                assert!(m.starts_with("action:"), "the field is named: {m}")
            }
            other => panic!("UNREACHABLE by an operator answered {other:?}"),
        }
        assert!(sim.proposed.is_empty(), "{:?}", sim.proposed_ops());
        assert_eq!(
            sim.registry
                .agent(&AgentId::new("a1").unwrap())
                .unwrap()
                .state,
            AgentState::Active
        );
    }
}
