//! The agent registry's gRPC service (`drover.v1.AgentRegistry`): registration, heartbeats
//! and status updates from agents, answered by the leader's engine, and the best-effort news
//! of custom executors (their messages, their ends) for their frameworks.
//!
//! Owns the API edge only: validation with the field at fault, and the mapping of the
//! engine's answers to statuses. A status update is answered (acknowledged) only after it
//! is committed; a duplicate is acknowledged again. Agents send status updates in batches
//! (one RPC for many tasks' updates): each update is its own engine command, so they commit
//! together in the proposer's entries, and the call is answered with one outcome per update.

use drover_proto::agent_api::{self, MAX_UPDATES_PER_CALL};
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

#[tonic::async_trait]
impl AgentRegistry for AgentService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterReply>, Status> {
        let (agent, tasks, truncated) =
            convert::registration_from_proto(&request.into_inner(), crate::clock::unix_ms())?;
        let reply = self
            .leader
            .ask(|reply| Command::RegisterAgent {
                agent,
                tasks,
                truncated,
                reply,
            })
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
    ) -> Result<Response<v1::StatusUpdateReply>, Status> {
        let r = request.into_inner();
        if r.updates.is_empty() {
            return Err(invalid("updates", "send at least one"));
        }
        if r.updates.len() > MAX_UPDATES_PER_CALL {
            return Err(invalid(
                "updates",
                format!(
                    "at most {MAX_UPDATES_PER_CALL} per call, got {}",
                    r.updates.len()
                ),
            ));
        }
        // A malformed update fails the whole call (the agent's bug, not a state to record);
        // each well-formed one is then decided on its own.
        let mut commands = Vec::with_capacity(r.updates.len());
        for (i, u) in r.updates.iter().enumerate() {
            let at = convert::in_item("updates", i);
            let agent = convert::agent_id("agent_id", &u.agent_id).map_err(&at)?;
            let framework = convert::framework_id("framework_id", &u.framework_id).map_err(&at)?;
            let status = u
                .status
                .as_ref()
                .ok_or_else(|| at(invalid("status", "missing")))?;
            if !status.agent_id.is_empty() && status.agent_id != u.agent_id {
                return Err(at(invalid("status.agent_id", "differs from agent_id")));
            }
            // Its own errors name `status.…` fields already.
            let (task, update) = convert::status_from_proto(status).map_err(&at)?;
            commands.push((agent, framework, task, update));
        }
        let answers = futures::future::join_all(commands.into_iter().map(
            |(agent, framework, task, update)| {
                let uuid = update.uuid.to_string();
                async move {
                    let r = self
                        .leader
                        .ask(|reply| Command::StatusUpdate {
                            agent,
                            framework,
                            task,
                            update,
                            reply,
                        })
                        .await;
                    (uuid, r)
                }
            },
        ))
        .await;
        let mut outcomes = Vec::with_capacity(answers.len());
        for (uuid, answer) in answers {
            let (code, message) = match answer {
                Ok(()) => (tonic::Code::Ok, String::new()),
                Err(s) if agent_api::is_final_refusal(s.code()) => {
                    (s.code(), s.message().to_string())
                }
                // Undecided (leadership lost, no leader): the agent sends the whole batch
                // again; what did commit is acknowledged then as a duplicate.
                Err(s) => return Err(s),
            };
            outcomes.push(v1::StatusUpdateOutcome {
                uuid,
                code: code as i32,
                message,
            });
        }
        Ok(Response::new(v1::StatusUpdateReply { outcomes }))
    }

    async fn executor_message(
        &self,
        request: Request<v1::ExecutorMessageRequest>,
    ) -> Result<Response<v1::ExecutorMessageReply>, Status> {
        let r = request.into_inner();
        let agent = convert::agent_id("agent_id", &r.agent_id)?;
        let framework = convert::framework_id("framework_id", &r.framework_id)?;
        let executor = convert::executor_id("executor_id", &r.executor_id)?;
        if r.data.len() > crate::api::scheduler::MAX_MESSAGE_BYTES {
            return Err(invalid(
                "data",
                format!(
                    "larger than {} bytes",
                    crate::api::scheduler::MAX_MESSAGE_BYTES
                ),
            ));
        }
        self.leader
            .ask(|reply| Command::ExecutorMessage {
                agent,
                framework,
                executor,
                data: r.data,
                reply,
            })
            .await?;
        Ok(Response::new(v1::ExecutorMessageReply {}))
    }

    async fn executor_exited(
        &self,
        request: Request<v1::ExecutorExitedRequest>,
    ) -> Result<Response<v1::ExecutorExitedReply>, Status> {
        let r = request.into_inner();
        let agent = convert::agent_id("agent_id", &r.agent_id)?;
        let framework = convert::framework_id("framework_id", &r.framework_id)?;
        let executor = convert::executor_id("executor_id", &r.executor_id)?;
        self.leader
            .ask(|reply| Command::ExecutorExited {
                agent,
                framework,
                executor,
                status: r.status,
                reply,
            })
            .await?;
        Ok(Response::new(v1::ExecutorExitedReply {}))
    }
}
