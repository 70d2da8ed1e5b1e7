//! The one door to the replicated state for the master's services: propose a command (on the
//! leader, with a deadline) and take a linearizable read view.
//!
//! Owns the mapping from openraft's errors to what a caller can act on ([`ReplicaError`]). A
//! refusal because this replica is not the leader happens before anything is proposed and says
//! so; a deadline that passes after proposing says the outcome is unknown.

use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ForwardToLeader, RaftError};
use tokio::sync::watch;

use crate::metrics as m;
use crate::proposer::Proposer;
use crate::raft::state_machine::AppliedState;
use crate::raft::{MasterId, MasterNode, Raft};
use crate::registry::{Op, Outcome};

pub use crate::replica_error::ReplicaError;

/// Proposes commands and serves read views. Cheap to clone.
#[derive(Clone)]
pub struct Replicated {
    raft: Raft,
    me: MasterId,
    applied: watch::Receiver<AppliedState>,
    proposer: Proposer,
    write_timeout: Duration,
}

impl Replicated {
    pub fn new(
        raft: Raft,
        me: MasterId,
        applied: watch::Receiver<AppliedState>,
        proposer: Proposer,
        write_timeout: Duration,
    ) -> Self {
        Self {
            raft,
            me,
            applied,
            proposer,
            write_timeout,
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Holds this replica's writes until the guard is dropped (see [`crate::proposer`]).
    pub fn hold_writes(&self) -> crate::proposer::WriteHold {
        self.proposer.hold()
    }

    /// The leader this replica knows of, with its address.
    pub fn leader(&self) -> Option<(MasterId, MasterNode)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    fn not_leader(&self, hint: Option<(MasterId, MasterNode)>) -> ReplicaError {
        ReplicaError::NotLeader {
            me: self.me,
            leader: hint
                .filter(|(id, _)| *id != self.me)
                .map(|(id, n)| (id, n.addr)),
        }
    }

    /// Fails fast, before proposing anything, when this replica knows it is not the leader.
    pub fn check_leader(&self) -> Result<(), ReplicaError> {
        match self.leader() {
            Some((id, _)) if id == self.me => Ok(()),
            other => Err(self.not_leader(other)),
        }
    }

    fn forward(&self, f: ForwardToLeader<MasterId, MasterNode>) -> ReplicaError {
        self.not_leader(f.leader_id.zip(f.leader_node))
    }

    /// Proposes `op` (batched with concurrent writes, see [`crate::proposer`]) and waits until
    /// it is committed and applied. Returns what applying it did.
    pub async fn propose(&self, op: Op) -> Result<Outcome, ReplicaError> {
        self.check_leader()?;
        let started = Instant::now();
        match tokio::time::timeout(self.write_timeout, self.proposer.submit(op)).await {
            Err(_) => Err(ReplicaError::WriteTimeout(self.write_timeout)),
            Ok(r) => {
                if r.is_ok() {
                    metrics::histogram!(m::RAFT_COMMIT_SECONDS).record(started.elapsed());
                }
                r
            }
        }
    }

    /// Proposes `op` and waits for its outcome however long it takes: for the leader's own
    /// bookkeeping, which must see every outcome (see [`crate::leader::engine`]). It ends
    /// when the entry is applied or when leadership is lost.
    pub async fn propose_untimed(&self, op: Op) -> Result<Outcome, ReplicaError> {
        self.check_leader()?;
        let started = Instant::now();
        let r = self.proposer.submit(op).await;
        if r.is_ok() {
            metrics::histogram!(m::RAFT_COMMIT_SECONDS).record(started.elapsed());
        }
        r
    }

    /// The state this replica has applied, without asking a quorum: possibly stale on a
    /// follower; on the leader it holds every outcome its proposals have returned.
    pub fn applied(&self) -> AppliedState {
        self.applied.borrow().clone()
    }

    /// A view of the registry that reflects every write committed before this call started
    /// (read-index: the leader confirms with a quorum that it still leads, then waits for its
    /// state machine to reach the commit index it had).
    pub async fn read(&self) -> Result<AppliedState, ReplicaError> {
        self.check_leader()?;
        let read_log_id =
            match tokio::time::timeout(self.write_timeout, self.raft.get_read_log_id()).await {
                Err(_) => return Err(ReplicaError::ReadTimeout(self.write_timeout)),
                Ok(Ok((read_log_id, _applied))) => read_log_id,
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                    return Err(self.forward(f))
                }
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                    return Err(ReplicaError::NoQuorum(q.to_string()))
                }
                Ok(Err(RaftError::Fatal(f))) => return Err(ReplicaError::Stopped(f.to_string())),
            };
        let need = read_log_id.map_or(0, |l| l.index);
        let mut rx = self.applied.clone();
        let wait = async {
            rx.wait_for(|s| s.last_applied.map_or(0, |l| l.index) >= need)
                .await
                .map(|state| state.clone())
        };
        match tokio::time::timeout(self.write_timeout, wait).await {
            Err(_) => Err(ReplicaError::ReadTimeout(self.write_timeout)),
            Ok(Err(_)) => Err(ReplicaError::Stopped("state machine closed".into())),
            Ok(Ok(state)) => Ok(state),
        }
    }
}
