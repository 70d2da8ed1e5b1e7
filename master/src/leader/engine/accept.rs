//! ACCEPT: a framework launches tasks on offers. The registry validates and commits it (the
//! offers consumed, the tasks STAGING); only then does the RunTask go to the agent, and the
//! unused part of the offers returns to the allocator with the framework's filter.

use super::{ms, Engine, Pending};
use crate::ids::{FrameworkId, OfferId};
use crate::leader::answer::{Refusal, Reply};
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, ClusterOutcome, TaskSpec};

impl Engine {
    pub(super) fn accept(
        &mut self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        refuse_ms: Option<u64>,
        reply: Reply<()>,
    ) {
        // Tasks without extensions are written as every build reads them.
        let op = if tasks.iter().any(|t| t.extensions.is_some()) {
            ClusterOp::AcceptExtended {
                framework: framework.clone(),
                offers: offers.clone(),
                tasks: tasks.clone(),
                extensions: tasks.iter().map(|t| t.extensions.clone()).collect(),
            }
        } else {
            ClusterOp::Accept {
                framework: framework.clone(),
                offers: offers.clone(),
                tasks: tasks.clone(),
            }
        };
        self.propose(
            op,
            Pending::Accepted {
                framework,
                offers,
                tasks,
                refuse_ms: refuse_ms.unwrap_or(ms(self.config.default_refuse)),
                reply,
            },
        );
    }

    pub(super) fn accepted(
        &mut self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        refuse_ms: u64,
        outcome: ClusterOutcome,
        reply: Reply<()>,
    ) {
        let ClusterOutcome::Accepted { agent, unused } = outcome else {
            self.answer(reply, Err(Refusal::Internal("unexpected outcome".into())));
            return;
        };
        // The offers are consumed; drop their timers.
        let state = self.state();
        for id in &offers {
            self.offers.forget(id);
        }
        if !unused.is_empty() {
            let refuse = (refuse_ms > 0).then_some((self.now.wall_ms, refuse_ms));
            if let Err(e) = self.allocator.recover(&framework, &agent, &unused, refuse) {
                tracing::error!(error = %e, "allocator");
            }
        }
        metrics::counter!(m::TASKS_LAUNCHED_TOTAL).increment(tasks.len() as u64);
        // A TEARDOWN committed meanwhile is killing these: do not launch them.
        if !self.frameworks.is_torn_down(&framework) {
            // One RunTask: an ACCEPT's tasks fit (`MAX_TASKS_PER_ACCEPT`).
            self.run_on_agent(&state, &framework, &agent, &tasks);
        }
        self.answer(reply, Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::agents::AgentMessage;
    use crate::leader::answer::{self, Answer};
    use crate::leader::engine::sim::*;
    use crate::registry::cluster::ClusterError;

    #[test]
    fn a_task_is_sent_to_its_agent_only_after_its_accept_is_committed() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.allocate();
        sim.commit();
        let offer = Stream::offers(&stream.events()).remove(0);
        let call = sim.call(&stream, accept_one(&offer.id, task("t1", "cpus:1;mem:128")));
        assert!(sim.to_agents.is_empty(), "RunTask before ACCEPT committed");
        assert_eq!(sim.answer(call), None, "answered before commit");
        assert!(matches!(sim.commit(), ClusterOp::Accept { .. }));
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        match sim.to_agents.as_slice() {
            [(agent, AgentMessage::Run(run))] => {
                assert_eq!(agent.to_string(), "a1");
                assert_eq!(run.tasks.len(), 1);
                assert_eq!(run.tasks[0].task_id, "t1");
            }
            other => panic!("expected one RunTask, got {} messages", other.len()),
        }
    }

    #[test]
    fn an_accept_the_registry_refuses_is_answered_with_the_refusal_and_launches_nothing() {
        let (mut sim, stream) = one_agent_one_framework();
        let call = sim.call(&stream, accept_one("never-offered", task("t1", "cpus:1")));
        sim.settle();
        let refused = sim.answer(call).unwrap().unwrap_err();
        assert!(
            matches!(&refused, Refusal::Cluster(ClusterError::OfferNotOutstanding(id)) if id.to_string() == "never-offered"),
            "{refused:?}"
        );
        let status = answer::to_status(refused);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
        assert!(status.message().contains("never-offered"), "{status}");
        assert!(sim.to_agents.is_empty());
    }
}
