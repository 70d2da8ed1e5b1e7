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
#[cfg(feature = "durable")]
pub mod log_store;
pub mod network;
pub mod service;
pub mod snapshot;
pub mod state_machine;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::Incarnation;
use crate::registry::{Outcome, Proposal};

/// A master replica's id in the Raft group (declared with the rest of who a replica is).
pub use crate::identity::MasterId;

/// The version of the Raft protocol between masters: the transport's messages, openraft's
/// payloads (postcard, whose encoding follows openraft's and the registry's types) and the
/// registry's operations. Every request carries it and a replica refuses any other, so masters
/// of different builds never exchange entries one of them may not decode: upgrades stop every
/// master, then start them all on the new build (README, "Upgrades"). 0 is every build before
/// versions existed; 2 streams snapshot files of format 4 (the registry as records); 3 may
/// propose ACCEPTs of tasks with extensions and streams snapshots of format 5; 4 may propose
/// an agent's DEACTIVATED state and streams snapshots of format 6.
pub const PROTOCOL_VERSION: u32 = 4;

/// Why two replicas cannot talk: their protocol versions differ.
pub fn protocol_mismatch(theirs_is: &str, theirs: u32, mine_is: &str) -> Option<String> {
    (theirs != PROTOCOL_VERSION).then(|| {
        let described = if theirs == 0 {
            "0 (a build from before protocol versions)".to_string()
        } else {
            theirs.to_string()
        };
        format!(
            "{theirs_is} speaks Raft protocol {described}, {mine_is} speaks {PROTOCOL_VERSION}: masters of different builds cannot form one cluster; stop every master and start them all on one build (README, Upgrades)"
        )
    })
}

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

#[cfg(all(test, feature = "durable"))]
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
