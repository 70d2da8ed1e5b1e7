//! The runtime of the offer cycle: the one task that drives the [`Conductor`] while this
//! replica leads, and does its I/O.
//!
//! Owns the clocks, the timer, the command queue, the proposals in flight and the calls to
//! agents (with their channels). Before each input it reads the time and the applied registry
//! once and hands both to the conductor; after it, it carries out the conductor's
//! [`Action`]s in the order they were pushed: proposals join the futures this loop polls (in
//! that order, so the proposer batches them as before), and RunTask/KillTask calls are spawned.
//! A proposal's outcome comes back to the conductor as an input of its own.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::agents::{self, AgentChannels};
use super::conductor::{Action, Command, Completion, Conductor, MAX_PENDING_PROPOSALS};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::metrics as m;
use crate::raft::MasterId;
use crate::registry::{Op, Outcome};
use crate::replicated::{ReplicaError, Replicated};

pub struct Runtime {
    me: MasterId,
    conductor: Conductor,
    replicated: Replicated,
    config: OfferCycleConfig,
    pending: FuturesUnordered<BoxFuture<'static, Completion>>,
    to_agents: JoinSet<()>,
    channels: AgentChannels,
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
        }
    }

    /// Runs until leadership ends (the watcher aborts it) or the command queue closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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
                    Some(c) => {
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
