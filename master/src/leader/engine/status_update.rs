//! Status updates: an agent reports a task's state; the update is committed before the
//! agent is answered (so an acknowledged update is never lost), then forwarded to the
//! framework, and the resources of a task that ended go back to the allocator. Also the
//! updates the master makes itself (tasks of agents found unreachable or gone) and the
//! framework's backlog, which takes what its stream has no room for.

use std::time::Instant;

use drover_proto::v1;

use super::frameworks::Queued;
use super::{event, Action, Engine, Pending};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::leader::answer::Reply;
use crate::leader::convert;
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, ClusterOutcome, MasterUpdate, TaskStatus};

impl Engine {
    pub(super) fn status_update(
        &mut self,
        agent: AgentId,
        framework: FrameworkId,
        task: TaskId,
        update: TaskStatus,
        reply: Reply<()>,
    ) {
        metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "received").increment(1);
        // No check against this replica's own state first: a leader cut off from the others
        // may not know the task yet, and a refusal is final for the agent. Only a committed
        // refusal is answered as one.
        let op = ClusterOp::StatusUpdate {
            agent,
            framework: framework.clone(),
            task: task.clone(),
            update: update.clone(),
        };
        self.propose(
            op,
            Pending::StatusApplied {
                framework,
                task,
                update,
                started: self.now.mono,
                reply,
            },
        );
    }

    pub(super) fn status_applied(
        &mut self,
        framework: FrameworkId,
        task: TaskId,
        update: TaskStatus,
        started: Instant,
        outcome: ClusterOutcome,
        reply: Reply<()>,
    ) {
        metrics::histogram!(m::STATUS_UPDATE_COMMIT_SECONDS)
            .record(self.now.mono.duration_since(started));
        let forward = match &outcome {
            ClusterOutcome::StatusApplied { agent, released } => {
                if let Some(r) = released {
                    if let Err(e) = self.allocator.recover(&framework, agent, r, None) {
                        tracing::error!(error = %e, "allocator");
                    }
                    self.allocate_soon();
                }
                true
            }
            ClusterOutcome::Duplicate { acknowledged } => !acknowledged,
            _ => false,
        };
        metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "acked").increment(1);
        self.answer(reply, Ok(()));
        if forward {
            let state = self.state();
            if let Some(t) = state.task(&framework, &task) {
                let status = convert::status_to_proto(t, &update);
                if self.send(
                    &framework,
                    v1::event::Event::Update(v1::Update {
                        status: Some(status),
                    }),
                ) {
                    metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "forwarded").increment(1);
                }
            }
        }
    }

    /// Forwards updates the master made (and committed) to their frameworks; with
    /// `recover`, the resources of tasks they ended go back to the allocator.
    pub(super) fn forward_master_updates(&mut self, updates: &[MasterUpdate], recover: bool) {
        if updates.is_empty() {
            return;
        }
        let state = self.state();
        for u in updates {
            metrics::counter!(m::MASTER_TASK_UPDATES_TOTAL,
                "state" => u.update.state.to_proto().as_str_name(),
                "reason" => u.update.reason.clone())
            .increment(1);
            if let (true, Some(r)) = (recover, &u.released) {
                if let Err(e) = self.allocator.recover(&u.framework, &u.agent, r, None) {
                    tracing::error!(error = %e, "allocator");
                }
            }
            let Some(t) = state.task(&u.framework, &u.task) else {
                continue;
            };
            // Through the backlog: an agent going away can end thousands of tasks at once,
            // more than a stream holds, and a full stream must not cost the framework its
            // subscription.
            let status = convert::status_to_proto(t, &u.update);
            if self.enqueue(&u.framework, status) {
                metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "forwarded").increment(1);
            }
        }
        if recover && updates.iter().any(|u| u.released.is_some()) {
            self.allocate_soon();
        }
    }

    /// Queues `status` for the framework: at once if its stream has room, else in its
    /// backlog. False when the framework has no stream (an update it has not acknowledged is
    /// redelivered when it subscribes) or its backlog is full.
    pub(super) fn enqueue(&mut self, framework: &FrameworkId, status: v1::TaskStatus) -> bool {
        match self.frameworks.queue(framework, status) {
            Queued::Now(stream, status) => {
                self.out.push(Action::Send {
                    stream,
                    event: event(v1::event::Event::Update(v1::Update {
                        status: Some(status),
                    })),
                });
                true
            }
            Queued::Later => true,
            Queued::NoStream => false,
            Queued::BacklogFull => {
                // An update with a uuid is redelivered at the next subscription; a
                // reconciliation answer is not (the framework reconciles again).
                tracing::warn!(%framework, "framework backlog full; an update waits for the next subscription");
                false
            }
        }
    }

    /// Sends backlogged updates while streams have room beyond what is kept free for new
    /// events.
    pub(super) fn drain_backlogs(&mut self) {
        for id in self.frameworks.backlogged() {
            while let Some((stream, status)) = self.frameworks.next_backlogged(&id, true) {
                self.out.push(Action::Send {
                    stream,
                    event: event(v1::event::Event::Update(v1::Update {
                        status: Some(status),
                    })),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::answer::{Answer, Refusal};
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;

    #[test]
    fn a_framework_that_stops_reading_is_disconnected_when_its_stream_fills_and_offered_nothing() {
        use crate::registry::TaskState;
        let mut sim = Sim::new(OfferCycleConfig::default());
        sim.register_agent("a1", "cpus:4;mem:4096");
        let mut stream = sim.subscribe_with("f1", 60_000, false);
        let f1 = stream.framework.clone();
        let t1 = sim.launch(&mut stream, "t1", "cpus:1;mem:128");
        stream.events();
        stream.limit(4);
        // The agent's updates are committed and answered whatever the framework does; the fifth
        // finds the stream full.
        for uuid in 1..=6 {
            let r = sim.report("a1", &f1, &t1, TaskState::Running, uuid);
            assert_eq!(r, Ok(Answer::Done), "update {uuid}");
        }
        assert_eq!(updates(&stream.events()).len(), 4);
        assert!(
            stream.ended(),
            "the stream of a framework not reading is closed"
        );
        let call = sim.call(&stream, Call::Revive);
        assert!(
            matches!(
                sim.answer(call),
                Some(Err(Refusal::StaleCaller {
                    replaced: false,
                    ..
                }))
            ),
            "a disconnected framework is not subscribed"
        );
        let interval = sim.c.config.allocation_interval;
        sim.advance(interval * 2);
        assert!(
            !sim.proposed_ops()
                .iter()
                .any(|op| matches!(op, ClusterOp::CreateOffers(_))),
            "offers for a disconnected framework: {:?}",
            sim.proposed_ops()
        );
        // Subscribing again, it gets every update it has not acknowledged.
        let mut again = sim.subscribe_with("f1", 0, true);
        assert_eq!(updates(&again.events()).len(), 6);
    }
}
