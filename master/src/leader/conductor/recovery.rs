//! Recovery: what the conductor does so that the cluster converges after a leader change,
//! an agent restart or partition, or a framework failover (DESIGN.md, "Status updates and
//! failover").
//!
//! Owns the leader's soft state for it, all rebuilt from the registry when a leader starts:
//!
//! - **Agents to hear from.** A new leader waits for every agent that was up (ACTIVE or
//!   DRAINING) to register again with its task report; their heartbeats are answered
//!   `reregister` until they do. The registry reconciles each report (see
//!   `registry::cluster::agents`): the leader then forwards the updates that made, launches
//!   again the STAGING tasks the agent did not have, and kills what the agent runs that must
//!   not run. An agent that has not registered within `agent_reregister_timeout` is marked
//!   UNREACHABLE, as is one silent for `agent_timeout`; one UNREACHABLE for
//!   `agent_removal_timeout` (by the registry's clock, so the wait survives leader changes)
//!   is marked GONE.
//! - **Framework failover.** A framework without a stream is torn down (its tasks killed)
//!   once its failover timeout passes; a new leader gives every framework at least
//!   `agent_reregister_timeout` to subscribe again. Subscribing with its id in time restores
//!   it and redelivers every unacknowledged update.
//! - **Reconciliation.** RECONCILE answers come from the registry, except for tasks on agents
//!   the leader still waits for: those are answered once the agent re-registers or is marked
//!   unreachable, so that a framework never hears a stale RUNNING. Calls are rate-limited
//!   per framework ([`RECONCILE_PER_SECOND`]); answers that do not fit the framework's stream
//!   wait in its backlog and go as it drains.
//! - **Drain.** A DRAINING agent's live tasks are killed with their grace period (again by a
//!   new leader); it gets no offers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use drover_proto::v1;

use super::{
    convert, After, Conductor, Refusal, Reply, EVENT_QUEUE, MAX_BACKLOG, MAX_TASKS_PER_RUN,
};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::metrics as m;
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterOp, ClusterOutcome, ClusterState, MasterUpdate, OfferRecord,
    TaskSpec,
};

/// RECONCILE calls a framework may make per second (and in one burst).
pub const RECONCILE_PER_SECOND: f64 = 10.0;
/// Reconciliation answers held for agents not yet re-registered, in all; past it a task is
/// answered at once from the registry.
pub const MAX_DEFERRED: usize = 200_000;

/// The recovery part of the leader's soft state.
#[derive(Default)]
pub(super) struct Recovery {
    /// Agents this leader waits for to register again, with the deadline.
    awaiting: HashMap<AgentId, Instant>,
    /// When this leadership began, while agents are still awaited (for the metric).
    reconciling_since: Option<Instant>,
    /// Frameworks without a stream, with the time their failover timeout ends.
    disconnected: HashMap<FrameworkId, Instant>,
    /// Reconciliation answers held until the task's agent is settled (each task once; at most
    /// [`MAX_DEFERRED`] in all).
    deferred: HashMap<AgentId, HashSet<(FrameworkId, TaskId)>>,
    deferred_count: usize,
    /// Per framework: RECONCILE tokens left and when they were counted.
    reconcile_tokens: HashMap<FrameworkId, (f64, Instant)>,
    /// Frameworks whose teardown for a failover timeout is in flight.
    timing_out: HashSet<FrameworkId>,
}

impl Recovery {
    /// Whether the leader still waits for `agent` to register again.
    pub(super) fn awaits(&self, agent: &AgentId) -> bool {
        self.awaiting.contains_key(agent)
    }
}

impl Conductor {
    /// At the start of a leadership: every agent that was up is awaited, every framework is
    /// disconnected (with at least the re-registration timeout), and draining agents' tasks
    /// are killed (again).
    pub(super) fn start_recovery(&mut self, state: &ClusterState) {
        let now = self.now.mono;
        let wait = self.config.agent_reregister_timeout;
        for a in state.agents() {
            if matches!(a.state, AgentState::Active | AgentState::Draining) {
                self.recovery.awaiting.insert(a.id.clone(), now + wait);
            }
            if a.state == AgentState::Draining {
                self.kill_all_on(state, &a.id);
            }
        }
        if !self.recovery.awaiting.is_empty() {
            self.recovery.reconciling_since = Some(now);
        }
        for f in state.frameworks().filter(|f| !f.torn_down) {
            let timeout = Duration::from_millis(f.failover_timeout_ms).max(wait);
            self.recovery
                .disconnected
                .insert(f.id.clone(), now + timeout);
        }
        self.awaiting_gauge();
    }

    fn awaiting_gauge(&self) {
        metrics::gauge!(m::AGENTS_AWAITING_REREGISTRATION).set(self.recovery.awaiting.len() as f64);
    }

    /// `agent` is settled (registered, or marked unreachable or gone): it is no longer
    /// awaited, and reconciliation answers held for it go out.
    fn settled(&mut self, agent: &AgentId) {
        if self.recovery.awaiting.remove(agent).is_some() {
            self.awaiting_gauge();
            if self.recovery.awaiting.is_empty() {
                if let Some(since) = self.recovery.reconciling_since.take() {
                    let took = self.now.mono.duration_since(since);
                    metrics::histogram!(m::AGENT_RECONCILIATION_SECONDS).record(took);
                    tracing::info!(
                        took_ms = took.as_millis() as u64,
                        "every agent re-registered or was marked unreachable"
                    );
                }
            }
        }
        if let Some(held) = self.recovery.deferred.remove(agent) {
            self.recovery.deferred_count -= held.len();
            let state = self.state();
            let now = self.now.wall_ms;
            for (framework, task) in held {
                if let Some(t) = state.task(&framework, &task) {
                    let status = convert::reconciliation_status(t, now);
                    self.enqueue(&framework, status);
                }
            }
        }
    }

    /// Kills every live task on `agent` with its grace period (a draining agent).
    fn kill_all_on(&mut self, state: &ClusterState, agent: &AgentId) {
        let live: Vec<(FrameworkId, TaskId, u64)> = state
            .live_tasks_on(agent)
            .map(|t| (t.framework.clone(), t.spec.id.clone(), t.spec.kill_grace_ms))
            .collect();
        for (framework, task, grace) in live {
            self.kill_on_agent(state, &framework, agent, &task, grace);
        }
    }

    /// Registers an agent: a re-registration carries its task report.
    pub(super) fn register_agent(
        &mut self,
        agent: AgentRecord,
        tasks: Option<Vec<crate::registry::cluster::ReportedTask>>,
        truncated: bool,
        reply: Reply<v1::RegisterReply>,
    ) {
        let reregistered = tasks.is_some();
        let op = ClusterOp::RegisterAgent {
            agent: agent.clone(),
            tasks,
            truncated,
        };
        self.propose(
            op,
            After::AgentRegistered {
                agent,
                reregistered,
                reply,
            },
        );
    }

    /// A registration committed: offers of its old description rescinded, the master's
    /// updates forwarded, STAGING tasks it lacks launched again, orphans killed.
    pub(super) fn agent_registered(
        &mut self,
        agent: AgentRecord,
        reregistered: bool,
        outcome: ClusterOutcome,
        reply: Reply<v1::RegisterReply>,
    ) {
        let ClusterOutcome::AgentRegistered {
            removed,
            updates,
            relaunch,
            kill,
        } = outcome
        else {
            self.answer(reply, Err(Refusal::Internal("unexpected outcome".into())));
            return;
        };
        metrics::counter!(m::AGENT_REGISTRATIONS_TOTAL, "kind" => if reregistered { "reregistered" } else { "new" })
            .increment(1);
        self.rescind(&removed, None, None);
        let state = self.state();
        let registered = state.agent(&agent.id).cloned().unwrap_or(agent);
        let known = self.allocator.agent_total(&registered.id).is_some();
        let r = if known {
            // Known to this leader's allocator: same allocations (minus the tasks the master
            // just ended, recovered below), possibly another total.
            self.allocator
                .set_total(&registered.id, registered.total.clone())
                .and_then(|()| {
                    self.allocator
                        .set_agent_active(&registered.id, registered.state == AgentState::Active)
                })
        } else {
            let used = if state.committed_on(&registered.id).is_empty() {
                Vec::new()
            } else {
                super::used_on(&state, &registered.id)
            };
            self.allocator
                .add_agent(registered.id.clone(), registered.total.clone(), used)
                .and_then(|()| {
                    self.allocator
                        .set_agent_active(&registered.id, registered.state == AgentState::Active)
                })
        };
        if let Err(e) = r {
            tracing::error!(agent = %registered.id, error = %e, "allocator refused a registered agent");
        }
        // An agent new to the allocator was added from the registry as it is after the
        // master's updates; one it knew gets the released resources back now.
        self.forward_master_updates(&updates, known);
        let mut by_framework: HashMap<FrameworkId, Vec<TaskSpec>> = HashMap::new();
        for (framework, spec) in relaunch {
            by_framework.entry(framework).or_default().push(spec);
        }
        for (framework, specs) in by_framework {
            metrics::counter!(m::TASK_RELAUNCHES_TOTAL).increment(specs.len() as u64);
            if self.torn_down.contains(&framework) {
                continue;
            }
            for chunk in specs.chunks(MAX_TASKS_PER_RUN) {
                self.run_on_agent(&state, &framework, &registered.id, chunk);
            }
        }
        for (framework, task) in kill {
            metrics::counter!(m::ORPHAN_KILLS_TOTAL).increment(1);
            tracing::info!(agent = %registered.id, %framework, %task, "killing a task the registry does not have running there");
            let grace = state
                .task(&framework, &task)
                .map(|t| t.spec.kill_grace_ms)
                .unwrap_or(0);
            self.kill_on_agent(&state, &framework, &registered.id, &task, grace);
        }
        if registered.state == AgentState::Draining {
            self.kill_all_on(&state, &registered.id);
        }
        self.liveness.heard(&registered.id, self.now.mono);
        self.liveness.marked(&registered.id);
        self.settled(&registered.id);
        tracing::info!(agent = %registered.id, hostname = %registered.hostname, addr = %registered.addr, resources = %registered.total, reregistered, "agent registered");
        self.allocate_soon();
        self.answer(
            reply,
            Ok(v1::RegisterReply {
                agent_id: registered.id.to_string(),
                master_id: self.me,
                heartbeat_interval_seconds: self.config.agent_heartbeat_interval.as_secs_f64(),
            }),
        );
    }

    /// Proposes a state change of `agent` (`cause` for logs and metrics).
    pub(super) fn propose_agent_state(
        &mut self,
        agent: AgentId,
        state: AgentState,
        cause: &'static str,
        reply: Option<Reply<u64>>,
    ) {
        let by_operator = reply.is_some();
        // The leader's own decisions (timeouts) hold only if the agent has not changed
        // state since, e.g. registered while this proposal was in flight.
        let if_state_since_ms = if by_operator {
            None
        } else {
            self.liveness.begin_marking(&agent);
            self.state().agent(&agent).map(|a| a.state_since_ms)
        };
        self.propose(
            ClusterOp::SetAgentState {
                agent: agent.clone(),
                state,
                by_operator,
                if_state_since_ms,
            },
            After::AgentStateSet {
                agent,
                state,
                cause,
                reply,
            },
        );
    }

    /// An agent state change committed.
    pub(super) fn agent_state_set(
        &mut self,
        agent: AgentId,
        to: AgentState,
        cause: &'static str,
        outcome: ClusterOutcome,
        reply: Option<Reply<u64>>,
    ) {
        self.liveness.marked(&agent);
        let ClusterOutcome::AgentStateSet { removed, updates } = outcome else {
            if let Some(r) = reply {
                self.answer(r, Err(Refusal::Internal("unexpected outcome".into())));
            }
            return;
        };
        metrics::counter!(m::AGENT_STATE_CHANGES_TOTAL, "state" => format!("{to:?}").to_lowercase(), "cause" => cause)
            .increment(1);
        self.rescind(&removed, None, None);
        let known = self.allocator.agent_total(&agent).is_some();
        self.forward_master_updates(&updates, known);
        let state = self.state();
        match to {
            AgentState::Active => {
                let _ = self.allocator.set_agent_active(&agent, true);
                self.allocate_soon();
            }
            AgentState::Draining => {
                let _ = self.allocator.set_agent_active(&agent, false);
                self.kill_all_on(&state, &agent);
            }
            AgentState::Unreachable | AgentState::Gone => {
                let _ = self.allocator.set_agent_active(&agent, false);
                self.liveness.forget(&agent);
                self.settled(&agent);
            }
        }
        tracing::warn!(%agent, state = ?to, cause, tasks_changed = updates.len(), "agent state changed");
        if let Some(r) = reply {
            let live = state.live_tasks_on(&agent).count() as u64;
            self.answer(r, Ok(live));
        }
    }

    /// Forwards updates the master made (and committed) to their frameworks; with
    /// `recover`, the resources of tasks they ended go back to the allocator.
    pub(super) fn forward_master_updates(&mut self, updates: &[MasterUpdate], recover: bool) {
        if updates.is_empty() {
            return;
        }
        let state = self.state();
        for u in updates {
            metrics::counter!(m::MASTER_TASK_UPDATES_TOTAL,
                "state" => convert::state_to_proto(u.update.state).as_str_name(),
                "reason" => u.update.reason.clone())
            .increment(1);
            if let (true, Some(r)) = (recover, &u.released) {
                if let Err(e) = self.allocator.recover(&u.framework, &u.agent, r, None) {
                    tracing::error!(error = %e, "allocator");
                }
            }
            let Some(t) = state.task(&u.framework, &u.task) else {
                continue;
            };
            // Through the backlog: an agent going away can end thousands of tasks at once,
            // more than a stream holds, and a full stream must not cost the framework its
            // subscription.
            let status = convert::status_to_proto(t, &u.update);
            if self.enqueue(&u.framework, status) {
                metrics::counter!(m::STATUS_UPDATES_TOTAL, "stage" => "forwarded").increment(1);
            }
        }
        if recover && updates.iter().any(|u| u.released.is_some()) {
            self.allocate_soon();
        }
    }

    /// Rescinds removed offers (see [`Conductor::offers_removed`]).
    pub(super) fn rescind(
        &mut self,
        removed: &[OfferRecord],
        refuse: Option<(u64, u64)>,
        declined_by: Option<&FrameworkId>,
    ) {
        self.offers_removed(
            &ClusterOutcome::Removed(removed.to_vec()),
            refuse,
            declined_by,
        );
    }

    /// A framework subscribed (again): its failover timer stops.
    pub(super) fn framework_connected(&mut self, framework: &FrameworkId, resubscribe: bool) {
        self.recovery.disconnected.remove(framework);
        metrics::counter!(m::FRAMEWORK_SUBSCRIPTIONS_TOTAL, "kind" => if resubscribe { "failover" } else { "new" })
            .increment(1);
    }

    /// A framework lost its stream: its failover timer starts.
    pub(super) fn framework_disconnected(&mut self, framework: &FrameworkId) {
        let timeout = self
            .state()
            .framework(framework)
            .map(|f| Duration::from_millis(f.failover_timeout_ms))
            .unwrap_or_default();
        self.recovery
            .disconnected
            .insert(framework.clone(), self.now.mono + timeout);
    }

    /// A framework is torn down: nothing to wait for.
    pub(super) fn framework_gone(&mut self, framework: &FrameworkId) {
        self.recovery.disconnected.remove(framework);
        self.recovery.timing_out.remove(framework);
        self.recovery.reconcile_tokens.remove(framework);
    }

    /// A teardown for a failover timeout did not commit: the next tick tries again.
    pub(super) fn framework_gone_failed(&mut self, framework: &FrameworkId) {
        self.recovery.timing_out.remove(framework);
    }

    /// Once per tick: agents not re-registered in time, agents unreachable past the removal
    /// timeout, frameworks past their failover timeout, backlogs that can move.
    pub(super) fn recovery_housekeeping(&mut self) {
        let now = self.now.mono;
        let late: Vec<AgentId> = self
            .recovery
            .awaiting
            .iter()
            .filter(|(id, deadline)| **deadline <= now && !self.liveness.is_marking(id))
            .map(|(id, _)| id.clone())
            .collect();
        for agent in late {
            tracing::warn!(%agent, timeout = ?self.config.agent_reregister_timeout, "agent did not register again after the leader change");
            self.propose_agent_state(agent, AgentState::Unreachable, "reregister_timeout", None);
        }

        let removal = self.config.agent_removal_timeout.as_millis() as u64;
        let wall = self.now.wall_ms;
        let state = self.state();
        let expired: Vec<AgentId> = state
            .agents()
            .filter(|a| {
                a.state == AgentState::Unreachable
                    && wall.saturating_sub(a.state_since_ms) >= removal
                    && !self.liveness.is_marking(&a.id)
            })
            .map(|a| a.id.clone())
            .collect();
        for agent in expired {
            tracing::warn!(%agent, "agent unreachable past its removal timeout; marking it gone");
            self.propose_agent_state(agent, AgentState::Gone, "removal_timeout", None);
        }

        let timed_out: Vec<FrameworkId> = self
            .recovery
            .disconnected
            .iter()
            .filter(|(id, deadline)| {
                **deadline <= now
                    && !self.connections.contains_key(*id)
                    && !self.torn_down.contains(*id)
                    && !self.recovery.timing_out.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for framework in timed_out {
            tracing::warn!(%framework, "framework did not subscribe again within its failover timeout; tearing it down");
            metrics::counter!(m::FRAMEWORK_FAILOVER_TIMEOUTS_TOTAL).increment(1);
            self.recovery.timing_out.insert(framework.clone());
            // Only if it has not subscribed again meanwhile (a subscription in flight).
            let if_subscribed_at_ms = self
                .state()
                .framework(&framework)
                .map(|f| f.subscribed_at_ms);
            self.propose(
                ClusterOp::TeardownFramework {
                    framework: framework.clone(),
                    if_subscribed_at_ms,
                },
                After::TornDown {
                    framework,
                    reply: None,
                },
            );
        }
        self.drain_backlogs();
    }

    /// Queues `status` for the framework: at once if its stream has room, else in its
    /// backlog. False when the framework has no stream (an update it has not acknowledged is
    /// redelivered when it subscribes) or its backlog is full.
    fn enqueue(&mut self, framework: &FrameworkId, status: v1::TaskStatus) -> bool {
        let Some(c) = self.connections.get_mut(framework) else {
            return false;
        };
        if c.backlog.is_empty() && c.events.capacity() > EVENT_QUEUE / 4 {
            self.send(
                framework,
                v1::event::Event::Update(v1::Update {
                    status: Some(status),
                }),
            )
        } else if c.backlog.len() < MAX_BACKLOG {
            c.backlog.push_back(status);
            true
        } else {
            // An update with a uuid is redelivered at the next subscription; a
            // reconciliation answer is not (the framework reconciles again).
            tracing::warn!(%framework, "framework backlog full; an update waits for the next subscription");
            false
        }
    }

    /// Sends backlogged updates while streams have room (a quarter of the queue is kept
    /// free for new events).
    fn drain_backlogs(&mut self) {
        let ids: Vec<FrameworkId> = self
            .connections
            .iter()
            .filter(|(_, c)| !c.backlog.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            loop {
                let next = match self.connections.get_mut(&id) {
                    Some(c) if c.events.capacity() > EVENT_QUEUE / 4 => c.backlog.pop_front(),
                    _ => None,
                };
                let Some(status) = next else { break };
                if !self.send(
                    &id,
                    v1::event::Event::Update(v1::Update {
                        status: Some(status),
                    }),
                ) {
                    break;
                }
            }
        }
    }

    /// Takes one RECONCILE token of `framework`; false when it has none left.
    fn reconcile_allowed(&mut self, framework: &FrameworkId) -> bool {
        let now = self.now.mono;
        let (tokens, at) = self
            .recovery
            .reconcile_tokens
            .entry(framework.clone())
            .or_insert((RECONCILE_PER_SECOND, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * RECONCILE_PER_SECOND)
            .min(RECONCILE_PER_SECOND);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// RECONCILE: explicit (task ids, with their agents when given) or implicit (none).
    pub(super) fn reconcile(
        &mut self,
        framework: FrameworkId,
        tasks: Vec<(String, Option<String>)>,
        reply: Reply<()>,
    ) {
        let kind = if tasks.is_empty() {
            "implicit"
        } else {
            "explicit"
        };
        if !self.reconcile_allowed(&framework) {
            metrics::counter!(m::RECONCILE_REQUESTS_TOTAL, "kind" => kind, "outcome" => "throttled")
                .increment(1);
            self.answer(reply, Err(Refusal::ResourceExhausted(format!(
                "at most {RECONCILE_PER_SECOND} RECONCILE calls per second per framework; retry later"
            ))));
            return;
        }
        metrics::counter!(m::RECONCILE_REQUESTS_TOTAL, "kind" => kind, "outcome" => "answered")
            .increment(1);
        let state = self.state();
        let now = self.now.wall_ms;
        let partition_aware = state
            .framework(&framework)
            .is_some_and(|f| f.partition_aware);
        let mut answers = Vec::new();
        let mut unknown = Vec::new();
        let mut held: Vec<(AgentId, TaskId)> = Vec::new();
        {
            // A live task on an agent still awaited is answered once the agent settles.
            let mut answer = |t: &crate::registry::cluster::TaskRecord| {
                if !t.state.is_terminal()
                    && self.recovery.awaits(&t.agent)
                    && self.recovery.deferred_count + held.len() < MAX_DEFERRED
                {
                    held.push((t.agent.clone(), t.spec.id.clone()));
                } else {
                    answers.push(convert::reconciliation_status(t, now));
                }
            };
            if tasks.is_empty() {
                for t in state
                    .tasks_of(&framework)
                    .filter(|t| !t.state.is_terminal())
                {
                    answer(t);
                }
            } else {
                for (id, agent) in &tasks {
                    let known = TaskId::new(id)
                        .ok()
                        .and_then(|tid| state.task(&framework, &tid));
                    match known {
                        Some(t) => answer(t),
                        None => {
                            let agent_state = agent.as_deref().map(|a| {
                                let s = AgentId::new(a)
                                    .ok()
                                    .and_then(|aid| state.agent(&aid))
                                    .map(|r| r.state);
                                (a, s)
                            });
                            unknown.push(convert::unknown_task_status(
                                id,
                                agent_state,
                                partition_aware,
                                now,
                            ));
                        }
                    }
                }
            }
        }
        answers.extend(unknown);
        let deferred = held.len();
        for (agent, task) in held {
            if self
                .recovery
                .deferred
                .entry(agent)
                .or_default()
                .insert((framework.clone(), task))
            {
                self.recovery.deferred_count += 1;
            }
        }
        if deferred > 0 {
            tracing::info!(%framework, deferred, "reconciliation answers held until their agents re-register");
        }
        for status in answers {
            self.enqueue(&framework, status);
        }
        self.answer(reply, Ok(()));
    }

    /// Operator maintenance of an agent (drain, reactivate, remove). Asking for the state the
    /// agent is in changes nothing and answers its live tasks (`drain --wait` polls so).
    pub(super) fn maintain_agent(&mut self, agent: AgentId, to: AgentState, reply: Reply<u64>) {
        let state = self.state();
        if let Some(a) = state.agent(&agent) {
            if a.state == to {
                self.answer(reply, Ok(state.live_tasks_on(&agent).count() as u64));
                return;
            }
        }
        let cause = match to {
            AgentState::Draining => "operator_drain",
            AgentState::Active => "operator_reactivate",
            AgentState::Gone => "operator_remove",
            AgentState::Unreachable => {
                self.answer(
                    reply,
                    Err(Refusal::InvalidArgument(
                        "action: an operator cannot mark an agent unreachable".into(),
                    )),
                );
                return;
            }
        };
        self.propose_agent_state(agent, to, cause, Some(reply));
    }

    /// The tasks of one RunTask at most, per framework (relaunches after failover).
    pub(super) fn relaunch_staging(&mut self, state: &ClusterState) -> usize {
        let mut staging: HashMap<(FrameworkId, AgentId), Vec<TaskSpec>> = HashMap::new();
        for t in state.tasks() {
            if t.state == crate::registry::TaskState::Staging
                && !self.torn_down.contains(&t.framework)
            {
                staging
                    .entry((t.framework.clone(), t.agent.clone()))
                    .or_default()
                    .push(t.spec.clone());
            }
        }
        let mut n = 0;
        for ((framework, agent), tasks) in staging {
            n += tasks.len();
            for chunk in tasks.chunks(MAX_TASKS_PER_RUN) {
                self.run_on_agent(state, &framework, &agent, chunk);
            }
        }
        n
    }
}
