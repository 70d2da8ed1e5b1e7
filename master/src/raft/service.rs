//! The server side of the Raft transport: receives AppendEntries, Vote and snapshot streams from
//! peers and hands them to openraft; answers Hello.
//!
//! Owns the admission check every Raft request passes before openraft sees it:
//! - it is addressed to this replica's id (a stale address book fails loudly, not silently);
//! - it names this replica's incarnation, i.e. the sender's membership knows this very data
//!   directory; a replica whose data was wiped therefore never takes part under its old id;
//! - it comes from this replica's cluster. A pristine replica adopts the cluster id of the first
//!   request that names its incarnation, which only a cluster that asked it `Hello` can know.
//!
//! A refused request changes nothing and is answered FAILED_PRECONDITION with the reason; a
//! payload that does not decode is INVALID_ARGUMENT. The sender's id is not checked against the
//! membership: a replica that has not yet received the entry adding a new voter must still be
//! able to vote for it, or a membership change could leave the cluster without a leader.

use std::future::Future;
use std::sync::Arc;

use drover_proto::raft::raft_service_server::RaftService;
use drover_proto::raft::{
    HelloReply, HelloRequest, RaftHeader, RaftReply, RaftRequest, SnapshotChunk,
};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::codec;
use super::snapshot::{self, SnapshotDir, SnapshotFile};
use super::{MasterId, Raft, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::identity::{ClusterId, Identity};
use crate::metrics as m;

/// Largest snapshot accepted from a leader, bytes. The registry lives in memory, so a snapshot
/// near this size would not fit a master anyway.
pub const MAX_SNAPSHOT_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Longest wait for the next chunk of a snapshot before the transfer is abandoned (the leader
/// starts over); bounds what a stalled sender holds.
const SNAPSHOT_CHUNK_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct RaftTransport {
    raft: Raft,
    identity: Arc<Identity>,
    snapshots: Arc<SnapshotDir>,
    /// Room for requests handled in their own task ([`RaftTransport::detached`]).
    detached: Arc<tokio::sync::Semaphore>,
}

/// Most append and vote requests handled in their own task at once. openraft resends an
/// append its deadline cut off, so a follower stuck on a slow disk would otherwise gather
/// tasks (each holding a batch) for as long as it is stuck; past this, requests are handled
/// in the caller's task.
const MAX_DETACHED_REQUESTS: usize = 64;

impl RaftTransport {
    pub fn new(raft: Raft, identity: Arc<Identity>, snapshots: Arc<SnapshotDir>) -> Self {
        Self {
            raft,
            identity,
            snapshots,
            detached: Arc::new(tokio::sync::Semaphore::new(MAX_DETACHED_REQUESTS)),
        }
    }

    fn refuse(reason: &'static str, message: String) -> Status {
        metrics::counter!(m::RAFT_REJECTED_REQUESTS_TOTAL, "reason" => reason).increment(1);
        tracing::warn!(reason, "refused Raft request: {message}");
        Status::failed_precondition(message)
    }

    /// The admission check described in the module docs.
    fn admit(&self, header: Option<&RaftHeader>) -> Result<(), Status> {
        let h = header.ok_or_else(|| {
            metrics::counter!(m::RAFT_REJECTED_REQUESTS_TOTAL, "reason" => "malformed")
                .increment(1);
            Status::invalid_argument("header: missing")
        })?;
        let me = self.identity.node_id();
        if let Some(why) = super::protocol_mismatch(
            &format!("master {}", h.from_node),
            h.protocol_version,
            &format!("master {me}"),
        ) {
            return Err(Self::refuse("protocol_version", why));
        }
        if h.to_node != me {
            return Err(Self::refuse(
                "wrong_node",
                format!(
                    "request for master {} reached master {me}: the sender's address for master {} is wrong",
                    h.to_node, h.to_node
                ),
            ));
        }
        let mine = self.identity.incarnation();
        if h.to_incarnation != mine.0 {
            return Err(Self::refuse(
                "wrong_incarnation",
                format!(
                    "master {me} is incarnation {mine}, the cluster knows incarnation {:?}: this replica's data directory was recreated, so it lost its vote and log; remove it (drover cluster remove-master {me}) and add it back under a new id",
                    h.to_incarnation
                ),
            ));
        }
        match self.identity.cluster_id() {
            Some(ours) if ours.0 == h.cluster_id => Ok(()),
            Some(ours) => Err(Self::refuse(
                "wrong_cluster",
                format!(
                    "cluster id mismatch: master {me} belongs to cluster {ours}, the request comes from cluster {:?} (master {})",
                    h.cluster_id, h.from_node
                ),
            )),
            None if h.cluster_id.is_empty() => Err(Self::refuse(
                "wrong_cluster",
                format!("master {} sent a request without a cluster id", h.from_node),
            )),
            None => {
                let id = ClusterId(h.cluster_id.clone());
                self.identity
                    .adopt_cluster(&id)
                    .map_err(|e| Self::refuse("wrong_cluster", e.to_string()))?;
                tracing::info!(cluster = %id, leader = h.from_node, "joined cluster");
                Ok(())
            }
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        what: &'static str,
        bytes: &[u8],
    ) -> Result<T, Status> {
        codec::decode(what, bytes).map_err(|e| {
            metrics::counter!(m::RAFT_REJECTED_REQUESTS_TOTAL, "reason" => "malformed")
                .increment(1);
            Status::invalid_argument(format!("payload: {e}"))
        })
    }

    /// Runs a request's handling in its own task, so that it completes even when the caller
    /// gives up: openraft cancels an AppendEntries at its heartbeat-interval deadline, which
    /// drops this handler; a heartbeat or append that a loaded follower receives late must
    /// still reach its Raft core (it extends the leader's lease there), or the follower
    /// campaigns against a live leader.
    /// At most [`MAX_DETACHED_REQUESTS`] at once; beyond, the request is handled here.
    async fn detached(
        &self,
        work: impl Future<Output = Result<Response<RaftReply>, Status>> + Send + 'static,
    ) -> Result<Response<RaftReply>, Status> {
        let Ok(room) = self.detached.clone().try_acquire_owned() else {
            return work.await;
        };
        tokio::spawn(async move {
            let _room = room;
            work.await
        })
        .await
        .map_err(|e| Status::internal(format!("request handling failed: {e}")))?
    }

    fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
        let payload =
            codec::encode("raft reply", result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftReply { payload }))
    }
}

/// Removes a received snapshot file on every path out of the handler; after a successful
/// install the file has been moved away and there is nothing to remove.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The next chunk of a snapshot stream (None at its end), waiting at most
/// [`SNAPSHOT_CHUNK_IDLE_TIMEOUT`]; `received` bytes so far, for the error.
async fn next_chunk(
    stream: &mut Streaming<SnapshotChunk>,
    received: u64,
) -> Result<Option<SnapshotChunk>, Status> {
    match tokio::time::timeout(SNAPSHOT_CHUNK_IDLE_TIMEOUT, stream.message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "snapshot stream idle for {SNAPSHOT_CHUNK_IDLE_TIMEOUT:?} after {received} bytes"
        ))),
    }
}

#[tonic::async_trait]
impl RaftService for RaftTransport {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(req.header.as_ref())?;
        let raft = self.raft.clone();
        self.detached(async move {
            let rpc: AppendEntriesRequest<TypeConfig> =
                Self::decode("append entries", &req.payload)?;
            Self::reply(&raft.append_entries(rpc).await)
        })
        .await
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(req.header.as_ref())?;
        let raft = self.raft.clone();
        self.detached(async move {
            let rpc: VoteRequest<MasterId> = Self::decode("vote", &req.payload)?;
            Self::reply(&raft.vote(rpc).await)
        })
        .await
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut stream = request.into_inner();
        let first = next_chunk(&mut stream, 0)
            .await?
            .ok_or_else(|| Status::invalid_argument("snapshot stream is empty"))?;
        self.admit(first.header.as_ref())?;
        let (vote, meta): (Vote, SnapshotMeta) = Self::decode("snapshot meta", &first.meta)?;
        let path = self.snapshots.incoming_path();
        let guard = RemoveOnDrop(path.clone());
        let io = |e: std::io::Error| {
            Status::internal(format!("writing snapshot {}: {e}", path.display()))
        };
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let mut total = 0u64;
        let mut chunk = Some(first);
        while let Some(c) = chunk {
            total += c.data.len() as u64;
            if total > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted(format!(
                    "snapshot exceeds {MAX_SNAPSHOT_BYTES} bytes"
                )));
            }
            file.write_all(&c.data).await.map_err(io)?;
            chunk = next_chunk(&mut stream, total).await?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        // openraft treats a failed install as a storage failure and stops the replica, so a
        // transfer that arrived damaged or cut short is refused here and the leader retries.
        let (file_path, announced) = (path.clone(), meta.clone());
        tokio::task::spawn_blocking(move || snapshot::verify(&file_path, &announced))
            .await
            .map_err(|e| Status::internal(format!("verifying snapshot: {e}")))?
            .map_err(|e| {
                metrics::counter!(m::RAFT_REJECTED_REQUESTS_TOTAL, "reason" => "corrupt_snapshot")
                    .increment(1);
                tracing::warn!(error = %e, bytes = total, "refused a damaged snapshot transfer");
                Status::data_loss(format!("snapshot transfer damaged: {e}"))
            })?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = total, "received snapshot");
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path: path.clone() }),
        };
        let result = self.raft.install_full_snapshot(vote, snapshot).await;
        drop(guard);
        Self::reply(&result)
    }

    async fn campaign(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.admit(req.header.as_ref())?;
        let from = req.header.as_ref().map_or(0, |h| h.from_node);
        tracing::info!(leader = from, "asked to campaign (leadership transfer)");
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(format!("the Raft node stopped: {e}")))?;
        Ok(Response::new(RaftReply {
            payload: Vec::new(),
        }))
    }

    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let req = request.into_inner();
        if let Some(why) = super::protocol_mismatch(
            &format!("master {}", req.from_node),
            req.protocol_version,
            &format!("master {}", self.identity.node_id()),
        ) {
            return Err(Self::refuse("protocol_version", why));
        }
        Ok(Response::new(HelloReply {
            protocol_version: super::PROTOCOL_VERSION,
            node_id: self.identity.node_id(),
            incarnation: self.identity.incarnation().0.clone(),
            cluster_id: self
                .identity
                .cluster_id()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
        }))
    }
}
