//! Batches concurrent writes into Raft entries.
//!
//! Owns the queue of writes waiting to be proposed on this leader. openraft 0.9 appends each
//! entry with its own fsync, one after the other, so one entry per client write would cap a
//! leader at one write per fsync. The proposer instead puts every write waiting in its queue
//! into one entry (a [`Proposal`], applied in order), with at most
//! [`MAX_INFLIGHT_PROPOSALS`] entries proposed and not yet applied. An idle leader therefore
//! proposes a lone write at once (no added latency), and a busy one sends fewer, larger
//! entries: the batch size follows the load, like group commit.
//!
//! Every limit is a constant here: queue depth, operations and bytes per entry, entries in
//! flight.
//!
//! Writes can be held ([`Proposer::hold`]): while a [`WriteHold`] lives, batches wait here
//! instead of being proposed (a planned leadership transfer needs the log still, so that a
//! follower catches up and every lease runs out). They are proposed when it is dropped, or
//! refused as not-leader if leadership moved meanwhile.
//!
//! **Refused or unknown.** A batch is refused as not-leader ([`ReplicaError::NotLeader`], which
//! a client may send elsewhere) only when this replica is not the leader at the moment it would
//! propose, before anything reaches openraft. Once proposed, the batch gets its applied outcome
//! or "outcome unknown" ([`ReplicaError::Lost`]), never a refusal: openraft answers an entry
//! that a new leader's log truncated (`DeleteConflictLog`) with `ForwardToLeader`, yet that
//! entry may still commit through another follower that has it (5 masters: A appends e and
//! replicates it to C only; B wins the next term and truncates e on A, then dies; C wins the
//! term after and commits e). Calling that a refusal made clients send the write again: applied
//! twice, and a compare-and-set that succeeded reported failed (scripted reproduction in
//! `master/tests/truncated_proposal.rs`). For the same reason an entry in flight is answered
//! "outcome unknown" as soon as this replica sees a term newer than the one it was proposed in. openraft 0.9 keeps the responder
//! of an entry proposed by a leader that lost its leadership, and answers it on apply or on
//! truncation only: when the entry is instead replaced by an installed snapshot (the replica
//! was cut off long enough for the new leader to purge that part of its log), it is never
//! answered. Waiting for such answers once filled every in-flight slot, and the replica, leader
//! again later, proposed nothing more: writes timed out while reads were served (found by a
//! 10-minute chaos run; regression test in `tests/partition.rs`).

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::raft::{MasterId, MasterNode, Raft, RaftMetrics};
use crate::registry::{Op, Outcome, Proposal, StoreOp};
use crate::replica_error::ReplicaError;

/// Writes waiting to be proposed; a full queue makes callers wait.
pub const MAX_QUEUED_WRITES: usize = 16 * 1024;
/// Most operations in one entry.
pub const MAX_OPS_PER_PROPOSAL: usize = 2048;
/// Most payload bytes in one entry (a store write counts its key and value, a cluster operation
/// its encoding); a single larger write still goes alone.
pub const MAX_PROPOSAL_BYTES: usize = crate::raft::network::APPEND_BUDGET_BYTES;
/// Entries proposed and not yet applied.
pub const MAX_INFLIGHT_PROPOSALS: usize = 4;

type Reply = oneshot::Sender<Result<Outcome, ReplicaError>>;

struct Pending {
    op: Op,
    reply: Reply,
}

fn payload_bytes(op: &Op) -> usize {
    match op {
        Op::Store(StoreOp::Put { key, value, .. }) => key.as_str().len() + value.len(),
        Op::Store(StoreOp::Delete { key, .. }) => key.as_str().len(),
        Op::Store(StoreOp::CompareAndSet {
            key,
            new_value,
            expected,
            ..
        }) => {
            let e = match expected {
                crate::registry::Expectation::Value(v) => v.len(),
                _ => 8,
            };
            key.as_str().len() + new_value.len() + e
        }
        // Cluster operations are small except ACCEPT (bounded by the framework API's request
        // size) and batches of offers: count them by their encoded size.
        Op::Cluster(op) => postcard::experimental::serialized_size(op).unwrap_or(1024),
    }
}

/// The handle services use to submit writes.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    held: std::sync::Arc<watch::Sender<bool>>,
}

/// While it lives, writes are held (see the module doc).
pub struct WriteHold {
    held: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        self.held.send_replace(false);
    }
}

impl Proposer {
    /// Creates the proposer and the loop that must be spawned to run it.
    pub fn new(raft: Raft, me: MasterId) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_WRITES);
        let (held, held_rx) = tokio::sync::watch::channel(false);
        (
            Self {
                tx,
                held: std::sync::Arc::new(held),
            },
            run(raft, me, rx, held_rx),
        )
    }

    /// Holds writes until the returned guard is dropped.
    pub fn hold(&self) -> WriteHold {
        self.held.send_replace(true);
        WriteHold {
            held: self.held.clone(),
        }
    }

    /// Queues `op` and waits for its outcome.
    pub async fn submit(&self, op: Op) -> Result<Outcome, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { op, reply })
            .await
            .map_err(|_| ReplicaError::Stopped("the proposer stopped".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(ReplicaError::Lost("the proposer dropped the write".into())))
    }
}

/// The highest term this replica has seen, as a watch that changes only when the term does
/// (openraft's metrics change with every append and apply). Follows the metrics until Raft
/// stops or every receiver is gone.
fn watch_term(raft: &Raft) -> watch::Receiver<u64> {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(metrics.borrow().current_term);
    tokio::spawn(async move {
        loop {
            let term = metrics.borrow_and_update().current_term;
            tx.send_if_modified(|seen| {
                let newer = term > *seen;
                if newer {
                    *seen = term;
                }
                newer
            });
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    rx
}

/// Resolves once `terms` shows a term after `term`; never, if the watch ends first (Raft
/// stopped: the entry's own responder is dropped then, which answers it).
async fn term_after(mut terms: watch::Receiver<u64>, term: u64) {
    if terms.wait_for(|seen| *seen > term).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn run(
    raft: Raft,
    me: MasterId,
    mut rx: mpsc::Receiver<Pending>,
    mut held: watch::Receiver<bool>,
) {
    let terms = watch_term(&raft);
    let metrics = raft.metrics();
    let mut inflight = FuturesUnordered::new();
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => loop {
                tokio::select! {
                    Some(()) = inflight.next(), if !inflight.is_empty() => {}
                    p = rx.recv() => match p {
                        Some(p) => break p,
                        None => {
                            // Queue closed: let what is in flight finish.
                            while inflight.next().await.is_some() {}
                            return;
                        }
                    },
                }
            },
        };
        // Wait for room; whatever queues meanwhile joins this entry.
        while inflight.len() >= MAX_INFLIGHT_PROPOSALS {
            inflight.next().await;
        }
        let batch = take_batch(first, &mut rx, &mut carry);
        if batch.is_empty() {
            continue;
        }
        // Held (a leadership transfer): wait, still answering the entries in flight, and
        // stamp the time after.
        while *held.borrow_and_update() {
            tokio::select! {
                Some(()) = inflight.next(), if !inflight.is_empty() => {}
                r = held.changed() => if r.is_err() { break },
            }
        }
        let (ops, replies): (Vec<Op>, Vec<Reply>) =
            batch.into_iter().map(|p| (p.op, p.reply)).unzip();
        // The only refusal a client may take as "not applied": nothing has been proposed yet.
        if let Some(refusal) = refusal_before_proposing(me, &metrics.borrow()) {
            for r in replies {
                let _ = r.send(Err(refusal.clone()));
            }
            continue;
        }
        let proposal = match Proposal::new(crate::clock::unix_ms(), ops) {
            Ok(p) => p,
            Err(e) => {
                // A bug, not a client's fault: refuse the batch rather than stop.
                tracing::error!(error = %e, "cannot encode a proposal");
                for r in replies {
                    let _ = r.send(Err(ReplicaError::Stopped(e.to_string())));
                }
                continue;
            }
        };
        // Read before proposing: the entry's term is this one or a later one, so a term after
        // this one can only make the answer "unknown" early, never miss a lost leadership.
        let term = metrics.borrow().current_term;
        match raft.client_write_ff(proposal).await {
            Err(fatal) => {
                for r in replies {
                    let _ = r.send(Err(ReplicaError::Stopped(fatal.to_string())));
                }
            }
            Ok(response) => {
                let superseded = term_after(terms.clone(), term);
                inflight.push(answer_when_applied(response, superseded, replies, term));
            }
        }
    }
}

/// The batch `first` starts: it and the writes queued behind it, up to
/// [`MAX_OPS_PER_PROPOSAL`] and [`MAX_PROPOSAL_BYTES`]; the first that does not fit is left in
/// `carry` to start the next. A caller whose deadline passed while its write waited here has
/// been told the outcome is unknown: not proposing it at all is the cleaner of the two
/// outcomes, so it is dropped.
fn take_batch(
    first: Pending,
    rx: &mut mpsc::Receiver<Pending>,
    carry: &mut Option<Pending>,
) -> Vec<Pending> {
    let mut bytes = 0;
    let mut batch = Vec::new();
    if !first.reply.is_closed() {
        bytes = payload_bytes(&first.op);
        batch.push(first);
    }
    while batch.len() < MAX_OPS_PER_PROPOSAL {
        let Ok(p) = rx.try_recv() else { break };
        if p.reply.is_closed() {
            continue;
        }
        let b = payload_bytes(&p.op);
        if bytes + b > MAX_PROPOSAL_BYTES {
            *carry = Some(p);
            break;
        }
        bytes += b;
        batch.push(p);
    }
    batch
}

/// Answers a proposed entry's callers when it is applied, or with "outcome unknown" once a
/// later term begins first (the entry may yet be committed by the next leader, or not).
async fn answer_when_applied(
    response: impl std::future::Future<Output = WriteResult>,
    superseded: impl std::future::Future<Output = ()>,
    replies: Vec<Reply>,
    term: u64,
) {
    let n = replies.len();
    tokio::select! {
        biased;
        result = response => {
            for (r, answer) in replies.into_iter().zip(answers(term, result, n)) {
                let _ = r.send(answer);
            }
        }
        () = superseded => {
            for r in replies {
                let _ = r.send(Err(ReplicaError::Lost(format!(
                    "proposed in term {term}, and a later term began before it was applied"
                ))));
            }
        }
    }
}

type WriteResult = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
        ClientWriteError<MasterId, MasterNode>,
    >,
    tokio::sync::oneshot::error::RecvError,
>;

/// Whether this replica must refuse a batch instead of proposing it: it is not the leader as
/// far as its Raft metrics show. `None` means "propose"; openraft may still refuse the entry if
/// leadership moved in between, which [`answers`] then calls "outcome unknown" (safe, if
/// less helpful than a redirect).
pub(crate) fn refusal_before_proposing(me: MasterId, m: &RaftMetrics) -> Option<ReplicaError> {
    if m.state == openraft::ServerState::Leader && m.current_leader == Some(me) {
        return None;
    }
    let leader = m.current_leader.filter(|id| *id != me).and_then(|id| {
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    });
    Some(ReplicaError::NotLeader { me, leader })
}

/// The answer for each of the `n` writes of one proposed entry (proposed in `term`): the
/// applied outcomes, or, for anything else, a failure that never claims the writes were not
/// applied (see the module doc). Pure: the delivery rule, unit-tested.
pub(crate) fn answers(
    term: u64,
    result: WriteResult,
    n: usize,
) -> Vec<Result<Outcome, ReplicaError>> {
    let failure = match result {
        Ok(Ok(resp)) if resp.data.len() == n => return resp.data.into_iter().map(Ok).collect(),
        // Cannot happen: apply returns one outcome per operation.
        Ok(Ok(resp)) => ReplicaError::Stopped(format!(
            "apply returned {} outcomes for {n} operations",
            resp.data.len()
        )),
        // After proposing, a "forward to the leader" means a new leader's log truncated the
        // entry here (or leadership moved between the check and the append): another replica
        // may hold the entry and commit it.
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => ReplicaError::Lost(format!(
            "proposed in term {term}, then removed from this replica's log by a new leader{}; \
             another replica may still commit it",
            f.leader_id
                .map(|id| format!(" (master {id})"))
                .unwrap_or_default()
        )),
        Ok(Err(ClientWriteError::ChangeMembershipError(e))) => ReplicaError::Stopped(e.to_string()),
        // openraft dropped the responder: leadership was lost with the entry in the log.
        Err(_) => ReplicaError::Lost(format!(
            "proposed in term {term}; leadership changed while the write was in flight"
        )),
    };
    (0..n).map(|_| Err(failure.clone())).collect()
}

#[cfg(test)]
mod tests;
