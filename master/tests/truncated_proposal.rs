//! Scripted reproduction of issue 16's first finding: a write whose log entry a new leader
//! truncated on the replica that proposed it, while another follower kept it and later
//! committed it.
//!
//! Five real replicas in one process (Drover's RocksDB log store, state machine, proposer and
//! `Replicated`) over an in-memory transport that can cut any link and, per direction, drop
//! AppendEntries while still carrying votes. The message-level cuts make the exact sequence of
//! the finding happen every time, which a TCP fault layer cannot (a new leader's first entry
//! reaches its voters within microseconds of the election):
//!
//! 1. A (master 1) leads term T, is cut from B, D and E, and appends write e, which reaches C
//!    only (2 of 5: not committed).
//! 2. A and C are cut off; B wins a later term with the votes of D and E, whose AppendEntries
//!    from B are dropped (so B's entries reach neither). B reaches A, whose log conflicts:
//!    A truncates e and openraft answers A's proposal with ForwardToLeader. B reaches A one
//!    way only and without heartbeats, so that B's replicating AppendEntries is the message
//!    that shows A the new term: when A learns of it first (B refusing A's own AppendEntries,
//!    or a heartbeat), the proposer's term watch answers "unknown" before the truncation does,
//!    which hides the defect; both orders happen on real networks.
//! 3. B is cut off; C, which still has e, wins a later term with D and E and commits e.
//!
//! A client may send a write again only if the answer says it was never proposed. Before the
//! fix A answered "not the leader", the client sent e again and it was applied twice (a put) or
//! reported failed although it succeeded (a compare-and-set). The test plays the client's rule
//! and checks both the answers and the replicas' final state.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drover_master::proposer::Proposer;
use drover_master::raft::log_store::LogStore;
use drover_master::raft::snapshot::SnapshotDir;
use drover_master::raft::state_machine::{AppliedState, StateMachine};
use drover_master::raft::{MasterId, MasterNode, Raft, Snapshot, TypeConfig, Vote};
use drover_master::registry::{
    Expectation, FrameworkName, Op, Outcome, StoreKey, StoreOp, StoreOutcome,
};
use drover_master::replicated::{ReplicaError, Replicated};
use openraft::error::{
    Fatal, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, ServerState};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Rpc {
    Append,
    Vote,
}

/// Which messages are dropped: (from, to, kind).
#[derive(Default)]
struct Links {
    dropped: HashSet<(MasterId, MasterId, Rpc)>,
}

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<MasterId, Raft>>>,
    links: Arc<Mutex<Links>>,
}

#[derive(Debug)]
struct Cut(String);

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cut {}

impl Router {
    fn drop_rpc(&self, from: MasterId, to: MasterId, rpc: Rpc) {
        self.links.lock().unwrap().dropped.insert((from, to, rpc));
    }

    /// Cuts both directions between `a` and `b`, every kind of message.
    fn cut(&self, a: MasterId, b: MasterId) {
        for rpc in [Rpc::Append, Rpc::Vote] {
            self.drop_rpc(a, b, rpc);
            self.drop_rpc(b, a, rpc);
        }
    }

    /// Lets `from` reach `to` again (one direction, every kind of message).
    fn mend(&self, from: MasterId, to: MasterId) {
        let mut links = self.links.lock().unwrap();
        links.dropped.retain(|(f, t, _)| !(*f == from && *t == to));
    }

    fn heal(&self, a: MasterId, b: MasterId) {
        let mut links = self.links.lock().unwrap();
        links
            .dropped
            .retain(|(f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
    }

    /// The target's Raft, or why the message does not get through.
    fn route(&self, from: MasterId, to: MasterId, rpc: Rpc) -> Result<Raft, Cut> {
        if self
            .links
            .lock()
            .unwrap()
            .dropped
            .contains(&(from, to, rpc))
        {
            return Err(Cut(format!("{rpc:?} {from} -> {to} cut")));
        }
        self.nodes
            .lock()
            .unwrap()
            .get(&to)
            .cloned()
            .ok_or_else(|| Cut(format!("no master {to}")))
    }
}

struct Client {
    from: MasterId,
    to: MasterId,
    router: Router,
}

/// Master `.0`'s view of the transport.
struct Network(MasterId, Router);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: MasterId, _node: &MasterNode) -> Client {
        Client {
            from: self.0,
            to: target,
            router: self.1.clone(),
        }
    }
}

type RpcResult<T> = Result<T, RPCError<MasterId, MasterNode, RaftError<MasterId>>>;

impl Client {
    /// Delivers a message unless its link is cut. The answer travels back on the same link, so
    /// a link cut while the target handles the message loses the answer, as TCP would.
    async fn deliver<T, F, Fut>(&self, rpc: Rpc, call: F) -> RpcResult<T>
    where
        F: FnOnce(Raft) -> Fut,
        Fut: Future<Output = Result<T, RaftError<MasterId>>>,
    {
        let raft = self
            .router
            .route(self.from, self.to, rpc)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let answer = call(raft)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))?;
        self.router
            .route(self.from, self.to, rpc)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        Ok(answer)
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<MasterId>> {
        self.deliver(Rpc::Append, |r| async move { r.append_entries(rpc).await })
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MasterId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<MasterId>> {
        self.deliver(Rpc::Vote, |r| async move { r.vote(rpc).await })
            .await
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<MasterId>, StreamingError<TypeConfig, Fatal<MasterId>>> {
        // The script never purges a log; a snapshot transfer means it went off its path.
        Err(StreamingError::Unreachable(Unreachable::new(&Cut(
            "no snapshots in this test".into(),
        ))))
    }
}

struct Replica {
    raft: Raft,
    replicated: Replicated,
    applied: watch::Receiver<AppliedState>,
    _dir: tempfile::TempDir,
}

async fn start(id: MasterId, router: &Router) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let db = drover_master::db::open(&dir.path().join("raft")).unwrap();
    let snapshots = Arc::new(SnapshotDir::open(&dir.path().join("snapshots")).unwrap());
    let sm = StateMachine::open(snapshots).unwrap();
    let applied = sm.subscribe();
    let config = openraft::Config {
        cluster_name: "truncated-proposal".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        // Elections only when the script calls one.
        enable_elect: false,
        // No heartbeats: a new leader's first message to the old one is then the AppendEntries
        // that replicates its log, which carries both its term and the conflict. (A heartbeat
        // arriving first shows the old leader the new term before the truncation, and the
        // proposer's term watch answers "unknown" on its own: the same sequence, a different
        // path through the proposer.)
        enable_heartbeat: false,
        ..Default::default()
    }
    .validate()
    .unwrap();
    let raft = Raft::new(
        id,
        Arc::new(config),
        Network(id, router.clone()),
        LogStore::new(db),
        sm,
    )
    .await
    .unwrap();
    router.nodes.lock().unwrap().insert(id, raft.clone());
    let (proposer, proposer_loop) = Proposer::new(raft.clone(), id);
    tokio::spawn(proposer_loop);
    let replicated = Replicated::new(
        raft.clone(),
        id,
        applied.clone(),
        proposer,
        Duration::from_secs(60),
    );
    Replica {
        raft,
        replicated,
        applied,
        _dir: dir,
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How far `r` has applied.
fn applied_index(r: &Replica) -> u64 {
    r.applied.borrow().last_applied.map_or(0, |l| l.index)
}

/// Waits until each of `ids` has applied `index`.
async fn all_applied(
    what: &str,
    replicas: &BTreeMap<MasterId, Replica>,
    ids: &[MasterId],
    index: u64,
) {
    wait_for(what, || {
        ids.iter().all(|id| applied_index(&replicas[id]) >= index)
    })
    .await;
}

fn last_log_index(r: &Replica) -> u64 {
    r.raft.metrics().borrow().last_log_index.unwrap_or(0)
}

fn is_leader(r: &Replica) -> bool {
    let m = r.raft.metrics().borrow().clone();
    m.state == ServerState::Leader && m.current_leader == Some(m.id)
}

/// Calls elections on `r` until it leads (each failed one teaches it a newer term).
async fn elect(r: &Replica) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        r.raft.trigger().elect().await.unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while tokio::time::Instant::now() < until {
            if is_leader(r) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "master {} was not elected within {DEADLINE:?}",
            r.raft.metrics().borrow().id
        );
    }
}

fn framework() -> FrameworkName {
    FrameworkName::new("marathon").unwrap()
}

fn key(k: &str) -> StoreKey {
    StoreKey::new(k).unwrap()
}

fn put(k: &str, v: &str) -> Op {
    Op::Store(StoreOp::Put {
        framework: framework(),
        key: key(k),
        value: Bytes::from(v.to_string()),
    })
}

fn create(k: &str, v: &str) -> Op {
    Op::Store(StoreOp::CompareAndSet {
        framework: framework(),
        key: key(k),
        expected: Expectation::Absent,
        new_value: Bytes::from(v.to_string()),
    })
}

/// What a client following Drover's rule ends up reporting for a write first answered
/// `first`: a not-leader refusal is sent again to `leader` (it was never proposed, so the
/// client may); anything else is final.
async fn client_view(
    first: Result<Outcome, ReplicaError>,
    op: Op,
    leader: &Replicated,
) -> Result<Outcome, ReplicaError> {
    match first {
        Err(ReplicaError::NotLeader { .. }) => leader.propose(op).await,
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_truncated_on_its_leader_but_committed_elsewhere_is_never_reported_refused() {
    let router = Router::default();
    let mut replicas = BTreeMap::new();
    for id in 1..=5 {
        replicas.insert(id, start(id, &router).await);
    }
    let members: BTreeMap<MasterId, MasterNode> = (1..=5)
        .map(|id| {
            (
                id,
                MasterNode {
                    addr: format!("in-memory:{id}"),
                    incarnation: Default::default(),
                },
            )
        })
        .collect();
    let (a, b, c, d, e) = (
        &replicas[&1],
        &replicas[&2],
        &replicas[&3],
        &replicas[&4],
        &replicas[&5],
    );
    a.raft.initialize(members).await.unwrap();
    elect(a).await;
    a.replicated.propose(put("before", "x")).await.unwrap();
    let committed = last_log_index(a);
    all_applied(
        "every replica applies the first write",
        &replicas,
        &[1, 2, 3, 4, 5],
        committed,
    )
    .await;
    let term_a = a.raft.metrics().borrow().current_term;

    // 1. A is cut from B, D and E; its writes reach C only.
    for other in [2, 4, 5] {
        router.cut(1, other);
    }
    let put_first = tokio::spawn({
        let r = a.replicated.clone();
        async move { r.propose(put("counter", "one")).await }
    });
    wait_for("C holds the put", || {
        last_log_index(c) == committed + 1 && last_log_index(a) == committed + 1
    })
    .await;
    let create_first = tokio::spawn({
        let r = a.replicated.clone();
        async move { r.propose(create("lock", "mine")).await }
    });
    wait_for("C holds the compare-and-set", || {
        last_log_index(c) == committed + 2 && last_log_index(a) == committed + 2
    })
    .await;
    assert!(!put_first.is_finished() && !create_first.is_finished());

    // 2. A and C are cut off; B wins with D's and E's votes, but its entries reach neither.
    router.cut(1, 3);
    router.cut(2, 3);
    router.drop_rpc(2, 4, Rpc::Append);
    router.drop_rpc(2, 5, Rpc::Append);
    elect(b).await;
    assert!(last_log_index(d) == committed && last_log_index(e) == committed);
    // B reaches A (one way: A's own messages to B, which B would refuse, would show A the new
    // term before B's log does): A's log conflicts and loses both writes.
    router.mend(2, 1);
    let put_first = tokio::time::timeout(DEADLINE, put_first)
        .await
        .expect("A answers the put once B truncated it")
        .unwrap();
    let create_first = tokio::time::timeout(DEADLINE, create_first)
        .await
        .expect("A answers the compare-and-set once B truncated it")
        .unwrap();
    wait_for("A follows B's term", || {
        a.raft.metrics().borrow().current_term > term_a
    })
    .await;

    // 3. B is cut off; C, which has both writes, wins with D and E and commits them.
    for other in [1, 3, 4, 5] {
        router.cut(2, other);
    }
    elect(c).await;
    let leader_log = last_log_index(c);
    for other in [4, 5] {
        router.heal(1, other);
    }
    router.heal(1, 3);
    all_applied(
        "A, C, D and E apply C's log",
        &replicas,
        &[1, 3, 4, 5],
        leader_log,
    )
    .await;

    // The answers came from the truncation itself (not from the proposer noticing the new term
    // first, the other path to "unknown"): the test is on its case.
    for answer in [&put_first, &create_first] {
        match answer {
            Err(ReplicaError::Lost(why)) => assert!(
                why.contains("removed from this replica's log by a new leader"),
                "{why}"
            ),
            Err(ReplicaError::NotLeader { .. }) => {} // the defect; judged below by its effect
            other => panic!("A answered {other:?}"),
        }
    }

    // The clients' views, each following the rule for what may be sent again.
    let put_seen = client_view(put_first, put("counter", "one"), &c.replicated).await;
    let create_seen = client_view(create_first, create("lock", "mine"), &c.replicated).await;
    // Let any write the clients sent again reach every live replica before reading.
    let final_log = last_log_index(c);
    all_applied(
        "A, C, D and E apply everything",
        &replicas,
        &[1, 3, 4, 5],
        final_log,
    )
    .await;

    for id in [1, 3, 4, 5] {
        let state = replicas[&id].applied.borrow().clone();
        let store = state.registry.store();
        // "before", the put once, the compare-and-set once: three writes. A put sent again
        // after a refusal would be a fourth (applied twice).
        assert_eq!(
            store.revision(),
            3,
            "master {id}: the store applied {} writes; the put answered {put_seen:?}",
            store.revision()
        );
        let lock = store
            .get(&framework(), &key("lock"))
            .expect("the compare-and-set committed");
        assert_eq!(lock.value, Bytes::from("mine"));
    }
    // The writes did commit; no client may have been told they were refused or failed.
    match &put_seen {
        Err(ReplicaError::Lost(_)) | Ok(Outcome::Store(StoreOutcome::Put { .. })) => {}
        other => panic!("the put, applied once, was reported {other:?}"),
    }
    match &create_seen {
        Err(ReplicaError::Lost(_))
        | Ok(Outcome::Store(StoreOutcome::CompareAndSet {
            succeeded: true, ..
        })) => {}
        other => panic!("the compare-and-set, which succeeded, was reported {other:?}"),
    }

    for r in replicas.values() {
        let _ = r.raft.shutdown().await;
    }
}
