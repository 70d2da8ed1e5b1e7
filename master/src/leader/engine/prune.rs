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
