//! The runtime of the offer cycle: the one task that drives the [`Engine`] while this replica
//! leads, and does its I/O.
//!
//! Owns the clocks, the timer, the command queue, the proposals in flight, the calls to
//! agents (with their channels) and the framework streams. For each input it reads the time
//! and the applied registry once and hands both to the engine with the input (a [`Context`]);
//! it then carries out the engine's [`Action`]s in order: proposals join the futures this loop
//! polls (in that order, so the proposer batches them as before), RunTask/KillTask calls are
//! spawned, events are queued on streams, and answers go to the callers waiting for them. A
//! proposal's outcome comes back to the engine as an input of its own.
//!
//! The services send [`Request`]s: a [`Command`] whose reply is a `Reply` handle, and the
//! channel its caller waits on; the runtime keeps the channel under the handle's [`CallId`]
//! and turns the engine's answer (data: [`Answer`] or [`Refusal`]) into what the caller gets
//! (a value or a gRPC status).
//!
//! A SUBSCRIBE also brings the framework's event stream: the runtime holds it under the call's
//! [`StreamKey`] until the engine attaches it (a stream still unattached when its call is
//! answered is closed), queues the events the engine sends to it, and tells the engine its
//! room after each send and at each tick, and when it is found full or closed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use drover_proto::v1;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tonic::Status;

use super::agents::{self, AgentChannels};
use super::answer::{self, Answer, CallId, Refusal};
use super::engine::{Action, Command, Context, Engine, Pending, StreamKey, MAX_PENDING_PROPOSALS};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::ids::FrameworkId;
use crate::metrics as m;
use crate::raft::MasterId;
use crate::registry::cluster::ClusterOutcome;
use crate::registry::{Op, Outcome};
use crate::replicated::{ReplicaError, Replicated};

/// Sends to agents in flight past which best-effort ones (messages for custom executors) are
/// dropped; launches and kills always go.
const MAX_AGENT_SENDS: usize = 4096;

/// Where a caller waits for its answer.
pub type Waiting<T> = oneshot::Sender<Result<T, Status>>;

/// The sending end of a framework's event stream (its gRPC response).
pub type EventSender = mpsc::Sender<Result<v1::Event, Status>>;

/// What a service sends the offer cycle: a command, the id its answer is for, the channel
/// its caller waits on (see `LeaderHandle::ask`), and for a SUBSCRIBE the stream its events
/// go to (under `StreamKey(call)`).
pub struct Request {
    pub(super) call: CallId,
    pub(super) command: Command,
    pub(super) waiter: Waiter,
    pub(super) events: Option<EventSender>,
}

/// An answer type a caller can wait for: each is one [`Answer`] variant.
pub trait Waitable: Sized {
    fn waiter(tx: Waiting<Self>) -> Waiter;
}

impl Waitable for () {
    fn waiter(tx: Waiting<Self>) -> Waiter {
        Waiter::Done(tx)
    }
}

impl Waitable for v1::RegisterReply {
    fn waiter(tx: Waiting<Self>) -> Waiter {
        Waiter::Registered(tx)
    }
}

impl Waitable for u64 {
    fn waiter(tx: Waiting<Self>) -> Waiter {
        Waiter::LiveTasks(tx)
    }
}

impl Waitable for bool {
    fn waiter(tx: Waiting<Self>) -> Waiter {
        Waiter::Reregister(tx)
    }
}

impl Waitable for Vec<FrameworkId> {
    fn waiter(tx: Waiting<Self>) -> Waiter {
        Waiter::Connected(tx)
    }
}

/// A caller's channel, by the type of answer it waits for.
pub enum Waiter {
    Done(Waiting<()>),
    Registered(Waiting<v1::RegisterReply>),
    LiveTasks(Waiting<u64>),
    Reregister(Waiting<bool>),
    Connected(Waiting<Vec<FrameworkId>>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Done(tx) => tx.is_closed(),
            Waiter::Registered(tx) => tx.is_closed(),
            Waiter::LiveTasks(tx) => tx.is_closed(),
            Waiter::Reregister(tx) => tx.is_closed(),
            Waiter::Connected(tx) => tx.is_closed(),
        }
    }

    /// Sends `answer`; an answer of another type than the caller waits for is a bug in the
    /// engine, reported to the caller as INTERNAL.
    fn send(self, answer: Result<Answer, Refusal>) {
        fn out<T>(
            tx: Waiting<T>,
            answer: Result<Answer, Refusal>,
            pick: impl FnOnce(Answer) -> Option<T>,
        ) {
            let r = match answer {
                Ok(a) => pick(a).ok_or_else(|| {
                    tracing::error!("the engine answered with another type than was asked");
                    Status::internal("the leader answered with the wrong type")
                }),
                Err(refusal) => Err(answer::to_status(refusal)),
            };
            let _ = tx.send(r);
        }
        match self {
            Waiter::Done(tx) => out(tx, answer, |a| matches!(a, Answer::Done).then_some(())),
            Waiter::Registered(tx) => out(tx, answer, |a| match a {
                Answer::Registered(r) => Some(r),
                _ => None,
            }),
            Waiter::LiveTasks(tx) => out(tx, answer, |a| match a {
                Answer::LiveTasks(n) => Some(n),
                _ => None,
            }),
            Waiter::Reregister(tx) => out(tx, answer, |a| match a {
                Answer::Reregister(b) => Some(b),
                _ => None,
            }),
            Waiter::Connected(tx) => out(tx, answer, |a| match a {
                Answer::Connected(f) => Some(f),
                _ => None,
            }),
        }
    }
}

/// A proposal's outcome, with what the engine is to do about it.
type Completion = (Pending, Result<ClusterOutcome, ReplicaError>);

pub struct Runtime {
    me: MasterId,
    engine: Engine,
    replicated: Replicated,
    config: OfferCycleConfig,
    pending: FuturesUnordered<BoxFuture<'static, Completion>>,
    to_agents: JoinSet<()>,
    channels: AgentChannels,
    /// Callers waiting for an answer, by id.
    waiting: HashMap<CallId, Waiter>,
    /// Streams SUBSCRIBE calls brought, not attached (yet).
    offered: HashMap<StreamKey, EventSender>,
    /// Framework streams the engine attached.
    streams: HashMap<StreamKey, EventSender>,
}

impl Runtime {
    /// `agents`: how the offer cycle dials agents (to launch and kill).
    pub fn new(
        me: MasterId,
        replicated: Replicated,
        config: OfferCycleConfig,
        agents: drover_client::channel::Dialer,
    ) -> Self {
        Self {
            me,
            engine: Engine::new(me, config.clone(), Now::read()),
            replicated,
            config,
            pending: FuturesUnordered::new(),
            to_agents: JoinSet::new(),
            channels: AgentChannels::new(agents),
            waiting: HashMap::new(),
            offered: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// Runs until leadership ends (the watcher aborts it) or the command queue closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Request>) {
        // A linearizable read: every entry committed before this term is applied.
        let registry = loop {
            match self.replicated.read().await {
                Ok(s) => break s.registry.cluster().clone(),
                Err(e) => {
                    tracing::warn!(error = %e, "offer cycle waits for the registry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let started = Instant::now();
        let (rebuilt, actions) = self.engine.on_rebuild(Context {
            now: Now::read(),
            registry,
        });
        self.execute(actions);
        tracing::info!(
            relaunched = rebuilt.relaunched,
            me = self.me,
            agents = rebuilt.agents,
            offers = rebuilt.offers,
            took_ms = started.elapsed().as_millis() as u64,
            "offer cycle rebuilt from the registry"
        );
        let mut tick =
            tokio::time::interval(self.config.allocation_interval.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self
                .engine
                .allocation_due()
                .map(tokio::time::Instant::from_std);
            let actions = tokio::select! {
                c = commands.recv(), if self.pending.len() < MAX_PENDING_PROPOSALS => match c {
                    Some(Request { call, command, waiter, events }) => {
                        self.waiting.insert(call, waiter);
                        if let Some(events) = events {
                            self.offered.insert(StreamKey(call), events);
                        }
                        self.engine.on_command(self.context(), command)
                    }
                    None => return,
                },
                Some((pending, outcome)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.engine.on_outcome(self.context(), pending, outcome)
                }
                Some(_) = self.to_agents.join_next(), if !self.to_agents.is_empty() => continue,
                _ = tick.tick() => {
                    // Callers that gave up (their deadline passed) wait no more.
                    self.waiting.retain(|_, w| !w.is_closed());
                    let waiting = &self.waiting;
                    self.offered.retain(|k, _| waiting.contains_key(&k.0));
                    let mut actions = self.survey_streams();
                    actions.extend(self.engine.on_tick(self.context()));
                    actions
                }
                _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                    let started = Instant::now();
                    let actions = self.engine.on_allocation_due(self.context());
                    metrics::histogram!(m::ALLOCATION_SECONDS).record(started.elapsed());
                    actions
                }
            };
            self.execute(actions);
        }
    }

    /// The time and the applied registry, read for the next input.
    fn context(&self) -> Context {
        Context {
            now: Now::read(),
            registry: self.replicated.applied().registry.cluster().clone(),
        }
    }

    /// Tells the engine every stream's room; the streams that closed (their framework went
    /// away) are inputs of their own, whose actions are returned.
    fn survey_streams(&mut self) -> Vec<Action> {
        let mut closed = Vec::new();
        for (key, tx) in &self.streams {
            if tx.is_closed() {
                closed.push(*key);
            } else {
                self.engine.stream_room(*key, tx.capacity());
            }
        }
        let mut actions = Vec::new();
        for key in closed {
            self.streams.remove(&key);
            actions.extend(self.engine.on_stream_lost(self.context(), key, false));
        }
        actions
    }

    /// Queues `event` on `stream`; `Err(full)` when the stream is full or closed (it is
    /// dropped).
    fn send(&mut self, stream: StreamKey, event: v1::Event) -> Result<(), bool> {
        let Some(tx) = self.streams.get(&stream) else {
            // Lost earlier in this batch, or detached: the engine knows or will.
            return Ok(());
        };
        match tx.try_send(Ok(event)) {
            Ok(()) => {
                let room = tx.capacity();
                self.engine.stream_room(stream, room);
                Ok(())
            }
            Err(e) => {
                self.streams.remove(&stream);
                Err(matches!(e, mpsc::error::TrySendError::Full(_)))
            }
        }
    }

    /// Carries out `actions` in order; streams found full or closed go back to the engine,
    /// and what it asks then is carried out in turn.
    fn execute(&mut self, mut actions: Vec<Action>) {
        loop {
            let lost = self.carry_out(actions);
            if lost.is_empty() {
                return;
            }
            actions = Vec::new();
            for (stream, full) in lost {
                actions.extend(self.engine.on_stream_lost(self.context(), stream, full));
            }
        }
    }

    /// Carries out `actions`; returns the streams found full (true) or closed.
    fn carry_out(&mut self, actions: Vec<Action>) -> Vec<(StreamKey, bool)> {
        let mut lost = Vec::new();
        for action in actions {
            match action {
                Action::Propose { op, pending } => {
                    let replicated = self.replicated.clone();
                    self.pending.push(
                        async move {
                            let outcome = match replicated.propose_untimed(Op::Cluster(op)).await {
                                Ok(Outcome::Cluster(o)) => Ok(o),
                                Ok(other) => Err(ReplicaError::Stopped(format!(
                                    "unexpected outcome {other:?}"
                                ))),
                                Err(e) => Err(e),
                            };
                            (pending, outcome)
                        }
                        .boxed(),
                    );
                }
                Action::Reply { call, answer } => {
                    if let Some(caller) = self.waiting.remove(&call) {
                        caller.send(answer);
                    }
                    // A SUBSCRIBE answered without its stream attached: the stream closes.
                    self.offered.remove(&StreamKey(call));
                }
                Action::Attach { stream } => {
                    if let Some(tx) = self.offered.remove(&stream) {
                        self.streams.insert(stream, tx);
                    } else {
                        // Its caller gave up: the engine learns the stream is gone.
                        lost.push((stream, false));
                    }
                }
                Action::Send { stream, event } => {
                    if let Err(full) = self.send(stream, event) {
                        lost.push((stream, full));
                    }
                }
                Action::Detach { stream } => {
                    self.streams.remove(&stream);
                }
                Action::ToAgent {
                    agent,
                    addr,
                    message,
                } => {
                    if message.best_effort() && self.to_agents.len() >= MAX_AGENT_SENDS {
                        tracing::debug!(%agent, "too many messages to agents in flight; a best-effort one is dropped");
                        continue;
                    }
                    let Some(ch) = self.channels.channel(&agent, &addr) else {
                        continue;
                    };
                    self.to_agents
                        .spawn(agents::send(ch, agent, message).map(|_| ()));
                }
            }
        }
        lost
    }
}
