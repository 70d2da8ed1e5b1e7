//! How the engine answers the callers of its commands: as data.
//!
//! A command carries a [`Reply`] handle, an id under which the runtime keeps the caller's
//! channel. The engine answers by pushing `Action::Reply` with an [`Answer`] or a
//! [`Refusal`]; the runtime ([`super::runtime`]) turns a refusal into the gRPC status the
//! caller gets ([`to_status`]) and sends it. No tonic type is built in the engine.

use std::marker::PhantomData;

use drover_proto::v1;
use tonic::Status;

use crate::ids::FrameworkId;
use crate::registry::cluster::ClusterError;
use crate::replicated::ReplicaError;

/// Which waiting caller an answer is for.
pub type CallId = u64;

/// A caller waiting for an answer of type `T` (see [`Answer`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<T> {
    id: CallId,
    answer: PhantomData<fn(T)>,
}

impl<T> Reply<T> {
    pub fn new(id: CallId) -> Self {
        Self {
            id,
            answer: PhantomData,
        }
    }

    pub fn id(&self) -> CallId {
        self.id
    }
}

/// What a caller is told when its command succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Done (a framework call, a subscription, a status update, a role weight).
    Done,
    /// An agent's registration.
    Registered(v1::RegisterReply),
    /// The live tasks of an agent whose state an operator set.
    LiveTasks(u64),
    /// To an agent's heartbeat: whether it must register again (with its tasks).
    Reregister(bool),
    /// The frameworks with a live stream to this leader.
    Connected(Vec<FrameworkId>),
}

impl From<()> for Answer {
    fn from((): ()) -> Self {
        Answer::Done
    }
}

impl From<v1::RegisterReply> for Answer {
    fn from(r: v1::RegisterReply) -> Self {
        Answer::Registered(r)
    }
}

impl From<u64> for Answer {
    fn from(n: u64) -> Self {
        Answer::LiveTasks(n)
    }
}

impl From<bool> for Answer {
    fn from(b: bool) -> Self {
        Answer::Reregister(b)
    }
}

impl From<Vec<FrameworkId>> for Answer {
    fn from(f: Vec<FrameworkId>) -> Self {
        Answer::Connected(f)
    }
}

/// Why a command was refused or failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The registry refused the operation (committed refusal).
    Cluster(ClusterError),
    /// The proposal was refused before it was proposed, or its outcome is unknown.
    Replica(ReplicaError),
    /// The caller's stream is not the framework's live one: `replaced` when a newer
    /// subscription replaced it, else the framework is not subscribed to this leader.
    StaleCaller {
        message: String,
        replaced: bool,
    },
    NotFound(String),
    FailedPrecondition(String),
    /// The caller is not who may do it (another principal's framework).
    PermissionDenied(String),
    InvalidArgument(String),
    ResourceExhausted(String),
    Internal(String),
}

/// The gRPC status a refusal is reported with.
pub fn to_status(refusal: Refusal) -> Status {
    use drover_proto::metadata::{
        STALE_CALLER, STALE_CALLER_NOT_SUBSCRIBED, STALE_CALLER_REPLACED,
    };
    match refusal {
        Refusal::Cluster(e) => cluster_status(&e),
        Refusal::Replica(e) => Status::from(e),
        Refusal::StaleCaller { message, replaced } => {
            let mut s = Status::failed_precondition(message);
            let why = if replaced {
                STALE_CALLER_REPLACED
            } else {
                STALE_CALLER_NOT_SUBSCRIBED
            };
            s.metadata_mut().insert(
                STALE_CALLER,
                tonic::metadata::MetadataValue::from_static(why),
            );
            s
        }
        Refusal::NotFound(m) => Status::not_found(m),
        Refusal::FailedPrecondition(m) => Status::failed_precondition(m),
        Refusal::PermissionDenied(m) => Status::permission_denied(m),
        Refusal::InvalidArgument(m) => Status::invalid_argument(m),
        Refusal::ResourceExhausted(m) => Status::resource_exhausted(m),
        Refusal::Internal(m) => Status::internal(m),
    }
}

/// The status a refused cluster operation is reported with.
fn cluster_status(e: &ClusterError) -> Status {
    let msg = e.to_string();
    match e {
        ClusterError::UnknownAgent(_)
        | ClusterError::UnknownFramework(_)
        | ClusterError::UnknownTask(_) => Status::not_found(msg),
        ClusterError::OfferNotOutstanding(_)
        | ClusterError::WrongAgent { .. }
        | ClusterError::ShrunkBelowTasks { .. }
        | ClusterError::OfferOfAnotherFramework { .. }
        | ClusterError::AgentNotActive(_)
        | ClusterError::FrameworkTornDown(_)
        | ClusterError::RoleChange { .. }
        | ClusterError::AgentTransition { .. }
        | ClusterError::Superseded(_)
        | ClusterError::Illegal(_) => Status::failed_precondition(msg),
        ClusterError::AgentGone(_) => {
            let mut s = Status::failed_precondition(msg);
            s.metadata_mut().insert(
                drover_proto::metadata::AGENT_GONE,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            s
        }
        ClusterError::TooManyUnacknowledged(_) => Status::resource_exhausted(msg),
        ClusterError::OffersOnSeveralAgents
        | ClusterError::OfferCount
        | ClusterError::TaskCount
        | ClusterError::DuplicateTask(_)
        | ClusterError::DoesNotFit { .. }
        | ClusterError::BadWeight { .. } => Status::invalid_argument(msg),
        ClusterError::DuplicateOffer(_) | ClusterError::Overcommit { .. } => Status::internal(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;

    #[test]
    fn refusals_keep_their_codes_and_metadata() {
        let gone = to_status(Refusal::Cluster(ClusterError::AgentGone(
            AgentId::new("a1").unwrap(),
        )));
        assert_eq!(gone.code(), tonic::Code::FailedPrecondition);
        assert!(gone
            .metadata()
            .get(drover_proto::metadata::AGENT_GONE)
            .is_some());
        let stale = to_status(Refusal::StaleCaller {
            message: "caller.stream_id: replaced".into(),
            replaced: true,
        });
        assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            stale
                .metadata()
                .get(drover_proto::metadata::STALE_CALLER)
                .unwrap(),
            drover_proto::metadata::STALE_CALLER_REPLACED
        );
        let lost = to_status(Refusal::Replica(ReplicaError::Lost("truncated".into())));
        assert_eq!(lost.code(), tonic::Code::Unavailable);
        assert_eq!(
            to_status(Refusal::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
    }
}
