//! [`MasterClient`]: calls any master, follows redirects to the leader, retries what is safe.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_proto::master::cluster_client::ClusterClient;
use drover_proto::master::framework_store_client::FrameworkStoreClient;
use drover_proto::master::{
    compare_and_set_request, AddMasterRequest, CompareAndSetReply, CompareAndSetRequest,
    DeleteRequest, GetRequest, ListReply, ListRequest, MembershipReply, PutRequest,
    RemoveMasterRequest, StatusReply, StatusRequest, VersionedValue,
};
use drover_proto::metadata;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::channel;

/// Largest message the client accepts from a master, bytes.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// Redirects followed in a row before the client waits (a leader hint can be stale during an
/// election).
const MAX_REDIRECTS_WITHOUT_WAIT: u32 = 3;

/// How long a call keeps trying, and how it waits between attempts.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Give up after this long, in total.
    pub deadline: Duration,
    /// First wait between attempts; doubles up to `backoff_max`.
    pub backoff_start: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            backoff_start: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid master address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("no master list given")]
    NoMasters,
    #[error("no leader answered within {elapsed:?}; last error: {last}")]
    Unavailable { elapsed: Duration, last: String },
    #[error("the outcome is unknown (the request may or may not have been applied): {0}")]
    Ambiguous(String),
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rejected(Status),
}

/// How one attempt of a call on one master failed (see [`MasterClient::call_idempotent_at`]).
#[derive(Debug)]
pub enum AttemptError {
    /// The master answered with this refusal, or the attempt failed on the way and may have
    /// reached it.
    Failed(Status),
    /// The request certainly never reached the master (its connection could not be made).
    NotSent(Status),
    /// Give up the call at once (the master's address cannot be used).
    Fatal(ClientError),
}

impl ClientError {
    /// The gRPC status a master answered with, if the failure is a refusal.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Rejected(s) => Some(s),
            _ => None,
        }
    }
}

/// Whether an operation may be sent again after a failure that leaves its outcome unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: sending twice changes nothing.
    Always,
    /// Writes: only when the request certainly did not take effect.
    OnlyIfNotApplied,
}

struct Inner {
    addrs: Vec<String>,
    channels: Mutex<HashMap<String, Channel>>,
    leader: Mutex<Option<String>>,
    /// How it connects: source address, TLS.
    dialer: channel::Dialer,
}

/// A leader-following client for the masters. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct MasterClient {
    inner: Arc<Inner>,
    policy: RetryPolicy,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the request never reached a master (the TCP connection could not be made).
fn never_sent(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether a master answering `code` certainly did not apply the write: it refused the request
/// as such (bad argument, failed precondition, limit reached) before or instead of proposing
/// it. Every other failure of a write leaves its outcome unknown.
fn refused_before_proposing(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::ResourceExhausted
    )
}

/// A follower's refusal: `Some(hint)` where hint is the leader's address when known.
fn redirect(status: &Status) -> Option<Option<String>> {
    if status.code() != Code::Unavailable {
        return None;
    }
    let md = status.metadata();
    md.get(metadata::NOT_LEADER)?;
    Some(
        md.get(metadata::LEADER_ADDR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    )
}

impl MasterClient {
    /// A client for the masters at `addrs` (`host:port`, any subset of the cluster).
    pub fn new(addrs: &[String]) -> Result<Self, ClientError> {
        Self::with_policy(addrs, RetryPolicy::default())
    }

    pub fn with_policy(addrs: &[String], policy: RetryPolicy) -> Result<Self, ClientError> {
        Self::with_dialer(addrs, policy, channel::Dialer::default())
    }

    /// A client whose connections are made by `dialer` (its source address, mutual TLS).
    pub fn with_dialer(
        addrs: &[String],
        policy: RetryPolicy,
        dialer: channel::Dialer,
    ) -> Result<Self, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::NoMasters);
        }
        for a in addrs {
            channel::endpoint(a).map_err(|e| ClientError::BadAddress {
                addr: a.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                addrs: addrs.to_vec(),
                channels: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                dialer,
            }),
            policy,
        })
    }

    /// The same client (sharing connections) with a different overall deadline per call.
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: RetryPolicy {
                deadline,
                ..self.policy.clone()
            },
        }
    }

    /// The leader this client last talked to or was pointed at.
    pub fn known_leader(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = lock(&self.inner.channels);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self
            .inner
            .dialer
            .channel(addr)
            .map_err(|e| ClientError::BadAddress {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A gRPC call through [`MasterClient::call_at`].
    async fn call<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T, ClientError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let f = &f;
        self.call_at(retry, |addr, left| async move {
            self.on_channel(&addr, left, f).await
        })
        .await
    }

    /// The leader-following loop: `f` is one attempt on the master at the address it gets.
    async fn call_at<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T, ClientError>
    where
        F: Fn(String, Duration) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let policy = &self.policy;
        let started = Instant::now();
        let mut backoff = policy.backoff_start;
        let mut rotation = rand::random_range(0..self.inner.addrs.len());
        let mut redirects = 0u32;
        loop {
            let addr = match lock(&self.inner.leader).clone() {
                Some(l) => l,
                None => {
                    rotation = (rotation + 1) % self.inner.addrs.len();
                    self.inner.addrs[rotation].clone()
                }
            };
            let remaining = policy.deadline.saturating_sub(started.elapsed());
            let (status, not_sent) = match f(addr.clone(), remaining).await {
                Ok(v) => {
                    *lock(&self.inner.leader) = Some(addr);
                    return Ok(v);
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::NotSent(s)) => (s, true),
                Err(AttemptError::Failed(s)) => (s, false),
            };
            let mut wait = true;
            if let Some(hint) = redirect(&status) {
                // Refused before proposing: always safe to send elsewhere.
                redirects += 1;
                wait = hint.is_none() || redirects > MAX_REDIRECTS_WITHOUT_WAIT;
                *lock(&self.inner.leader) = hint.filter(|h| *h != addr);
            } else if not_sent
                || (retry == Retry::Always
                    && matches!(
                        status.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::Unknown
                            | Code::Cancelled
                    ))
            {
                *lock(&self.inner.leader) = None;
            } else if retry == Retry::Always || refused_before_proposing(status.code()) {
                return Err(ClientError::Rejected(status));
            } else {
                // A write that failed any other way (timeout, lost connection, an internal
                // error) may have been proposed and may yet commit.
                *lock(&self.inner.leader) = None;
                return Err(ClientError::Ambiguous(format!(
                    "{addr}: {}: {}",
                    status.code(),
                    status.message()
                )));
            }
            tracing::debug!(%addr, code = ?status.code(), message = status.message(), "retrying");
            if started.elapsed() >= policy.deadline {
                return Err(ClientError::Unavailable {
                    elapsed: started.elapsed(),
                    last: format!("{addr}: {}", status.message()),
                });
            }
            if wait {
                redirects = 0;
                let remaining = policy.deadline.saturating_sub(started.elapsed());
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff = (backoff * 2).min(policy.backoff_max);
            }
        }
    }

    /// One attempt of a gRPC call on the master at `addr`.
    async fn on_channel<T, F, Fut>(
        &self,
        addr: &str,
        time_left: Duration,
        f: &F,
    ) -> Result<T, AttemptError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let channel = self.channel(addr).map_err(AttemptError::Fatal)?;
        f(channel, time_left).await.map_err(|s| {
            if never_sent(&s) {
                AttemptError::NotSent(s)
            } else {
                AttemptError::Failed(s)
            }
        })
    }

    /// Runs a call that is safe to repeat (a read, a subscription, an idempotent request) on
    /// the leader: `f` gets a channel to the master tried and the time left before the
    /// deadline, and is tried again, elsewhere if need be, until it succeeds, a master refuses
    /// it for good, or the deadline passes. Services outside this crate (the framework and
    /// agent APIs) use it with their own generated clients.
    pub async fn call_idempotent<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(Retry::Always, f).await
    }

    /// Runs a call that must not be applied twice on the leader: it is repeated only when it
    /// certainly did not take effect (a follower's redirect, a refused connection); any other
    /// failure is [`ClientError::Ambiguous`] or [`ClientError::Rejected`].
    pub async fn call_once<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(Retry::OnlyIfNotApplied, f).await
    }

    /// [`MasterClient::call_idempotent`] for a transport of the caller's own (the masters'
    /// HTTP APIs): `f` gets the address (`host:port`) of the master to try and the time left,
    /// and says how the attempt failed with an [`AttemptError`]. A refusal that names the
    /// leader is a `Status` with [`metadata::NOT_LEADER`] (and [`metadata::LEADER_ADDR`]).
    pub async fn call_idempotent_at<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(String, Duration) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        self.call_at(Retry::Always, f).await
    }

    /// [`MasterClient::call_once`] for a transport of the caller's own; see
    /// [`MasterClient::call_idempotent_at`].
    pub async fn call_once_at<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(String, Duration) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        self.call_at(Retry::OnlyIfNotApplied, f).await
    }

    /// The source address the client's connections leave from, if one was chosen.
    pub fn bind_ip(&self) -> Option<std::net::IpAddr> {
        self.inner.dialer.bind_ip
    }

    /// How the client connects (to dial other processes the same way).
    pub fn dialer(&self) -> &channel::Dialer {
        &self.inner.dialer
    }

    fn store(ch: Channel) -> FrameworkStoreClient<Channel> {
        FrameworkStoreClient::new(ch).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    fn cluster(ch: Channel) -> ClusterClient<Channel> {
        ClusterClient::new(ch).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    /// Linearizable read of `key` in `framework`'s store.
    pub async fn get(
        &self,
        framework: &str,
        key: &str,
    ) -> Result<Option<VersionedValue>, ClientError> {
        let req = GetRequest {
            framework: framework.into(),
            key: key.into(),
        };
        self.call(Retry::Always, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move { Ok(Self::store(ch).get(r).await?.into_inner().entry) }
        })
        .await
    }

    /// Writes `value` under `key`; returns its new version.
    pub async fn put(
        &self,
        framework: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<u64, ClientError> {
        let req = PutRequest {
            framework: framework.into(),
            key: key.into(),
            value,
        };
        self.call(Retry::OnlyIfNotApplied, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move { Ok(Self::store(ch).put(r).await?.into_inner().version) }
        })
        .await
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, framework: &str, key: &str) -> Result<bool, ClientError> {
        let req = DeleteRequest {
            framework: framework.into(),
            key: key.into(),
        };
        self.call(Retry::OnlyIfNotApplied, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move { Ok(Self::store(ch).delete(r).await?.into_inner().existed) }
        })
        .await
    }

    /// Compare-and-set: writes `new_value` if the current state matches `expected`.
    pub async fn compare_and_set(
        &self,
        framework: &str,
        key: &str,
        expected: compare_and_set_request::Expected,
        new_value: Vec<u8>,
    ) -> Result<CompareAndSetReply, ClientError> {
        let req = CompareAndSetRequest {
            framework: framework.into(),
            key: key.into(),
            expected: Some(expected),
            new_value,
        };
        self.call(Retry::OnlyIfNotApplied, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move { Ok(Self::store(ch).compare_and_set(r).await?.into_inner()) }
        })
        .await
    }

    /// Keys of `framework` after `start_after`, at most `limit`.
    pub async fn list(
        &self,
        framework: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<ListReply, ClientError> {
        let req = ListRequest {
            framework: framework.into(),
            start_after: start_after.into(),
            limit,
        };
        self.call(Retry::Always, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move { Ok(Self::store(ch).list(r).await?.into_inner()) }
        })
        .await
    }

    /// The status of one particular master (not following the leader).
    pub async fn status_of(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<StatusReply, ClientError> {
        let mut r = tonic::Request::new(StatusRequest {});
        r.set_timeout(timeout);
        let mut client = Self::cluster(self.channel(addr)?);
        let fut = client.status(r);
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(ClientError::Unavailable {
                elapsed: timeout,
                last: format!("{addr}: no answer"),
            }),
            Ok(Err(s)) => Err(ClientError::Rejected(s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// The leader's view of the cluster.
    pub async fn leader_status(&self) -> Result<StatusReply, ClientError> {
        // Status is answered by any replica; ask until one that is the leader answers.
        self.call(Retry::Always, |ch, t| {
            let mut r = tonic::Request::new(StatusRequest {});
            r.set_timeout(t);
            async move {
                let s = Self::cluster(ch).status(r).await?.into_inner();
                if s.leader_id != 0 && s.leader_id == s.node_id {
                    Ok(s)
                } else {
                    let mut st = Status::unavailable("not the leader");
                    st.metadata_mut().insert(
                        metadata::NOT_LEADER,
                        tonic::metadata::MetadataValue::from_static("1"),
                    );
                    if let Ok(v) = s.leader_addr.parse() {
                        if !s.leader_addr.is_empty() {
                            st.metadata_mut().insert(metadata::LEADER_ADDR, v);
                        }
                    }
                    Err(st)
                }
            }
        })
        .await
    }

    /// Sets `role`'s DRF weight (committed by the leader). Setting the same weight twice is
    /// harmless, so it is retried like a read.
    pub async fn set_role_weight(&self, role: &str, weight: f64) -> Result<(), ClientError> {
        let req = drover_proto::master::SetRoleWeightRequest {
            role: role.into(),
            weight,
        };
        self.call(Retry::Always, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move {
                Self::cluster(ch).set_role_weight(r).await?;
                Ok(())
            }
        })
        .await
    }

    /// Adds master `id` at `addr`: learner first, voter once it has caught up.
    pub async fn add_master(&self, id: u64, addr: &str) -> Result<MembershipReply, ClientError> {
        let req = AddMasterRequest {
            id,
            addr: addr.into(),
        };
        self.call(Retry::OnlyIfNotApplied, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move { Ok(Self::cluster(ch).add_master(r).await?.into_inner()) }
        })
        .await
    }

    /// Removes master `id` from the cluster.
    pub async fn remove_master(&self, id: u64) -> Result<MembershipReply, ClientError> {
        let req = RemoveMasterRequest { id };
        self.call(Retry::OnlyIfNotApplied, |ch, t| {
            let mut r = tonic::Request::new(req);
            r.set_timeout(t);
            async move { Ok(Self::cluster(ch).remove_master(r).await?.into_inner()) }
        })
        .await
    }

    /// Agent maintenance (drain, reactivate, remove); answers the agent's live tasks. The
    /// same state again changes nothing, so the call is repeated freely.
    pub async fn set_agent_state(
        &self,
        agent_id: &str,
        action: drover_proto::master::AgentMaintenance,
    ) -> Result<u64, ClientError> {
        let req = drover_proto::master::SetAgentStateRequest {
            agent_id: agent_id.into(),
            action: action as i32,
        };
        self.call(Retry::Always, |ch, t| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(t);
            async move {
                Ok(Self::cluster(ch)
                    .set_agent_state(r)
                    .await?
                    .into_inner()
                    .live_tasks)
            }
        })
        .await
    }

    /// Hands leadership to master `to` (0: the most caught-up voter): (new leader, term).
    pub async fn transfer_leadership(&self, to: u64) -> Result<(u64, u64), ClientError> {
        let req = drover_proto::master::TransferLeadershipRequest { to };
        self.call(Retry::OnlyIfNotApplied, |ch, t| {
            let mut r = tonic::Request::new(req);
            r.set_timeout(t);
            async move {
                let reply = Self::cluster(ch).transfer_leadership(r).await?.into_inner();
                Ok((reply.leader_id, reply.term))
            }
        })
        .await
    }
}
