//! Raft for the masters: openraft's type configuration and Drover's implementations of its
//! storage and network traits.
//!
//! - [`log_store`]: the log and the vote on RocksDB, synced before openraft hears they are durable.
//! - [`state_machine`]: applies committed entries to the [`Registry`](crate::registry::Registry),
//!   builds and installs snapshots.
//! - [`background`]: CPU-heavy jobs (building and loading snapshots) on low-priority threads.
//! - [`snapshot`]: the snapshot file format and the directory holding the current snapshot.
//! - [`network`]: the client side of the transport (tonic), one channel per peer.
//! - [`service`]: the server side of the transport, which checks that every request is for this
//!   cluster and this incarnation of this replica.
//!
//! openraft 0.9 is used because it is the current stable line: its storage-v2 traits
//! (`RaftLogStorage`, `RaftStateMachine`) and its network trait are documented and frozen for
//! the 0.9 series, and it ships a storage conformance suite. 0.10 is still in alpha and changes
//! these traits from one alpha to the next.

pub mod background;
pub mod codec;
pub mod log_store;
pub mod network;
pub mod service;
pub mod snapshot;
pub mod state_machine;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::Incarnation;
use crate::registry::{Outcome, Proposal};

/// A master replica's id in the Raft group.
pub type MasterId = u64;

/// What the membership records about each replica: where it listens and which incarnation of
/// it (see [`crate::identity`]) is the member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterNode {
    /// `host:port` of its gRPC + HTTP listener.
    pub addr: String,
    pub incarnation: Incarnation,
}

impl fmt::Display for MasterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for Drover's masters.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Outcome>,
        NodeId = MasterId,
        Node = MasterNode,
        SnapshotData = snapshot::SnapshotFile,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<MasterId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<MasterId>;
pub type StoredMembership = openraft::StoredMembership<MasterId, MasterNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<MasterId, MasterNode>;
pub type Snapshot = openraft::storage::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<MasterId>;
pub type RaftMetrics = openraft::RaftMetrics<MasterId, MasterNode>;

#[cfg(test)]
mod storage_suite {
    //! openraft's storage conformance suite against the RocksDB log store and the snapshot-file
    //! state machine, each test on a fresh temporary directory.

    use std::sync::Arc;

    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::snapshot::SnapshotDir;
    use super::state_machine::StateMachine;
    use super::{StorageError, TypeConfig};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = crate::db::open(&dir.path().join("raft")).expect("open db");
            let snapshots =
                Arc::new(SnapshotDir::open(&dir.path().join("snapshots")).expect("snapshot dir"));
            let sm = StateMachine::open(snapshots).expect("state machine");
            Ok((dir, LogStore::new(db), sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        if let Err(e) = Suite::test_all(Builder) {
            panic!("storage suite: {e}");
        }
    }
}
