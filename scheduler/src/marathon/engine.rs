//! The scheduler's core: what it does about apps, instances, offers, status updates and
//! deployments. Pure: every input (an offer, an update, a change of an app, a tick of the
//! clock) comes with the time, and the answer is a list of [`Effect`]s that the service
//! carries out (store writes, driver calls, events). One task owns the engine.
//!
//! The rules it keeps:
//! - **Converge**: each app has `instances` instances wanted (goal Running); missing ones are
//!   scheduled, surplus ones stopped in Marathon's order (not yet running first, then by the
//!   app's `killSelection`). An instance on an old configuration is replaced within the
//!   app's `upgradeStrategy`: never fewer than `ceil(n × minimumHealthCapacity)` ready, never
//!   more than `floor(n × (1 + maximumOverCapacity))` alive (with both at their limits one old
//!   instance is stopped first, as Marathon does, so a restart can proceed at all).
//! - **Launch**: an offer takes as many scheduled instances as fit ([`super::placement`]);
//!   each is recorded in the store, naming its task, before the ACCEPT ([`Effect::Launch`]).
//!   An instance is relaunched (next incarnation) only once its task is known to have ended,
//!   with the app's backoff after a failure.
//! - **Offers**: declined with a long filter when nothing waits; the framework SUPPRESSes
//!   when no instance may launch now and REVIVEs when one may.
//! - **Unreachable agents**: a task reported TASK_UNREACHABLE is replaced after the app's
//!   `inactiveAfterSeconds` and forgotten after `expungeAfterSeconds`; if it comes back while
//!   still known it counts again and the surplus is stopped; if it comes back forgotten it is
//!   killed.
//! - **Unknown tasks** (a task of no instance, or an older incarnation) are killed.
//! - **Takeover**: on (re)subscription every task the records name is reconciled explicitly,
//!   then every task of the framework implicitly; and every [`IMPLICIT_RECONCILE_MS`] again
//!   implicitly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use drover_proto::v1::{CommandInfo, TaskInfo, TaskState, TaskStatus};
use serde_json::json;

use super::app::{AppDefinition, HealthProtocol, KillSelection, UnreachableStrategy};
use super::deployment::{Action, Deployment, DeploymentId};
use super::events::Event;
use super::instance::{Condition, Goal, Instance, InstanceId, Placed};
use super::path::PathId;
use super::placement::{place, Agent};
use super::queue::{LaunchQueue, Waiting};
use super::state::AppRecord;
use super::time::Timestamp;
use super::view::{
    AppView, DeploymentRef, HealthCheckResult, IpAddress, TaskCounts, TaskFailure, TaskView,
    VersionInfo,
};
use crate::driver::{AgentId, Offer, OfferId, TaskId, MAX_IDS_PER_CALL};

/// Filter on offers declined while nothing waits, seconds (Marathon's
/// `decline_offer_duration`); a REVIVE clears it when work arrives.
pub const IDLE_REFUSE_SECONDS: f64 = 120.0;
/// Filter on offers declined while something waits but does not fit, seconds.
pub const BUSY_REFUSE_SECONDS: f64 = 5.0;
/// A task chosen for launch with no update after this long is reconciled.
pub const PROVISIONED_RECONCILE_MS: u64 = 30_000;
/// Every task of the framework is reconciled this often (implicitly), so a task the
/// scheduler does not know (left by a lost kill, say) is found and killed.
pub const IMPLICIT_RECONCILE_MS: u64 = 60_000;
/// A kill with no terminal update after this long is sent again.
pub const KILL_RETRY_MS: u64 = 30_000;

/// What the service must do. Within one answer, effects run in order where they depend on
/// each other (a record before the launch it names; see each variant).
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Record each instance, then ACCEPT the offer launching their tasks. If a record cannot
    /// be written, decline the offer instead and report [`Engine::launch_refused`].
    Launch {
        offer_id: OfferId,
        agent_id: AgentId,
        launches: Vec<(Instance, TaskInfo)>,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        refuse_seconds: f64,
    },
    /// Record the instance (its goal now Stopped), then kill its task.
    Kill {
        instance: Instance,
        task_id: TaskId,
        grace: Option<Duration>,
    },
    /// Kill a task no instance owns.
    KillTask {
        task_id: TaskId,
    },
    /// Record the instance.
    Persist(Instance),
    /// Delete the instance's record.
    Forget(InstanceId),
    Acknowledge(TaskStatus),
    /// Reconcile these tasks; an empty list reconciles every task of the framework.
    Reconcile(Vec<(TaskId, Option<AgentId>)>),
    Suppress,
    Revive,
    /// Delete the deployment's record: it finished or was replaced.
    ForgetDeployment(DeploymentId),
    Event(Event),
}

/// A status update as the engine applies it to the instance it names.
#[derive(Clone, Copy)]
struct Report<'a> {
    status: &'a TaskStatus,
    condition: Condition,
    /// When it happened (the update's time, else now), ms since the epoch.
    at_ms: u64,
    now_ms: u64,
}

/// One health check result for an instance, from the health checker.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthReport {
    pub instance: InstanceId,
    /// Which of the app's checks.
    pub check: usize,
    pub healthy: bool,
    pub cause: Option<String>,
}

/// The scheduler's state and rules.
#[derive(Default)]
pub struct Engine {
    apps: BTreeMap<PathId, AppRecord>,
    /// Every known instance, by app (an app deleted keeps its instances here until they end).
    instances: BTreeMap<PathId, BTreeMap<InstanceId, Instance>>,
    app_of: HashMap<InstanceId, PathId>,
    /// At most one deployment per app.
    deployments: BTreeMap<PathId, Deployment>,
    queue: LaunchQueue,
    health: HashMap<InstanceId, Vec<HealthCheckResult>>,
    last_failure: BTreeMap<PathId, TaskFailure>,
    dirty: BTreeSet<PathId>,
    /// Whether offers were last asked for (REVIVE) or not (SUPPRESS); `None` after a
    /// subscription, so the next answer says which.
    offers_wanted: Option<bool>,
    kills_sent: HashMap<TaskId, u64>,
    reconciles_sent: HashMap<TaskId, u64>,
    /// When every task was last reconciled implicitly.
    implicit_reconciled_ms: u64,
    /// Where the next offer starts among the waiting apps (so one app does not take every
    /// offer first).
    rotation: usize,
}

impl Engine {
    /// An engine holding what the store holds.
    pub fn load(
        apps: Vec<AppRecord>,
        instances: Vec<Instance>,
        deployments: Vec<Deployment>,
    ) -> Engine {
        let mut e = Engine::default();
        for r in apps {
            e.dirty.insert(r.app.id.clone());
            e.apps.insert(r.app.id.clone(), r);
        }
        for i in instances {
            e.dirty.insert(i.app_id.clone());
            e.insert(i);
        }
        for d in deployments {
            e.deployments.insert(d.app_id.clone(), d);
        }
        e
    }

    fn insert(&mut self, i: Instance) {
        self.app_of.insert(i.id.clone(), i.app_id.clone());
        self.instances
            .entry(i.app_id.clone())
            .or_default()
            .insert(i.id.clone(), i);
    }

    fn remove(&mut self, app: &PathId, id: &InstanceId) -> Option<Instance> {
        self.app_of.remove(id);
        self.health.remove(id);
        let map = self.instances.get_mut(app)?;
        let gone = map.remove(id);
        if map.is_empty() {
            self.instances.remove(app);
        }
        gone
    }

    fn instance_mut(&mut self, id: &InstanceId) -> Option<&mut Instance> {
        let app = self.app_of.get(id)?;
        self.instances.get_mut(app)?.get_mut(id)
    }

    // ---- inputs -----------------------------------------------------------------------

    /// The driver subscribed (first time or again): reconcile every task the records name,
    /// then every task of the framework, and say again whether offers are wanted.
    pub fn subscribed(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let tasks: Vec<(TaskId, Option<AgentId>)> = self
            .instances
            .values()
            .flat_map(|m| m.values())
            .filter(|i| i.condition.may_run())
            .filter_map(|i| Some((i.task_id()?, i.placed.as_ref().map(Placed::agent))))
            .collect();
        for chunk in tasks.chunks(MAX_IDS_PER_CALL) {
            for (t, _) in chunk {
                self.reconciles_sent.insert(t.clone(), now_ms);
            }
            effects.push(Effect::Reconcile(chunk.to_vec()));
        }
        effects.push(Effect::Reconcile(Vec::new()));
        self.implicit_reconciled_ms = now_ms;
        self.offers_wanted = None;
        self.dirty.extend(self.apps.keys().cloned());
        self.converge(now_ms, &mut effects);
        effects
    }

    /// A status update (or an answer to RECONCILE).
    pub fn update(&mut self, status: &TaskStatus, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !status.uuid.is_empty() {
            effects.push(Effect::Acknowledge(status.clone()));
        }
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::TaskUnknown);
        let at = if status.timestamp_ms > 0 {
            status.timestamp_ms
        } else {
            now_ms
        };
        let task = TaskId::new(status.task_id.clone());
        self.reconciles_sent.remove(&task);
        let owner = InstanceId::of_task(&status.task_id).and_then(|(id, n)| {
            let i = self.instance_mut(&id)?;
            (i.incarnation == n && i.condition != Condition::Scheduled).then_some(id)
        });
        let Some(id) = owner else {
            if !crate::driver::is_terminal(state) && state != TaskState::TaskUnknown {
                effects.push(Effect::KillTask { task_id: task });
            }
            return effects;
        };
        let report = Report {
            status,
            condition: Condition::of_state(state),
            at_ms: at,
            now_ms,
        };
        self.apply_condition(&id, report, &mut effects);
        // What the executor's COMMAND check found (on a RUNNING update, or a reconciliation
        // answer after a takeover).
        if let (Some(healthy), TaskState::TaskRunning) = (status.healthy, state) {
            if let Some(check) = self.command_check_of(&id) {
                let cause = (!healthy).then(|| status.message.clone());
                self.apply_health(
                    HealthReport {
                        instance: id,
                        check,
                        healthy,
                        cause,
                    },
                    now_ms,
                    &mut effects,
                );
            }
        }
        self.converge(now_ms, &mut effects);
        effects
    }

    /// The position of the COMMAND check among the checks of `id`'s app, if it has one.
    fn command_check_of(&self, id: &InstanceId) -> Option<usize> {
        let app = self.app_of.get(id)?;
        self.apps
            .get(app)?
            .app
            .health_checks
            .iter()
            .position(|h| h.protocol == HealthProtocol::Command)
    }

    fn apply_condition(&mut self, id: &InstanceId, report: Report<'_>, effects: &mut Vec<Effect>) {
        let Report {
            status,
            condition,
            at_ms: at,
            now_ms,
        } = report;
        let Some(i) = self.instance_mut(id) else {
            return;
        };
        let before = i.condition;
        let same = before == condition
            || (before == Condition::UnreachableInactive && condition == Condition::Unreachable);
        if same {
            return;
        }
        let app_id = i.app_id.clone();
        self.dirty.insert(app_id.clone());
        if condition.is_terminal() {
            self.task_ended(id, report, effects);
            return;
        }
        let Some(i) = self.instance_mut(id) else {
            return;
        };
        i.condition = condition;
        let mut persist = false;
        match condition {
            Condition::Unreachable => i.unreachable_since_ms = Some(at),
            Condition::Running => {
                if i.started_at.is_none() || i.unreachable_since_ms.is_some() {
                    persist = true;
                }
                i.started_at.get_or_insert(Timestamp(at));
                i.unreachable_since_ms = None;
            }
            _ => {}
        }
        let snapshot = i.clone();
        if persist {
            effects.push(Effect::Persist(snapshot.clone()));
        }
        self.changed_events(&snapshot, status, now_ms, effects);
    }

    /// The instance's task ended: the instance is relaunched if still wanted, else forgotten.
    fn task_ended(&mut self, id: &InstanceId, report: Report<'_>, effects: &mut Vec<Effect>) {
        let Report {
            status,
            condition,
            at_ms: at,
            now_ms,
        } = report;
        let Some(i) = self.instance_mut(id) else {
            return;
        };
        let launched_before =
            i.condition != Condition::Provisioned || condition != Condition::Unknown;
        i.condition = condition;
        let mut ended = i.clone();
        ended.condition = condition;
        let app_id = i.app_id.clone();
        self.changed_events(&ended, status, now_ms, effects);
        if matches!(
            condition,
            Condition::Failed
                | Condition::Error
                | Condition::Lost
                | Condition::Dropped
                | Condition::Gone
        ) {
            self.last_failure.insert(
                app_id.clone(),
                TaskFailure {
                    app_id: app_id.to_string(),
                    task_id: status.task_id.clone(),
                    host: ended.host().to_string(),
                    slave_id: status.agent_id.clone(),
                    state: condition.mesos_state().to_string(),
                    message: status.message.clone(),
                    timestamp: Timestamp(at),
                    version: ended.version,
                },
            );
        }
        if let Some(t) = ended.task_id() {
            self.kills_sent.remove(&t);
        }
        let wanted = ended.goal == Goal::Running && self.apps.contains_key(&app_id);
        if !wanted {
            self.remove(&app_id, id);
            effects.push(Effect::Forget(id.clone()));
            return;
        }
        // Still wanted: relaunched (next incarnation) after the app's backoff, unless the
        // task never ran (a launch the master never saw) or was killed on request.
        let failed = launched_before && condition != Condition::Killed;
        if failed {
            let ran_ms = ended.started_at.map(|t| at.saturating_sub(t.0));
            if let Some(r) = self.apps.get(&app_id) {
                self.queue.launch_failed(&r.app, ran_ms, now_ms);
            }
        }
        self.health.remove(id);
        if let Some(i) = self.instance_mut(id) {
            i.condition = Condition::Scheduled;
            i.placed = None;
            i.staged_at = None;
            i.started_at = None;
            i.unreachable_since_ms = None;
        }
    }

    fn changed_events(
        &self,
        i: &Instance,
        status: &TaskStatus,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        let now = Timestamp(now_ms);
        let host = i.host().to_string();
        let ports = i.ports().to_vec();
        let ip = ip_addresses(&host);
        effects.push(Effect::Event(Event::new(
            "status_update_event",
            now,
            json!({
                "slaveId": status.agent_id,
                "taskId": status.task_id,
                "taskStatus": i.condition.mesos_state(),
                "message": status.message,
                "appId": i.app_id.to_string(),
                "host": host,
                "ipAddresses": ip,
                "ports": ports,
                "version": i.version,
            }),
        )));
        effects.push(Effect::Event(Event::new(
            "instance_changed_event",
            now,
            json!({
                "instanceId": i.id.as_str(),
                "condition": i.condition.name(),
                "runSpecId": i.app_id.to_string(),
                "agentId": status.agent_id,
                "slaveId": status.agent_id,
                "host": host,
                "runSpecVersion": i.version,
            }),
        )));
    }

    /// Offers from the master: as many scheduled instances as fit are launched, the rest
    /// declined.
    pub fn offers(&mut self, offers: &[Offer], now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut declined = Vec::new();
        let waiting = self.launchable(now_ms);
        if !waiting.is_empty() {
            self.rotation = self.rotation.wrapping_add(1);
        }
        for offer in offers {
            let launches = self.fill(offer, &waiting, now_ms);
            if launches.is_empty() {
                declined.push(offer.id.clone());
            } else {
                effects.push(Effect::Launch {
                    offer_id: offer.id.clone(),
                    agent_id: offer.agent_id.clone(),
                    launches,
                });
            }
        }
        if !declined.is_empty() {
            effects.push(Effect::Decline {
                offer_ids: declined,
                refuse_seconds: if waiting.is_empty() {
                    IDLE_REFUSE_SECONDS
                } else {
                    BUSY_REFUSE_SECONDS
                },
            });
        }
        self.converge(now_ms, &mut effects);
        effects
    }

    /// When the next held-back app may launch (after `now_ms`), if one waits: the service
    /// ticks the engine then, so a relaunch does not wait for the next regular tick.
    pub fn next_wake_ms(&self, now_ms: u64) -> Option<u64> {
        self.instances
            .iter()
            .filter(|(app, m)| {
                self.apps.contains_key(*app)
                    && m.values()
                        .any(|i| i.goal == Goal::Running && i.condition == Condition::Scheduled)
            })
            .map(|(app, _)| self.queue.delayed_until(app))
            .filter(|t| *t > now_ms)
            .min()
    }

    /// Apps with scheduled instances whose backoff is over, rotated.
    fn launchable(&self, now_ms: u64) -> Vec<PathId> {
        let mut apps: Vec<PathId> = self
            .instances
            .iter()
            .filter(|(app, _)| self.apps.contains_key(*app) && self.queue.ready(app, now_ms))
            .filter(|(_, m)| {
                m.values()
                    .any(|i| i.goal == Goal::Running && i.condition == Condition::Scheduled)
            })
            .map(|(app, _)| app.clone())
            .collect();
        if !apps.is_empty() {
            let n = self.rotation % apps.len();
            apps.rotate_left(n);
        }
        apps
    }

    /// The instances `offer` takes, each now Provisioned with its task.
    fn fill(
        &mut self,
        offer: &Offer,
        waiting: &[PathId],
        now_ms: u64,
    ) -> Vec<(Instance, TaskInfo)> {
        let mut left = offer.resources.clone();
        let mut out = Vec::new();
        let agent = Agent {
            hostname: &offer.hostname,
            attributes: &offer.attributes,
        };
        for app_id in waiting {
            let Some(record) = self.apps.get(app_id) else {
                continue;
            };
            let Some(mine) = self.instances.get(app_id) else {
                continue;
            };
            let scheduled: Vec<InstanceId> = mine
                .values()
                .filter(|i| i.goal == Goal::Running && i.condition == Condition::Scheduled)
                .map(|i| i.id.clone())
                .collect();
            if scheduled.is_empty() {
                continue;
            }
            let placed: Vec<Agent<'_>> = mine
                .values()
                .filter(|i| i.condition.may_run())
                .filter_map(|i| i.placed.as_ref())
                .map(|p| Agent {
                    hostname: &p.hostname,
                    attributes: &p.attributes,
                })
                .collect();
            let Ok(launches) = place(&record.app, agent, &left, &placed, scheduled.len()) else {
                continue;
            };
            let app = record.app.clone();
            for (launch, id) in launches.into_iter().zip(scheduled) {
                left = left.saturating_sub(&launch.resources);
                let Some(i) = self.instance_mut(&id) else {
                    continue;
                };
                i.incarnation += 1;
                i.condition = Condition::Provisioned;
                i.placed = Some(Placed {
                    agent_id: offer.agent_id.as_str().to_string(),
                    hostname: offer.hostname.clone(),
                    attributes: offer.attributes.clone(),
                    ports: launch.ports.clone(),
                });
                i.staged_at = Some(Timestamp(now_ms));
                i.started_at = None;
                let snapshot = i.clone();
                let task = task_info(&app, &snapshot, &launch.resources);
                out.push((snapshot, task));
            }
        }
        out
    }

    /// The ACCEPT of these instances' tasks was refused, or their records could not be
    /// written: they were not launched and wait for another offer.
    pub fn launch_refused(&mut self, instances: &[(InstanceId, u32)], now_ms: u64) -> Vec<Effect> {
        for (id, n) in instances {
            if let Some(i) = self.instance_mut(id) {
                if i.incarnation == *n && i.condition == Condition::Provisioned {
                    i.condition = Condition::Scheduled;
                    i.placed = None;
                    i.staged_at = None;
                    let app = i.app_id.clone();
                    self.dirty.insert(app);
                }
            }
        }
        let mut effects = Vec::new();
        self.converge(now_ms, &mut effects);
        effects
    }

    /// Time passes: unreachable tasks are replaced or forgotten, lost kills and launches
    /// are asked after, held-back apps may launch again.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut expunge = Vec::new();
        let mut reconcile = Vec::new();
        let mut kill_again = Vec::new();
        for (app_id, mine) in &mut self.instances {
            let strategy = self.apps.get(app_id).map(|r| r.app.unreachable_strategy);
            for i in mine.values_mut() {
                if let (
                    Some(since),
                    Some(UnreachableStrategy::Enabled {
                        inactive_after_seconds,
                        expunge_after_seconds,
                    }),
                ) = (i.unreachable_since_ms, strategy)
                {
                    let away = now_ms.saturating_sub(since);
                    if away >= expunge_after_seconds.saturating_mul(1000)
                        && matches!(
                            i.condition,
                            Condition::Unreachable | Condition::UnreachableInactive
                        )
                    {
                        expunge.push((app_id.clone(), i.id.clone()));
                        continue;
                    }
                    if away >= inactive_after_seconds.saturating_mul(1000)
                        && i.condition == Condition::Unreachable
                    {
                        i.condition = Condition::UnreachableInactive;
                        self.dirty.insert(app_id.clone());
                    }
                }
                let Some(task) = i.task_id() else { continue };
                if i.condition == Condition::Provisioned
                    && i.staged_at
                        .is_some_and(|t| t.0 + PROVISIONED_RECONCILE_MS <= now_ms)
                    && self
                        .reconciles_sent
                        .get(&task)
                        .is_none_or(|t| t + PROVISIONED_RECONCILE_MS <= now_ms)
                {
                    reconcile.push((task.clone(), i.placed.as_ref().map(Placed::agent)));
                }
                if i.goal == Goal::Stopped
                    && i.condition.may_run()
                    && self
                        .kills_sent
                        .get(&task)
                        .is_none_or(|t| t + KILL_RETRY_MS <= now_ms)
                {
                    kill_again.push(i.clone());
                }
            }
        }
        for (app, id) in expunge {
            // Forgotten: if its task comes back it is unknown, and killed.
            self.remove(&app, &id);
            self.dirty.insert(app);
            effects.push(Effect::Forget(id));
        }
        for chunk in reconcile.chunks(MAX_IDS_PER_CALL) {
            for (t, _) in chunk {
                self.reconciles_sent.insert(t.clone(), now_ms);
            }
            effects.push(Effect::Reconcile(chunk.to_vec()));
        }
        for i in kill_again {
            self.kill_effect(i, now_ms, &mut effects);
        }
        if now_ms.saturating_sub(self.implicit_reconciled_ms) >= IMPLICIT_RECONCILE_MS {
            self.implicit_reconciled_ms = now_ms;
            effects.push(Effect::Reconcile(Vec::new()));
        }
        self.dirty.extend(self.apps.keys().cloned());
        self.converge(now_ms, &mut effects);
        effects
    }

    /// A health check result for an instance (from the scheduler's own HTTP and TCP checks).
    pub fn health(&mut self, report: HealthReport, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.apply_health(report, now_ms, &mut effects);
        self.converge(now_ms, &mut effects);
        effects
    }

    /// Records a check's result: events when the health changes or a check fails, and for a
    /// check the scheduler runs, the kill of an instance that failed it too often (the
    /// executor kills for its COMMAND check itself).
    fn apply_health(&mut self, report: HealthReport, now_ms: u64, effects: &mut Vec<Effect>) {
        let Some(app_id) = self.app_of.get(&report.instance).cloned() else {
            return;
        };
        let Some(record) = self.apps.get(&app_id) else {
            return;
        };
        let Some(check) = record.app.health_checks.get(report.check).cloned() else {
            return;
        };
        let checks = record.app.health_checks.len();
        let now = Timestamp(now_ms);
        let results = self
            .health
            .entry(report.instance.clone())
            .or_insert_with(|| {
                (0..checks)
                    .map(|_| HealthCheckResult {
                        alive: false,
                        consecutive_failures: 0,
                        first_success: None,
                        last_failure: None,
                        last_success: None,
                        last_failure_cause: None,
                        instance_id: report.instance.as_str().to_string(),
                    })
                    .collect()
            });
        let Some(r) = results.get_mut(report.check) else {
            return;
        };
        let was_alive = r.alive;
        if report.healthy {
            r.alive = true;
            r.consecutive_failures = 0;
            r.first_success.get_or_insert(now);
            r.last_success = Some(now);
        } else {
            r.alive = false;
            r.consecutive_failures += 1;
            r.last_failure = Some(now);
            r.last_failure_cause = report.cause.clone();
        }
        let failures = r.consecutive_failures;
        self.dirty.insert(app_id.clone());
        if was_alive != report.healthy {
            effects.push(Effect::Event(Event::new(
                "health_status_changed_event",
                now,
                json!({"appId": app_id.to_string(), "instanceId": report.instance.as_str(),
                       "version": record.config_version, "alive": report.healthy}),
            )));
        }
        if !report.healthy {
            effects.push(Effect::Event(Event::new(
                "failed_health_check_event",
                now,
                json!({"appId": app_id.to_string(), "instanceId": report.instance.as_str(),
                       "healthCheck": check}),
            )));
        }
        let give_up = check.protocol != HealthProtocol::Command
            && check.max_consecutive_failures > 0
            && failures >= check.max_consecutive_failures;
        if give_up {
            // Killed and replaced: the instance keeps its goal, so it is relaunched.
            if let Some(i) = self.instance_mut(&report.instance) {
                if i.condition.may_run() {
                    let i = i.clone();
                    let task = i.task_id();
                    effects.push(Effect::Event(Event::new(
                        "unhealthy_instance_kill_event",
                        now,
                        json!({"appId": app_id.to_string(), "instanceId": i.id.as_str(),
                               "taskId": task.as_ref().map(TaskId::as_str),
                               "version": i.version, "reason": "unhealthy",
                               "host": i.host(),
                               "slaveId": i.placed.as_ref().map(|p| p.agent_id.clone())}),
                    )));
                    if let Some(task_id) = task {
                        self.kills_sent.insert(task_id.clone(), now_ms);
                        effects.push(Effect::KillTask { task_id });
                    }
                }
            }
            self.health.remove(&report.instance);
        }
    }

    // ---- changes from the API ----------------------------------------------------------

    /// The app was created or changed (its record is in the store, and `deployment`'s).
    pub fn app_changed(
        &mut self,
        record: AppRecord,
        deployment: Deployment,
        now_ms: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let id = record.app.id.clone();
        if self
            .apps
            .get(&id)
            .is_none_or(|old| old.config_version != record.config_version)
        {
            self.queue.reset_delay(&id);
        }
        self.apps.insert(id.clone(), record);
        self.start_deployment(deployment, now_ms, &mut effects);
        self.dirty.insert(id);
        self.converge(now_ms, &mut effects);
        effects
    }

    /// The app was deleted (its record is gone from the store): its instances are stopped.
    pub fn app_removed(&mut self, id: &PathId, deployment: Deployment, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.apps.remove(id);
        self.queue.forget(id);
        self.last_failure.remove(id);
        self.start_deployment(deployment, now_ms, &mut effects);
        effects.push(Effect::Event(Event::new(
            "app_terminated_event",
            Timestamp(now_ms),
            json!({"appId": id.to_string()}),
        )));
        self.dirty.insert(id.clone());
        self.converge(now_ms, &mut effects);
        effects
    }

    fn start_deployment(&mut self, d: Deployment, now_ms: u64, effects: &mut Vec<Effect>) {
        let now = Timestamp(now_ms);
        if let Some(old) = self.deployments.remove(&d.app_id) {
            effects.push(Effect::Event(Event::new(
                "deployment_failed",
                now,
                json!({"id": old.id.0, "plan": old.plan_json()}),
            )));
            effects.push(Effect::ForgetDeployment(old.id));
        }
        effects.push(Effect::Event(Event::new(
            "deployment_info",
            now,
            json!({"plan": d.plan_json(), "currentStep": d.current_step_json()}),
        )));
        self.deployments.insert(d.app_id.clone(), d);
    }

    /// A deployment was cancelled (`DELETE /v2/deployments/{id}?force=true`, or before its
    /// rollback starts): the app stays as it is now.
    pub fn cancel_deployment(&mut self, id: &DeploymentId) -> Option<Deployment> {
        let app = self
            .deployments
            .iter()
            .find(|(_, d)| &d.id == id)
            .map(|(a, _)| a.clone())?;
        self.deployments.remove(&app)
    }

    /// Kills tasks on request (`DELETE /v2/apps/{id}/tasks…`, `POST /v2/tasks/delete`).
    /// With `scale` their instances are stopped for good (the caller lowered the apps'
    /// instance counts first); otherwise they are relaunched. Returns the tasks killed.
    pub fn kill_tasks(
        &mut self,
        tasks: &[TaskId],
        scale: bool,
        now_ms: u64,
    ) -> (Vec<TaskView>, Vec<Effect>) {
        let mut effects = Vec::new();
        let mut killed = Vec::new();
        for t in tasks {
            let Some((id, n)) = InstanceId::of_task(t.as_str()) else {
                continue;
            };
            let Some(i) = self.instance_mut(&id) else {
                continue;
            };
            if i.incarnation != n || !i.condition.may_run() {
                continue;
            }
            if scale {
                i.goal = Goal::Stopped;
            }
            let i = i.clone();
            killed.push(self.task_view(&i));
            self.dirty.insert(i.app_id.clone());
            if scale {
                self.kill_effect(i, now_ms, &mut effects);
            } else {
                self.kills_sent.insert(t.clone(), now_ms);
                effects.push(Effect::KillTask { task_id: t.clone() });
            }
        }
        self.converge(now_ms, &mut effects);
        (killed, effects)
    }

    /// `DELETE /v2/queue/{id}/delay`: whether the app was waiting.
    pub fn reset_delay(&mut self, id: &PathId, now_ms: u64) -> (bool, Vec<Effect>) {
        let waiting = self.scheduled_count(id) > 0;
        self.queue.reset_delay(id);
        self.dirty.insert(id.clone());
        let mut effects = Vec::new();
        self.converge(now_ms, &mut effects);
        (waiting, effects)
    }

    // ---- convergence -------------------------------------------------------------------

    /// Brings every dirty app toward its wanted instances, finishes deployments that are
    /// done, and says whether offers are wanted.
    fn converge(&mut self, now_ms: u64, effects: &mut Vec<Effect>) {
        let dirty = std::mem::take(&mut self.dirty);
        for app in &dirty {
            self.converge_app(app, now_ms, effects);
            self.check_deployment(app, now_ms, effects);
        }
        let wants = !self.launchable(now_ms).is_empty();
        if self.offers_wanted != Some(wants) {
            self.offers_wanted = Some(wants);
            effects.push(if wants {
                Effect::Revive
            } else {
                Effect::Suppress
            });
        }
    }

    fn converge_app(&mut self, app_id: &PathId, now_ms: u64, effects: &mut Vec<Effect>) {
        let Some(record) = self.apps.get(app_id) else {
            // Deleted: every instance goes.
            let all: Vec<Instance> = self
                .instances
                .get(app_id)
                .map(|m| {
                    m.values()
                        .filter(|i| i.goal == Goal::Running)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for i in all {
                self.stop(i, now_ms, effects);
            }
            return;
        };
        let n = record.app.instances as usize;
        let version = record.config_version;
        let strategy = record.app.upgrade_strategy;
        let selection = record.app.kill_selection;
        let has_checks = runs_checks(&record.app);
        let mine = self.instances.entry(app_id.clone()).or_default();
        // A scheduled instance has no task: it simply takes the new configuration.
        for i in mine.values_mut() {
            if i.goal == Goal::Running && i.condition == Condition::Scheduled {
                i.version = version;
            }
        }
        // The common case (every instance wanted, on the configuration, none extra) without
        // copying any: this runs after every status update of the app.
        let (mut on_version, mut counted_n) = (0usize, 0usize);
        for i in mine.values().filter(|i| i.counts()) {
            counted_n += 1;
            on_version += usize::from(i.version == version);
        }
        if counted_n == n && on_version == n {
            return;
        }
        let counted: Vec<Instance> = mine.values().filter(|i| i.counts()).cloned().collect();
        let alive = mine
            .values()
            .filter(|i| {
                i.condition.may_run()
                    || (i.goal == Goal::Running && i.condition == Condition::Scheduled)
            })
            .count();
        let (new, old): (Vec<Instance>, Vec<Instance>) =
            counted.into_iter().partition(|i| i.version == version);
        let ready = |i: &Instance| self.ready(i, has_checks);
        let mut to_stop: Vec<Instance> = Vec::new();
        let mut create = 0usize;
        if old.is_empty() {
            if new.len() < n {
                create = n - new.len();
            } else if new.len() > n {
                let mut order = new.clone();
                sort_for_stopping(&mut order, selection, &ready);
                to_stop.extend(order.into_iter().take(new.len() - n));
            }
        } else {
            let min_healthy = (n as f64 * strategy.minimum_health_capacity).ceil() as usize;
            let max_alive =
                ((n as f64 * (1.0 + strategy.maximum_over_capacity)).floor() as usize).max(n);
            let ready_new = new.iter().filter(|i| ready(i)).count();
            let (old_ready, old_not_ready): (Vec<Instance>, Vec<Instance>) =
                old.iter().cloned().partition(|i| ready(i));
            to_stop.extend(old_not_ready);
            let may_stop = (old_ready.len() + ready_new).saturating_sub(min_healthy);
            let mut order = old_ready.clone();
            sort_for_stopping(&mut order, selection, &ready);
            to_stop.extend(order.iter().take(may_stop).cloned());
            let surplus_new = new.len().saturating_sub(n);
            if surplus_new > 0 {
                let mut order = new.clone();
                sort_for_stopping(&mut order, selection, &ready);
                to_stop.extend(order.into_iter().take(surplus_new));
            }
            create = n
                .saturating_sub(new.len())
                .min(max_alive.saturating_sub(alive));
            let new_in_flight = new.iter().any(|i| !ready(i));
            let killing = self.instances.get(app_id).is_some_and(|m| {
                m.values()
                    .any(|i| i.goal == Goal::Stopped && i.condition.may_run())
            });
            if to_stop.is_empty() && create == 0 && !new_in_flight && !killing {
                // Both limits reached: one old instance goes first so the restart proceeds.
                to_stop.extend(order.into_iter().take(1));
            }
        }
        for i in to_stop {
            self.stop(i, now_ms, effects);
        }
        for _ in 0..create {
            self.insert(Instance::scheduled(app_id, version));
        }
    }

    fn ready(&self, i: &Instance, has_checks: bool) -> bool {
        i.condition == Condition::Running
            && (!has_checks
                || self
                    .health
                    .get(&i.id)
                    .is_some_and(|r| r.iter().all(|c| c.alive)))
    }

    /// Stops an instance: one with no task is simply forgotten; one whose task may run is
    /// recorded as stopped and its task killed.
    fn stop(&mut self, mut i: Instance, now_ms: u64, effects: &mut Vec<Effect>) {
        if !i.condition.may_run() {
            self.remove(&i.app_id.clone(), &i.id);
            if i.incarnation > 0 {
                effects.push(Effect::Forget(i.id));
            }
            return;
        }
        i.goal = Goal::Stopped;
        if let Some(stored) = self.instance_mut(&i.id) {
            stored.goal = Goal::Stopped;
        }
        self.kill_effect(i, now_ms, effects);
    }

    fn kill_effect(&mut self, i: Instance, now_ms: u64, effects: &mut Vec<Effect>) {
        let Some(task_id) = i.task_id() else {
            return;
        };
        self.kills_sent.insert(task_id.clone(), now_ms);
        let grace = self
            .apps
            .get(&i.app_id)
            .and_then(|r| r.app.task_kill_grace_period_seconds)
            .map(|s| Duration::from_secs(u64::from(s)));
        effects.push(Effect::Kill {
            instance: i,
            task_id,
            grace,
        });
    }

    fn check_deployment(&mut self, app_id: &PathId, now_ms: u64, effects: &mut Vec<Effect>) {
        let Some(d) = self.deployments.get(app_id) else {
            return;
        };
        let action = d.current_action();
        let done = match action {
            Action::StartApplication => true,
            Action::StopApplication => !self.instances.contains_key(app_id),
            Action::ScaleApplication | Action::RestartApplication => self.converged(app_id),
        };
        if !done {
            return;
        }
        let now = Timestamp(now_ms);
        let Some(d) = self.deployments.get_mut(app_id) else {
            return;
        };
        effects.push(Effect::Event(Event::new(
            "deployment_step_success",
            now,
            json!({"plan": d.plan_json(), "currentStep": d.current_step_json()}),
        )));
        if d.on_last_step() {
            let d = self.deployments.remove(app_id).expect("checked above");
            effects.push(Effect::Event(Event::new(
                "deployment_success",
                now,
                json!({"id": d.id.0, "plan": d.plan_json()}),
            )));
            effects.push(Effect::ForgetDeployment(d.id));
        } else {
            d.current_step += 1;
            effects.push(Effect::Event(Event::new(
                "deployment_info",
                now,
                json!({"plan": d.plan_json(), "currentStep": d.current_step_json()}),
            )));
            // The next step may be done already.
            self.check_deployment(app_id, now_ms, effects);
        }
    }

    /// Whether the app runs exactly its instances, all on its configuration and ready, with
    /// nothing being stopped.
    fn converged(&self, app_id: &PathId) -> bool {
        let Some(record) = self.apps.get(app_id) else {
            return false;
        };
        let has_checks = runs_checks(&record.app);
        let mine: Vec<&Instance> = self
            .instances
            .get(app_id)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        let stopping = mine.iter().any(|i| i.goal == Goal::Stopped);
        let counted: Vec<&&Instance> = mine.iter().filter(|i| i.counts()).collect();
        !stopping
            && counted.len() == record.app.instances as usize
            && counted
                .iter()
                .all(|i| i.version == record.config_version && self.ready(i, has_checks))
    }

    // ---- what /v2 shows ------------------------------------------------------------------

    pub fn app(&self, id: &PathId) -> Option<&AppRecord> {
        self.apps.get(id)
    }

    pub fn apps(&self) -> impl Iterator<Item = &AppRecord> {
        self.apps.values()
    }

    pub fn deployment_of(&self, app: &PathId) -> Option<&Deployment> {
        self.deployments.get(app)
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    /// Every instance with a task (scheduled ones have none yet).
    pub fn instances_of(&self, app: &PathId) -> impl Iterator<Item = &Instance> {
        self.instances
            .get(app)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|i| i.condition.may_run())
    }

    pub fn all_instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().flat_map(|m| m.values())
    }

    fn scheduled_count(&self, app: &PathId) -> usize {
        self.instances.get(app).map_or(0, |m| {
            m.values()
                .filter(|i| i.goal == Goal::Running && i.condition == Condition::Scheduled)
                .count()
        })
    }

    /// The app as `/v2/apps` shows it; with its tasks when `with_tasks`.
    pub fn app_view(&self, record: &AppRecord, with_tasks: bool) -> AppView {
        let has_checks = runs_checks(&record.app);
        let mut counts = TaskCounts::default();
        let mut tasks = Vec::new();
        for i in self.instances_of(&record.app.id) {
            match i.condition {
                Condition::Provisioned | Condition::Staging | Condition::Starting => {
                    counts.tasks_staged += 1
                }
                Condition::Running => {
                    counts.tasks_running += 1;
                    if has_checks {
                        if self.ready(i, true) {
                            counts.tasks_healthy += 1;
                        } else if self
                            .health
                            .get(&i.id)
                            .is_some_and(|r| r.iter().any(|c| !c.alive))
                        {
                            counts.tasks_unhealthy += 1;
                        }
                    }
                }
                _ => {}
            }
            if with_tasks {
                tasks.push(self.task_view(i));
            }
        }
        let version = record.app.version.unwrap_or(record.config_version);
        AppView {
            app: record.app.clone(),
            counts,
            deployments: self
                .deployments
                .get(&record.app.id)
                .map(|d| vec![DeploymentRef { id: d.id.0.clone() }])
                .unwrap_or_default(),
            version_info: VersionInfo {
                last_scaling_at: version,
                last_config_change_at: record.config_version,
            },
            tasks: with_tasks.then_some(tasks),
            last_task_failure: if with_tasks {
                self.last_failure.get(&record.app.id).cloned()
            } else {
                None
            },
        }
    }

    pub fn task_view(&self, i: &Instance) -> TaskView {
        let host = i.host().to_string();
        let ports = i.ports().to_vec();
        let service_ports: Vec<u64> = match self.apps.get(&i.app_id) {
            Some(r) => r
                .app
                .port_definitions
                .iter()
                .map(|p| u64::from(p.port))
                .collect(),
            None => vec![0; ports.len()],
        };
        let mut service_ports = service_ports;
        service_ports.resize(service_ports.len().max(ports.len()), 0);
        TaskView {
            id: i.task_id().map(TaskId::into_string).unwrap_or_default(),
            app_id: i.app_id.to_string(),
            host: host.clone(),
            slave_id: i
                .placed
                .as_ref()
                .map(|p| p.agent_id.clone())
                .unwrap_or_default(),
            state: i.condition.mesos_state().to_string(),
            staged_at: i.staged_at,
            started_at: i.started_at,
            version: i.version,
            ports,
            service_ports,
            ip_addresses: ip_addresses(&host),
            health_check_results: self.health.get(&i.id).cloned().unwrap_or_default(),
        }
    }

    /// The apps waiting for instances, as `/v2/queue` shows them.
    pub fn queue(&mut self, now_ms: u64) -> Vec<(Waiting, AppDefinition)> {
        let counts: Vec<(AppDefinition, u32)> = self
            .apps
            .values()
            .map(|r| {
                let live = r.app.instances as usize
                    - self
                        .scheduled_count(&r.app.id)
                        .min(r.app.instances as usize);
                (r.app.clone(), live as u32)
            })
            .collect();
        let waiting = self
            .queue
            .waiting(counts.iter().map(|(a, n)| (a, *n)), now_ms);
        waiting
            .into_iter()
            .filter_map(|w| {
                let app = self.apps.get(&w.id)?.app.clone();
                Some((w, app))
            })
            .collect()
    }
}

/// The addresses `/v2` shows for a task on `host` (an IP when the host name is one).
fn ip_addresses(host: &str) -> Vec<IpAddress> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![IpAddress {
            ip_address: ip.to_string(),
            protocol: if ip.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        }],
        Err(_) => Vec::new(),
    }
}

/// Whether the app's tasks are checked (by the scheduler, HTTP and TCP, or by their executor,
/// COMMAND): then an instance is ready once every check passed.
fn runs_checks(app: &AppDefinition) -> bool {
    !app.health_checks.is_empty()
}

/// Orders instances so the first are the ones to stop: without a task yet, then not yet
/// running, then unreachable, then not ready, then by the app's kill selection.
fn sort_for_stopping(
    v: &mut [Instance],
    selection: KillSelection,
    ready: &impl Fn(&Instance) -> bool,
) {
    let rank = |i: &Instance| match i.condition {
        Condition::Scheduled => 0,
        Condition::Provisioned | Condition::Staging | Condition::Starting => 1,
        Condition::Unreachable | Condition::UnreachableInactive => 2,
        _ if !ready(i) => 3,
        _ => 4,
    };
    v.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then_with(|| {
            let (sa, sb) = (
                a.staged_at.unwrap_or(Timestamp(0)),
                b.staged_at.unwrap_or(Timestamp(0)),
            );
            match selection {
                KillSelection::YoungestFirst => sb.cmp(&sa),
                KillSelection::OldestFirst => sa.cmp(&sb),
            }
        })
    });
}

/// The environment Marathon gives a task, beside the app's own.
fn task_env(app: &AppDefinition, i: &Instance) -> BTreeMap<String, String> {
    let mut env = app.env.clone();
    let ports = i.ports().to_vec();
    let names = app.port_names();
    for (n, p) in ports.iter().enumerate() {
        env.insert(format!("PORT{n}"), p.to_string());
        if let Some(name) = names.get(n).and_then(|d| d.as_ref()) {
            env.insert(
                format!("PORT_{}", name.to_uppercase().replace('-', "_")),
                p.to_string(),
            );
        }
    }
    if let Some(p) = ports.first() {
        env.insert("PORT".into(), p.to_string());
    }
    env.insert(
        "PORTS".into(),
        ports
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    if let Some(p) = &i.placed {
        env.insert("HOST".into(), p.hostname.clone());
    }
    env.insert("MARATHON_APP_ID".into(), app.id.to_string());
    env.insert("MARATHON_APP_VERSION".into(), i.version.to_string());
    if let Some(t) = i.task_id() {
        env.insert("MESOS_TASK_ID".into(), t.into_string());
    }
    env
}

/// Single-quotes a word for `/bin/sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The task that runs instance `i` of `app` on `resources`.
pub fn task_info(
    app: &AppDefinition,
    i: &Instance,
    resources: &drover_resources::Resources,
) -> TaskInfo {
    let (shell, arguments) = match (&app.cmd, &app.args) {
        (Some(cmd), _) => (cmd.clone(), Vec::new()),
        // A container's args go to its image's entrypoint (as Marathon passes them).
        (None, Some(args)) if app.docker_container().is_some() => (String::new(), args.clone()),
        (None, Some(args)) => (
            format!(
                "exec {}",
                args.iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Vec::new(),
        ),
        (None, None) => (String::new(), Vec::new()),
    };
    TaskInfo {
        task_id: i.task_id().map(TaskId::into_string).unwrap_or_default(),
        name: app.id.to_string(),
        resources: resources.to_proto(),
        command: Some(CommandInfo {
            shell,
            environment: task_env(app, i).into_iter().collect(),
            arguments,
            // The agent's default user when the app names none (Marathon's default is the
            // scheduler's own user; Drover's agents choose a safer one).
            user: app.user.clone().unwrap_or_default(),
        }),
        kill_grace_seconds: app.task_kill_grace_period_seconds.map_or(0.0, f64::from),
        health_check: command_check(app),
        container: match (&app.container, app.network()) {
            (Some(c), Some(network)) => c.to_proto(&network, i.ports()),
            _ => None,
        },
        ..Default::default()
    }
}

/// The app's COMMAND health check (at most one: validation), as its executor runs it.
fn command_check(app: &AppDefinition) -> Option<drover_proto::v1::HealthCheck> {
    let h = app
        .health_checks
        .iter()
        .find(|h| h.protocol == HealthProtocol::Command)?;
    Some(drover_proto::v1::HealthCheck {
        delay_seconds: f64::from(h.delay_seconds),
        interval_seconds: f64::from(h.interval_seconds),
        timeout_seconds: f64::from(h.timeout_seconds),
        consecutive_failures: h.max_consecutive_failures,
        grace_period_seconds: f64::from(h.grace_period_seconds),
        command: Some(CommandInfo {
            shell: h
                .command
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or_default(),
            environment: Default::default(),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests;
