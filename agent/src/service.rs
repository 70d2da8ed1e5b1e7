//! The `drover.v1.Agent` gRPC service: what the leading master calls on an agent.
//!
//! Owns the edge between the network and the task tables: it validates every request (see
//! [`crate::task`]; a refusal is INVALID_ARGUMENT naming the field), hands it to the backend
//! (the real agent's [`Launcher`], or the [`Simulator`], which routes by `agent_id`), and maps
//! the backend's errors to gRPC codes once, here. It never panics on what it receives, and the
//! server bounds request sizes ([`MAX_REQUEST_BYTES`]).

use drover_proto::v1::agent_server::Agent;
use drover_proto::v1::{
    AgentShutdownExecutorReply, AgentShutdownExecutorRequest, FrameworkMessageReply,
    FrameworkMessageRequest, KillTaskReply, KillTaskRequest, RunTaskReply, RunTaskRequest,
};
use tonic::{Request, Response, Status};

use crate::launcher::{Launcher, TaskError};
use crate::simulate::Simulator;
use crate::task::{ExecutorCall, InvalidField, KillTask, RunTask};

/// Largest request accepted, bytes.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Who runs the tasks.
#[derive(Clone)]
pub enum Backend {
    Real(Launcher),
    Simulated(Simulator),
}

#[derive(Clone)]
pub struct AgentService {
    backend: Backend,
}

impl AgentService {
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }
}

fn invalid(e: InvalidField) -> Status {
    Status::invalid_argument(e.to_string())
}

fn status_of(e: TaskError) -> Status {
    match e {
        TaskError::WrongAgent { .. } | TaskError::UnknownAgent(_) => {
            Status::invalid_argument(e.to_string())
        }
        TaskError::NotRegistered | TaskError::Registering | TaskError::Stopped => {
            Status::unavailable(e.to_string())
        }
        TaskError::NotFound { .. } => Status::not_found(e.to_string()),
        TaskError::Checkpoint(_) => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn run_task(
        &self,
        request: Request<RunTaskRequest>,
    ) -> Result<Response<RunTaskReply>, Status> {
        let tasks = RunTask::from_proto(request.get_ref()).map_err(invalid)?;
        // Every task is tried; the first refusal answers the call (the master sends the
        // whole request again only on transport failures, and launches are idempotent).
        let answers = match &self.backend {
            Backend::Real(l) => l.run_tasks(tasks).await,
            Backend::Simulated(s) => s.run_tasks(tasks).await,
        };
        match answers.into_iter().find_map(Result::err) {
            Some(e) => Err(status_of(e)),
            None => Ok(Response::new(RunTaskReply {})),
        }
    }

    async fn kill_task(
        &self,
        request: Request<KillTaskRequest>,
    ) -> Result<Response<KillTaskReply>, Status> {
        let req = KillTask::from_proto(request.get_ref()).map_err(invalid)?;
        match &self.backend {
            Backend::Real(l) => l.kill_task(req).await,
            Backend::Simulated(s) => s.kill_task(req).await,
        }
        .map_err(status_of)?;
        Ok(Response::new(KillTaskReply {}))
    }

    async fn send_framework_message(
        &self,
        request: Request<FrameworkMessageRequest>,
    ) -> Result<Response<FrameworkMessageReply>, Status> {
        let r = request.get_ref();
        let call = ExecutorCall::from_proto(&r.agent_id, &r.framework_id, &r.executor_id, &r.data)
            .map_err(invalid)?;
        // Simulated agents run no executors: a message for one is dropped, as for an executor
        // that is not subscribed.
        if let Backend::Real(l) = &self.backend {
            l.framework_message(call).await.map_err(status_of)?;
        }
        Ok(Response::new(FrameworkMessageReply {}))
    }

    async fn shutdown_executor(
        &self,
        request: Request<AgentShutdownExecutorRequest>,
    ) -> Result<Response<AgentShutdownExecutorReply>, Status> {
        let r = request.get_ref();
        let call = ExecutorCall::from_proto(&r.agent_id, &r.framework_id, &r.executor_id, &[])
            .map_err(invalid)?;
        if let Backend::Real(l) = &self.backend {
            l.shutdown_executor(call).await.map_err(status_of)?;
        }
        Ok(Response::new(AgentShutdownExecutorReply {}))
    }
}
