//! The conductor: the one task that owns the leader's offer cycle while this replica leads.
//!
//! Owns the soft state DESIGN.md puts on the leader only: the DRF [`Allocator`], the subscribed
//! frameworks' event streams, agents' last heartbeats, outstanding offers' expiry times, and the
//! launches and kills in flight to agents. Every change to the cluster goes through Raft first:
//! the conductor proposes a [`ClusterOp`] and acts on its committed outcome (and only on that),
//! so that an offer is sent only after it is committed, a launch only after ACCEPT is, and an
//! agent's status update is acknowledged only after it is.
//!
//! The allocator's bookkeeping follows committed outcomes exactly: resources go back to it when
//! an outcome says they were released (offers removed, ACCEPT's unused part, a task that ended).
//! Proposals are awaited without a deadline here (a caller's deadline is its own affair), so
//! no outcome is missed; when leadership ends, the whole conductor is dropped and the next
//! leader rebuilds from the registry.
//!
//! The conductor decides; its runtime (`leader::runtime`) does the I/O. Each input (a command
//! from the gRPC services, a proposal's outcome, a timer tick, allocation falling due) is
//! handled at a time and against a registry view the runtime reads once for it; what to
//! propose and what to send to agents comes back as [`Action`]s, data the runtime carries out
//! in order. Framework streams and callers' answers are still channels written here (to become
//! actions in a later step). One timer drives allocation, offer expiry, agent timeouts and
//! heartbeats.
//! Allocation runs every `allocation_interval`, and early (after `allocation_batch`) when
//! resources appear: an agent registers, a task ends, a framework subscribes or revives.
//! Resources a framework hands back (DECLINE, ACCEPT's unused part, rescinds) wait for the
//! periodic cycle, so that a framework declining without a filter cannot spin offers through
//! the Raft log.
//!
//! Recovery after a leader change and across failures (agents re-registering with their
//! tasks, unreachable and removed agents, framework failover timeouts, reconciliation) is in
//! [`recovery`].

mod recovery;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use drover_proto::agent_api::MAX_TASKS_PER_RUN;
use drover_proto::v1;
use drover_resources::Resources;
use tokio::sync::mpsc;
use tonic::Status;

use super::answer::{Answer, CallId, Refusal, Reply};
use super::engine::liveness::Liveness;
use super::engine::offers::Offers;

use super::agents::AgentMessage;
use super::convert;
use crate::allocator::{Allocator, AllocatorConfig};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::ids::{AgentId, FrameworkId, OfferId, Role, TaskId};
use crate::metrics as m;
use crate::raft::MasterId;
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterOp, ClusterOutcome, ClusterState, FrameworkRecord, OfferRecord,
    ReportedTask, StatusUpdate, TaskSpec, MAX_TASKS_PER_ACCEPT,
};
use crate::replicated::ReplicaError;

/// Events queued per framework stream; a framework that falls this far behind is disconnected
/// (it re-subscribes and gets every unacknowledged update again).
pub const EVENT_QUEUE: usize = 4096;
/// Unacknowledged updates re-sent at once when a framework subscribes; the rest follow one per
/// acknowledgement, so a large backlog never overflows the stream.
pub const REDELIVERY_BURST: usize = EVENT_QUEUE / 2;
/// Most tasks one explicit RECONCILE names.
pub const MAX_RECONCILE_TASKS: usize = 10_000;
/// Updates kept per framework for later sending (redelivery and reconciliation beyond what
/// the stream holds); a framework with more is answered in part and must reconcile again.
pub const MAX_BACKLOG: usize = 200_000;
/// Most offers in one CreateOffers command (each is a few hundred bytes encoded).
pub const MAX_OFFERS_PER_COMMAND: usize = 256;
const _: () = assert!(MAX_TASKS_PER_ACCEPT <= MAX_TASKS_PER_RUN);
/// Most offers in one OFFERS event (each is a few hundred bytes).
pub const MAX_OFFERS_PER_EVENT: usize = 1000;
/// Proposals in flight from the conductor; past it, commands wait in their queue (whose bound
/// makes the services wait in turn).
pub const MAX_PENDING_PROPOSALS: usize = 8 * 1024;

pub type EventSender = mpsc::Sender<Result<v1::Event, Status>>;

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
}

/// A command for the conductor: what a service asked (see `runtime::Request`), with the
/// handle its answer goes to.
pub enum Command {
    Subscribe {
        framework: FrameworkRecord,
        /// Whether the framework gave its id (a re-subscription) or got a fresh one.
        resubscribe: bool,
        events: EventSender,
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
        update: StatusUpdate,
        reply: Reply<()>,
    },
    SetRoleWeight {
        role: Role,
        weight: f64,
        reply: Reply<()>,
    },
}

/// What the conductor asks of the runtime that drives it (`leader::runtime`): data, carried
/// out in the order pushed, once the input that pushed it has been handled.
// Actions live for one input and are moved, never copied: boxing the large variant would
// only add an allocation per proposal.
#[allow(clippy::large_enum_variant)]
pub(super) enum Action {
    /// Propose `op`; its outcome comes back to [`Conductor::completed`] with `after`.
    Propose { op: ClusterOp, after: After },
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
}

/// What to do once a proposal's outcome is known.
pub(super) enum After {
    Subscribed {
        framework: FrameworkRecord,
        resubscribe: bool,
        events: EventSender,
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
        update: StatusUpdate,
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

/// A proposal's outcome, with what to do about it.
pub(super) struct Completion {
    pub(super) result: Result<ClusterOutcome, ReplicaError>,
    pub(super) after: After,
}

struct Connection {
    stream_id: String,
    events: EventSender,
    /// Updates not sent yet: unacknowledged ones beyond [`REDELIVERY_BURST`] at subscription,
    /// and reconciliation answers beyond what the stream holds. Sent as the stream drains
    /// (one per acknowledgement, and whatever fits at each tick); at most [`MAX_BACKLOG`].
    backlog: std::collections::VecDeque<v1::TaskStatus>,
}

pub struct Conductor {
    me: MasterId,
    config: OfferCycleConfig,
    allocator: Allocator,
    connections: HashMap<FrameworkId, Connection>,
    /// Frameworks that asked for no offers (SUPPRESS), torn down, or not connected: the
    /// allocator's suppression is the union of these.
    self_suppressed: HashSet<FrameworkId>,
    torn_down: HashSet<FrameworkId>,
    /// Agents' last heartbeats, and the leader's state changes in flight.
    liveness: Liveness,
    /// Recovery after a leader change; see [`recovery`].
    recovery: recovery::Recovery,
    /// Outstanding offers, their expiry and removals in flight.
    offers: Offers,
    /// The registry as applied when the input being handled arrived (see [`Self::state`]).
    view: ClusterState,
    /// What the runtime is to do, in order (see [`Action`]).
    out: Vec<Action>,
    /// When allocation runs next (early, after `allocation_batch`, or periodic).
    allocation_due: Option<Instant>,
    last_allocation: Instant,
    last_framework_heartbeat: Instant,
    /// When the input being handled arrived: set by the runtime before each input
    /// ([`Self::begin_input`]), the only clock the handlers read.
    now: Now,
    /// Makes fresh stream and offer ids (random; a counter in tests).
    fresh_id: Box<dyn FnMut() -> String + Send>,
    /// A PruneCompleted is in flight (one at a time).
    pruning: bool,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn event(e: v1::event::Event) -> v1::Event {
    v1::Event { event: Some(e) }
}

impl Conductor {
    pub fn new(me: MasterId, config: OfferCycleConfig, now: Now) -> Self {
        Self {
            me,
            config,
            allocator: Allocator::new(AllocatorConfig::default()),
            connections: HashMap::new(),
            self_suppressed: HashSet::new(),
            torn_down: HashSet::new(),
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
        }
    }

    /// The registry as applied on this replica when the input being handled arrived: on the
    /// leader it holds every committed outcome the conductor has seen.
    fn state(&self) -> ClusterState {
        self.view.clone()
    }

    /// Sets what the next input is handled against: the time, and the registry as applied.
    pub(super) fn begin_input(&mut self, now: Now, view: ClusterState) {
        self.now = now;
        self.view = view;
    }

    /// When allocation is due next, if it is.
    pub(super) fn allocation_due(&self) -> Option<Instant> {
        self.allocation_due
    }

    /// Allocation is due: runs it.
    pub(super) fn on_allocation_due(&mut self) {
        self.allocation_due = None;
        self.last_allocation = self.now.mono;
        self.allocate();
    }

    /// What the inputs handled so far asked for, in order; emptied.
    pub(super) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// The periodic timer: housekeeping, and allocation when `allocation_interval` passed
    /// since the last.
    pub(super) fn tick(&mut self) {
        self.housekeeping();
        if self.now.mono.duration_since(self.last_allocation) >= self.config.allocation_interval {
            self.allocation_due = Some(self.now.mono);
        }
    }

    /// Rebuilds the soft state from the registry: frameworks (none connected yet, so none is
    /// offered anything until it subscribes), agents with what is allocated on them
    /// (outstanding offers and live tasks), role weights, offer expiry times.
    pub(super) fn rebuild(&mut self, state: &ClusterState) -> Rebuilt {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        for (role, weight) in state.role_weights() {
            if let Err(e) = allocator.set_weight(role.clone(), weight) {
                tracing::error!(error = %e, "rebuilding the allocator");
            }
        }
        for f in state.frameworks() {
            if let Err(e) = allocator.add_framework(f.id.clone(), f.role.clone()) {
                tracing::error!(error = %e, "rebuilding the allocator");
            }
            let _ = allocator.suppress(&f.id);
            if f.torn_down {
                self.torn_down.insert(f.id.clone());
            }
        }
        let now = self.now.mono;
        let mut used = used_by_agent(state);
        for a in state.agents() {
            if a.state == AgentState::Gone {
                continue;
            }
            let used = used.remove(&a.id).unwrap_or_default();
            if let Err(e) = allocator.add_agent(a.id.clone(), a.total.clone(), used) {
                tracing::error!(agent = %a.id, error = %e, "rebuilding the allocator");
                continue;
            }
            if a.state == AgentState::Active {
                self.liveness.heard(&a.id, now);
            } else {
                let _ = allocator.set_agent_active(&a.id, false);
            }
        }
        for o in state.offers() {
            self.offers.insert(o);
        }
        self.allocator = allocator;
        // Launches and kills the previous leader may not have delivered: RunTask for every
        // STAGING task (the agent ignores a launch it already has), KillTask for every live
        // task of a torn-down framework.
        for t in state.tasks() {
            if !t.state.is_terminal() && self.torn_down.contains(&t.framework) {
                self.kill_on_agent(
                    state,
                    &t.framework,
                    &t.agent,
                    &t.spec.id,
                    t.spec.kill_grace_ms,
                );
            }
        }
        let relaunched = self.relaunch_staging(state);
        self.start_recovery(state);
        Rebuilt {
            relaunched,
            agents: self.liveness.len(),
            offers: self.offers.len(),
        }
    }

    fn propose(&mut self, op: ClusterOp, after: After) {
        self.out.push(Action::Propose { op, after });
    }

    fn allocate_soon(&mut self) {
        if self.allocation_due.is_none() {
            self.allocation_due = Some(self.now.mono + self.config.allocation_batch);
        }
    }

    fn update_suppression(&mut self, f: &FrameworkId) {
        let off = self.self_suppressed.contains(f)
            || self.torn_down.contains(f)
            || !self.connections.contains_key(f);
        let r = if off {
            self.allocator.suppress(f)
        } else {
            self.allocator.revive(f)
        };
        if let Err(e) = r {
            tracing::warn!(framework = %f, error = %e, "allocator");
        }
    }

    /// Sends an event to a framework's stream; a full or closed stream disconnects it.
    fn send(&mut self, framework: &FrameworkId, e: v1::event::Event) -> bool {
        let Some(c) = self.connections.get(framework) else {
            return false;
        };
        match c.events.try_send(Ok(event(e))) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(%framework, "framework is not reading its events; disconnecting it");
                self.disconnect(framework);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.disconnect(framework);
                false
            }
        }
    }

    /// The framework's stream is gone: no more offers to it, and its outstanding offers are
    /// rescinded so that others can use the resources. Its tasks keep running.
    fn disconnect(&mut self, framework: &FrameworkId) {
        if self.connections.remove(framework).is_some() {
            tracing::info!(%framework, "framework disconnected");
            self.update_suppression(framework);
            self.framework_disconnected(framework);
            let ids = self.offers.of_framework(framework);
            self.remove_offers(ids, After::Rescinded);
        }
    }

    fn remove_offers(&mut self, ids: Vec<OfferId>, after: After) {
        if ids.is_empty() {
            if let After::Declined { reply, .. } = after {
                self.answer(reply, Ok(()));
            }
            return;
        }
        self.offers.begin_removal(&ids);
        self.propose(ClusterOp::RemoveOffers(ids), after);
    }

    fn check_caller(&self, caller: &Caller) -> Result<(), Refusal> {
        match self.connections.get(&caller.framework) {
            Some(c) if c.stream_id == caller.stream_id => Ok(()),
            Some(_) => Err(Refusal::StaleCaller {
                message: "caller.stream_id: not the framework's live stream (a newer subscription replaced it)".into(),
                replaced: true,
            }),
            None => Err(Refusal::StaleCaller {
                message: format!(
                    "caller.framework_id: framework {} is not subscribed to this leader; subscribe first",
                    caller.framework
                ),
                replaced: false,
            }),
        }
    }

    /// Answers the caller behind `reply`.
    fn answer<T: Into<Answer>>(&mut self, reply: Reply<T>, r: Result<T, Refusal>) {
        self.out.push(Action::Reply {
            call: reply.id(),
            answer: r.map(Into::into),
        });
    }

    pub(super) fn command(&mut self, c: Command) {
        match c {
            Command::Subscribe {
                framework,
                resubscribe,
                events,
                reply,
            } => {
                if self.torn_down.contains(&framework.id) {
                    self.answer(
                        reply,
                        Err(Refusal::FailedPrecondition(format!(
                            "framework.id: framework {} was torn down",
                            framework.id
                        ))),
                    );
                    return;
                }
                self.propose(
                    ClusterOp::SubscribeFramework(framework.clone()),
                    After::Subscribed {
                        framework,
                        resubscribe,
                        events,
                        reply,
                    },
                );
            }
            Command::Call {
                caller,
                call,
                reply,
            } => {
                // TEARDOWN again (a retry whose answer was lost) is answered as done.
                if matches!(call, Call::Teardown) && self.torn_down.contains(&caller.framework) {
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
            Command::AgentHeartbeat { agent, reply } => {
                // Up: ACTIVE or DRAINING. An agent a new leader has not heard from since it
                // was elected registers again, with its tasks.
                let up = self
                    .state()
                    .agent(&agent)
                    .is_some_and(|a| matches!(a.state, AgentState::Active | AgentState::Draining));
                if up {
                    self.liveness.heard(&agent, self.now.mono);
                }
                self.answer(reply, Ok(!up || self.recovery.awaits(&agent)));
            }
            Command::StatusUpdate {
                agent,
                framework,
                task,
                update,
                reply,
            } => {
                metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "received").increment(1);
                // No check against this replica's own state first: a leader cut off from the
                // others may not know the task yet, and a refusal is final for the agent.
                // Only a committed refusal is answered as one.
                let op = ClusterOp::StatusUpdate {
                    agent,
                    framework: framework.clone(),
                    task: task.clone(),
                    update: update.clone(),
                };
                self.propose(
                    op,
                    After::StatusApplied {
                        framework,
                        task,
                        update,
                        started: self.now.mono,
                        reply,
                    },
                );
            }
            Command::SetRoleWeight {
                role,
                weight,
                reply,
            } => {
                let op = ClusterOp::SetRoleWeight {
                    role: role.clone(),
                    weight,
                };
                self.propose(
                    op,
                    After::WeightSet {
                        role,
                        weight,
                        reply,
                    },
                );
            }
        }
    }

    fn call(&mut self, framework: FrameworkId, call: Call, reply: Reply<()>) {
        let default_refuse = ms(self.config.default_refuse);
        match call {
            Call::Accept {
                offers,
                tasks,
                refuse_ms,
            } => {
                let op = ClusterOp::Accept {
                    framework: framework.clone(),
                    offers: offers.clone(),
                    tasks: tasks.clone(),
                };
                self.propose(
                    op,
                    After::Accepted {
                        framework,
                        offers,
                        tasks,
                        refuse_ms: refuse_ms.unwrap_or(default_refuse),
                        reply,
                    },
                );
            }
            Call::Decline { offers, refuse_ms } => {
                // Only this framework's outstanding offers; others' ids are ignored, as Mesos.
                let ids = self.offers.declinable(&framework, offers);
                let after = After::Declined {
                    framework,
                    refuse_ms: refuse_ms.unwrap_or(default_refuse),
                    reply,
                };
                self.remove_offers(ids, after);
            }
            Call::Suppress => {
                self.self_suppressed.insert(framework.clone());
                self.update_suppression(&framework);
                self.answer(reply, Ok(()));
            }
            Call::Revive => {
                self.self_suppressed.remove(&framework);
                self.update_suppression(&framework);
                self.allocate_soon();
                self.answer(reply, Ok(()));
            }
            Call::Kill { task, grace_ms } => {
                let state = self.state();
                let r = match state.task(&framework, &task) {
                    None => Err(Refusal::NotFound(format!(
                        "task_id: framework {framework} has no task {task}"
                    ))),
                    Some(t) if t.state.is_terminal() => Ok(()),
                    Some(t) => {
                        let grace = grace_ms.unwrap_or(t.spec.kill_grace_ms);
                        self.kill_on_agent(&state, &framework, &t.agent, &task, grace);
                        Ok(())
                    }
                };
                self.answer(reply, r);
            }
            Call::Acknowledge { task, uuid } => {
                let op = ClusterOp::Acknowledge {
                    framework: framework.clone(),
                    task,
                    uuid,
                };
                self.propose(op, After::Acknowledged { framework, reply });
            }
            Call::Reconcile { tasks } => self.reconcile(framework, tasks, reply),
            Call::Teardown => {
                self.propose(
                    ClusterOp::TeardownFramework {
                        framework: framework.clone(),
                        if_subscribed_at_ms: None,
                    },
                    After::TornDown {
                        framework,
                        reply: Some(reply),
                    },
                );
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

    pub(super) fn completed(&mut self, done: Completion) {
        let Completion { result, after } = done;
        // A proposal that failed (leadership lost, the node stopping) changed nothing this
        // conductor can know of: answer the caller; the next leader rebuilds from the log.
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "proposal failed");
                self.fail(after, Refusal::Replica(e));
                return;
            }
        };
        if let ClusterOutcome::Refused(e) = &outcome {
            let status = Refusal::Cluster(e.clone());
            tracing::debug!(error = %e, "refused");
            // Allocations that were not turned into offers go back.
            if let After::OffersCreated(offers) = &after {
                tracing::error!(error = %e, "offers were refused; returning them to the allocator");
                for o in offers {
                    let _ = self
                        .allocator
                        .recover(&o.framework, &o.agent, &o.resources, None);
                }
            }
            if let After::Declined { .. } | After::Rescinded = &after {
                // RemoveOffers is never refused.
            }
            self.fail(after, status);
            return;
        }
        match after {
            After::Subscribed {
                framework,
                resubscribe,
                events,
                reply,
            } => self.subscribed(framework, resubscribe, events, reply),
            After::OffersCreated(mut offers) => {
                if let ClusterOutcome::OffersCreated { refused } = &outcome {
                    for (id, e) in refused {
                        tracing::warn!(offer = %id, error = %e, "offer refused by the registry; resources return to the allocator");
                        if let Some(o) = offers.iter().find(|o| &o.id == id) {
                            let _ =
                                self.allocator
                                    .recover(&o.framework, &o.agent, &o.resources, None);
                        }
                    }
                    let refused: HashSet<&OfferId> = refused.iter().map(|(id, _)| id).collect();
                    offers.retain(|o| !refused.contains(&o.id));
                }
                self.offers_created(offers)
            }
            After::Accepted {
                framework,
                offers,
                tasks,
                refuse_ms,
                reply,
            } => {
                let ClusterOutcome::Accepted { agent, unused } = outcome else {
                    self.answer(reply, Err(Refusal::Internal("unexpected outcome".into())));
                    return;
                };
                // The offers are consumed; drop their timers.
                let state = self.state();
                for id in &offers {
                    self.offers.forget(id);
                }
                if !unused.is_empty() {
                    let refuse = (refuse_ms > 0).then_some((self.now.wall_ms, refuse_ms));
                    if let Err(e) = self.allocator.recover(&framework, &agent, &unused, refuse) {
                        tracing::error!(error = %e, "allocator");
                    }
                }
                metrics::counter!(m::TASKS_LAUNCHED_TOTAL).increment(tasks.len() as u64);
                // A TEARDOWN committed meanwhile is killing these: do not launch them.
                if !self.torn_down.contains(&framework) {
                    // One RunTask: an ACCEPT's tasks fit (`MAX_TASKS_PER_ACCEPT`).
                    self.run_on_agent(&state, &framework, &agent, &tasks);
                }
                self.answer(reply, Ok(()));
            }
            After::Declined {
                framework,
                refuse_ms,
                reply,
            } => {
                let refuse = (refuse_ms > 0).then_some((self.now.wall_ms, refuse_ms));
                self.offers_removed(&outcome, refuse, Some(&framework));
                self.answer(reply, Ok(()));
            }
            After::Rescinded => self.offers_removed(&outcome, None, None),
            After::TornDown { framework, reply } => {
                self.offers_removed(&outcome, None, Some(&framework));
                self.torn_down.insert(framework.clone());
                self.connections.remove(&framework);
                self.framework_gone(&framework);
                self.update_suppression(&framework);
                let state = self.state();
                let live: Vec<(AgentId, TaskId, u64)> = state
                    .tasks_of(&framework)
                    .filter(|t| !t.state.is_terminal())
                    .map(|t| (t.agent.clone(), t.spec.id.clone(), t.spec.kill_grace_ms))
                    .collect();
                for (agent, task, grace) in live {
                    self.kill_on_agent(&state, &framework, &agent, &task, grace);
                }
                tracing::info!(%framework, "framework torn down");
                if let Some(reply) = reply {
                    self.answer(reply, Ok(()));
                }
            }
            After::AgentRegistered {
                agent,
                reregistered,
                reply,
            } => self.agent_registered(agent, reregistered, outcome, reply),
            After::AgentStateSet {
                agent,
                state,
                cause,
                reply,
            } => self.agent_state_set(agent, state, cause, outcome, reply),
            After::StatusApplied {
                framework,
                task,
                update,
                started,
                reply,
            } => {
                metrics::histogram!(m::STATUS_UPDATE_COMMIT_SECONDS)
                    .record(self.now.mono.duration_since(started));
                let forward = match &outcome {
                    ClusterOutcome::StatusApplied { agent, released } => {
                        if let Some(r) = released {
                            if let Err(e) = self.allocator.recover(&framework, agent, r, None) {
                                tracing::error!(error = %e, "allocator");
                            }
                            self.allocate_soon();
                        }
                        true
                    }
                    ClusterOutcome::Duplicate { acknowledged } => !acknowledged,
                    _ => false,
                };
                metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "acked").increment(1);
                self.answer(reply, Ok(()));
                if forward {
                    let state = self.state();
                    if let Some(t) = state.task(&framework, &task) {
                        let status = convert::status_to_proto(t, &update);
                        if self.send(
                            &framework,
                            v1::event::Event::Update(v1::Update {
                                status: Some(status),
                            }),
                        ) {
                            metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "forwarded")
                                .increment(1);
                        }
                    }
                }
            }
            After::Acknowledged { framework, reply } => {
                self.answer(reply, Ok(()));
                // One acknowledgement makes room for one more update of the backlog.
                let next = self
                    .connections
                    .get_mut(&framework)
                    .and_then(|c| c.backlog.pop_front());
                if let Some(s) = next {
                    self.send(
                        &framework,
                        v1::event::Event::Update(v1::Update { status: Some(s) }),
                    );
                }
            }
            After::WeightSet {
                role,
                weight,
                reply,
            } => {
                let r = self
                    .allocator
                    .set_weight(role, weight)
                    .map_err(|e| Refusal::InvalidArgument(e.to_string()));
                self.answer(reply, r);
            }
            After::Pruned => self.pruned(outcome),
        }
    }

    /// Proposes forgetting completed tasks and frameworks beyond the configured bounds, when
    /// the registry is past them by enough (see `ClusterState::prune_due`); one at a time.
    fn prune_if_due(&mut self) {
        if self.pruning {
            return;
        }
        let (tasks, frameworks) = (
            self.config.max_completed_tasks_per_framework,
            self.config.max_completed_frameworks,
        );
        if !self.state().prune_due(tasks as usize, frameworks as usize) {
            return;
        }
        self.pruning = true;
        self.propose(
            ClusterOp::PruneCompleted {
                keep_tasks_per_framework: tasks,
                keep_completed_frameworks: frameworks,
            },
            After::Pruned,
        );
    }

    fn pruned(&mut self, outcome: ClusterOutcome) {
        self.pruning = false;
        let ClusterOutcome::Pruned { tasks, frameworks } = outcome else {
            return;
        };
        for f in &frameworks {
            // Torn down: no offers, no live tasks; only the allocator still names it.
            if let Err(e) = self.allocator.remove_framework(f) {
                tracing::debug!(framework = %f, error = %e, "allocator");
            }
            self.torn_down.remove(f);
            self.self_suppressed.remove(f);
        }
        metrics::counter!(m::PRUNED_TOTAL, "what" => "tasks").increment(tasks);
        metrics::counter!(m::PRUNED_TOTAL, "what" => "frameworks")
            .increment(frameworks.len() as u64);
        tracing::info!(
            tasks,
            frameworks = frameworks.len(),
            "forgot completed tasks and frameworks"
        );
    }

    /// Answers the caller behind `after` with `status`.
    fn fail(&mut self, after: After, status: Refusal) {
        match after {
            After::Subscribed { reply, .. }
            | After::Accepted { reply, .. }
            | After::Declined { reply, .. }
            | After::StatusApplied { reply, .. }
            | After::Acknowledged { reply, .. }
            | After::WeightSet { reply, .. } => {
                self.answer(reply, Err(status));
            }
            After::AgentRegistered { reply, .. } => {
                self.answer(reply, Err(status));
            }
            After::TornDown { framework, reply } => {
                self.framework_gone_failed(&framework);
                if let Some(reply) = reply {
                    self.answer(reply, Err(status));
                }
            }
            After::AgentStateSet { agent, reply, .. } => {
                self.liveness.marked(&agent);
                if let Some(reply) = reply {
                    self.answer(reply, Err(status));
                }
            }
            After::Pruned => self.pruning = false,
            After::OffersCreated(offers) => {
                // The outcome is unknown (leadership is ending): the next leader rebuilds.
                for o in offers {
                    let _ = self
                        .allocator
                        .recover(&o.framework, &o.agent, &o.resources, None);
                }
            }
            After::Rescinded => {}
        }
    }

    fn subscribed(
        &mut self,
        framework: FrameworkRecord,
        resubscribe: bool,
        events: EventSender,
        reply: Reply<()>,
    ) {
        let id = framework.id.clone();
        if self.allocator.framework_share(&id).is_none() {
            if let Err(e) = self
                .allocator
                .add_framework(id.clone(), framework.role.clone())
            {
                self.answer(reply, Err(Refusal::Internal(e.to_string())));
                return;
            }
        }
        if let Some(old) = self.connections.remove(&id) {
            let _ = old
                .events
                .try_send(Ok(event(v1::event::Event::Error(v1::Error {
                    message: "framework failed over to a new subscription".into(),
                }))));
        }
        let stream_id = (self.fresh_id)();
        self.connections.insert(
            id.clone(),
            Connection {
                stream_id: stream_id.clone(),
                events,
                backlog: Default::default(),
            },
        );
        self.self_suppressed.remove(&id);
        self.update_suppression(&id);
        self.framework_connected(&id, resubscribe);
        tracing::info!(framework = %id, name = %framework.name, role = %framework.role, resubscribe, "framework subscribed");
        let subscribed = v1::event::Event::Subscribed(v1::Subscribed {
            framework_id: id.to_string(),
            stream_id,
            heartbeat_interval_seconds: self.config.framework_heartbeat_interval.as_secs_f64(),
            master_id: self.me,
        });
        if !self.send(&id, subscribed) {
            self.answer(reply, Err(Refusal::Unavailable("the stream closed".into())));
            return;
        }
        // Every update the framework has not acknowledged, in order; then its offers.
        let state = self.state();
        let mut redeliver = Vec::new();
        for t in state.tasks_of(&id) {
            for u in t.updates.iter().filter(|u| !u.acknowledged) {
                redeliver.push(convert::status_to_proto(t, &u.update));
            }
        }
        let rest = if redeliver.len() > REDELIVERY_BURST {
            redeliver.split_off(REDELIVERY_BURST)
        } else {
            Vec::new()
        };
        for s in redeliver {
            if !self.send(
                &id,
                v1::event::Event::Update(v1::Update { status: Some(s) }),
            ) {
                break;
            }
        }
        if let Some(c) = self.connections.get_mut(&id) {
            c.backlog.extend(rest);
        }
        let offers: Vec<v1::Offer> = state
            .offers()
            .filter(|o| o.framework == id && !self.offers.is_removing(&o.id))
            .map(|o| convert::offer_to_proto(o, state.agent(&o.agent)))
            .collect();
        // Offers this send cannot deliver stay outstanding until they expire, as before a
        // re-subscription.
        let _ = self.send_offers(&id, offers);
        self.allocate_soon();
        self.answer(reply, Ok(()));
    }

    fn offers_created(&mut self, offers: Vec<OfferRecord>) {
        let state = self.state();
        let mut by_framework: BTreeMap<FrameworkId, Vec<v1::Offer>> = BTreeMap::new();
        for o in &offers {
            self.offers.insert(o);
            by_framework
                .entry(o.framework.clone())
                .or_default()
                .push(convert::offer_to_proto(o, state.agent(&o.agent)));
        }
        metrics::counter!(m::OFFERS_TOTAL).increment(offers.len() as u64);
        let mut orphans = Vec::new();
        for (framework, list) in by_framework {
            // A framework that went away while the offers were being committed gets none:
            // they are rescinded at once rather than left to expire.
            orphans.extend(self.send_offers(&framework, list));
        }
        orphans.retain(|id| !self.offers.is_removing(id));
        self.remove_offers(orphans, After::Rescinded);
    }

    /// Sends `offers` to the framework in OFFERS events of at most [`MAX_OFFERS_PER_EVENT`]
    /// (a lone framework on a large cluster is offered every agent at once); returns the ids
    /// of those it could not deliver (the stream is gone or full).
    fn send_offers(&mut self, framework: &FrameworkId, offers: Vec<v1::Offer>) -> Vec<OfferId> {
        let mut undelivered = Vec::new();
        for chunk in chunks_of(offers, MAX_OFFERS_PER_EVENT) {
            let ids = chunk.iter().filter_map(|o| OfferId::new(&o.id).ok());
            let ids: Vec<OfferId> = ids.collect();
            if !self.send(
                framework,
                v1::event::Event::Offers(v1::Offers { offers: chunk }),
            ) {
                undelivered.extend(ids);
            }
        }
        undelivered
    }

    /// Offers the registry removed: their resources go back (with the framework's filter for
    /// a DECLINE); the framework is told of the others (RESCIND).
    fn offers_removed(
        &mut self,
        outcome: &ClusterOutcome,
        refuse: Option<(u64, u64)>,
        declined_by: Option<&FrameworkId>,
    ) {
        let ClusterOutcome::Removed(removed) = outcome else {
            return;
        };
        for o in removed {
            self.offers.forget(&o.id);
            if let Err(e) = self
                .allocator
                .recover(&o.framework, &o.agent, &o.resources, refuse)
            {
                tracing::error!(error = %e, "allocator");
            }
            if declined_by != Some(&o.framework) {
                self.send(
                    &o.framework.clone(),
                    v1::event::Event::Rescind(v1::Rescind {
                        offer_id: o.id.to_string(),
                    }),
                );
            }
        }
        // Ids whose removal found nothing (consumed meanwhile) are no longer in flight.
        let state = self.state();
        self.offers.settle_removals(|id| state.offer(id).is_some());
        // No early allocation here: the periodic cycle offers these again. Triggering one
        // would let a framework that declines with no filter spin offers through the log.
    }

    fn allocate(&mut self) {
        let now = self.now.wall_ms;
        let allocations = self.allocator.allocate(now);
        if allocations.is_empty() {
            return;
        }
        let expires = now + ms(self.config.offer_timeout);
        let offers: Vec<OfferRecord> = allocations
            .into_iter()
            .filter_map(|a| {
                Some(OfferRecord {
                    id: OfferId::new(&(self.fresh_id)()).ok()?,
                    framework: a.framework,
                    agent: a.agent,
                    resources: a.resources,
                    created_at_ms: now,
                    expires_at_ms: expires,
                })
            })
            .collect();
        // In commands of bounded size, each its own entry at most: a cycle over a large
        // cluster makes thousands of offers, and an entry must replicate within openraft's
        // per-request deadline (see `raft::network`).
        for chunk in chunks_of(offers, MAX_OFFERS_PER_COMMAND) {
            self.propose(
                ClusterOp::CreateOffers(chunk.clone()),
                After::OffersCreated(chunk),
            );
        }
    }

    /// Once per tick: expired offers, silent agents, closed framework streams, heartbeats.
    fn housekeeping(&mut self) {
        self.prune_if_due();
        let now = self.now.wall_ms;
        let expired = self.offers.expired(now);
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "rescinding expired offers");
            self.remove_offers(expired, After::Rescinded);
        }

        let timeout = self.config.agent_timeout;
        let silent = self.liveness.silent(self.now.mono, timeout);
        for agent in silent {
            tracing::warn!(%agent, ?timeout, "agent missed its heartbeats");
            self.propose_agent_state(agent, AgentState::Unreachable, "heartbeat_timeout", None);
        }

        let closed: Vec<FrameworkId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.events.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        for f in closed {
            self.disconnect(&f);
        }
        if self.now.mono.duration_since(self.last_framework_heartbeat)
            >= self.config.framework_heartbeat_interval
        {
            self.last_framework_heartbeat = self.now.mono;
            let ids: Vec<FrameworkId> = self.connections.keys().cloned().collect();
            for f in ids {
                self.send(&f, v1::event::Event::Heartbeat(v1::Heartbeat {}));
            }
        }
        self.recovery_housekeeping();
        self.gauges();
    }

    fn gauges(&self) {
        metrics::gauge!(m::OFFERS_OUTSTANDING).set(self.offers.len() as f64);
        metrics::gauge!(m::FRAMEWORKS_CONNECTED).set(self.connections.len() as f64);
    }
}

type Used = Vec<(FrameworkId, Resources)>;

/// What is allocated on every agent, by framework: outstanding offers and live tasks. One
/// pass over the registry (rebuilding after failover).
fn used_by_agent(state: &ClusterState) -> HashMap<AgentId, Used> {
    let mut used: HashMap<AgentId, BTreeMap<FrameworkId, Resources>> = HashMap::new();
    let offers = state
        .offers()
        .map(|o| (&o.agent, &o.framework, &o.resources));
    let tasks = state
        .tasks()
        .filter(|t| !t.state.is_terminal())
        .map(|t| (&t.agent, &t.framework, &t.spec.resources));
    for (a, f, r) in offers.chain(tasks) {
        let e = used
            .entry(a.clone())
            .or_default()
            .entry(f.clone())
            .or_default();
        match e.checked_add(r) {
            Ok(sum) => *e = sum,
            Err(err) => {
                tracing::error!(agent = %a, error = %err, "registry holds an overflowing sum")
            }
        }
    }
    used.into_iter()
        .map(|(a, m)| (a, m.into_iter().collect()))
        .collect()
}

/// What is allocated on one agent (an agent whose resources changed re-registering).
fn used_on(state: &ClusterState, agent: &AgentId) -> Used {
    used_by_agent(state).remove(agent).unwrap_or_default()
}

/// `items` in owned runs of at most `n` (the last may be shorter), without copying.
fn chunks_of<T>(items: Vec<T>, n: usize) -> impl Iterator<Item = Vec<T>> {
    let mut items = items.into_iter().peekable();
    std::iter::from_fn(move || {
        items.peek()?;
        Some(items.by_ref().take(n.max(1)).collect())
    })
}

#[cfg(test)]
mod tests;
