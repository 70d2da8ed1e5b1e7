//! The agent registry's gRPC service (`drover.v1.AgentRegistry`): registration, heartbeats
//! and status updates from agents, answered by the leader's conductor.
//!
//! Owns the API edge only: validation with the field at fault, and the mapping of the
//! conductor's answers to statuses. A status update is answered (acknowledged) only after it
//! is committed; a duplicate is acknowledged again.

use drover_proto::v1;
use drover_proto::v1::agent_registry_server::AgentRegistry;
use tonic::{Request, Response, Status};

use crate::leader::convert::{self, invalid};
use crate::leader::{Command, LeaderHandle};

/// Largest agent API request decoded, bytes.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

pub struct AgentService {
    leader: LeaderHandle,
}

impl AgentService {
    pub fn new(leader: LeaderHandle) -> Self {
        Self { leader }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl AgentRegistry for AgentService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterReply>, Status> {
        let info = request
            .into_inner()
            .agent
            .ok_or_else(|| invalid("agent", "missing"))?;
        let agent = convert::agent_from_proto(&info, now_ms())?;
        let reply = self
            .leader
            .ask(|reply| Command::RegisterAgent { agent, reply })
            .await?;
        Ok(Response::new(reply))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatReply>, Status> {
        let agent = convert::agent_id("agent_id", &request.into_inner().agent_id)?;
        let reregister = self
            .leader
            .ask(|reply| Command::AgentHeartbeat { agent, reply })
            .await?;
        Ok(Response::new(v1::HeartbeatReply { reregister }))
    }

    async fn update_status(
        &self,
        request: Request<v1::StatusUpdateRequest>,
    ) -> Result<Response<v1::StatusUpdateAck>, Status> {
        let r = request.into_inner();
        let agent = convert::agent_id("agent_id", &r.agent_id)?;
        let framework = convert::framework_id("framework_id", &r.framework_id)?;
        let status = r.status.ok_or_else(|| invalid("status", "missing"))?;
        if !status.agent_id.is_empty() && status.agent_id != r.agent_id {
            return Err(invalid("status.agent_id", "differs from agent_id"));
        }
        let (task, update) = convert::status_from_proto(&status)?;
        let uuid = update.uuid.to_string();
        self.leader
            .ask(|reply| Command::StatusUpdate {
                agent,
                framework,
                task,
                update,
                reply,
            })
            .await?;
        Ok(Response::new(v1::StatusUpdateAck { uuid }))
    }
}
