//! [`ReplicaError`]: what a caller of the replicated state (the proposer's batches, the
//! services' writes and reads) can be told went wrong, and, at the gRPC edge, the `Status`
//! that tells a client whether it may retry elsewhere (metadata `drover-not-leader` with the
//! leader's id and address when known).
//!
//! Below both [`crate::proposer`] and [`crate::replicated`], which produce it.

use std::time::Duration;

use drover_proto::metadata;
use tonic::Status;

use crate::raft::MasterId;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReplicaError {
    #[error("master {me} is not the leader{}", leader_suffix(.leader))]
    NotLeader {
        me: MasterId,
        leader: Option<(MasterId, String)>,
    },
    #[error(
        "not committed within {0:?}; the outcome is unknown (is a quorum of masters reachable?)"
    )]
    WriteTimeout(Duration),
    #[error("could not confirm leadership with a quorum within {0:?}")]
    ReadTimeout(Duration),
    #[error("no quorum confirmed this replica's leadership: {0}")]
    NoQuorum(String),
    #[error("the Raft node stopped: {0}")]
    Stopped(String),
    #[error("the outcome is unknown: {0}")]
    Lost(String),
}

fn leader_suffix(leader: &Option<(MasterId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("; the leader is master {id} at {addr}"),
        None => "; no leader is known yet (an election may be under way)".to_string(),
    }
}

impl From<ReplicaError> for Status {
    fn from(e: ReplicaError) -> Status {
        match &e {
            ReplicaError::NotLeader { leader, .. } => {
                let mut s = Status::unavailable(e.to_string());
                let md = s.metadata_mut();
                md.insert(metadata::NOT_LEADER, "1".parse().expect("ascii"));
                if let Some((id, addr)) = leader {
                    if let Ok(v) = id.to_string().parse() {
                        md.insert(metadata::LEADER_ID, v);
                    }
                    if let Ok(v) = addr.parse() {
                        md.insert(metadata::LEADER_ADDR, v);
                    }
                }
                s
            }
            ReplicaError::WriteTimeout(_) => Status::deadline_exceeded(e.to_string()),
            ReplicaError::ReadTimeout(_) | ReplicaError::NoQuorum(_) => {
                Status::unavailable(e.to_string())
            }
            ReplicaError::Stopped(_) | ReplicaError::Lost(_) => Status::unavailable(e.to_string()),
        }
    }
}
