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
pub mod records;
pub mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use cluster::{ClusterOp, ClusterOutcome, ClusterState};
pub use drover_model::task_state::{IllegalTransition, TaskState};
pub use store::{
    Expectation, FrameworkName, FrameworkStore, StoreError, StoreKey, StoreOp, StoreOutcome,
    Versioned,
};

/// Index of an entry in the Raft log.
pub type LogIndex = u64;

/// One Raft entry's payload: operations from concurrent clients, batched by the leader and
/// applied in order.
///
/// Encoded once, when it is made or read, and shared: the log store keeps recent entries in
/// memory and openraft copies entries for every follower's replication and for apply, so a
/// copy is a reference count, and writing an entry (to the log, to a follower) copies bytes
/// instead of encoding its operations again.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal(Arc<EncodedProposal>);

#[derive(PartialEq)]
struct EncodedProposal {
    body: ProposalBody,
    /// `body` in postcard.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for EncodedProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedProposal")
            .field("body", &self.body)
            .field("encoded_bytes", &self.bytes.len())
            .finish()
    }
}

/// What a proposal holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ProposalBody {
    /// The proposing leader's wall clock, milliseconds since the Unix epoch. Apply uses this
    /// value, never its own clock, so that every replica computes the same result.
    proposed_at_ms: u64,
    ops: Vec<Op>,
}

/// A proposal could not be encoded (an operation holds something postcard cannot write).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a proposal: {0}")]
pub struct ProposalEncodeError(postcard::Error);

impl Proposal {
    pub fn new(proposed_at_ms: u64, ops: Vec<Op>) -> Result<Self, ProposalEncodeError> {
        let body = ProposalBody {
            proposed_at_ms,
            ops,
        };
        let bytes = postcard::to_stdvec(&body).map_err(ProposalEncodeError)?;
        Ok(Self(Arc::new(EncodedProposal { body, bytes })))
    }

    pub fn proposed_at_ms(&self) -> u64 {
        self.0.body.proposed_at_ms
    }

    pub fn ops(&self) -> &[Op] {
        &self.0.body.ops
    }

    /// Size of its encoding, bytes.
    pub fn encoded_len(&self) -> usize {
        self.0.bytes.len()
    }
}

impl Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.bytes)
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accepts both a byte string and a sequence of bytes (as formats differ).
        let bytes: Vec<u8> = bytes::Bytes::deserialize(deserializer)?.into();
        let body: ProposalBody = postcard::from_bytes(&bytes).map_err(serde::de::Error::custom)?;
        Ok(Self(Arc::new(EncodedProposal { body, bytes })))
    }
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
    pub fn apply(&mut self, index: LogIndex, proposal: &Proposal) -> Vec<Outcome> {
        let now_ms = proposal.proposed_at_ms();
        proposal
            .ops()
            .iter()
            .enumerate()
            .map(|(position, op)| match op {
                Op::Store(op) => Outcome::Store(self.store.apply(op)),
                Op::Cluster(op) => {
                    let stamp = cluster::Stamp {
                        index,
                        position: position as u32,
                        now_ms,
                    };
                    Outcome::Cluster(self.cluster.apply_at(op, &stamp))
                }
            })
            .collect()
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
