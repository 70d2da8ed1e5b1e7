//! The leader engine: the offer cycle while this replica leads, as a state machine without
//! I/O (in the way of openraft's `Engine` or raft-rs's `RawNode`).
//!
//! Owns the soft state DESIGN.md puts on the leader only, in parts with one owner each:
//! [`frameworks`] (connections, their streams' room, backlogs, suppression, teardowns),
//! [`offers`] (outstanding offers, expiry, removals in flight), [`liveness`] (agents last heard
//! from), [`recovery`] (agents awaited after a leader change, failover timers, held
//! reconciliation answers) and the DRF [`Allocator`]. Every change to the cluster goes through
//! Raft first: the engine proposes a [`ClusterOp`] and acts on its committed outcome (and only
//! on that), so that an offer is sent only after it is committed, a launch only after ACCEPT
//! is, and an agent's status update is acknowledged only after it is. The allocator's
//! bookkeeping follows committed outcomes exactly: resources go back to it when an outcome
//! says they were released (offers removed, ACCEPT's unused part, a task that ended).
//!
//! Its inputs are the runtime's (`leader::runtime`, which owns the clock, the channels, the
//! proposals in flight and the calls to agents): a command from the services
//! ([`Engine::on_command`]), a proposal's outcome ([`Engine::on_outcome`]), the timer
//! ([`Engine::on_tick`]), allocation falling due ([`Engine::on_allocation_due`]) and a stream
//! found full or closed ([`Engine::on_stream_lost`]); each comes with a [`Context`] (the time,
//! and the registry as applied) and returns [`Action`]s, data the runtime carries out in order:
//! propose, answer a caller, send to an agent, attach/send to/detach a framework's stream.
//! When leadership ends the engine is dropped; the next leader rebuilds from the registry
//! ([`Engine::on_rebuild`]).
//!
//! Each operation of the offer cycle is a file holding both halves (the command's handling
//! and its committed outcome's) and its tests: [`subscribe`], [`accept`], [`decline`],
//! [`suppress`] (and revive), [`kill`], [`acknowledge`], [`reconcile`], [`teardown`],
//! [`status_update`], [`register_agent`], [`heartbeat`] (liveness and its timeouts),
//! [`maintenance`] (agents' state changes), [`allocate`] (offers made, expired, rescinded),
//! [`prune`], [`role_weight`]; [`rebuild`] starts a leadership.
//!
//! Allocation runs every `allocation_interval`, and early (after `allocation_batch`) when
//! resources appear: an agent registers, a task ends, a framework subscribes or revives.
//! Resources a framework hands back (DECLINE, ACCEPT's unused part, rescinds) wait for the
//! periodic cycle, so that a framework declining without a filter cannot spin offers through
//! the Raft log.

pub mod frameworks;
pub mod liveness;
pub mod offers;
pub mod recovery;

mod accept;
mod acknowledge;
mod allocate;
mod decline;
mod heartbeat;
mod kill;
mod maintenance;
mod messages;
mod prune;
mod rebuild;
mod reconcile;
mod register_agent;
mod role_weight;
mod status_update;
mod subscribe;
mod suppress;
mod teardown;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use drover_proto::agent_api::MAX_TASKS_PER_RUN;
use drover_proto::v1;

use super::agents::AgentMessage;
use super::answer::{Answer, CallId, Refusal, Reply};
use super::convert;
use crate::allocator::{Allocator, AllocatorConfig};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, Role, TaskId};
use crate::metrics as m;
use crate::raft::MasterId;
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterOp, ClusterOutcome, ClusterState, FrameworkRecord, OfferRecord,
    ReportedTask, TaskSpec, TaskStatus, MAX_TASKS_PER_ACCEPT,
};
use crate::replicated::ReplicaError;
use frameworks::Frameworks;
use liveness::Liveness;
use offers::Offers;

pub use reconcile::RECONCILE_PER_SECOND;
pub use recovery::MAX_DEFERRED;

pub use frameworks::{StreamKey, EVENT_QUEUE, MAX_BACKLOG};

/// Most tasks one explicit RECONCILE names.
pub const MAX_RECONCILE_TASKS: usize = 10_000;
/// Most offers in one CreateOffers command (each is a few hundred bytes encoded).
pub const MAX_OFFERS_PER_COMMAND: usize = 256;
const _: () = assert!(MAX_TASKS_PER_ACCEPT <= MAX_TASKS_PER_RUN);
/// Most offers in one OFFERS event (each is a few hundred bytes).
pub const MAX_OFFERS_PER_EVENT: usize = 1000;
/// Proposals in flight from the engine; past it, commands wait in their queue (whose bound
/// makes the services wait in turn).
pub const MAX_PENDING_PROPOSALS: usize = 8 * 1024;

/// Who makes a framework call: the framework and the stream SUBSCRIBED gave it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub framework: FrameworkId,
    pub stream_id: String,
}

/// A framework call, validated by the service.
#[derive(Debug)]
pub enum Call {
    Accept {
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        refuse_ms: Option<u64>,
    },
    Decline {
        offers: Vec<OfferId>,
        refuse_ms: Option<u64>,
    },
    Suppress,
    Revive,
    Kill {
        task: TaskId,
        grace_ms: Option<u64>,
    },
    Acknowledge {
        task: TaskId,
        uuid: uuid::Uuid,
    },
    Reconcile {
        /// Task ids, each with the agent the framework says it runs on (explicit), or none
        /// (implicit: every live task of the framework).
        tasks: Vec<(String, Option<String>)>,
    },
    Teardown,
    /// Opaque bytes for a custom executor (best effort).
    Message {
        agent: AgentId,
        executor: ExecutorId,
        data: Vec<u8>,
    },
    /// Shut a custom executor down (best effort).
    ShutdownExecutor {
        agent: AgentId,
        executor: ExecutorId,
    },
}

/// A command for the engine: what a service asked (see `runtime::Request`), with the
/// handle its answer goes to.
pub enum Command {
    Subscribe {
        framework: FrameworkRecord,
        /// Whether the framework gave its id (a re-subscription) or got a fresh one.
        resubscribe: bool,
        /// The stream the framework's events go to, held by the runtime until the engine
        /// attaches it (or answers this call without doing so: the stream is then closed).
        stream: StreamKey,
        reply: Reply<()>,
    },
    Call {
        caller: Caller,
        call: Call,
        reply: Reply<()>,
    },
    RegisterAgent {
        agent: AgentRecord,
        /// On a re-registration: the tasks the agent reports.
        tasks: Option<Vec<ReportedTask>>,
        /// The report was cut short.
        truncated: bool,
        reply: Reply<v1::RegisterReply>,
    },
    /// Operator maintenance: DRAINING, ACTIVE again, or GONE. Answers the agent's live tasks.
    SetAgentState {
        agent: AgentId,
        state: AgentState,
        reply: Reply<u64>,
    },
    AgentHeartbeat {
        agent: AgentId,
        reply: Reply<bool>,
    },
    StatusUpdate {
        agent: AgentId,
        framework: FrameworkId,
        task: TaskId,
        update: TaskStatus,
        reply: Reply<()>,
    },
    SetRoleWeight {
        role: Role,
        weight: f64,
        reply: Reply<()>,
    },
    /// An operator tears a framework down (Mesos's operator TEARDOWN): as the framework's own
    /// TEARDOWN, without its stream.
    TeardownFramework {
        framework: FrameworkId,
        reply: Reply<()>,
    },
    /// Which frameworks have a live stream to this leader (Mesos's `connected`).
    ConnectedFrameworks {
        reply: Reply<Vec<FrameworkId>>,
    },
    /// A custom executor's message for its framework (best effort).
    ExecutorMessage {
        agent: AgentId,
        framework: FrameworkId,
        executor: ExecutorId,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    /// A custom executor ended (best effort: its framework hears FAILURE).
    ExecutorExited {
        agent: AgentId,
        framework: FrameworkId,
        executor: ExecutorId,
        status: Option<i32>,
        reply: Reply<()>,
    },
}

/// What the engine asks of the runtime that drives it (`leader::runtime`): data, carried out
/// in the order given.
// Actions live for one input and are moved, never copied: boxing the large variant would
// only add an allocation per proposal.
#[allow(clippy::large_enum_variant)]
pub(super) enum Action {
    /// Propose `op`; its outcome comes back to [`Engine::on_outcome`] with `pending`.
    Propose { op: ClusterOp, pending: Pending },
    /// Answer the caller waiting under `call`.
    Reply {
        call: CallId,
        answer: Result<Answer, Refusal>,
    },
    /// Send a RunTask or KillTask to `agent` at `addr` (retried, see `agents::send`).
    ToAgent {
        agent: AgentId,
        addr: String,
        message: AgentMessage,
    },
    /// Keep the stream a SUBSCRIBE brought: events are sent to it from now on.
    Attach { stream: StreamKey },
    /// Queue `event` on `stream`; a stream that is full or closed is reported back
    /// ([`Engine::on_stream_lost`]).
    Send { stream: StreamKey, event: v1::Event },
    /// Close `stream` (the framework sees its end once it read what was queued).
    Detach { stream: StreamKey },
}

/// What to do once a proposal's outcome is known.
pub(super) enum Pending {
    Subscribed {
        framework: FrameworkRecord,
        resubscribe: bool,
        stream: StreamKey,
        reply: Reply<()>,
    },
    OffersCreated(Vec<OfferRecord>),
    Accepted {
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        refuse_ms: u64,
        reply: Reply<()>,
    },
    Declined {
        framework: FrameworkId,
        refuse_ms: u64,
        reply: Reply<()>,
    },
    /// Expired, or rescinded (agent unreachable, framework gone): tell the framework.
    Rescinded,
    TornDown {
        framework: FrameworkId,
        /// None when the leader tore it down itself (failover timeout).
        reply: Option<Reply<()>>,
    },
    AgentRegistered {
        agent: AgentRecord,
        reregistered: bool,
        reply: Reply<v1::RegisterReply>,
    },
    /// The agent's state changed: by the leader (unreachable, removal timeout: no reply) or
    /// an operator.
    AgentStateSet {
        agent: AgentId,
        state: AgentState,
        cause: &'static str,
        reply: Option<Reply<u64>>,
    },
    StatusApplied {
        framework: FrameworkId,
        task: TaskId,
        update: TaskStatus,
        started: Instant,
        reply: Reply<()>,
    },
    Acknowledged {
        framework: FrameworkId,
        reply: Reply<()>,
    },
    WeightSet {
        role: Role,
        weight: f64,
        reply: Reply<()>,
    },
    /// Completed tasks and frameworks forgotten (see `ClusterOp::PruneCompleted`).
    Pruned,
}

/// What a rebuild found, for its log line.
pub(super) struct Rebuilt {
    /// STAGING tasks launched again.
    pub(super) relaunched: usize,
    /// Agents up (ACTIVE or DRAINING).
    pub(super) agents: usize,
    pub(super) offers: usize,
}

/// What an input is handled against: the time it arrived, and the registry as applied on
/// this replica then (on the leader it holds every committed outcome the engine has seen).
/// The runtime reads both once per input; they are the only clock and registry the engine
/// reads.
#[derive(Clone)]
pub(super) struct Context {
    pub(super) now: Now,
    pub(super) registry: ClusterState,
}

pub struct Engine {
    me: MasterId,
    config: OfferCycleConfig,
    allocator: Allocator,
    /// Connections, streams' room and backlogs, suppression, teardowns.
    frameworks: Frameworks,
    /// Agents' last heartbeats, and the leader's state changes in flight.
    liveness: Liveness,
    /// Agents awaited after a leader change, failover timers, held reconciliation answers.
    recovery: recovery::Recovery,
    /// Outstanding offers, their expiry and removals in flight.
    offers: Offers,
    /// The registry of the input being handled (see [`Context`]).
    view: ClusterState,
    /// What the runtime is to do, in order (see [`Action`]).
    out: Vec<Action>,
    /// When allocation runs next (early, after `allocation_batch`, or periodic).
    allocation_due: Option<Instant>,
    last_allocation: Instant,
    last_framework_heartbeat: Instant,
    /// The time of the input being handled (see [`Context`]).
    now: Now,
    /// Makes fresh stream and offer ids (random; a counter in tests).
    fresh_id: Box<dyn FnMut() -> String + Send>,
    /// A PruneCompleted is in flight (one at a time).
    pruning: bool,
    /// Tasks of ACCEPTs proposed and not yet committed or refused, with the KILLs that came
    /// for them meanwhile (see [`kill`]).
    launching: kill::Launching,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn event(e: v1::event::Event) -> v1::Event {
    v1::Event { event: Some(e) }
}

impl Engine {
    pub fn new(me: MasterId, config: OfferCycleConfig, now: Now) -> Self {
        Self {
            me,
            config,
            allocator: Allocator::new(AllocatorConfig::default()),
            frameworks: Frameworks::default(),
            liveness: Liveness::default(),
            recovery: Default::default(),
            offers: Offers::default(),
            view: ClusterState::default(),
            out: Vec::new(),
            allocation_due: None,
            last_allocation: now.mono,
            last_framework_heartbeat: now.mono,
            now,
            fresh_id: Box::new(convert::fresh_id),
            pruning: false,
            launching: Default::default(),
        }
    }

    /// The registry of the input being handled.
    fn state(&self) -> ClusterState {
        self.view.clone()
    }

    /// Takes the input's context, handles it with `f`, and returns what `f` gave and what
    /// the input asked for.
    fn input_with<R>(&mut self, at: Context, f: impl FnOnce(&mut Self) -> R) -> (R, Vec<Action>) {
        self.now = at.now;
        self.view = at.registry;
        let r = f(self);
        (r, std::mem::take(&mut self.out))
    }

    fn input(&mut self, at: Context, f: impl FnOnce(&mut Self)) -> Vec<Action> {
        self.input_with(at, f).1
    }

    /// A leadership starts: rebuilds the soft state from the registry (see [`rebuild`]).
    pub(super) fn on_rebuild(&mut self, at: Context) -> (Rebuilt, Vec<Action>) {
        self.input_with(at, |e| e.rebuild(&e.state()))
    }

    /// A command from a service.
    pub(super) fn on_command(&mut self, at: Context, command: Command) -> Vec<Action> {
        self.input(at, |e| e.command(command))
    }

    /// A proposal's outcome: committed (the registry's outcome, which may be a refusal), or
    /// failed (not committed, or not known to be).
    pub(super) fn on_outcome(
        &mut self,
        at: Context,
        pending: Pending,
        outcome: Result<ClusterOutcome, ReplicaError>,
    ) -> Vec<Action> {
        self.input(at, |e| e.outcome(pending, outcome))
    }

    /// The periodic timer: what is due by time, and allocation when `allocation_interval`
    /// passed since the last.
    pub(super) fn on_tick(&mut self, at: Context) -> Vec<Action> {
        self.input(at, |e| {
            e.housekeeping();
            if e.now.mono.duration_since(e.last_allocation) >= e.config.allocation_interval {
                e.allocation_due = Some(e.now.mono);
            }
        })
    }

    /// When allocation is due next, if it is.
    pub(super) fn allocation_due(&self) -> Option<Instant> {
        self.allocation_due
    }

    /// Allocation is due: runs it.
    pub(super) fn on_allocation_due(&mut self, at: Context) -> Vec<Action> {
        self.input(at, |e| {
            e.allocation_due = None;
            e.last_allocation = e.now.mono;
            e.allocate();
        })
    }

    /// `stream` was found full (its framework is not reading) or closed (it went away): the
    /// framework is disconnected. A stream already replaced or detached changes nothing.
    pub(super) fn on_stream_lost(
        &mut self,
        at: Context,
        stream: StreamKey,
        full: bool,
    ) -> Vec<Action> {
        self.input(at, |e| {
            let Some(framework) = e.frameworks.framework_of(stream) else {
                return;
            };
            if full {
                tracing::warn!(%framework, "framework is not reading its events; disconnecting it");
            }
            e.disconnect(&framework);
        })
    }

    fn propose(&mut self, op: ClusterOp, pending: Pending) {
        self.out.push(Action::Propose { op, pending });
    }

    fn allocate_soon(&mut self) {
        if self.allocation_due.is_none() {
            self.allocation_due = Some(self.now.mono + self.config.allocation_batch);
        }
    }

    fn update_suppression(&mut self, f: &FrameworkId) {
        let r = if self.frameworks.is_suppressed(f) {
            self.allocator.suppress(f)
        } else {
            self.allocator.revive(f)
        };
        if let Err(e) = r {
            tracing::warn!(framework = %f, error = %e, "allocator");
        }
    }

    /// Sends an event to a framework's stream; false when it has none. A stream found full or
    /// closed when the event is queued comes back as [`Self::stream_lost`].
    fn send(&mut self, framework: &FrameworkId, e: v1::event::Event) -> bool {
        let Some(stream) = self.frameworks.sent(framework) else {
            return false;
        };
        self.out.push(Action::Send {
            stream,
            event: event(e),
        });
        true
    }

    /// The runtime's word on how many more events `stream` can take now.
    pub(super) fn stream_room(&mut self, stream: StreamKey, room: usize) {
        self.frameworks.set_room(stream, room);
    }

    /// The framework's stream is gone: no more offers to it, and its outstanding offers are
    /// rescinded so that others can use the resources. Its tasks keep running. (The stream
    /// was found lost: the runtime has dropped it already.)
    fn disconnect(&mut self, framework: &FrameworkId) {
        if self.frameworks.disconnect(framework).is_some() {
            tracing::info!(%framework, "framework disconnected");
            self.update_suppression(framework);
            self.framework_disconnected(framework);
            let ids = self.offers.of_framework(framework);
            self.remove_offers(ids, Pending::Rescinded);
        }
    }

    fn check_caller(&self, caller: &Caller) -> Result<(), Refusal> {
        self.frameworks
            .check_caller(&caller.framework, &caller.stream_id)
    }

    /// Answers the caller behind `reply`.
    fn answer<T: Into<Answer>>(&mut self, reply: Reply<T>, r: Result<T, Refusal>) {
        self.out.push(Action::Reply {
            call: reply.id(),
            answer: r.map(Into::into),
        });
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Subscribe {
                framework,
                resubscribe,
                stream,
                reply,
            } => self.subscribe(framework, resubscribe, stream, reply),
            Command::Call {
                caller,
                call,
                reply,
            } => {
                // TEARDOWN again (a retry whose answer was lost) is answered as done.
                if matches!(call, Call::Teardown) && self.frameworks.is_torn_down(&caller.framework)
                {
                    self.answer(reply, Ok(()));
                    return;
                }
                if let Err(e) = self.check_caller(&caller) {
                    self.answer(reply, Err(e));
                    return;
                }
                self.call(caller.framework, call, reply);
            }
            Command::RegisterAgent {
                agent,
                tasks,
                truncated,
                reply,
            } => self.register_agent(agent, tasks, truncated, reply),
            Command::SetAgentState {
                agent,
                state,
                reply,
            } => self.maintain_agent(agent, state, reply),
            Command::AgentHeartbeat { agent, reply } => self.heartbeat(agent, reply),
            Command::StatusUpdate {
                agent,
                framework,
                task,
                update,
                reply,
            } => self.status_update(agent, framework, task, update, reply),
            Command::SetRoleWeight {
                role,
                weight,
                reply,
            } => self.set_role_weight(role, weight, reply),
            Command::TeardownFramework { framework, reply } => {
                self.operator_teardown(framework, reply)
            }
            Command::ConnectedFrameworks { reply } => {
                let connected = self.frameworks.connected();
                self.answer(reply, Ok(connected));
            }
            Command::ExecutorMessage {
                agent,
                framework,
                executor,
                data,
                reply,
            } => self.executor_message(agent, framework, executor, data, reply),
            Command::ExecutorExited {
                agent,
                framework,
                executor,
                status,
                reply,
            } => self.executor_exited(agent, framework, executor, status, reply),
        }
    }

    fn call(&mut self, framework: FrameworkId, call: Call, reply: Reply<()>) {
        match call {
            Call::Accept {
                offers,
                tasks,
                refuse_ms,
            } => self.accept(framework, offers, tasks, refuse_ms, reply),
            Call::Decline { offers, refuse_ms } => {
                self.decline(framework, offers, refuse_ms, reply)
            }
            Call::Suppress => self.suppress(framework, reply),
            Call::Revive => self.revive(framework, reply),
            Call::Kill { task, grace_ms } => self.kill(framework, task, grace_ms, reply),
            Call::Acknowledge { task, uuid } => self.acknowledge(framework, task, uuid, reply),
            Call::Reconcile { tasks } => self.reconcile(framework, tasks, reply),
            Call::Teardown => self.teardown(framework, reply),
            Call::Message {
                agent,
                executor,
                data,
            } => self.framework_message(framework, agent, executor, data, reply),
            Call::ShutdownExecutor { agent, executor } => {
                self.shutdown_executor(framework, agent, executor, reply)
            }
        }
    }

    fn run_on_agent(
        &mut self,
        state: &ClusterState,
        framework: &FrameworkId,
        agent: &AgentId,
        tasks: &[TaskSpec],
    ) {
        let Some(a) = state.agent(agent) else { return };
        let req = v1::RunTaskRequest {
            agent_id: agent.to_string(),
            framework_id: framework.to_string(),
            tasks: tasks.iter().map(convert::task_to_proto).collect(),
            framework_name: state
                .framework(framework)
                .map(|f| f.name.clone())
                .unwrap_or_default(),
        };
        self.out.push(Action::ToAgent {
            agent: agent.clone(),
            addr: a.addr.clone(),
            message: AgentMessage::Run(req),
        });
    }

    fn kill_on_agent(
        &mut self,
        state: &ClusterState,
        framework: &FrameworkId,
        agent: &AgentId,
        task: &TaskId,
        grace_ms: u64,
    ) {
        let Some(a) = state.agent(agent) else { return };
        let req = v1::KillTaskRequest {
            agent_id: agent.to_string(),
            framework_id: framework.to_string(),
            task_id: task.to_string(),
            grace_seconds: grace_ms as f64 / 1000.0,
        };
        self.out.push(Action::ToAgent {
            agent: agent.clone(),
            addr: a.addr.clone(),
            message: AgentMessage::Kill(req),
        });
    }

    fn outcome(&mut self, pending: Pending, result: Result<ClusterOutcome, ReplicaError>) {
        // A proposal that failed (leadership lost, the node stopping) changed nothing this
        // engine can know of: answer the caller; the next leader rebuilds from the log.
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "proposal failed");
                self.fail(pending, Refusal::Replica(e));
                return;
            }
        };
        if let ClusterOutcome::Refused(e) = &outcome {
            let status = Refusal::Cluster(e.clone());
            tracing::debug!(error = %e, "refused");
            // Allocations that were not turned into offers go back.
            if let Pending::OffersCreated(offers) = &pending {
                tracing::error!(error = %e, "offers were refused; returning them to the allocator");
                for o in offers {
                    let _ = self
                        .allocator
                        .recover(&o.framework, &o.agent, &o.resources, None);
                }
            }
            self.fail(pending, status);
            return;
        }
        match pending {
            Pending::Subscribed {
                framework,
                resubscribe,
                stream,
                reply,
            } => self.subscribed(framework, resubscribe, stream, reply),
            Pending::OffersCreated(offers) => self.offers_created(offers, outcome),
            Pending::Accepted {
                framework,
                offers,
                tasks,
                refuse_ms,
                reply,
            } => self.accepted(framework, offers, tasks, refuse_ms, outcome, reply),
            Pending::Declined {
                framework,
                refuse_ms,
                reply,
            } => self.declined(framework, refuse_ms, outcome, reply),
            Pending::Rescinded => self.offers_removed(&outcome, None, None),
            Pending::TornDown { framework, reply } => self.torn_down(framework, outcome, reply),
            Pending::AgentRegistered {
                agent,
                reregistered,
                reply,
            } => self.agent_registered(agent, reregistered, outcome, reply),
            Pending::AgentStateSet {
                agent,
                state,
                cause,
                reply,
            } => self.agent_state_set(agent, state, cause, outcome, reply),
            Pending::StatusApplied {
                framework,
                task,
                update,
                started,
                reply,
            } => self.status_applied(framework, task, update, started, outcome, reply),
            Pending::Acknowledged { framework, reply } => self.acknowledged(framework, reply),
            Pending::WeightSet {
                role,
                weight,
                reply,
            } => self.weight_set(role, weight, reply),
            Pending::Pruned => self.pruned(outcome),
        }
    }

    /// Answers the caller behind `after` with `status`.
    fn fail(&mut self, pending: Pending, status: Refusal) {
        match pending {
            Pending::Accepted {
                framework,
                tasks,
                reply,
                ..
            } => {
                self.answer(reply, Err(status));
                self.launch_settled(&framework, &tasks);
            }
            Pending::Subscribed { reply, .. }
            | Pending::Declined { reply, .. }
            | Pending::StatusApplied { reply, .. }
            | Pending::Acknowledged { reply, .. }
            | Pending::WeightSet { reply, .. } => {
                self.answer(reply, Err(status));
            }
            Pending::AgentRegistered { reply, .. } => {
                self.answer(reply, Err(status));
            }
            Pending::TornDown { framework, reply } => {
                self.framework_gone_failed(&framework);
                if let Some(reply) = reply {
                    self.answer(reply, Err(status));
                }
            }
            Pending::AgentStateSet { agent, reply, .. } => {
                self.liveness.marked(&agent);
                if let Some(reply) = reply {
                    self.answer(reply, Err(status));
                }
            }
            Pending::Pruned => self.pruning = false,
            Pending::OffersCreated(offers) => {
                // The outcome is unknown (leadership is ending): the next leader rebuilds.
                for o in offers {
                    let _ = self
                        .allocator
                        .recover(&o.framework, &o.agent, &o.resources, None);
                }
            }
            Pending::Rescinded => {}
        }
    }

    /// Once per tick: what is due by time.
    fn housekeeping(&mut self) {
        self.prune_if_due();
        self.expire_offers();
        self.mark_silent_agents();
        self.heartbeat_frameworks();
        self.mark_late_agents();
        self.time_out_frameworks();
        self.drain_backlogs();
        self.gauges();
    }

    fn gauges(&self) {
        metrics::gauge!(m::OFFERS_OUTSTANDING).set(self.offers.len() as f64);
        metrics::gauge!(m::FRAMEWORKS_CONNECTED).set(self.frameworks.len() as f64);
    }
}

/// `items` in owned runs of at most `n` (the last may be shorter), without copying.
fn chunks_of<T>(items: Vec<T>, n: usize) -> impl Iterator<Item = Vec<T>> {
    let mut items = items.into_iter().peekable();
    std::iter::from_fn(move || {
        items.peek()?;
        Some(items.by_ref().take(n.max(1)).collect())
    })
}
