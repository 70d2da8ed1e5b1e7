//! The cluster part of the registry: agents, frameworks, offers and tasks, and the operations
//! that change them (DESIGN.md, "Replicated state").
//!
//! Owns the rules every replica applies identically: an offer is created only if the agent can
//! hold it (outstanding offers + live tasks ≤ its total: invariant 3, resource safety); ACCEPT
//! consumes its offers and creates its tasks as STAGING in one step, or changes nothing (an
//! offer is consumed at most once: invariant 4); a status update is applied once per uuid and
//! only along a legal transition (invariant 2). Pure: time arrives in the operation, stamped by
//! the leader, and the uuids of updates the master makes itself (an agent unreachable, gone,
//! or re-registering without a task) are derived from the entry's log index ([`Stamp`]), so
//! every replica makes the same ones.
//!
//! Agent lifecycle and reconciliation (registration with the agent's task report, unreachable,
//! draining, gone) live in [`agents`].

mod agents;
pub use agents::reason;

use std::collections::BTreeMap;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use drover_resources::{Attributes, Resources};

use crate::ids::{AgentId, FrameworkId, OfferId, Role, TaskId};
use drover_model::task_state::{IllegalTransition, TaskState};

pub use agents::{ReportedTask, MAX_REPORTED_TASKS};

/// Most tasks and offers one ACCEPT may name (the framework driver holds to them too).
pub use drover_model::limits::{MAX_OFFERS_PER_ACCEPT, MAX_TASKS_PER_ACCEPT};
/// Status updates kept per task: the oldest acknowledged one makes room for a new one; with
/// all of them unacknowledged, a new update is refused.
pub const MAX_UPDATES_PER_TASK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentState {
    Active,
    Unreachable,
    Draining,
    Gone,
    /// An operator deactivated it (Mesos's DEACTIVATE_AGENT): no offers, its tasks left
    /// running. Added last: the encoding is positional, so what older builds stored reads as
    /// it did.
    Deactivated,
}

impl AgentState {
    /// Whether the agent is reachable: it heartbeats, its tasks are reconciled through it.
    pub fn is_reachable(self) -> bool {
        matches!(
            self,
            AgentState::Active | AgentState::Draining | AgentState::Deactivated
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
    pub addr: String,
    pub total: Resources,
    pub attributes: Attributes,
    pub state: AgentState,
    pub registered_at_ms: u64,
    /// When it entered its current state (the leader's clock): an UNREACHABLE agent is
    /// removed (GONE) a timeout after this.
    pub state_since_ms: u64,
    /// An operator drained it: it stays DRAINING whenever it is reachable (across a partition
    /// or a leader change) until it is reactivated.
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    pub id: FrameworkId,
    pub name: String,
    pub role: Role,
    pub principal: String,
    pub failover_timeout_ms: u64,
    pub subscribed_at_ms: u64,
    /// TEARDOWN happened: the framework may not subscribe again; its record stays while its
    /// tasks end.
    pub torn_down: bool,
    /// The framework understands TASK_UNREACHABLE (Mesos's PARTITION_AWARE capability): the
    /// tasks of an unreachable agent become UNREACHABLE and may come back RUNNING. Without
    /// it they become LOST, and are killed if their agent comes back.
    pub partition_aware: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferRecord {
    pub id: OfferId,
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub resources: Resources,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    pub name: String,
    pub resources: Resources,
    /// Run with `/bin/sh -c`.
    pub command: String,
    pub environment: BTreeMap<String, String>,
    /// SIGTERM-to-SIGKILL grace period on kill; 0 means the agent's default.
    pub kill_grace_ms: u64,
    /// What the registry keeps of the task without interpreting it (see [`TaskExtensions`]).
    /// Not in this type's encoding, so that the log and the snapshots of builds before
    /// extensions read as they were: it travels in [`ClusterOp::AcceptExtended`] and in
    /// snapshot records of its own.
    #[serde(skip)]
    pub extensions: Option<TaskExtensions>,
}

/// The parts of a task's definition the registry keeps but does not interpret (its health
/// check today), as a protobuf `TaskInfo` that holds only them. Protobuf fields evolve without
/// a change of the log's format: a new kind of extension (a container, labels) needs no
/// migration, only a field in `TaskInfo`. The leader checked them at ACCEPT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskExtensions(pub Vec<u8>);

/// A status update's core and its source: the model's, the same the agent checkpoints (their
/// declaration order is part of this log's format, see [`drover_model::status`]).
pub use drover_model::{StatusSource, TaskStatus};

/// A status update the master made (and applied) itself, for the leader to forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterUpdate {
    pub framework: FrameworkId,
    pub task: TaskId,
    pub agent: AgentId,
    pub update: TaskStatus,
    /// The task's resources when this update ended it (they go back to the allocator).
    pub released: Option<Resources>,
}

/// Where and when an operation is applied: its entry's log index, its position in the entry,
/// and the leader's clock stamped into the entry. Apply takes time and fresh uuids only from
/// here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub index: u64,
    pub position: u32,
    pub now_ms: u64,
}

/// The namespace of the uuids the master gives its own status updates (uuid v5, SHA-1: the
/// same on every replica and every build).
const MASTER_UPDATE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d1c_2a80_5f3e_4b8e_9c57_d3a1_0e42_b7f9);

impl Stamp {
    /// The uuid of the update this operation makes for `task`.
    pub fn uuid_for(&self, framework: &FrameworkId, task: &TaskId) -> uuid::Uuid {
        let name = format!("{}/{}/{framework}/{task}", self.index, self.position);
        uuid::Uuid::new_v5(&MASTER_UPDATE_NAMESPACE, name.as_bytes())
    }
}

/// One status update as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub update: TaskStatus,
    /// Whether the framework acknowledged it.
    pub acknowledged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub state: TaskState,
    /// The updates, oldest first.
    pub updates: Vec<StatusRecord>,
}

/// Operations on the cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClusterOp {
    /// Adds an agent, or re-registers a known one (its offers are removed: they were made
    /// from its old description). A re-registering agent reports the tasks it has (`Some`),
    /// and the registry reconciles its own list against that report (see [`agents`]).
    RegisterAgent {
        agent: AgentRecord,
        tasks: Option<Vec<ReportedTask>>,
        /// The report was cut short (the agent has more tasks than one registration may
        /// carry): a task missing from it is not taken for lost.
        truncated: bool,
    },
    /// UNREACHABLE (missed heartbeats, or no re-registration after a leader change), DRAINING
    /// (operator: no new offers; the leader kills its tasks), ACTIVE again after draining, or
    /// GONE (removal timeout, or `by_operator`). Any state but ACTIVE removes the agent's
    /// offers; UNREACHABLE and GONE also change its live tasks (see [`agents`]).
    SetAgentState {
        agent: AgentId,
        state: AgentState,
        by_operator: bool,
        /// Apply only if the agent is still in the state it entered at this time (the leader's
        /// view when it decided): a registration committed meanwhile supersedes a timeout.
        if_state_since_ms: Option<u64>,
    },
    /// Adds a framework, or updates a known one that subscribes again.
    SubscribeFramework(FrameworkRecord),
    /// Removes the framework's offers and marks it torn down. Its tasks are killed by the
    /// leader; their terminal updates still apply. With `if_subscribed_at_ms`, only if the
    /// framework has not subscribed again since (a failover timeout racing a re-subscription).
    TeardownFramework {
        framework: FrameworkId,
        if_subscribed_at_ms: Option<u64>,
    },
    SetRoleWeight {
        role: Role,
        weight: f64,
    },
    /// Each offer is created if it is valid and fits; the others are refused one by one.
    CreateOffers(Vec<OfferRecord>),
    /// Declined, rescinded or expired. Ids no longer outstanding are skipped.
    RemoveOffers(Vec<OfferId>),
    Accept {
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
    },
    /// From `agent`, which must be the agent the task was launched on.
    StatusUpdate {
        agent: AgentId,
        framework: FrameworkId,
        task: TaskId,
        update: TaskStatus,
    },
    Acknowledge {
        framework: FrameworkId,
        task: TaskId,
        uuid: uuid::Uuid,
    },
    /// Forgets the oldest completed tasks of each framework beyond `keep_tasks_per_framework`,
    /// and the oldest completed frameworks (torn down, no live task) beyond
    /// `keep_completed_frameworks`, with all their tasks. A task is completed once it is
    /// terminal and its framework acknowledged its last update, or its framework was torn
    /// down (nobody will acknowledge it). The limits travel in the operation (the leader's
    /// settings), so every replica forgets the same tasks.
    PruneCompleted {
        keep_tasks_per_framework: u32,
        keep_completed_frameworks: u32,
    },
    // Variants are positional in the log's encoding: new ones go last.
    /// [`Accept`](ClusterOp::Accept) of tasks some of which carry [`TaskExtensions`]
    /// (`extensions[i]` is `tasks[i]`'s). A variant of its own, added last, so that an entry
    /// written before extensions existed decodes as it did; the leader proposes it only for
    /// tasks that have extensions, so a cluster that uses none writes what older builds read.
    AcceptExtended {
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        extensions: Vec<Option<TaskExtensions>>,
    },
}

/// Why an operation changed nothing. Sent back to the proposer, which maps it to a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("agent {0} is not active")]
    AgentNotActive(AgentId),
    #[error("agent {0} was removed (GONE); it must register again as a new agent")]
    AgentGone(AgentId),
    #[error("{0} changed since the leader decided; nothing done")]
    Superseded(String),
    #[error("agent {agent}: cannot go from {from:?} to {to:?}")]
    AgentTransition {
        agent: AgentId,
        from: AgentState,
        to: AgentState,
    },
    #[error("unknown framework {0}")]
    UnknownFramework(FrameworkId),
    #[error("framework {0} was torn down")]
    FrameworkTornDown(FrameworkId),
    #[error("framework {framework}: its role is {role}; a framework cannot change role")]
    RoleChange { framework: FrameworkId, role: Role },
    #[error("role {role}: weight {weight} must be a positive finite number")]
    BadWeight { role: Role, weight: f64 },
    #[error("offer {0} is not outstanding (already used, declined, rescinded or expired)")]
    OfferNotOutstanding(OfferId),
    #[error("offer {offer} belongs to another framework")]
    OfferOfAnotherFramework { offer: OfferId },
    #[error("offer {0} is already outstanding")]
    DuplicateOffer(OfferId),
    #[error("offers: all offers of one ACCEPT must be for the same agent")]
    OffersOnSeveralAgents,
    #[error("offers: between 1 and {MAX_OFFERS_PER_ACCEPT} offers")]
    OfferCount,
    #[error("tasks: at most {MAX_TASKS_PER_ACCEPT} tasks")]
    TaskCount,
    #[error("task {0}: a task with this id exists")]
    DuplicateTask(TaskId),
    #[error("tasks: need {need}, the offers hold {offered}")]
    DoesNotFit { need: String, offered: String },
    #[error("agent {agent}: offering {resources} would exceed its total ({reason})")]
    Overcommit {
        agent: AgentId,
        resources: String,
        reason: String,
    },
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    #[error("task {task} runs on agent {runs_on}, not {agent}")]
    WrongAgent {
        task: TaskId,
        agent: AgentId,
        runs_on: AgentId,
    },
    #[error("agent {agent}: resources {total} do not cover its live tasks ({live})")]
    ShrunkBelowTasks {
        agent: AgentId,
        total: String,
        live: String,
    },
    #[error("task {0}: {MAX_UPDATES_PER_TASK} status updates are unacknowledged; retry after the framework acknowledges")]
    TooManyUnacknowledged(TaskId),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClusterOutcome {
    Done,
    /// CREATE OFFERS: the offers refused (all others were created).
    OffersCreated {
        refused: Vec<(OfferId, ClusterError)>,
    },
    /// ACCEPT: the resources of the offers that no task uses, to hand back to the allocator.
    Accepted {
        agent: AgentId,
        unused: Resources,
    },
    /// Offers removed (by RemoveOffers or TeardownFramework): only those that were still
    /// outstanding, so their resources go back to the allocator exactly once.
    Removed(Vec<OfferRecord>),
    /// A status update applied to a task on `agent`; `released` holds the task's resources
    /// when this update ended it.
    StatusApplied {
        agent: AgentId,
        released: Option<Resources>,
    },
    /// REGISTER AGENT: the agent's old offers (removed), the updates the master made while
    /// reconciling its report, STAGING tasks the agent does not have (to launch again), and
    /// tasks the agent has that must not run (to kill).
    AgentRegistered {
        removed: Vec<OfferRecord>,
        updates: Vec<MasterUpdate>,
        relaunch: Vec<(FrameworkId, TaskSpec)>,
        kill: Vec<(FrameworkId, TaskId)>,
    },
    /// SET AGENT STATE: the agent's offers removed and the updates the master made for its
    /// tasks.
    AgentStateSet {
        removed: Vec<OfferRecord>,
        updates: Vec<MasterUpdate>,
    },
    /// A status update with a uuid already recorded: acknowledge again, nothing applied.
    /// `acknowledged` tells whether the framework has it already.
    Duplicate {
        acknowledged: bool,
    },
    /// PRUNE COMPLETED: how many tasks were forgotten, and which frameworks.
    Pruned {
        tasks: u64,
        frameworks: Vec<FrameworkId>,
    },
    Refused(ClusterError),
}

/// The key of a task: its framework and its id.
pub type TaskKey = (FrameworkId, TaskId);

/// Agents, frameworks, offers and tasks. Persistent maps: cloning is O(1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredClusterState")]
pub struct ClusterState {
    agents: OrdMap<AgentId, AgentRecord>,
    frameworks: OrdMap<FrameworkId, FrameworkRecord>,
    /// Role weights set by operators (default 1).
    roles: OrdMap<Role, f64>,
    offers: OrdMap<OfferId, OfferRecord>,
    tasks: OrdMap<TaskKey, TaskRecord>,
    /// Per agent, its outstanding offers plus its live tasks, kept up to date by every
    /// operation so that checking an offer does not scan every offer and task (apply runs on
    /// every replica for every offer). Tests recount it after every operation.
    committed: OrdMap<AgentId, Resources>,
    /// Per agent, its live (non-terminal) tasks, so that an agent's state change or
    /// re-registration does not scan every task. Not stored: rebuilt when a snapshot loads.
    #[serde(skip)]
    live: OrdMap<AgentId, OrdSet<TaskKey>>,
    /// Per framework, its completed tasks (see [`ClusterOp::PruneCompleted`]) by when they
    /// ended, oldest first: what pruning forgets first. Not stored: rebuilt when a snapshot
    /// loads.
    #[serde(skip)]
    completed: OrdMap<FrameworkId, OrdSet<(u64, TaskId)>>,
    /// Agents an operator deactivated, whatever their state: one that becomes UNREACHABLE and
    /// registers again comes back DEACTIVATED. Stored as records of their own (a snapshot
    /// format 5 does not have), not in the serde form.
    #[serde(skip)]
    deactivated: OrdSet<AgentId>,
}

/// When a terminal task ended, for ordering completed tasks: the time of its first terminal
/// update (0 if it has none left).
fn ended_at_ms(t: &TaskRecord) -> u64 {
    t.updates
        .iter()
        .find(|u| u.update.state.is_terminal())
        .map_or(0, |u| u.update.at_ms)
}

/// Whether a task may be forgotten: it is terminal, and its framework acknowledged its last
/// update or will never acknowledge anything again (torn down or gone).
fn is_completed(t: &TaskRecord, framework: Option<&FrameworkRecord>) -> bool {
    t.state.is_terminal()
        && (t.updates.last().is_some_and(|u| u.acknowledged)
            || framework.is_none_or(|f| f.torn_down))
}

/// [`ClusterState`] as stored: everything but the derived indexes (`live`, `completed`).
/// Also what a snapshot's records are gathered into (`registry::records`).
#[derive(Default, Deserialize)]
pub(super) struct StoredClusterState {
    pub(super) agents: OrdMap<AgentId, AgentRecord>,
    pub(super) frameworks: OrdMap<FrameworkId, FrameworkRecord>,
    pub(super) roles: OrdMap<Role, f64>,
    pub(super) offers: OrdMap<OfferId, OfferRecord>,
    pub(super) tasks: OrdMap<TaskKey, TaskRecord>,
    pub(super) committed: OrdMap<AgentId, Resources>,
    /// Gathered from records only (see [`ClusterState`]'s field).
    #[serde(skip)]
    pub(super) deactivated: OrdSet<AgentId>,
}

/// The stored maps of a [`ClusterState`], borrowed: what a snapshot writes.
pub(super) struct StoredMaps<'a> {
    pub(super) agents: &'a OrdMap<AgentId, AgentRecord>,
    pub(super) frameworks: &'a OrdMap<FrameworkId, FrameworkRecord>,
    pub(super) roles: &'a OrdMap<Role, f64>,
    pub(super) offers: &'a OrdMap<OfferId, OfferRecord>,
    pub(super) tasks: &'a OrdMap<TaskKey, TaskRecord>,
    pub(super) committed: &'a OrdMap<AgentId, Resources>,
    pub(super) deactivated: &'a OrdSet<AgentId>,
}

impl From<StoredClusterState> for ClusterState {
    fn from(s: StoredClusterState) -> Self {
        let mut live: OrdMap<AgentId, OrdSet<TaskKey>> = OrdMap::new();
        for (key, t) in s.tasks.iter().filter(|(_, t)| !t.state.is_terminal()) {
            live.entry(t.agent.clone()).or_default().insert(key.clone());
        }
        let mut completed: OrdMap<FrameworkId, OrdSet<(u64, TaskId)>> = OrdMap::new();
        for ((f, id), t) in s.tasks.iter() {
            if is_completed(t, s.frameworks.get(f)) {
                completed
                    .entry(f.clone())
                    .or_default()
                    .insert((ended_at_ms(t), id.clone()));
            }
        }
        ClusterState {
            agents: s.agents,
            frameworks: s.frameworks,
            roles: s.roles,
            offers: s.offers,
            tasks: s.tasks,
            committed: s.committed,
            live,
            completed,
            deactivated: s.deactivated,
        }
    }
}

/// One entry's change between two versions of the registry (see
/// [`ClusterState::task_changes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'a, T> {
    Added(&'a T),
    Updated { old: &'a T, new: &'a T },
    Removed(&'a T),
}

/// The changes from `old` to `new`, visiting only the parts of the two maps they do not share
/// (successive applied registries share all but what the operations between them touched).
fn changes<'a, K: Ord, V: PartialEq>(
    old: &'a OrdMap<K, V>,
    new: &'a OrdMap<K, V>,
) -> impl Iterator<Item = Change<'a, V>> {
    old.diff(new).map(|d| match d {
        imbl::ordmap::DiffItem::Add(_, v) => Change::Added(v),
        imbl::ordmap::DiffItem::Update {
            old: (_, old),
            new: (_, new),
        } => Change::Updated { old, new },
        imbl::ordmap::DiffItem::Remove(_, v) => Change::Removed(v),
    })
}

impl ClusterState {
    /// Its stored maps (not the derived indexes), for a snapshot.
    pub(super) fn stored_maps(&self) -> StoredMaps<'_> {
        StoredMaps {
            agents: &self.agents,
            frameworks: &self.frameworks,
            roles: &self.roles,
            offers: &self.offers,
            tasks: &self.tasks,
            committed: &self.committed,
            deactivated: &self.deactivated,
        }
    }

    pub fn agent(&self, id: &AgentId) -> Option<&AgentRecord> {
        self.agents.get(id)
    }
    pub fn framework(&self, id: &FrameworkId) -> Option<&FrameworkRecord> {
        self.frameworks.get(id)
    }
    pub fn offer(&self, id: &OfferId) -> Option<&OfferRecord> {
        self.offers.get(id)
    }
    pub fn task(&self, framework: &FrameworkId, task: &TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&(framework.clone(), task.clone()))
    }
    pub fn agents(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values()
    }
    pub fn frameworks(&self) -> impl Iterator<Item = &FrameworkRecord> {
        self.frameworks.values()
    }
    /// Role weights set by operators.
    pub fn role_weights(&self) -> impl Iterator<Item = (&Role, f64)> {
        self.roles.iter().map(|(r, w)| (r, *w))
    }
    /// The tasks of one framework, in task id order.
    pub fn tasks_of<'a>(
        &'a self,
        framework: &'a FrameworkId,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        let start = (framework.clone(), TaskId::lowest());
        self.tasks
            .range(start..)
            .take_while(move |((f, _), _)| f == framework)
            .map(|(_, t)| t)
    }
    pub fn offers(&self) -> impl Iterator<Item = &OfferRecord> {
        self.offers.values()
    }
    pub fn tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.tasks.values()
    }

    /// How the agents differ from `self` to `newer`.
    pub fn agent_changes<'a>(
        &'a self,
        newer: &'a Self,
    ) -> impl Iterator<Item = Change<'a, AgentRecord>> {
        changes(&self.agents, &newer.agents)
    }

    /// How the frameworks differ from `self` to `newer`.
    pub fn framework_changes<'a>(
        &'a self,
        newer: &'a Self,
    ) -> impl Iterator<Item = Change<'a, FrameworkRecord>> {
        changes(&self.frameworks, &newer.frameworks)
    }

    /// How the tasks differ from `self` to `newer`.
    pub fn task_changes<'a>(
        &'a self,
        newer: &'a Self,
    ) -> impl Iterator<Item = Change<'a, TaskRecord>> {
        changes(&self.tasks, &newer.tasks)
    }

    /// The live (non-terminal) tasks on `agent`.
    pub fn live_tasks_on<'a>(
        &'a self,
        agent: &AgentId,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        self.live
            .get(agent)
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter_map(|k| self.tasks.get(k))
    }

    /// Everything committed on `agent`: outstanding offers plus live tasks. Invariant 3 says
    /// this never exceeds the agent's total.
    pub fn committed_on(&self, agent: &AgentId) -> Resources {
        self.committed.get(agent).cloned().unwrap_or_default()
    }

    fn commit(&mut self, agent: &AgentId, resources: &Resources) -> Result<(), ClusterError> {
        let sum = self
            .committed_on(agent)
            .checked_add(resources)
            .map_err(|e| ClusterError::Overcommit {
                agent: agent.clone(),
                resources: resources.to_string(),
                reason: e.to_string(),
            })?;
        self.committed.insert(agent.clone(), sum);
        Ok(())
    }

    fn release(&mut self, agent: &AgentId, resources: &Resources) {
        let left = self.committed_on(agent).saturating_sub(resources);
        if left.is_empty() {
            self.committed.remove(agent);
        } else {
            self.committed.insert(agent.clone(), left);
        }
    }

    fn task_mut(
        &mut self,
        framework: &FrameworkId,
        task: &TaskId,
    ) -> Result<&mut TaskRecord, ClusterError> {
        self.tasks
            .get_mut(&(framework.clone(), task.clone()))
            .ok_or_else(|| ClusterError::UnknownTask(task.clone()))
    }

    /// Applies `op` (committed at `stamp`); a refused operation changes nothing.
    pub fn apply_at(&mut self, op: &ClusterOp, stamp: &Stamp) -> ClusterOutcome {
        match self.try_apply(op, stamp) {
            Ok(o) => o,
            Err(e) => ClusterOutcome::Refused(e),
        }
    }

    /// [`Self::apply_at`] with a fresh stamp per call (tests).
    #[cfg(test)]
    pub fn apply(&mut self, op: &ClusterOp) -> ClusterOutcome {
        thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(1) });
        let index = NEXT.with(|n| {
            let i = n.get();
            n.set(i + 1);
            i
        });
        let stamp = Stamp {
            index,
            position: 0,
            now_ms: 1_000 + index,
        };
        self.apply_at(op, &stamp)
    }

    fn try_apply(&mut self, op: &ClusterOp, stamp: &Stamp) -> Result<ClusterOutcome, ClusterError> {
        match op {
            ClusterOp::RegisterAgent {
                agent,
                tasks,
                truncated,
            } => self.register_agent(agent, tasks.as_deref(), *truncated, stamp),
            ClusterOp::SetAgentState {
                agent,
                state,
                by_operator,
                if_state_since_ms,
            } => {
                if let Some(since) = if_state_since_ms {
                    if self.agents.get(agent).map(|a| a.state_since_ms) != Some(*since) {
                        return Err(ClusterError::Superseded(format!("agent {agent}")));
                    }
                }
                self.set_agent_state(agent, *state, *by_operator, stamp)
            }
            ClusterOp::SubscribeFramework(f) => self.subscribe_framework(f),
            ClusterOp::TeardownFramework {
                framework,
                if_subscribed_at_ms,
            } => self.teardown_framework(framework, *if_subscribed_at_ms),
            ClusterOp::SetRoleWeight { role, weight } => self.set_role_weight(role, *weight),
            ClusterOp::CreateOffers(offers) => self.create_offers(offers),
            ClusterOp::RemoveOffers(ids) => Ok(ClusterOutcome::Removed(self.remove_offers(ids))),
            ClusterOp::Accept {
                framework,
                offers,
                tasks,
            } => self.accept(framework, offers, tasks),
            ClusterOp::AcceptExtended {
                framework,
                offers,
                tasks,
                extensions,
            } => {
                let tasks: Vec<TaskSpec> = tasks
                    .iter()
                    .zip(extensions.iter().chain(std::iter::repeat(&None)))
                    .map(|(t, e)| TaskSpec {
                        extensions: e.clone(),
                        ..t.clone()
                    })
                    .collect();
                self.accept(framework, offers, &tasks)
            }
            ClusterOp::StatusUpdate {
                agent,
                framework,
                task,
                update,
            } => self.status_update(agent, framework, task, update),
            ClusterOp::Acknowledge {
                framework,
                task,
                uuid,
            } => {
                let t = self.task_mut(framework, task)?;
                for u in t.updates.iter_mut().filter(|u| u.update.uuid == *uuid) {
                    u.acknowledged = true;
                }
                self.index_completed(&(framework.clone(), task.clone()));
                Ok(ClusterOutcome::Done)
            }
            ClusterOp::PruneCompleted {
                keep_tasks_per_framework,
                keep_completed_frameworks,
            } => Ok(self.prune_completed(
                *keep_tasks_per_framework as usize,
                *keep_completed_frameworks as usize,
            )),
        }
    }

    /// A framework subscribes (first time, or again with its id): refused if it was torn down
    /// or asks for another role.
    fn subscribe_framework(&mut self, f: &FrameworkRecord) -> Result<ClusterOutcome, ClusterError> {
        if let Some(known) = self.frameworks.get(&f.id) {
            if known.torn_down {
                return Err(ClusterError::FrameworkTornDown(f.id.clone()));
            }
            if known.role != f.role {
                return Err(ClusterError::RoleChange {
                    framework: f.id.clone(),
                    role: known.role.clone(),
                });
            }
        }
        self.frameworks.insert(f.id.clone(), f.clone());
        Ok(ClusterOutcome::Done)
    }

    /// Tears a framework down (unless it subscribed again since the leader decided): its ended
    /// tasks become completed and its offers are removed.
    fn teardown_framework(
        &mut self,
        id: &FrameworkId,
        if_subscribed_at_ms: Option<u64>,
    ) -> Result<ClusterOutcome, ClusterError> {
        let f = self
            .frameworks
            .get_mut(id)
            .ok_or_else(|| ClusterError::UnknownFramework(id.clone()))?;
        if if_subscribed_at_ms.is_some_and(|at| at != f.subscribed_at_ms) {
            return Err(ClusterError::Superseded(format!("framework {id}")));
        }
        f.torn_down = true;
        let ended: Vec<TaskKey> = self
            .tasks_of(id)
            .filter(|t| t.state.is_terminal())
            .map(|t| (id.clone(), t.spec.id.clone()))
            .collect();
        for key in ended {
            self.index_completed(&key);
        }
        let ids: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| &o.framework == id)
            .map(|o| o.id.clone())
            .collect();
        Ok(ClusterOutcome::Removed(self.remove_offers(&ids)))
    }

    fn set_role_weight(
        &mut self,
        role: &Role,
        weight: f64,
    ) -> Result<ClusterOutcome, ClusterError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(ClusterError::BadWeight {
                role: role.clone(),
                weight,
            });
        }
        self.roles.insert(role.clone(), weight);
        Ok(ClusterOutcome::Done)
    }

    /// An agent's status update: applied once per uuid (a duplicate answers whether it was
    /// acknowledged), only from the task's agent, only along a legal transition.
    fn status_update(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        task: &TaskId,
        update: &TaskStatus,
    ) -> Result<ClusterOutcome, ClusterError> {
        let t = self.task_mut(framework, task)?;
        if &t.agent != agent {
            return Err(ClusterError::WrongAgent {
                task: task.clone(),
                agent: agent.clone(),
                runs_on: t.agent.clone(),
            });
        }
        if let Some(u) = t.updates.iter().find(|u| u.update.uuid == update.uuid) {
            return Ok(ClusterOutcome::Duplicate {
                acknowledged: u.acknowledged,
            });
        }
        let next = t.state.transition(update.state)?;
        // Only acknowledged updates may be forgotten: an unacknowledged one must still reach
        // the framework. With none to drop, the update is refused and the agent retries it
        // once the framework has acknowledged.
        if t.updates.len() >= MAX_UPDATES_PER_TASK && !t.updates.iter().any(|u| u.acknowledged) {
            return Err(ClusterError::TooManyUnacknowledged(task.clone()));
        }
        let key = (framework.clone(), task.clone());
        let released = self.record(&key, next, update.clone());
        Ok(ClusterOutcome::StatusApplied {
            agent: agent.clone(),
            released,
        })
    }

    /// Adds the task at `key` to the completed index if it is completed (idempotent).
    fn index_completed(&mut self, key: &TaskKey) {
        let Some(t) = self.tasks.get(key) else {
            return;
        };
        if is_completed(t, self.frameworks.get(&key.0)) {
            let entry = (ended_at_ms(t), key.1.clone());
            self.completed
                .entry(key.0.clone())
                .or_default()
                .insert(entry);
        }
    }

    /// Removes a completed task from the registry and the index.
    fn forget_task(&mut self, key: &TaskKey) {
        let Some(t) = self.tasks.remove(key) else {
            return;
        };
        debug_assert!(t.state.is_terminal(), "only ended tasks are forgotten");
        if let Some(set) = self.completed.get_mut(&key.0) {
            set.remove(&(ended_at_ms(&t), key.1.clone()));
            if set.is_empty() {
                self.completed.remove(&key.0);
            }
        }
    }

    /// Completed tasks of `framework` (see [`ClusterOp::PruneCompleted`]).
    pub fn completed_count(&self, framework: &FrameworkId) -> usize {
        self.completed.get(framework).map_or(0, |s| s.len())
    }

    /// The frameworks whose completed tasks number more than `limit`.
    pub fn frameworks_over(&self, limit: usize) -> impl Iterator<Item = &FrameworkId> + '_ {
        self.completed
            .iter()
            .filter(move |(_, s)| s.len() > limit)
            .map(|(f, _)| f)
    }

    /// Frameworks torn down that have no live task left, oldest subscription first.
    pub fn completed_frameworks(&self) -> Vec<&FrameworkRecord> {
        let mut done: Vec<&FrameworkRecord> = self
            .frameworks
            .values()
            .filter(|f| f.torn_down)
            .filter(|f| self.tasks_of(&f.id).all(|t| t.state.is_terminal()))
            .collect();
        done.sort_by(|a, b| (a.subscribed_at_ms, &a.id).cmp(&(b.subscribed_at_ms, &b.id)));
        done
    }

    /// Whether a prune at these bounds is worth a Raft entry: some framework has more than
    /// `keep_tasks` completed tasks by a tenth (at least one), or there are more completed
    /// frameworks than `keep_frameworks` by a tenth. The slack makes pruning one entry per
    /// many completions instead of one per completion.
    pub fn prune_due(&self, keep_tasks: usize, keep_frameworks: usize) -> bool {
        let over = |keep: usize, n: usize| n > keep + (keep / 10).max(1);
        if self
            .completed
            .values()
            .any(|set| over(keep_tasks, set.len()))
        {
            return true;
        }
        // Counting torn-down frameworks is cheap; only then look at their tasks.
        let torn_down = self.frameworks.values().filter(|f| f.torn_down).count();
        over(keep_frameworks, torn_down) && over(keep_frameworks, self.completed_frameworks().len())
    }

    fn prune_completed(&mut self, keep_tasks: usize, keep_frameworks: usize) -> ClusterOutcome {
        let mut tasks = 0u64;
        let mut frameworks = Vec::new();
        let gone: Vec<FrameworkId> = {
            let done = self.completed_frameworks();
            let excess = done.len().saturating_sub(keep_frameworks);
            done.into_iter()
                .take(excess)
                .map(|f| f.id.clone())
                .collect()
        };
        for f in gone {
            let keys: Vec<TaskKey> = self
                .tasks_of(&f)
                .map(|t| (f.clone(), t.spec.id.clone()))
                .collect();
            for key in &keys {
                self.forget_task(key);
            }
            tasks += keys.len() as u64;
            self.completed.remove(&f);
            self.frameworks.remove(&f);
            frameworks.push(f);
        }
        let over: Vec<(FrameworkId, Vec<TaskId>)> = self
            .completed
            .iter()
            .filter(|(_, set)| set.len() > keep_tasks)
            .map(|(f, set)| {
                let excess = set.len() - keep_tasks;
                (
                    f.clone(),
                    set.iter().take(excess).map(|(_, id)| id.clone()).collect(),
                )
            })
            .collect();
        for (f, ids) in over {
            for id in ids {
                self.forget_task(&(f.clone(), id));
                tasks += 1;
            }
        }
        ClusterOutcome::Pruned { tasks, frameworks }
    }

    /// Records `update` (already checked: `next` is the legal state it leads to) on the task
    /// at `key`, dropping the oldest acknowledged update when the task holds
    /// [`MAX_UPDATES_PER_TASK`]; keeps the indexes. Returns the task's resources when the
    /// update ended it.
    fn record(&mut self, key: &TaskKey, next: TaskState, update: TaskStatus) -> Option<Resources> {
        let t = self.tasks.get_mut(key)?;
        if t.updates.len() >= MAX_UPDATES_PER_TASK {
            // The oldest acknowledged update goes; with none, an update the master made
            // itself (a flapping agent's UNREACHABLE / RUNNING) gives way to the newer one:
            // only the latest of those matters, and the agents' own updates are never dropped
            // (an agent's update is refused at the cap instead, see StatusUpdate).
            let drop = t.updates.iter().position(|u| u.acknowledged).or_else(|| {
                if update.source == StatusSource::Master {
                    t.updates
                        .iter()
                        .rposition(|u| u.update.source == StatusSource::Master)
                } else {
                    None
                }
            });
            if let Some(i) = drop {
                t.updates.remove(i);
            }
        }
        let ended = !t.state.is_terminal() && next.is_terminal();
        t.state = next;
        t.updates.push(StatusRecord {
            update,
            acknowledged: false,
        });
        if !ended {
            return None;
        }
        let agent = t.agent.clone();
        let resources = t.spec.resources.clone();
        self.release(&agent, &resources);
        self.unindex_live(&agent, key);
        // Completed at once if its framework will never acknowledge.
        self.index_completed(key);
        Some(resources)
    }

    fn index_live(&mut self, agent: &AgentId, key: TaskKey) {
        self.live.entry(agent.clone()).or_default().insert(key);
    }

    fn unindex_live(&mut self, agent: &AgentId, key: &TaskKey) {
        if let Some(keys) = self.live.get_mut(agent) {
            keys.remove(key);
            if keys.is_empty() {
                self.live.remove(agent);
            }
        }
    }

    /// The ids of the offers outstanding on `agent` (a scan: agents change state rarely).
    fn offers_on(&self, agent: &AgentId) -> Vec<OfferId> {
        self.offers
            .values()
            .filter(|o| &o.agent == agent)
            .map(|o| o.id.clone())
            .collect()
    }

    fn remove_offers(&mut self, ids: &[OfferId]) -> Vec<OfferRecord> {
        let mut removed = Vec::new();
        for id in ids {
            if let Some(o) = self.offers.remove(id) {
                self.release(&o.agent, &o.resources);
                removed.push(o);
            }
        }
        removed
    }

    /// Creates each offer that is new, for a known framework and an active agent, and fits
    /// what the agent has left; refuses the others one by one (one bad offer does not hold up
    /// the rest of an allocation cycle).
    fn create_offers(&mut self, offers: &[OfferRecord]) -> Result<ClusterOutcome, ClusterError> {
        let mut refused = Vec::new();
        for o in offers {
            if let Err(e) = self.create_offer(o) {
                refused.push((o.id.clone(), e));
            }
        }
        Ok(ClusterOutcome::OffersCreated { refused })
    }

    fn create_offer(&mut self, o: &OfferRecord) -> Result<(), ClusterError> {
        if self.offers.contains_key(&o.id) {
            return Err(ClusterError::DuplicateOffer(o.id.clone()));
        }
        match self.frameworks.get(&o.framework) {
            None => return Err(ClusterError::UnknownFramework(o.framework.clone())),
            Some(f) if f.torn_down => {
                return Err(ClusterError::FrameworkTornDown(o.framework.clone()))
            }
            Some(_) => {}
        }
        let agent = self
            .agents
            .get(&o.agent)
            .ok_or_else(|| ClusterError::UnknownAgent(o.agent.clone()))?;
        if agent.state != AgentState::Active {
            return Err(ClusterError::AgentNotActive(o.agent.clone()));
        }
        agent
            .total
            .checked_sub(&self.committed_on(&o.agent))
            .and_then(|free| free.checked_sub(&o.resources))
            .map_err(|e| ClusterError::Overcommit {
                agent: o.agent.clone(),
                resources: o.resources.to_string(),
                reason: e.to_string(),
            })?;
        self.commit(&o.agent, &o.resources)?;
        self.offers.insert(o.id.clone(), o.clone());
        Ok(())
    }

    fn accept(
        &mut self,
        framework: &FrameworkId,
        offer_ids: &[OfferId],
        tasks: &[TaskSpec],
    ) -> Result<ClusterOutcome, ClusterError> {
        if offer_ids.is_empty() || offer_ids.len() > MAX_OFFERS_PER_ACCEPT {
            return Err(ClusterError::OfferCount);
        }
        if tasks.len() > MAX_TASKS_PER_ACCEPT {
            return Err(ClusterError::TaskCount);
        }
        match self.frameworks.get(framework) {
            None => return Err(ClusterError::UnknownFramework(framework.clone())),
            Some(f) if f.torn_down => {
                return Err(ClusterError::FrameworkTornDown(framework.clone()))
            }
            Some(_) => {}
        }
        let mut agent: Option<&AgentId> = None;
        let mut offered = Resources::empty();
        for (i, id) in offer_ids.iter().enumerate() {
            if offer_ids[..i].contains(id) {
                return Err(ClusterError::OfferNotOutstanding(id.clone()));
            }
            let o = self
                .offers
                .get(id)
                .ok_or_else(|| ClusterError::OfferNotOutstanding(id.clone()))?;
            if &o.framework != framework {
                return Err(ClusterError::OfferOfAnotherFramework { offer: id.clone() });
            }
            if agent.is_some_and(|a| a != &o.agent) {
                return Err(ClusterError::OffersOnSeveralAgents);
            }
            agent = Some(&o.agent);
            offered = offered
                .checked_add(&o.resources)
                .map_err(|_| ClusterError::Overcommit {
                    agent: o.agent.clone(),
                    resources: o.resources.to_string(),
                    reason: "the offers' sum overflows".into(),
                })?;
        }
        let agent = agent.cloned().ok_or(ClusterError::OfferCount)?;
        if self.agents.get(&agent).map(|a| a.state) != Some(AgentState::Active) {
            return Err(ClusterError::AgentNotActive(agent));
        }
        let mut need = Resources::empty();
        for (i, t) in tasks.iter().enumerate() {
            if tasks[..i].iter().any(|o| o.id == t.id)
                || self.tasks.contains_key(&(framework.clone(), t.id.clone()))
            {
                return Err(ClusterError::DuplicateTask(t.id.clone()));
            }
            need = need
                .checked_add(&t.resources)
                .map_err(|e| ClusterError::DoesNotFit {
                    need: format!("more than {need} ({e})"),
                    offered: offered.to_string(),
                })?;
        }
        let unused = offered
            .checked_sub(&need)
            .map_err(|_| ClusterError::DoesNotFit {
                need: need.to_string(),
                offered: offered.to_string(),
            })?;
        for id in offer_ids {
            self.offers.remove(id);
        }
        // The offers' resources stay committed on the agent, now as tasks, except the unused.
        self.release(&agent, &unused);
        for t in tasks {
            let key = (framework.clone(), t.id.clone());
            self.tasks.insert(
                key.clone(),
                TaskRecord {
                    spec: t.clone(),
                    framework: framework.clone(),
                    agent: agent.clone(),
                    state: TaskState::Staging,
                    updates: Vec::new(),
                },
            );
            self.index_live(&agent, key);
        }
        Ok(ClusterOutcome::Accepted { agent, unused })
    }
}

#[cfg(test)]
mod agents_tests;
#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod tests;
