//! TEARDOWN: a framework ends (by its call, or by the leader once its failover timeout
//! passes without a new subscription). Committed, its offers are removed, its stream closed
//! and its live tasks killed; it is never offered anything again.

use super::{Action, Engine, Pending};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::leader::answer::{Refusal, Reply};
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, ClusterOutcome};

impl Engine {
    pub(super) fn teardown(&mut self, framework: FrameworkId, reply: Reply<()>) {
        self.propose(
            ClusterOp::TeardownFramework {
                framework: framework.clone(),
                if_subscribed_at_ms: None,
            },
            Pending::TornDown {
                framework,
                reply: Some(reply),
            },
        );
    }

    /// An operator's TEARDOWN: done at once for a framework already torn down, refused for one
    /// the registry does not know.
    pub(super) fn operator_teardown(&mut self, framework: FrameworkId, reply: Reply<()>) {
        let known = self.state().framework(&framework).is_some();
        if !known {
            self.answer(
                reply,
                Err(Refusal::NotFound(format!(
                    "teardown.framework_id: framework {framework} is not known"
                ))),
            );
        } else if self.frameworks.is_torn_down(&framework) {
            self.answer(reply, Ok(()));
        } else {
            self.teardown(framework, reply);
        }
    }

    pub(super) fn torn_down(
        &mut self,
        framework: FrameworkId,
        outcome: ClusterOutcome,
        reply: Option<Reply<()>>,
    ) {
        self.offers_removed(&outcome, None, Some(&framework));
        if let Some(stream) = self.frameworks.tear_down(&framework) {
            self.out.push(Action::Detach { stream });
        }
        self.framework_gone(&framework);
        self.update_suppression(&framework);
        let state = self.state();
        let live: Vec<(AgentId, TaskId, u64)> = state
            .tasks_of(&framework)
            .filter(|t| !t.state.is_terminal())
            .map(|t| (t.agent.clone(), t.spec.id.clone(), t.spec.kill_grace_ms))
            .collect();
        for (agent, task, grace) in live {
            self.kill_on_agent(&state, &framework, &agent, &task, grace);
        }
        tracing::info!(%framework, "framework torn down");
        if let Some(reply) = reply {
            self.answer(reply, Ok(()));
        }
    }

    /// A framework is torn down: nothing to wait for.
    pub(super) fn framework_gone(&mut self, framework: &FrameworkId) {
        self.recovery.disconnected.remove(framework);
        self.recovery.timing_out.remove(framework);
        self.recovery.reconcile_tokens.remove(framework);
    }

    /// A teardown for a failover timeout did not commit: the next tick tries again.
    pub(super) fn framework_gone_failed(&mut self, framework: &FrameworkId) {
        self.recovery.timing_out.remove(framework);
    }

    /// Tears down the frameworks without a stream past their failover timeout.
    pub(super) fn time_out_frameworks(&mut self) {
        let now = self.now.mono;
        let timed_out: Vec<FrameworkId> = self
            .recovery
            .disconnected
            .iter()
            .filter(|(id, deadline)| {
                **deadline <= now
                    && !self.frameworks.is_connected(id)
                    && !self.frameworks.is_torn_down(id)
                    && !self.recovery.timing_out.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for framework in timed_out {
            tracing::warn!(%framework, "framework did not subscribe again within its failover timeout; tearing it down");
            metrics::counter!(m::FRAMEWORK_FAILOVER_TIMEOUTS_TOTAL).increment(1);
            self.recovery.timing_out.insert(framework.clone());
            // Only if it has not subscribed again meanwhile (a subscription in flight).
            let if_subscribed_at_ms = self
                .state()
                .framework(&framework)
                .map(|f| f.subscribed_at_ms);
            self.propose(
                ClusterOp::TeardownFramework {
                    framework: framework.clone(),
                    if_subscribed_at_ms,
                },
                Pending::TornDown {
                    framework,
                    reply: None,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::engine::sim::*;

    #[test]
    fn a_framework_gone_past_its_failover_timeout_is_torn_down_once() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        sim.register_agent("a1", "cpus:1;mem:128");
        let stream = sim.subscribe_with("f1", 10_000, false);
        let f1 = stream.framework.clone();
        drop(stream);
        let teardowns = |sim: &Sim| {
            sim.proposed_ops()
                .into_iter()
                .filter(|op| matches!(op, ClusterOp::TeardownFramework { framework, .. } if *framework == f1))
                .count()
        };
        sim.advance(Duration::from_secs(1));
        sim.advance(Duration::from_secs(8));
        assert_eq!(
            teardowns(&sim),
            0,
            "before its timeout: {:?}",
            sim.proposed_ops()
        );
        sim.advance(Duration::from_secs(3));
        assert_eq!(teardowns(&sim), 1, "{:?}", sim.proposed_ops());
        sim.advance(Duration::from_secs(1));
        assert_eq!(
            teardowns(&sim),
            1,
            "proposed twice: {:?}",
            sim.proposed_ops()
        );
        sim.settle();
        assert!(sim.registry.framework(&f1).unwrap().torn_down);
    }
}
