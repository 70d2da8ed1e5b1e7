//! The proposer's delivery rule: only a write never proposed is refused as not-leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::error::{ClientWriteError, ForwardToLeader};
use openraft::raft::ClientWriteResponse;
use openraft::{CommittedLeaderId, LogId, Membership, ServerState, StoredMembership};

use super::{answers, refusal_before_proposing};
use crate::raft::{MasterNode, RaftMetrics};
use crate::registry::{Outcome, StoreOutcome};
use crate::replicated::ReplicaError;

fn node(addr: &str) -> MasterNode {
    MasterNode {
        addr: addr.into(),
        incarnation: Default::default(),
    }
}

fn metrics(me: u64, state: ServerState, leader: Option<u64>) -> RaftMetrics {
    let nodes: BTreeMap<u64, MasterNode> = (1..=3)
        .map(|id| (id, node(&format!("127.0.0.1:{}", 5050 + id))))
        .collect();
    let voters: BTreeSet<u64> = nodes.keys().copied().collect();
    let mut m = RaftMetrics::new_initial(me);
    m.state = state;
    m.current_leader = leader;
    m.current_term = 7;
    m.membership_config = Arc::new(StoredMembership::new(
        Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
        Membership::new(vec![voters], nodes),
    ));
    m
}

fn put(version: u64) -> Outcome {
    Outcome::Store(StoreOutcome::Put { version })
}

#[test]
fn applied_entries_answer_each_write_with_its_outcome() {
    let resp = ClientWriteResponse {
        log_id: LogId::new(CommittedLeaderId::new(7, 1), 42),
        data: vec![put(1), put(2)],
        membership: None,
    };
    let got = answers(7, Ok(Ok(resp)), 2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().ok(), Some(&put(1)));
    assert_eq!(got[1].as_ref().ok(), Some(&put(2)));
}

/// The bug of issue 16: openraft answers an entry that a new leader truncated with
/// ForwardToLeader; the entry may still commit elsewhere, so it must not read as a refusal.
#[test]
fn a_truncated_entry_is_outcome_unknown_never_not_leader() {
    let forward = ForwardToLeader::new(2, node("127.0.0.1:5052"));
    let got = answers(7, Ok(Err(ClientWriteError::ForwardToLeader(forward))), 3);
    assert_eq!(got.len(), 3);
    for answer in got {
        match answer {
            Err(ReplicaError::Lost(why)) => assert!(why.contains("term 7"), "{why}"),
            other => panic!("a proposed write answered {other:?}; want outcome unknown"),
        }
    }
    let forward_no_hint = ForwardToLeader::empty();
    for answer in answers(
        7,
        Ok(Err(ClientWriteError::ForwardToLeader(forward_no_hint))),
        1,
    ) {
        assert!(matches!(answer, Err(ReplicaError::Lost(_))), "{answer:?}");
    }
}

#[test]
fn a_dropped_responder_is_outcome_unknown() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    drop(tx);
    let recv_error = futures::executor::block_on(rx).unwrap_err();
    for answer in answers(7, Err(recv_error), 2) {
        assert!(matches!(answer, Err(ReplicaError::Lost(_))), "{answer:?}");
    }
}

#[test]
fn a_short_outcome_list_fails_every_write_without_claiming_a_refusal() {
    let resp = ClientWriteResponse {
        log_id: LogId::new(CommittedLeaderId::new(7, 1), 42),
        data: vec![put(1)],
        membership: None,
    };
    for answer in answers(7, Ok(Ok(resp)), 2) {
        assert!(
            matches!(answer, Err(ReplicaError::Stopped(_))),
            "{answer:?}"
        );
    }
}

#[test]
fn only_a_replica_that_is_not_the_leader_refuses_before_proposing() {
    assert!(refusal_before_proposing(1, &metrics(1, ServerState::Leader, Some(1))).is_none());
    // A follower points at the leader it knows.
    match refusal_before_proposing(1, &metrics(1, ServerState::Follower, Some(2))) {
        Some(ReplicaError::NotLeader { me: 1, leader }) => {
            assert_eq!(leader, Some((2, "127.0.0.1:5052".to_string())))
        }
        other => panic!("{other:?}"),
    }
    // A candidate knows no leader.
    assert!(matches!(
        refusal_before_proposing(1, &metrics(1, ServerState::Candidate, None)),
        Some(ReplicaError::NotLeader { leader: None, .. })
    ));
    // Metrics that still name this replica but show it stepped down: refused, and no hint
    // pointing back at itself.
    assert!(matches!(
        refusal_before_proposing(1, &metrics(1, ServerState::Follower, Some(1))),
        Some(ReplicaError::NotLeader { leader: None, .. })
    ));
}
