//! Cluster administration and introspection (`drover.master.v1.Cluster`): status from any
//! replica, and replacing replicas on the leader.
//!
//! Adding a master is two steps, so the cluster never waits on a replica that has not caught
//! up: it joins as a learner (openraft streams it the log or a snapshot), and becomes a voter
//! only once the leader sees it within the replication lag threshold. The new replica must be
//! running and answer Hello: its incarnation goes into the membership, which is what keeps a
//! wiped replica from rejoining under its old id.

use std::collections::BTreeSet;
use std::time::Duration;

use drover_proto::master::cluster_server::Cluster;
use drover_proto::master::{
    AddMasterRequest, Member, MembershipReply, RemoveMasterRequest, StatusReply, StatusRequest,
};
use drover_proto::raft::raft_service_client::RaftServiceClient;
use drover_proto::raft::HelloRequest;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tonic::{Request, Response, Status};

use crate::identity::Identity;
use crate::raft::network::PeerDialer;
use crate::raft::{MasterId, MasterNode, RaftMetrics};
use crate::replicated::{ReplicaError, Replicated};

/// How long a new replica's Hello may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

pub struct ClusterService {
    replicated: Replicated,
    identity: std::sync::Arc<Identity>,
    dialer: PeerDialer,
    catch_up_timeout: Duration,
    leader: crate::leader::LeaderHandle,
    /// One leadership transfer at a time.
    transferring: tokio::sync::Mutex<()>,
}

impl ClusterService {
    pub fn new(
        replicated: Replicated,
        identity: std::sync::Arc<Identity>,
        dialer: PeerDialer,
        catch_up_timeout: Duration,
        leader: crate::leader::LeaderHandle,
    ) -> Self {
        Self {
            replicated,
            identity,
            dialer,
            catch_up_timeout,
            leader,
            transferring: tokio::sync::Mutex::new(()),
        }
    }

    fn members(metrics: &RaftMetrics) -> Vec<Member> {
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<MasterId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched_index: metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map_or(0, |l| l.index),
            })
            .collect()
    }

    fn membership_reply(&self, log_index: u64) -> MembershipReply {
        let metrics = self.replicated.raft().metrics();
        let m = metrics.borrow();
        MembershipReply {
            members: Self::members(&m),
            log_index,
        }
    }

    fn write_error(
        e: RaftError<MasterId, ClientWriteError<MasterId, MasterNode>>,
        r: &Replicated,
    ) -> Status {
        match e {
            // The caller checked leadership before proposing: openraft's "forward to the
            // leader" now means the change was proposed and then truncated (or leadership moved
            // in between), and another replica may still commit it (see `crate::proposer`).
            // Not a refusal, so no not-leader hint that would let a client send it again.
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                Status::from(ReplicaError::Lost(format!(
                    "the membership change was proposed, then leadership changed{}; check `drover cluster status` before retrying",
                    r.leader()
                        .map(|(id, n)| format!(" (the leader is master {id} at {})", n.addr))
                        .unwrap_or_default()
                )))
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Status::failed_precondition(format!("membership change refused: {c}"))
            }
            RaftError::Fatal(f) => Status::unavailable(format!("the Raft node stopped: {f}")),
        }
    }
}

/// How long a planned leadership transfer may take before it is called off.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Restores this replica's heartbeats and elections when a transfer ends, however it ends.
struct ElectionsBack<'a>(&'a crate::raft::Raft);

impl Drop for ElectionsBack<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
        self.0.runtime_config().elect(true);
    }
}

impl ClusterService {
    /// A planned leadership transfer (openraft 0.9 has none): hold writes and stop
    /// heartbeats, wait until the target has every entry and every replica's leader lease has
    /// run out, then ask the target to campaign. It is elected first because the others
    /// wait out their election timeout on top of the lease; this replica does not campaign
    /// until the transfer is over. Returns the new leader and its term.
    async fn transfer(&self, to: MasterId) -> Result<(MasterId, u64), Status> {
        let _one = self.transferring.try_lock().map_err(|_| {
            Status::failed_precondition("a leadership transfer is already under way")
        })?;
        self.replicated.check_leader()?;
        let me = self.identity.node_id();
        let raft = self.replicated.raft().clone();
        let (term, target, node) = transfer_target(&raft, me, to)?;
        tracing::info!(
            to = target,
            term,
            "transferring leadership: holding writes and heartbeats"
        );
        let started = std::time::Instant::now();
        let hold = self.replicated.hold_writes();
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        let elections_back = ElectionsBack(&raft);
        // The target has every entry.
        let caught_up = raft
            .wait(Some(TRANSFER_TIMEOUT))
            .metrics(
                |m| {
                    let last = m.last_log_index;
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&target).cloned().flatten())
                        .map(|l| l.index);
                    matched.is_some() && matched == last
                },
                "the target caught up",
            )
            .await;
        if let Err(e) = caught_up {
            return Err(Status::deadline_exceeded(format!(
                "master {target} did not catch up: {e}; leadership stays here"
            )));
        }
        // Every lease (the election timeout's maximum) runs out.
        let lease = Duration::from_millis(raft.config().election_timeout_max);
        tokio::time::sleep(lease + Duration::from_millis(50)).await;
        self.ask_to_campaign(target, &node).await?;
        let elected = raft
            .wait(Some(TRANSFER_TIMEOUT.saturating_sub(started.elapsed())))
            .metrics(
                |m| m.current_term > term && m.current_leader.is_some_and(|l| l != me),
                "a new leader",
            )
            .await
            .map_err(|e| Status::unavailable(format!("no new leader: {e}")))?;
        drop(hold);
        drop(elections_back);
        let leader = elected.current_leader.unwrap_or(0);
        tracing::info!(
            leader,
            term = elected.current_term,
            took_ms = started.elapsed().as_millis() as u64,
            "leadership transferred"
        );
        Ok((leader, elected.current_term))
    }

    /// Asks `target` to campaign now (the transfer's last step: its log is complete and every
    /// lease has run out).
    async fn ask_to_campaign(
        &self,
        target: MasterId,
        node: &crate::raft::MasterNode,
    ) -> Result<(), Status> {
        let channel = self
            .dialer
            .channel(&node.addr)
            .map_err(|e| Status::internal(format!("master {target} address: {e}")))?;
        let header = crate::raft::network::raft_header(&self.identity, target, node);
        let asked = tokio::time::timeout(
            HELLO_TIMEOUT,
            RaftServiceClient::new(channel).campaign(drover_proto::raft::RaftRequest {
                header: Some(header),
                payload: Vec::new(),
            }),
        )
        .await;
        match asked {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(Status::unavailable(format!(
                "master {target} refused to campaign: {}",
                s.message()
            ))),
            Err(_) => Err(Status::unavailable(format!(
                "master {target} did not answer the request to campaign"
            ))),
        }
    }
}

/// Whom to hand leadership to (`to`, or the voter with the most of the log when 0), its node
/// and the current term; refused naming `to` if it is this master or not a voter.
fn transfer_target(
    raft: &crate::raft::Raft,
    me: MasterId,
    to: MasterId,
) -> Result<(u64, MasterId, crate::raft::MasterNode), Status> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voters: Vec<MasterId> = membership.voter_ids().filter(|v| *v != me).collect();
    let matched = |id: &MasterId| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map_or(0, |l| l.index)
    };
    let target = if to != 0 {
        if to == me {
            return Err(Status::invalid_argument(format!(
                "to: master {me} leads already"
            )));
        }
        if !voters.contains(&to) {
            return Err(Status::invalid_argument(format!(
                "to: master {to} is not a voter of this cluster"
            )));
        }
        to
    } else {
        *voters
            .iter()
            .max_by_key(|v| matched(v))
            .ok_or_else(|| Status::failed_precondition("no other voter to hand leadership to"))?
    };
    let node = membership
        .get_node(&target)
        .cloned()
        .ok_or_else(|| Status::internal("target not in the membership"))?;
    Ok((m.current_term, target, node))
}

/// Checks `host:port`.
fn check_addr(addr: &str) -> Result<(), Status> {
    let bad = || Status::invalid_argument(format!("addr: expected host:port, got {addr:?}"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let raft = self.replicated.raft();
        let committed = raft
            .with_raft_state(|s| s.committed.map_or(0, |l| l.index))
            .await
            .map_err(|e| Status::unavailable(format!("the Raft node stopped: {e}")))?;
        let metrics = raft.metrics();
        let m = metrics.borrow().clone();
        let leader_id = m.current_leader.unwrap_or(0);
        let leader_addr = m
            .current_leader
            .and_then(|id| m.membership_config.membership().get_node(&id))
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        Ok(Response::new(StatusReply {
            node_id: m.id,
            cluster_id: self
                .identity
                .cluster_id()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            term: m.current_term,
            leader_id,
            leader_addr,
            role: role.into(),
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: committed,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            members: Self::members(&m),
        }))
    }

    async fn add_master(
        &self,
        request: Request<AddMasterRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let req = request.into_inner();
        self.replicated.check_leader()?;
        if req.id == 0 {
            return Err(Status::invalid_argument("id: must be greater than 0"));
        }
        check_addr(&req.addr)?;
        {
            let metrics = self.replicated.raft().metrics();
            let m = metrics.borrow();
            if m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == req.id)
            {
                return Err(Status::already_exists(format!(
                    "id: master {} is already a voter",
                    req.id
                )));
            }
        }
        let channel = self
            .dialer
            .channel(&req.addr)
            .map_err(|e| Status::invalid_argument(format!("addr: {e}")))?;
        let hello = tokio::time::timeout(
            HELLO_TIMEOUT,
            RaftServiceClient::new(channel).hello(HelloRequest {
                cluster_id: self.identity.cluster_id().map(|c| c.0.clone()).unwrap_or_default(),
                from_node: self.identity.node_id(),
                protocol_version: crate::raft::PROTOCOL_VERSION,
            }),
        )
        .await
        .map_err(|_| Status::failed_precondition(format!("master {} at {} did not answer within {HELLO_TIMEOUT:?}; start it first (drover master --id {} --listen {} ...)", req.id, req.addr, req.id, req.addr)))?
        .map_err(|e| Status::failed_precondition(format!("cannot reach master {} at {}: {}; start it first (drover master --id {} --listen {} ...)", req.id, req.addr, e.message(), req.id, req.addr)))?
        .into_inner();
        if hello.node_id != req.id {
            return Err(Status::invalid_argument(format!(
                "id: the master at {} is master {}, not {}",
                req.addr, hello.node_id, req.id
            )));
        }
        if let Some(why) = crate::raft::protocol_mismatch(
            &format!("master {} at {}", req.id, req.addr),
            hello.protocol_version,
            &format!("this leader (master {})", self.identity.node_id()),
        ) {
            return Err(Status::failed_precondition(why));
        }
        let ours = self
            .identity
            .cluster_id()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        if !hello.cluster_id.is_empty() && hello.cluster_id != ours {
            return Err(Status::failed_precondition(format!(
                "master {} belongs to another cluster ({}); give it an empty --data-dir",
                req.id, hello.cluster_id
            )));
        }
        let node = MasterNode {
            addr: req.addr.clone(),
            incarnation: crate::identity::Incarnation(hello.incarnation),
        };
        let raft = self.replicated.raft();
        let existing_learner = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().get_node(&req.id).cloned()
        };
        if let Some(old) = existing_learner.filter(|old| *old != node) {
            // A learner left over from an add-master that did not finish, now restarted with a
            // fresh data directory or another address: replace its record, or the membership
            // would keep naming an incarnation that no longer exists. A learner has no vote, so
            // replacing it cannot split the cluster.
            tracing::info!(id = req.id, old = %old.addr, new = %req.addr, "replacing learner's address and incarnation");
            raft.change_membership(
                ChangeMembers::SetNodes(std::collections::BTreeMap::from([(req.id, node.clone())])),
                true,
            )
            .await
            .map_err(|e| Self::write_error(e, &self.replicated))?;
        }
        tracing::info!(id = req.id, addr = %req.addr, "adding master as learner");
        match tokio::time::timeout(self.catch_up_timeout, raft.add_learner(req.id, node, true)).await {
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "master {} joined as a learner but did not catch up within {:?}; it stays a learner (retry add-master to promote it)",
                    req.id, self.catch_up_timeout
                )))
            }
            Ok(r) => r.map_err(|e| Self::write_error(e, &self.replicated))?,
        };
        tracing::info!(id = req.id, "learner caught up; promoting to voter");
        let resp = raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
            .await
            .map_err(|e| Self::write_error(e, &self.replicated))?;
        Ok(Response::new(self.membership_reply(resp.log_id.index)))
    }

    async fn set_role_weight(
        &self,
        request: Request<drover_proto::master::SetRoleWeightRequest>,
    ) -> Result<Response<drover_proto::master::SetRoleWeightReply>, Status> {
        let r = request.into_inner();
        let role = crate::ids::Role::new(&r.role)
            .map_err(|e| Status::invalid_argument(format!("role: {e}")))?;
        if !(r.weight.is_finite() && r.weight > 0.0 && r.weight <= 1e6) {
            return Err(Status::invalid_argument(format!(
                "weight: {} must be a number in (0, 1000000]",
                r.weight
            )));
        }
        let weight = r.weight;
        self.leader
            .ask(|reply| crate::leader::Command::SetRoleWeight {
                role,
                weight,
                reply,
            })
            .await?;
        Ok(Response::new(drover_proto::master::SetRoleWeightReply {}))
    }

    async fn set_agent_state(
        &self,
        request: Request<drover_proto::master::SetAgentStateRequest>,
    ) -> Result<Response<drover_proto::master::SetAgentStateReply>, Status> {
        use crate::registry::cluster::AgentState;
        use drover_proto::master::AgentMaintenance;
        let r = request.into_inner();
        let agent = crate::leader::convert::agent_id("agent_id", &r.agent_id)?;
        let state = match AgentMaintenance::try_from(r.action) {
            Ok(AgentMaintenance::Drain) => AgentState::Draining,
            Ok(AgentMaintenance::Reactivate) => AgentState::Active,
            Ok(AgentMaintenance::Remove) => AgentState::Gone,
            Ok(AgentMaintenance::Deactivate) => AgentState::Deactivated,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "action: {} is not DRAIN, DEACTIVATE, REACTIVATE or REMOVE",
                    r.action
                )))
            }
        };
        let live_tasks = self
            .leader
            .ask(|reply| crate::leader::Command::SetAgentState {
                agent,
                state,
                reply,
            })
            .await?;
        Ok(Response::new(drover_proto::master::SetAgentStateReply {
            live_tasks,
        }))
    }

    async fn transfer_leadership(
        &self,
        request: Request<drover_proto::master::TransferLeadershipRequest>,
    ) -> Result<Response<drover_proto::master::TransferLeadershipReply>, Status> {
        let to = request.into_inner().to;
        let (leader, term) = self.transfer(to).await?;
        Ok(Response::new(
            drover_proto::master::TransferLeadershipReply {
                leader_id: leader,
                term,
            },
        ))
    }

    async fn remove_master(
        &self,
        request: Request<RemoveMasterRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let req = request.into_inner();
        self.replicated.check_leader()?;
        let (voters, learner): (BTreeSet<MasterId>, bool) = {
            let metrics = self.replicated.raft().metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            let found = (
                membership.voter_ids().collect(),
                membership.learner_ids().any(|l| l == req.id),
            );
            found
        };
        let ids = BTreeSet::from([req.id]);
        let change = if learner {
            tracing::info!(id = req.id, "removing learner");
            ChangeMembers::RemoveNodes(ids)
        } else if !voters.contains(&req.id) {
            return Err(Status::not_found(format!(
                "id: master {} is not a member",
                req.id
            )));
        } else if voters.len() == 1 {
            return Err(Status::failed_precondition("cannot remove the last voter"));
        } else {
            tracing::info!(id = req.id, "removing master");
            ChangeMembers::RemoveVoters(ids)
        };
        let resp = self
            .replicated
            .raft()
            .change_membership(change, false)
            .await
            .map_err(|e| Self::write_error(e, &self.replicated))?;
        Ok(Response::new(self.membership_reply(resp.log_id.index)))
    }
}
