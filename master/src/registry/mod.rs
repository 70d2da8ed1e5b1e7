//! The registry: everything the masters replicate, as a pure state machine.
//!
//! Owns the replicated state (the framework store; agents, frameworks, offers, tasks and role
//! weights in [`cluster`]) and the operations that change it. [`Registry::apply`] is
//! deterministic: it takes a proposal (one Raft entry: a batch of operations from concurrent
//! clients, applied in order) and the log index it was committed at, and returns each
//! operation's outcome. It never reads a clock, a file or a socket; the leader stamps its time
//! into each proposal. Every replica that applies the same log reaches the same state.
//!
//! The state is made of persistent, structurally shared maps, so cloning a `Registry` is O(1):
//! linearizable readers and the snapshot builder work on clones while apply goes on.

pub mod cluster;
pub mod store;
pub mod task_state;

use serde::{Deserialize, Serialize};

pub use cluster::{ClusterOp, ClusterOutcome, ClusterState};
pub use store::{
    Expectation, FrameworkName, FrameworkStore, StoreError, StoreKey, StoreOp, StoreOutcome,
    Versioned,
};
pub use task_state::{IllegalTransition, TaskState};

/// Index of an entry in the Raft log.
pub type LogIndex = u64;

/// One Raft entry's payload: operations from concurrent clients, batched by the leader and
/// applied in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing leader's wall clock, milliseconds since the Unix epoch. Apply uses this
    /// value, never its own clock, so that every replica computes the same result.
    pub proposed_at_ms: u64,
    pub ops: Vec<Op>,
}

/// The operations the registry knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A write to a framework's store.
    Store(StoreOp),
    /// A change to agents, frameworks, offers, tasks or roles.
    Cluster(ClusterOp),
}

/// The result of applying one operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Store(StoreOutcome),
    Cluster(ClusterOutcome),
}

/// The replicated state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    store: FrameworkStore,
    cluster: ClusterState,
}

impl Registry {
    /// Applies `proposal`, committed at log `index`, and returns each operation's outcome, in
    /// order.
    pub fn apply(&mut self, _index: LogIndex, proposal: &Proposal) -> Vec<Outcome> {
        proposal.ops.iter().map(|op| self.apply_op(op)).collect()
    }

    fn apply_op(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Store(op) => Outcome::Store(self.store.apply(op)),
            Op::Cluster(op) => Outcome::Cluster(self.cluster.apply(op)),
        }
    }

    /// The framework store, for reads.
    pub fn store(&self) -> &FrameworkStore {
        &self.store
    }

    /// Agents, frameworks, offers, tasks and roles, for reads.
    pub fn cluster(&self) -> &ClusterState {
        &self.cluster
    }
}
