//! The framework API's gRPC service (`drover.v1.Scheduler`), served by every master and
//! answered by the leader's engine.
//!
//! Owns the API edge only: it validates each request and names the field at fault, turns it
//! into an engine command and maps the answer to a status. It keeps no state; the event
//! stream of SUBSCRIBE is a bounded queue the engine fills.

use std::pin::Pin;

use drover_proto::v1;
use drover_proto::v1::scheduler_server::Scheduler;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::leader::convert::{self, invalid};
use crate::leader::engine::EVENT_QUEUE;
use crate::leader::{Call, Caller, Command, EventSender, LeaderHandle};

/// Largest framework API request decoded, bytes (an ACCEPT of many tasks).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest message for a custom executor, bytes.
pub use drover_model::limits::MAX_EXECUTOR_MESSAGE_BYTES as MAX_MESSAGE_BYTES;
/// Most updates acknowledged in one ACKNOWLEDGE.
pub const MAX_ACKS_PER_CALL: usize = 1000;

pub struct SchedulerService {
    leader: LeaderHandle,
    acls: crate::acl::LiveAcls,
}

impl SchedulerService {
    pub fn new(leader: LeaderHandle, acls: crate::acl::LiveAcls) -> Self {
        Self { leader, acls }
    }

    /// Whether the caller that proved `principal` may launch `tasks` (each as its command's
    /// user, or its executor's): the first one the ACLs deny refuses the ACCEPT, naming it.
    pub fn authorize_launch(
        &self,
        principal: Option<&str>,
        tasks: &[v1::TaskInfo],
    ) -> Result<(), Status> {
        for (i, t) in tasks.iter().enumerate() {
            let user = t
                .executor
                .as_ref()
                .and_then(|e| e.command.as_ref())
                .or(t.command.as_ref())
                .map_or("", |c| c.user.as_str());
            self.acls
                .authorize(principal, &drover_acl::Action::RunTask { user })
                .map_err(|st| {
                    Status::permission_denied(format!("launch[{i}].command.user: {}", st.message()))
                })?;
        }
        Ok(())
    }

    async fn call(
        &self,
        caller: Option<v1::Caller>,
        call: Call,
    ) -> Result<Response<v1::CallReply>, Status> {
        self.ask(caller_from(caller)?, call).await?;
        Ok(Response::new(v1::CallReply {}))
    }

    /// Subscribes the framework `info` names, its events going to `events` (SUBSCRIBED first).
    /// The gRPC and the Mesos HTTP edges both subscribe through here. `authenticated` is the
    /// caller's principal when the connection proved one (its certificate's name): the
    /// framework's principal is then that one, and a different one it claims is refused.
    pub async fn subscribe_events(
        &self,
        info: &v1::FrameworkInfo,
        events: EventSender,
        authenticated: Option<&str>,
    ) -> Result<(), Status> {
        let resubscribe = !info.id.is_empty();
        let mut framework = convert::framework_from_proto(info, crate::clock::unix_ms())?;
        if let Some(principal) = authenticated {
            if !framework.principal.is_empty() && framework.principal != principal {
                return Err(Status::permission_denied(format!(
                    "framework.principal: {:?} is not the authenticated principal {principal:?} \
                     (the caller's certificate's name)",
                    framework.principal
                )));
            }
            framework.principal = principal.to_string();
        }
        self.acls.authorize(
            authenticated,
            &drover_acl::Action::RegisterFramework {
                role: framework.role.as_str(),
            },
        )?;
        self.leader
            .subscribe(events, |reply, stream| Command::Subscribe {
                framework,
                resubscribe,
                stream,
                reply,
            })
            .await
    }

    async fn ask(&self, caller: Caller, call: Call) -> Result<(), Status> {
        self.leader
            .ask(|reply| Command::Call {
                caller,
                call,
                reply,
            })
            .await
    }
}

/// The principal a request's connection proved: its TLS certificate's name (none on a
/// listener without TLS).
pub fn principal_of<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<drover_tls::Identity>()
        .map(|who| who.name.clone())
}

fn caller_from(caller: Option<v1::Caller>) -> Result<Caller, Status> {
    let caller = caller.ok_or_else(|| invalid("caller", "missing"))?;
    Ok(Caller {
        framework: convert::framework_id("caller.framework_id", &caller.framework_id)?,
        stream_id: caller.stream_id,
    })
}

fn refuse_ms(field: &str, s: Option<f64>) -> Result<Option<u64>, Status> {
    s.map(|s| convert::seconds_to_ms(field, s)).transpose()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let principal = principal_of(&request);
        let info = request
            .into_inner()
            .framework
            .ok_or_else(|| invalid("framework", "missing"))?;
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        self.subscribe_events(&info, events, principal.as_deref())
            .await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn accept(
        &self,
        request: Request<v1::AcceptRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let principal = principal_of(&request);
        let r = request.into_inner();
        let (offers, tasks) = convert::accept_from_proto(&r.offer_ids, &r.launch)?;
        self.authorize_launch(principal.as_deref(), &r.launch)?;
        let refuse_ms = refuse_ms("refuse_seconds", r.refuse_seconds)?;
        self.call(
            r.caller,
            Call::Accept {
                offers,
                tasks,
                refuse_ms,
            },
        )
        .await
    }

    async fn decline(
        &self,
        request: Request<v1::DeclineRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let r = request.into_inner();
        let offers = convert::offer_ids("offer_ids", &r.offer_ids)?;
        let refuse_ms = refuse_ms("refuse_seconds", r.refuse_seconds)?;
        self.call(r.caller, Call::Decline { offers, refuse_ms })
            .await
    }

    async fn suppress(
        &self,
        request: Request<v1::SuppressRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        self.call(request.into_inner().caller, Call::Suppress).await
    }

    async fn revive(
        &self,
        request: Request<v1::ReviveRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        self.call(request.into_inner().caller, Call::Revive).await
    }

    async fn kill(
        &self,
        request: Request<v1::KillRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let r = request.into_inner();
        let task = convert::task_id("task_id", &r.task_id)?;
        let grace_ms = refuse_ms("grace_seconds", r.grace_seconds)?;
        self.call(r.caller, Call::Kill { task, grace_ms }).await
    }

    async fn acknowledge(
        &self,
        request: Request<v1::AcknowledgeRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let r = request.into_inner();
        if r.acks.is_empty() {
            return Err(invalid("acks", "name at least one update"));
        }
        if r.acks.len() > MAX_ACKS_PER_CALL {
            return Err(invalid(
                "acks",
                format!("at most {MAX_ACKS_PER_CALL} per call, got {}", r.acks.len()),
            ));
        }
        let caller = caller_from(r.caller)?;
        let mut acks = Vec::with_capacity(r.acks.len());
        for (i, a) in r.acks.iter().enumerate() {
            let at = convert::in_item("acks", i);
            let task = convert::task_id("task_id", &a.task_id).map_err(&at)?;
            let uuid = convert::uuid("uuid", &a.uuid).map_err(&at)?;
            acks.push((task, uuid));
        }
        // Each acknowledgement is its own command (and operation): they commit together in
        // the proposer's batches, and the call is answered once all are committed.
        let answers = futures::future::join_all(
            acks.into_iter()
                .map(|(task, uuid)| self.ask(caller.clone(), Call::Acknowledge { task, uuid })),
        )
        .await;
        for a in answers {
            a?;
        }
        Ok(Response::new(v1::CallReply {}))
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let r = request.into_inner();
        let max = crate::leader::engine::MAX_RECONCILE_TASKS;
        if r.task_ids.len() + r.tasks.len() > max {
            return Err(invalid(
                "tasks",
                format!("at most {max} tasks per call (task_ids and tasks together)"),
            ));
        }
        let mut tasks = Vec::with_capacity(r.task_ids.len() + r.tasks.len());
        for (i, t) in r.task_ids.iter().enumerate() {
            convert::text(&format!("task_ids[{i}]"), t, crate::ids::MAX_ID_BYTES)?;
            tasks.push((t.clone(), None));
        }
        for (i, t) in r.tasks.iter().enumerate() {
            convert::text(
                &format!("tasks[{i}].task_id"),
                &t.task_id,
                crate::ids::MAX_ID_BYTES,
            )?;
            if t.task_id.is_empty() {
                return Err(invalid(&format!("tasks[{i}].task_id"), "empty"));
            }
            let agent = if t.agent_id.is_empty() {
                None
            } else {
                convert::text(
                    &format!("tasks[{i}].agent_id"),
                    &t.agent_id,
                    crate::ids::MAX_ID_BYTES,
                )?;
                Some(t.agent_id.clone())
            };
            tasks.push((t.task_id.clone(), agent));
        }
        self.call(r.caller, Call::Reconcile { tasks }).await
    }

    async fn teardown(
        &self,
        request: Request<v1::TeardownRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        self.call(request.into_inner().caller, Call::Teardown).await
    }

    async fn message(
        &self,
        request: Request<v1::MessageRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let r = request.into_inner();
        let agent = convert::agent_id("agent_id", &r.agent_id)?;
        let executor = convert::executor_id("executor_id", &r.executor_id)?;
        if r.data.len() > MAX_MESSAGE_BYTES {
            return Err(invalid(
                "data",
                format!("larger than {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        self.call(
            r.caller,
            Call::Message {
                agent,
                executor,
                data: r.data,
            },
        )
        .await
    }

    async fn shutdown_executor(
        &self,
        request: Request<v1::ShutdownExecutorRequest>,
    ) -> Result<Response<v1::CallReply>, Status> {
        let r = request.into_inner();
        let agent = convert::agent_id("agent_id", &r.agent_id)?;
        let executor = convert::executor_id("executor_id", &r.executor_id)?;
        self.call(r.caller, Call::ShutdownExecutor { agent, executor })
            .await
    }
}
