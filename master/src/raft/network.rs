//! The client side of the Raft transport: openraft's `RaftNetworkFactory` and `RaftNetwork`
//! over tonic.
//!
//! Owns one gRPC channel per peer, created lazily and reused by every replication stream, vote
//! and snapshot to that peer (HTTP/2 multiplexes them), and kept across leaderships. Failures
//! are sorted for openraft: a refused connection or a peer that refuses us (other cluster,
//! wiped replica) is `Unreachable`, which makes openraft back off exponentially; a batch too big
//! for one request is `PayloadTooLarge` with a hint, which makes openraft resend fewer entries.
//!
//! "Too big" is much smaller than the message limit: openraft 0.9 gives every AppendEntries
//! the heartbeat interval (30 ms by default) as its deadline and retries a timed-out request
//! unchanged, so a batch a follower cannot receive, decode, append and fsync within that time
//! would time out forever, the follower would hear nothing, campaign, and the next leader
//! would meet the same batch (this happened with 10 000 agents: thousands of offers in one
//! command). Requests are therefore held to [`APPEND_BUDGET_BYTES`], and entries are kept
//! below it too (the proposer's bound, offers committed in chunks).
//! Snapshots are streamed from their file in chunks, so their size is not bounded by the gRPC
//! message limit.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::raft::raft_service_client::RaftServiceClient;
use drover_proto::raft::{RaftHeader, RaftRequest, SnapshotChunk};
use futures::StreamExt;
use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;

use super::codec;
use super::{MasterId, MasterNode, Snapshot, TypeConfig, Vote};
use crate::identity::Identity;
use crate::metrics as m;

/// Largest gRPC message the transport sends or accepts, bytes (a bound on what a peer may make
/// this replica decode; AppendEntries batches are held to the much smaller
/// [`APPEND_BUDGET_BYTES`], and one entry always fits, because a store value is at most 1 MiB).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Size of one snapshot chunk on the wire, bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Slowest snapshot transfer rate tolerated before a transfer is abandoned, bytes per second.
const MIN_SNAPSHOT_RATE_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;
/// Most bytes of entries in one AppendEntries (more than one entry is split to fit; a single
/// entry goes alone whatever its size, and entries are kept smaller than this).
pub const APPEND_BUDGET_BYTES: usize = 256 * 1024;
/// Backoff towards an unreachable peer: from 50 ms doubling to 1 s.
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How this master connects to other masters: source address, and mutual TLS whose servers
/// must be masters.
pub use drover_client::channel::Dialer as PeerDialer;

/// Creates one [`PeerClient`] per replication target; caches channels by peer.
pub struct NetworkFactory {
    identity: Arc<Identity>,
    dialer: PeerDialer,
    channels: HashMap<(MasterId, String), Channel>,
}

impl NetworkFactory {
    pub fn new(identity: Arc<Identity>, dialer: PeerDialer) -> Self {
        Self {
            identity,
            dialer,
            channels: HashMap::new(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: MasterId, node: &MasterNode) -> PeerClient {
        let key = (target, node.addr.clone());
        let channel = match self.channels.get(&key) {
            Some(c) => Ok(c.clone()),
            None => match self.dialer.channel(&node.addr) {
                Ok(c) => {
                    self.channels.insert(key, c.clone());
                    Ok(c)
                }
                Err(e) => Err(e.to_string()),
            },
        };
        PeerClient {
            target,
            node: node.clone(),
            client: channel.map(|c| {
                RaftServiceClient::new(c)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            }),
            identity: self.identity.clone(),
        }
    }
}

/// Sends Raft RPCs to one peer.
pub struct PeerClient {
    target: MasterId,
    node: MasterNode,
    /// Err when the peer's address cannot even form a URI; every RPC then reports it unreachable.
    client: Result<RaftServiceClient<Channel>, String>,
    identity: Arc<Identity>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportFailure(String);

fn failure(rpc: &'static str, kind: &'static str) {
    metrics::counter!(m::RAFT_RPC_FAILURES_TOTAL, "rpc" => rpc, "kind" => kind).increment(1);
}

/// The header of a Raft request from this replica (`identity`) to `target` at `node`: the
/// cluster, both ends (the target's incarnation) and the protocol version it is refused
/// without.
pub fn raft_header(identity: &Identity, target: MasterId, node: &MasterNode) -> RaftHeader {
    RaftHeader {
        cluster_id: identity
            .cluster_id()
            .map(|c| c.0.clone())
            .unwrap_or_default(),
        from_node: identity.node_id(),
        to_node: target,
        to_incarnation: node.incarnation.0.clone(),
        protocol_version: super::PROTOCOL_VERSION,
    }
}

impl PeerClient {
    fn header(&self) -> RaftHeader {
        raft_header(&self.identity, self.target, &self.node)
    }

    fn client(&self) -> Result<RaftServiceClient<Channel>, Unreachable> {
        self.client.clone().map_err(|e| {
            Unreachable::new(&TransportFailure(format!(
                "peer {} address {:?} is invalid: {e}",
                self.target, self.node.addr
            )))
        })
    }

    /// Classifies a failed call for openraft.
    fn rpc_error<E: std::error::Error>(
        &self,
        rpc: &'static str,
        status: tonic::Status,
    ) -> RPCError<MasterId, MasterNode, RaftError<MasterId, E>> {
        let msg = TransportFailure(format!(
            "{rpc} to master {} at {}: {}: {}",
            self.target,
            self.node.addr,
            status.code(),
            status.message()
        ));
        match status.code() {
            // Not listening, connection lost, or the peer refuses us: back off.
            tonic::Code::Unavailable | tonic::Code::FailedPrecondition | tonic::Code::Unknown => {
                failure(rpc, "unreachable");
                RPCError::Unreachable(Unreachable::new(&msg))
            }
            _ => {
                failure(rpc, "network");
                RPCError::Network(NetworkError::new(&msg))
            }
        }
    }

    async fn unary<Req, Resp, E>(
        &mut self,
        rpc: &'static str,
        request: &Req,
        option: &RPCOption,
        call: impl FnOnce(
            RaftServiceClient<Channel>,
            tonic::Request<RaftRequest>,
        ) -> std::pin::Pin<
            Box<
                dyn Future<
                        Output = Result<
                            tonic::Response<drover_proto::raft::RaftReply>,
                            tonic::Status,
                        >,
                    > + Send,
            >,
        >,
    ) -> Result<Resp, RPCError<MasterId, MasterNode, RaftError<MasterId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = codec::encode("raft request", request)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let client = self.client()?;
        let mut req = tonic::Request::new(RaftRequest {
            header: Some(self.header()),
            payload,
        });
        // openraft cancels the call at this deadline anyway.
        let budget = option.hard_ttl();
        req.set_timeout(budget);
        let started = Instant::now();
        let reply = match tokio::time::timeout(budget, call(client, req)).await {
            Err(_) => {
                failure(rpc, "timeout");
                return Err(RPCError::Timeout(Timeout {
                    action: if rpc == "vote" {
                        RPCTypes::Vote
                    } else {
                        RPCTypes::AppendEntries
                    },
                    id: self.identity.node_id(),
                    target: self.target,
                    timeout: budget,
                }));
            }
            Ok(Err(status)) => return Err(self.rpc_error(rpc, status)),
            Ok(Ok(r)) => r.into_inner(),
        };
        metrics::histogram!(m::RAFT_RPC_SECONDS, "rpc" => rpc).record(started.elapsed());
        let result: Result<Resp, RaftError<MasterId, E>> =
            codec::decode("raft reply", &reply.payload)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MasterId>, RPCError<MasterId, MasterNode, RaftError<MasterId>>>
    {
        // A batch larger than the budget goes back to openraft with a hint to send fewer
        // entries (sizing is cheap: proposals carry their encoding).
        let n = rpc.entries.len();
        if n > 1 {
            let size = postcard::experimental::serialized_size(&rpc).unwrap_or(0);
            if size > APPEND_BUDGET_BYTES {
                metrics::counter!(m::RAFT_APPEND_SPLITS_TOTAL).increment(1);
                let fit = ((n as u128 * APPEND_BUDGET_BYTES as u128) / size as u128).max(1);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(fit as u64),
                ));
            }
        }
        self.unary("append_entries", &rpc, &option, |mut c, r| {
            Box::pin(async move { c.append_entries(r).await })
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MasterId>,
        option: RPCOption,
    ) -> Result<VoteResponse<MasterId>, RPCError<MasterId, MasterNode, RaftError<MasterId>>> {
        self.unary("vote", &rpc, &option, |mut c, r| {
            Box::pin(async move { c.vote(r).await })
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<MasterId>, StreamingError<TypeConfig, Fatal<MasterId>>> {
        let started = Instant::now();
        let path = snapshot.snapshot.path.clone();
        let storage_err = |e: &dyn std::fmt::Display| {
            StreamingError::StorageError(
                openraft::StorageIOError::read_snapshot(None, AnyError::error(e.to_string()))
                    .into(),
            )
        };
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            // A newer snapshot replaced this one between openraft picking it and this open:
            // not a storage failure (which would stop the replica); the next attempt picks the
            // newer one. Once open, the file stays readable even if it is replaced.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                failure("install_snapshot", "replaced");
                return Err(StreamingError::Network(NetworkError::new(
                    &TransportFailure(format!(
                        "snapshot {} was replaced before it was sent",
                        path.display()
                    )),
                )));
            }
            Err(e) => return Err(storage_err(&format!("open {}: {e}", path.display()))),
        };
        let size = file.metadata().await.map_err(|e| storage_err(&e))?.len();
        let meta = codec::encode("snapshot meta", &(vote, snapshot.meta.clone()))
            .map_err(|e| storage_err(&e))?;
        let header = self.header();

        // The stream reads the file one chunk at a time as tonic pulls it.
        let first = SnapshotChunk {
            header: Some(header),
            meta,
            data: Vec::new(),
        };
        let body = snapshot_chunks(first, file);

        let mut client = self.client().map_err(StreamingError::Unreachable)?;
        let budget =
            option.hard_ttl() + Duration::from_secs(size / MIN_SNAPSHOT_RATE_BYTES_PER_SEC + 1);
        let call = async move { client.install_snapshot(body).await };
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(budget, call) => r,
        };
        let reply = match reply {
            Err(_) => {
                failure("install_snapshot", "timeout");
                return Err(StreamingError::Timeout(Timeout {
                    action: RPCTypes::InstallSnapshot,
                    id: self.identity.node_id(),
                    target: self.target,
                    timeout: budget,
                }));
            }
            Ok(Err(status)) => {
                return Err(
                    match self.rpc_error::<Fatal<MasterId>>("install_snapshot", status) {
                        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                        other => StreamingError::Network(NetworkError::new(&other)),
                    },
                )
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        metrics::histogram!(m::RAFT_RPC_SECONDS, "rpc" => "install_snapshot")
            .record(started.elapsed());
        let result: Result<SnapshotResponse<MasterId>, Fatal<MasterId>> =
            codec::decode("snapshot reply", &reply.payload)
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        tracing::info!(
            target = self.target,
            bytes = size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sent snapshot"
        );
        result.map_err(|e| {
            StreamingError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn backoff(&self) -> Backoff {
        let mut next = BACKOFF_START;
        Backoff::new(std::iter::from_fn(move || {
            let cur = next;
            next = (next * 2).min(BACKOFF_MAX);
            Some(cur)
        }))
    }
}

/// The snapshot transfer's request stream: `first` (header and meta), then the file's bytes in
/// chunks of [`SNAPSHOT_CHUNK_BYTES`], read one at a time as tonic pulls them. A read error
/// ends the stream early, which makes the receiver's verification fail and refuse the
/// transfer; openraft then sends it again.
fn snapshot_chunks(
    first: SnapshotChunk,
    file: tokio::fs::File,
) -> impl futures::Stream<Item = SnapshotChunk> + Send + 'static {
    futures::stream::once(async move { first }).chain(futures::stream::unfold(
        (file, false),
        |(mut file, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading snapshot file for transfer");
                        // Ending the stream early makes the receiver's verification fail
                        // and refuse the transfer; openraft then sends it again.
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            let last = filled < SNAPSHOT_CHUNK_BYTES;
            Some((
                SnapshotChunk {
                    header: None,
                    meta: Vec::new(),
                    data: buf,
                },
                (file, last),
            ))
        },
    ))
}
