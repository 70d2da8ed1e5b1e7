//! Forming a new cluster, exactly once.
//!
//! Owns the decision to call openraft's `initialize`. Only the replica with the smallest id in
//! `--peers` does, only while its own Raft state is pristine, and only after every peer has
//! answered Hello with no cluster of its own: the membership it writes records each peer's
//! incarnation. If any peer already belongs to a cluster, this replica's data directory is new
//! but the cluster is not, so it refuses: a replica that lost its data must be removed and added
//! back under a new id, never re-bootstrap.
//!
//! Other pristine replicas wait to be contacted by the leader (see `raft::service`), and say in
//! their log what they see meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::raft::raft_service_client::RaftServiceClient;
use drover_proto::raft::HelloRequest;
use openraft::error::{InitializeError, RaftError};

use crate::identity::{ClusterId, Identity, Incarnation};
use crate::raft::network::PeerDialer;
use crate::raft::{MasterId, MasterNode, Raft};

const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a replica waiting to be contacted reports what it sees.
const WAITING_REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("refusing to bootstrap: master {peer} already belongs to cluster {cluster}, but this replica's data directory is new. A replica that lost its data must be removed (drover cluster remove-master {me}) and added back under a new id (drover cluster add-master)")]
    AlreadyFormed {
        me: MasterId,
        peer: MasterId,
        cluster: String,
    },
    #[error("--peers must include this master (id {0})")]
    NotInPeers(MasterId),
    #[error("identity: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("initialize: {0}")]
    Initialize(String),
    #[error("the Raft node stopped: {0}")]
    Stopped(String),
}

struct PeerAnswer {
    id: MasterId,
    incarnation: Incarnation,
    cluster: String,
}

async fn hello(
    dialer: &PeerDialer,
    me: MasterId,
    id: MasterId,
    addr: &str,
) -> Result<PeerAnswer, String> {
    let channel = dialer.channel(addr).map_err(|e| e.to_string())?;
    let mut client = RaftServiceClient::new(channel);
    let call = client.hello(HelloRequest {
        cluster_id: String::new(),
        from_node: me,
        protocol_version: crate::raft::PROTOCOL_VERSION,
    });
    let reply = tokio::time::timeout(HELLO_TIMEOUT, call)
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if reply.node_id != id {
        return Err(format!(
            "{addr} answers as master {}, --peers says {id}",
            reply.node_id
        ));
    }
    if let Some(why) = crate::raft::protocol_mismatch(
        &format!("master {id} at {addr}"),
        reply.protocol_version,
        &format!("master {me}"),
    ) {
        return Err(why);
    }
    Ok(PeerAnswer {
        id,
        incarnation: Incarnation(reply.incarnation),
        cluster: reply.cluster_id,
    })
}

/// Runs until this replica is part of a cluster. Returns an error when it must not go on.
pub async fn run(
    raft: Raft,
    identity: Arc<Identity>,
    peers: BTreeMap<MasterId, String>,
    dialer: PeerDialer,
) -> Result<(), BootstrapError> {
    let me = identity.node_id();
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| BootstrapError::Stopped(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    let Some(my_addr) = peers.get(&me).cloned() else {
        // Not one of the founding members: it joins when an operator adds it.
        return wait_to_be_added(raft, me, peers, dialer).await;
    };
    if peers.keys().next() != Some(&me) {
        return wait_to_be_added(raft, me, peers, dialer).await;
    }

    tracing::info!(peers = ?peers, "pristine founding replica with the smallest id: bootstrapping the cluster");
    let mut backoff = RETRY_START;
    let answers = loop {
        let mut answers = Vec::new();
        let mut missing = Vec::new();
        for (&id, addr) in peers.iter().filter(|(id, _)| **id != me) {
            match hello(&dialer, me, id, addr).await {
                Ok(a) => answers.push(a),
                Err(e) => missing.push(format!("master {id} at {addr}: {e}")),
            }
        }
        if let Some(a) = answers.iter().find(|a| !a.cluster.is_empty()) {
            // A cluster exists already, unless it is the one this replica itself started
            // forming before a crash (it then has the same cluster id persisted).
            let ours = identity.cluster_id().map(|c| c.0.as_str());
            if ours != Some(a.cluster.as_str()) {
                return Err(BootstrapError::AlreadyFormed {
                    me,
                    peer: a.id,
                    cluster: a.cluster.clone(),
                });
            }
        }
        if missing.is_empty() {
            break answers;
        }
        tracing::info!(waiting_for = ?missing, "waiting for every founding master to answer before bootstrapping");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    };

    let cluster = match identity.cluster_id() {
        Some(c) => c.clone(),
        None => ClusterId(uuid::Uuid::new_v4().to_string()),
    };
    identity.adopt_cluster(&cluster)?;
    let mut members = BTreeMap::new();
    members.insert(
        me,
        MasterNode {
            addr: my_addr,
            incarnation: identity.incarnation().clone(),
        },
    );
    for a in answers {
        members.insert(
            a.id,
            MasterNode {
                addr: peers[&a.id].clone(),
                incarnation: a.incarnation,
            },
        );
    }
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(cluster = %cluster, "bootstrapped a new cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(BootstrapError::Initialize(e.to_string())),
    }
}

async fn wait_to_be_added(
    raft: Raft,
    me: MasterId,
    peers: BTreeMap<MasterId, String>,
    dialer: PeerDialer,
) -> Result<(), BootstrapError> {
    tracing::info!("pristine replica: waiting for the leader to contact it");
    let mut metrics = raft.metrics();
    loop {
        let joined = tokio::time::timeout(WAITING_REPORT_EVERY, async {
            metrics
                .wait_for(|m| m.membership_config.membership().get_node(&me).is_some())
                .await
                .map(|_| ())
        })
        .await;
        match joined {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => return Err(BootstrapError::Stopped("metrics closed".into())),
            Err(_) => {
                let mut seen = Vec::new();
                for (&id, addr) in peers.iter().filter(|(id, _)| **id != me) {
                    if let Ok(a) = hello(&dialer, me, id, addr).await {
                        if !a.cluster.is_empty() {
                            seen.push(format!("master {id} is in cluster {}", a.cluster));
                        }
                    }
                }
                if seen.is_empty() {
                    tracing::info!(
                        "still waiting for the founding replica to bootstrap the cluster"
                    );
                } else {
                    tracing::warn!(peers = ?seen, "not yet a member of the cluster its peers are in: if this replica is new, add it with `drover cluster add-master --id {me} --addr <its address>`; if its data directory was wiped, it cannot rejoin as master {me}: remove it and add it back under a new id");
                }
            }
        }
    }
}
