//! Drover's wire types: the protobuf definitions in `proto/drover/` and the tonic/prost code
//! generated from them. Nothing else lives here, so every other crate can depend on it.

/// Master-to-master Raft transport (internal).
pub mod raft {
    tonic::include_proto!("drover.raft.v1");
}

/// The masters' public API: the framework store and cluster administration.
pub mod master {
    tonic::include_proto!("drover.master.v1");
}

/// gRPC metadata keys a follower sets on its UNAVAILABLE answer to point at the leader.
pub mod metadata {
    /// The leader's node id, decimal.
    pub const LEADER_ID: &str = "drover-leader-id";
    /// The leader's `host:port`.
    pub const LEADER_ADDR: &str = "drover-leader-addr";
    /// Set (to "1") on every refusal by a replica that is not the leader. The request was not
    /// proposed, so a client may send it to another master without risk of applying it twice.
    pub const NOT_LEADER: &str = "drover-not-leader";
}
