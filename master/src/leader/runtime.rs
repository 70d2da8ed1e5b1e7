//! The runtime of the offer cycle: the one task that drives the [`Conductor`] while this
//! replica leads, and does its I/O.
//!
//! Owns the clocks, the timer, the command queue, the proposals in flight and the calls to
//! agents (with their channels). Before each input it reads the time and the applied registry
//! once and hands both to the conductor; after it, it carries out the conductor's
//! [`Action`]s in the order they were pushed: proposals join the futures this loop polls (in
//! that order, so the proposer batches them as before), RunTask/KillTask calls are spawned,
//! and answers go to the callers waiting for them. A proposal's outcome comes back to the
//! conductor as an input of its own.
//!
//! The services send [`Request`]s: a [`Command`] whose reply is a `Reply` handle, and the
//! channel its caller waits on; the runtime keeps the channel under the handle's [`CallId`]
//! and turns the conductor's answer (data: [`Answer`] or [`Refusal`]) into what the caller gets
//! (a value or a gRPC status).

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
use super::conductor::{Action, Command, Completion, Conductor, MAX_PENDING_PROPOSALS};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::metrics as m;
use crate::raft::MasterId;
use crate::registry::{Op, Outcome};
use crate::replicated::{ReplicaError, Replicated};

/// Where a caller waits for its answer.
pub type Waiting<T> = oneshot::Sender<Result<T, Status>>;

/// What a service sends the offer cycle: a command, the id its answer is for, and the channel
/// its caller waits on (see `LeaderHandle::ask`).
pub struct Request {
    pub(super) call: CallId,
    pub(super) command: Command,
    pub(super) waiter: Waiter,
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

/// A caller's channel, by the type of answer it waits for.
pub enum Waiter {
    Done(Waiting<()>),
    Registered(Waiting<v1::RegisterReply>),
    LiveTasks(Waiting<u64>),
    Reregister(Waiting<bool>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Done(tx) => tx.is_closed(),
            Waiter::Registered(tx) => tx.is_closed(),
            Waiter::LiveTasks(tx) => tx.is_closed(),
            Waiter::Reregister(tx) => tx.is_closed(),
        }
    }

    /// Sends `answer`; an answer of another type than the caller waits for is a bug in the
    /// conductor, reported to the caller as INTERNAL.
    fn send(self, answer: Result<Answer, Refusal>) {
        fn out<T>(
            tx: Waiting<T>,
            answer: Result<Answer, Refusal>,
            pick: impl FnOnce(Answer) -> Option<T>,
        ) {
            let r = match answer {
                Ok(a) => pick(a).ok_or_else(|| {
                    tracing::error!("the conductor answered with another type than was asked");
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
        }
    }
}

pub struct Runtime {
    me: MasterId,
    conductor: Conductor,
    replicated: Replicated,
    config: OfferCycleConfig,
    pending: FuturesUnordered<BoxFuture<'static, Completion>>,
    to_agents: JoinSet<()>,
    channels: AgentChannels,
    /// Callers waiting for an answer, by id.
    waiting: HashMap<CallId, Waiter>,
}

impl Runtime {
    pub fn new(me: MasterId, replicated: Replicated, config: OfferCycleConfig) -> Self {
        Self {
            me,
            conductor: Conductor::new(me, config.clone(), Now::read()),
            replicated,
            config,
            pending: FuturesUnordered::new(),
            to_agents: JoinSet::new(),
            channels: AgentChannels::default(),
            waiting: HashMap::new(),
        }
    }

    /// Runs until leadership ends (the watcher aborts it) or the command queue closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Request>) {
        // A linearizable read: every entry committed before this term is applied.
        let state = loop {
            match self.replicated.read().await {
                Ok(s) => break s.registry.cluster().clone(),
                Err(e) => {
                    tracing::warn!(error = %e, "offer cycle waits for the registry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let started = Instant::now();
        self.conductor.begin_input(Now::read(), state.clone());
        let rebuilt = self.conductor.rebuild(&state);
        self.execute();
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
                .conductor
                .allocation_due()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                c = commands.recv(), if self.pending.len() < MAX_PENDING_PROPOSALS => match c {
                    Some(Request { call, command, waiter }) => {
                        self.waiting.insert(call, waiter);
                        self.begin_input();
                        self.conductor.command(command);
                    }
                    None => return,
                },
                Some(done) = self.pending.next(), if !self.pending.is_empty() => {
                    self.begin_input();
                    self.conductor.completed(done);
                }
                Some(_) = self.to_agents.join_next(), if !self.to_agents.is_empty() => {}
                _ = tick.tick() => {
                    // Callers that gave up (their deadline passed) wait no more.
                    self.waiting.retain(|_, w| !w.is_closed());
                    self.begin_input();
                    self.conductor.tick();
                }
                _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                    let started = Instant::now();
                    self.begin_input();
                    self.conductor.on_allocation_due();
                    metrics::histogram!(m::ALLOCATION_SECONDS).record(started.elapsed());
                }
            }
            self.execute();
        }
    }

    /// Reads the clocks and the applied registry for the next input.
    fn begin_input(&mut self) {
        let view = self.replicated.applied().registry.cluster().clone();
        self.conductor.begin_input(Now::read(), view);
    }

    /// Carries out what the conductor asked for, in order.
    fn execute(&mut self) {
        for action in self.conductor.take_actions() {
            match action {
                Action::Propose { op, after } => {
                    let replicated = self.replicated.clone();
                    self.pending.push(
                        async move {
                            let result = match replicated.propose_untimed(Op::Cluster(op)).await {
                                Ok(Outcome::Cluster(o)) => Ok(o),
                                Ok(other) => Err(ReplicaError::Stopped(format!(
                                    "unexpected outcome {other:?}"
                                ))),
                                Err(e) => Err(e),
                            };
                            Completion { result, after }
                        }
                        .boxed(),
                    );
                }
                Action::Reply { call, answer } => {
                    if let Some(caller) = self.waiting.remove(&call) {
                        caller.send(answer);
                    }
                }
                Action::ToAgent {
                    agent,
                    addr,
                    message,
                } => {
                    let Some(ch) = self.channels.channel(&agent, &addr) else {
                        continue;
                    };
                    self.to_agents
                        .spawn(agents::send(ch, agent, message).map(|_| ()));
                }
            }
        }
    }
}
