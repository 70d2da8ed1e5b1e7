//! Pruning: the leader proposes forgetting completed tasks and frameworks beyond the
//! configured bounds (one proposal at a time), so the registry does not grow forever.

use super::{Engine, Pending};
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, ClusterOutcome};

impl Engine {
    /// Proposes forgetting completed tasks and frameworks beyond the configured bounds, when
    /// the registry is past them by enough (see `ClusterState::prune_due`); one at a time.
    pub(super) fn prune_if_due(&mut self) {
        if self.pruning {
            return;
        }
        let (tasks, frameworks) = (
            self.config.max_completed_tasks_per_framework,
            self.config.max_completed_frameworks,
        );
        if !self.state().prune_due(tasks as usize, frameworks as usize) {
            return;
        }
        self.pruning = true;
        self.propose(
            ClusterOp::PruneCompleted {
                keep_tasks_per_framework: tasks,
                keep_completed_frameworks: frameworks,
            },
            Pending::Pruned,
        );
    }

    pub(super) fn pruned(&mut self, outcome: ClusterOutcome) {
        self.pruning = false;
        let ClusterOutcome::Pruned { tasks, frameworks } = outcome else {
            return;
        };
        for f in &frameworks {
            // Torn down: no offers, no live tasks; only the allocator still names it.
            if let Err(e) = self.allocator.remove_framework(f) {
                tracing::debug!(framework = %f, error = %e, "allocator");
            }
            self.frameworks.forget(f);
        }
        metrics::counter!(m::PRUNED_TOTAL, "what" => "tasks").increment(tasks);
        metrics::counter!(m::PRUNED_TOTAL, "what" => "frameworks")
            .increment(frameworks.len() as u64);
        tracing::info!(
            tasks,
            frameworks = frameworks.len(),
            "forgot completed tasks and frameworks"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::OfferCycleConfig;
    use crate::ids::{OfferId, TaskId};
    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;
    use crate::registry::cluster::ClusterOp;
    use crate::registry::TaskState;
    use crate::replicated::ReplicaError;

    /// Launches `ids` on one offer (outstanding, or made now), has each run and finish, and
    /// acknowledges their last updates: each is then completed.
    fn complete(sim: &mut Sim, stream: &mut Stream, ids: &[&str], uuid: &mut u128) {
        let mut offers = Stream::offers(&stream.events());
        if offers.is_empty() {
            sim_allocate_and_commit(sim);
            offers = Stream::offers(&stream.events());
        }
        let offer = offers.remove(0);
        let call = sim.call(
            stream,
            Call::Accept {
                offers: vec![OfferId::new(&offer.id).unwrap()],
                tasks: ids.iter().map(|id| task(id, "cpus:1;mem:64")).collect(),
                refuse_ms: Some(0),
            },
        );
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)), "accept");
        let f = stream.framework.clone();
        for id in ids {
            let t = TaskId::new(id).unwrap();
            for state in [TaskState::Running, TaskState::Finished] {
                *uuid += 1;
                assert_eq!(sim.report("a1", &f, &t, state, *uuid), Ok(Answer::Done));
            }
            let call = sim.call(
                stream,
                Call::Acknowledge {
                    task: t,
                    uuid: uuid::Uuid::from_u128(*uuid),
                },
            );
            sim.settle();
            assert_eq!(sim.answer(call), Some(Ok(Answer::Done)), "acknowledge {id}");
        }
        stream.events();
    }

    fn prunes(sim: &Sim) -> Vec<&ClusterOp> {
        sim.proposed_ops()
            .into_iter()
            .filter(|op| matches!(op, ClusterOp::PruneCompleted { .. }))
            .collect()
    }

    #[test]
    fn completed_tasks_beyond_the_bound_are_pruned_by_one_proposal_at_a_time() {
        let config = OfferCycleConfig {
            max_completed_tasks_per_framework: 2,
            ..OfferCycleConfig::default()
        };
        let mut sim = Sim::new(config);
        sim.register_agent("a1", "cpus:8;mem:8192");
        let mut stream = sim.subscribe("f1");
        let f1 = stream.framework.clone();
        let tick = Duration::from_millis(10);
        let mut uuid = 0;
        // Three completed: past the bound of 2, within its slack (one).
        complete(&mut sim, &mut stream, &["t1", "t2", "t3"], &mut uuid);
        sim.advance(tick);
        assert!(prunes(&sim).is_empty(), "{:?}", sim.proposed_ops());
        // Four: due.
        complete(&mut sim, &mut stream, &["t4"], &mut uuid);
        sim.advance(tick);
        assert_eq!(
            prunes(&sim),
            [&ClusterOp::PruneCompleted {
                keep_tasks_per_framework: 2,
                keep_completed_frameworks: 50,
            }]
        );
        sim.advance(tick);
        sim.advance(tick);
        assert_eq!(
            prunes(&sim).len(),
            1,
            "a second prune while one is in flight: {:?}",
            sim.proposed_ops()
        );
        sim.settle();
        assert_eq!(sim.registry.completed_count(&f1), 2);
        let kept: Vec<String> = sim
            .registry
            .tasks_of(&f1)
            .map(|t| t.spec.id.to_string())
            .collect();
        assert_eq!(kept, ["t3", "t4"], "the oldest are forgotten");
        sim.advance(tick);
        assert!(
            prunes(&sim).is_empty(),
            "pruned again: {:?}",
            sim.proposed_ops()
        );
        // Past the bound again: the next prune goes out once the last one settled, and again
        // after one that was lost.
        complete(&mut sim, &mut stream, &["t5", "t6"], &mut uuid);
        sim.advance(tick);
        assert_eq!(prunes(&sim).len(), 1, "{:?}", sim.proposed_ops());
        sim.lose(ReplicaError::Lost("truncated".into()));
        sim.advance(tick);
        assert_eq!(
            prunes(&sim).len(),
            1,
            "not proposed again after a loss: {:?}",
            sim.proposed_ops()
        );
        sim.settle();
        assert_eq!(sim.registry.completed_count(&f1), 2);
    }
}
