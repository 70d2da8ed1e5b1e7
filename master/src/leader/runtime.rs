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
//! The services send [`Request`]s, each with the channel its caller waits on; the runtime keeps
//! the channel under a [`CallId`] and hands the conductor a [`Command`] with a [`Reply`] handle
//! instead, and turns the conductor's answer (data: [`Answer`] or [`Refusal`]) into what the
//! caller gets (a value or a gRPC status).

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
use super::answer::{self, Answer, CallId, Refusal, Reply};
use super::conductor::{
    Action, Call, Caller, Command, Completion, Conductor, EventSender, MAX_PENDING_PROPOSALS,
};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::ids::{AgentId, FrameworkId, Role, TaskId};
use crate::metrics as m;
use crate::raft::MasterId;
use crate::registry::cluster::{
    AgentRecord, AgentState, FrameworkRecord, ReportedTask, StatusUpdate,
};
use crate::registry::{Op, Outcome};
use crate::replicated::{ReplicaError, Replicated};

/// Where a caller waits for its answer.
type Waiting<T> = oneshot::Sender<Result<T, Status>>;

/// What the services ask of the offer cycle: a [`Command`] with the channel its caller waits on.
pub enum Request {
    Subscribe {
        framework: FrameworkRecord,
        /// Whether the framework gave its id (a re-subscription) or got a fresh one.
        resubscribe: bool,
        events: EventSender,
        reply: Waiting<()>,
    },
    Call {
        caller: Caller,
        call: Call,
        reply: Waiting<()>,
    },
    RegisterAgent {
        agent: AgentRecord,
        /// On a re-registration: the tasks the agent reports.
        tasks: Option<Vec<ReportedTask>>,
        /// The report was cut short.
        truncated: bool,
        reply: Waiting<v1::RegisterReply>,
    },
    /// Operator maintenance: DRAINING, ACTIVE again, or GONE. Answers the agent's live tasks.
    SetAgentState {
        agent: AgentId,
        state: AgentState,
        reply: Waiting<u64>,
    },
    AgentHeartbeat {
        agent: AgentId,
        reply: Waiting<bool>,
    },
    StatusUpdate {
        agent: AgentId,
        framework: FrameworkId,
        task: TaskId,
        update: StatusUpdate,
        reply: Waiting<()>,
    },
    SetRoleWeight {
        role: Role,
        weight: f64,
        reply: Waiting<()>,
    },
}

/// A caller's channel, by the type of answer it waits for.
enum Waiter {
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
    next_call: CallId,
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
            next_call: 0,
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
                    Some(r) => {
                        let c = self.command(r);
                        self.begin_input();
                        self.conductor.command(c);
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

    /// Keeps `caller` until its answer comes; returns the handle the conductor answers with.
    fn wait<T>(&mut self, caller: Waiter) -> Reply<T> {
        self.next_call += 1;
        self.waiting.insert(self.next_call, caller);
        Reply::new(self.next_call)
    }

    /// The conductor's command for `request`, its caller kept until answered.
    fn command(&mut self, request: Request) -> Command {
        match request {
            Request::Subscribe {
                framework,
                resubscribe,
                events,
                reply,
            } => Command::Subscribe {
                framework,
                resubscribe,
                events,
                reply: self.wait(Waiter::Done(reply)),
            },
            Request::Call {
                caller,
                call,
                reply,
            } => Command::Call {
                caller,
                call,
                reply: self.wait(Waiter::Done(reply)),
            },
            Request::RegisterAgent {
                agent,
                tasks,
                truncated,
                reply,
            } => Command::RegisterAgent {
                agent,
                tasks,
                truncated,
                reply: self.wait(Waiter::Registered(reply)),
            },
            Request::SetAgentState {
                agent,
                state,
                reply,
            } => Command::SetAgentState {
                agent,
                state,
                reply: self.wait(Waiter::LiveTasks(reply)),
            },
            Request::AgentHeartbeat { agent, reply } => Command::AgentHeartbeat {
                agent,
                reply: self.wait(Waiter::Reregister(reply)),
            },
            Request::StatusUpdate {
                agent,
                framework,
                task,
                update,
                reply,
            } => Command::StatusUpdate {
                agent,
                framework,
                task,
                update,
                reply: self.wait(Waiter::Done(reply)),
            },
            Request::SetRoleWeight {
                role,
                weight,
                reply,
            } => Command::SetRoleWeight {
                role,
                weight,
                reply: self.wait(Waiter::Done(reply)),
            },
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
