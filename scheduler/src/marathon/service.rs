//! The running scheduler: one task that owns the [`Engine`], feeds it the driver's events,
//! the API's calls and the clock, and carries out its effects.
//!
//! Effects go out in batches, in the order the engine produced them, through one writer task
//! ([`Writer`]): a batch's record writes (instances, deployments) are made first, together,
//! and only then its driver calls (ACCEPT, KILL, …), so a task is launched only once its
//! instance's record names it. Batches never overtake each other, so a record is never
//! written after a later delete of it. A launch whose records could not be written is not
//! sent: its offer is declined and the engine told the instances wait again.
//!
//! Changes of apps from the API are written to the store (compare-and-set) by the service
//! task itself before the engine hears of them, so every change the API acknowledged is
//! durable and any scheduler taking over sees it.
//!
//! With a lease ([`super::lease`]), the writer sends nothing once the lease may have passed to
//! another scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::v1::TaskStatus;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::app::{app_from_fields, AppDefinition};
use super::deployment::{Deployment, DeploymentId};
use super::engine::{Effect, Engine, HealthReport};
use super::error::ApiError;
use super::events::Event;
use super::instance::{Condition, InstanceId};
use super::path::PathId;
use super::state::{AppRecord, KvStore, Records};
use super::time::Timestamp;
use crate::driver::{Driver, DriverEvent, EventStream, FrameworkId, TaskId};

/// Calls from the API waiting for the service task.
const CALL_BUFFER: usize = 256;
/// Effect batches waiting for the writer.
const BATCH_BUFFER: usize = 64;
/// Events buffered per event-stream subscriber before it misses some.
pub const EVENT_BUFFER: usize = 4096;
/// Driver events handled before their effects are carried out together.
const MAX_EVENTS_PER_BATCH: usize = 512;
/// How often the engine hears the clock.
const TICK: Duration = Duration::from_secs(1);
/// Service ports handed to port definitions that ask for any (Marathon's default range).
const SERVICE_PORTS: std::ops::RangeInclusive<u32> = 10_000..=20_000;
/// How long the framework id may take to be recorded after a subscription.
const FRAMEWORK_ID_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Key of the framework id in the store.
pub const FRAMEWORK_ID_KEY: &str = "framework/id";

/// An answer of the API: status, body and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    fn deployment(id: &DeploymentId, version: Timestamp, status: u16) -> Answer {
        Answer {
            status,
            body: json!({"deploymentId": id.0, "version": version}),
            headers: vec![("Marathon-Deployment-Id", id.0.clone())],
        }
    }
}

/// What `embed` asks to include with apps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Embed {
    pub tasks: bool,
    pub last_task_failure: bool,
}

/// `GET /v2/apps` filters.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Case-insensitive substring of `cmd`.
    pub cmd: Option<String>,
    /// Case-insensitive substring of the id.
    pub id: Option<String>,
    /// `key` or `key==value` / `key!=value`.
    pub label: Option<String>,
}

/// Tasks to kill: by id (with `app`, they must be its tasks), or (no ids) every task of
/// `app`, on `host` if given.
#[derive(Debug, Clone, Default)]
pub struct KillTasks {
    pub app: Option<PathId>,
    pub ids: Option<Vec<String>>,
    pub host: Option<String>,
    /// The app wants one instance fewer per task killed.
    pub scale: bool,
    /// The instances are forgotten (a new one replaces each), not relaunched.
    pub wipe: bool,
    /// `DELETE /v2/apps/{id}/tasks/{taskId}` answers `{"task": …}`.
    pub single: bool,
}

/// A call from the API.
pub enum Call {
    ListApps(AppFilter, Embed),
    GetApp(PathId),
    CreateApp(Box<AppDefinition>),
    /// PUT/PATCH: `fields` over the current definition (or a new app if there is none).
    UpdateApp {
        id: PathId,
        fields: Map<String, Value>,
        force: bool,
    },
    RestartApp {
        id: PathId,
        force: bool,
    },
    DeleteApp {
        id: PathId,
        force: bool,
    },
    Versions(PathId),
    Version(PathId, Timestamp),
    Tasks {
        app: Option<PathId>,
        states: Vec<String>,
    },
    KillTasks(KillTasks),
    Deployments,
    CancelDeployment {
        id: DeploymentId,
        force: bool,
    },
    Queue,
    ResetDelay(PathId),
    Info,
    /// The running instances with health checks the scheduler runs (for the health checker).
    HealthTargets(oneshot::Sender<Vec<super::health::Target>>),
}

type Reply = oneshot::Sender<Result<Answer, ApiError>>;

/// The API's handle on the service.
#[derive(Clone)]
pub struct Handle {
    calls: mpsc::Sender<(Call, Reply)>,
    events: broadcast::Sender<Arc<Event>>,
    info: Arc<Info>,
}

/// What `/v2/info` and `/v2/leader` say about this scheduler.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub http_address: String,
    pub masters: Vec<String>,
    pub framework_name: String,
    pub failover_timeout_seconds: f64,
    pub role: String,
}

impl Handle {
    /// Asks the service; 503 if it has stopped.
    pub async fn call(&self, call: Call) -> Result<Answer, ApiError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ApiError::new(503, "the scheduler is stopping");
        self.calls.send((call, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The event stream, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn info(&self) -> &Info {
        &self.info
    }
}

/// A record write of a batch.
enum Write {
    Instance(super::instance::Instance),
    ForgetInstance(InstanceId),
    ForgetDeployment(DeploymentId),
}

/// One batch of effects for the writer.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    calls: Vec<Effect>,
}

/// The service task's state.
pub struct Service<S: KvStore> {
    engine: Engine,
    records: Arc<Records<S>>,
    events: broadcast::Sender<Arc<Event>>,
    info: Arc<Info>,
    framework_id: Option<FrameworkId>,
    /// The framework id this service wrote to the store (it writes it once per process, on
    /// the first subscription, whatever the driver already knows).
    framework_id_recorded: Option<FrameworkId>,
    batches: mpsc::Sender<Batch>,
    refused: mpsc::Receiver<Vec<(InstanceId, u32)>>,
    health: mpsc::Receiver<HealthReport>,
}

/// What [`start`] gives back.
pub struct Started {
    pub handle: Handle,
    /// Ends when the service stops (the driver stopped, or every handle was dropped), with
    /// why.
    pub done: tokio::task::JoinHandle<String>,
}

/// Loads the records, and starts the service task and its writer on the running driver.
pub async fn start<S: KvStore + Send + Sync + 'static>(
    records: Records<S>,
    driver: Driver,
    driver_events: EventStream,
    info: Info,
    fence: Option<watch::Receiver<Instant>>,
) -> Result<Started, ApiError> {
    let apps = records.list().await?;
    let instances = records.instances().await?;
    let deployments = records.deployments().await?;
    tracing::info!(
        apps = apps.len(),
        instances = instances.len(),
        deployments = deployments.len(),
        "loaded the scheduler's records"
    );
    let engine = Engine::load(apps, instances, deployments);
    let records = Arc::new(records);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let (calls_tx, calls_rx) = mpsc::channel(CALL_BUFFER);
    let (batches_tx, batches_rx) = mpsc::channel(BATCH_BUFFER);
    let (refused_tx, refused_rx) = mpsc::channel(BATCH_BUFFER);
    let (health_tx, health_rx) = mpsc::channel(CALL_BUFFER);
    let info = Arc::new(info);
    tokio::spawn(writer(
        records.clone(),
        driver.clone(),
        batches_rx,
        refused_tx,
        fence,
    ));
    let handle = Handle {
        calls: calls_tx,
        events: events.clone(),
        info: info.clone(),
    };
    super::health::spawn(handle.clone(), health_tx);
    let service = Service {
        engine,
        records,
        framework_id: driver.framework_id(),
        framework_id_recorded: None,
        events,
        info,
        batches: batches_tx,
        refused: refused_rx,
        health: health_rx,
    };
    let done = tokio::spawn(service.run(driver_events, calls_rx));
    Ok(Started { handle, done })
}

impl<S: KvStore + Send + Sync + 'static> Service<S> {
    async fn run(
        mut self,
        mut driver_events: EventStream,
        mut calls: mpsc::Receiver<(Call, Reply)>,
    ) -> String {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let effects = tokio::select! {
                event = driver_events.next_event() => {
                    let Some(event) = event else {
                        return "the driver stopped".into();
                    };
                    let mut effects = Vec::new();
                    if let Err(why) = self.driver_event(event, &mut effects).await {
                        return why;
                    }
                    // Whatever else arrived meanwhile is handled with it, in one batch.
                    for _ in 0..MAX_EVENTS_PER_BATCH {
                        let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, driver_events.next_event()).await else {
                            break;
                        };
                        if let Err(why) = self.driver_event(event, &mut effects).await {
                            return why;
                        }
                    }
                    effects
                }
                call = calls.recv() => {
                    let Some((call, reply)) = call else {
                        return "every API handle was dropped".into();
                    };
                    let mut effects = Vec::new();
                    let answer = self.call(call, &mut effects).await;
                    let _ = reply.send(answer);
                    effects
                }
                Some(refused) = self.refused.recv() => {
                    self.engine.launch_refused(&refused, now())
                }
                Some(report) = self.health.recv() => {
                    self.engine.health(report, now())
                }
                _ = tick.tick() => self.engine.tick(now()),
                () = wake(self.engine.next_wake_ms(now())) => self.engine.tick(now()),
            };
            self.carry_out(effects).await;
        }
    }

    async fn driver_event(
        &mut self,
        event: DriverEvent,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        match event {
            DriverEvent::Subscribed {
                framework_id,
                master_addr,
                resubscribed,
                ..
            } => {
                tracing::info!(%framework_id, master = %master_addr, resubscribed, "subscribed");
                if self.framework_id_recorded.as_ref() != Some(&framework_id) {
                    // Recorded before anything is launched, so that whoever takes over fails
                    // this framework over (a new framework would leave these tasks behind).
                    self.record_framework_id(&framework_id).await?;
                    self.framework_id_recorded = Some(framework_id.clone());
                }
                self.framework_id = Some(framework_id);
                effects.extend(self.engine.subscribed(now()));
            }
            DriverEvent::Offers(offers) => effects.extend(self.engine.offers(&offers, now())),
            DriverEvent::Rescind(_) => {}
            DriverEvent::Update(status) => effects.extend(self.engine.update(&status, now())),
            DriverEvent::Error(e) => return Err(format!("the master ended the framework: {e}")),
            DriverEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "disconnected from the masters; re-subscribing");
            }
        }
        Ok(())
    }

    /// Writes the framework id to the store, trying again for a while (a master election);
    /// an error if it cannot, since launching under an unrecorded id would leave its tasks to
    /// no one after a takeover.
    async fn record_framework_id(&self, id: &FrameworkId) -> Result<(), String> {
        let mut wait = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + FRAMEWORK_ID_WRITE_TIMEOUT;
        loop {
            match self
                .records
                .store()
                .put(FRAMEWORK_ID_KEY, id.as_str().as_bytes().to_vec())
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(error = %e, "could not record the framework id; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(format!("could not record the framework id {id}: {e}")),
            }
        }
    }

    /// Publishes the events and hands the rest to the writer, in order.
    async fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut batch = Batch::default();
        for e in effects {
            match e {
                Effect::Event(event) => {
                    let _ = self.events.send(Arc::new(event));
                }
                Effect::Persist(i) => batch.writes.push(Write::Instance(i)),
                Effect::Forget(id) => batch.writes.push(Write::ForgetInstance(id)),
                Effect::ForgetDeployment(id) => batch.writes.push(Write::ForgetDeployment(id)),
                Effect::Launch { ref launches, .. } => {
                    for (i, _) in launches {
                        batch.writes.push(Write::Instance(i.clone()));
                    }
                    batch.calls.push(e);
                }
                Effect::Kill { ref instance, .. } => {
                    batch.writes.push(Write::Instance(instance.clone()));
                    batch.calls.push(e);
                }
                other => batch.calls.push(other),
            }
        }
        if !batch.writes.is_empty() || !batch.calls.is_empty() {
            // Back-pressure: the loop waits while the writer is behind.
            let _ = self.batches.send(batch).await;
        }
    }

    // ---- the API's calls -------------------------------------------------------------------

    async fn call(&mut self, call: Call, effects: &mut Vec<Effect>) -> Result<Answer, ApiError> {
        match call {
            Call::ListApps(filter, embed) => Ok(self.list_apps(&filter, embed)),
            Call::GetApp(id) => {
                let record = self.engine.app(&id).ok_or_else(|| no_app(&id))?;
                Ok(Answer::ok(
                    json!({"app": self.engine.app_view(record, true)}),
                ))
            }
            Call::CreateApp(app) => self.create_app(*app, effects).await,
            Call::UpdateApp { id, fields, force } => {
                self.update_app(id, fields, force, effects).await
            }
            Call::RestartApp { id, force } => {
                let record = self.engine.app(&id).ok_or_else(|| no_app(&id))?.clone();
                self.unlocked(&id, force)?;
                let now = Timestamp::now();
                let mut next = record.clone();
                next.app.version = Some(now);
                next.config_version = now;
                self.change(Some(record), Some(next), true, effects).await
            }
            Call::DeleteApp { id, force } => {
                let record = self.engine.app(&id).ok_or_else(|| no_app(&id))?.clone();
                self.unlocked(&id, force)?;
                self.change(Some(record), None, false, effects).await
            }
            Call::Versions(id) => {
                self.engine.app(&id).ok_or_else(|| no_app(&id))?;
                let versions = self.records.versions(&id).await?;
                Ok(Answer::ok(json!({"versions": versions})))
            }
            Call::Version(id, v) => match self.records.version(&id, v).await? {
                Some(app) => Ok(Answer::ok(serde_json::to_value(app).unwrap_or(Value::Null))),
                None => Err(ApiError::not_found(format!(
                    "App '{id}' does not exist in version {v}"
                ))),
            },
            Call::Tasks { app, states } => self.tasks(app, &states),
            Call::KillTasks(request) => self.kill_tasks(request, effects).await,
            Call::Deployments => Ok(Answer::ok(Value::Array(
                self.engine.deployments().map(Deployment::view).collect(),
            ))),
            Call::CancelDeployment { id, force } => {
                self.cancel_deployment(id, force, effects).await
            }
            Call::Queue => Ok(self.queue()),
            Call::ResetDelay(id) => {
                let (waiting, fx) = self.engine.reset_delay(&id, now());
                effects.extend(fx);
                if waiting {
                    Ok(Answer {
                        status: 204,
                        body: Value::Null,
                        headers: Vec::new(),
                    })
                } else {
                    Err(ApiError::not_found(format!(
                        "Application {id} not found in tasks queue."
                    )))
                }
            }
            Call::Info => Ok(Answer::ok(self.info_json())),
            Call::HealthTargets(tx) => {
                let _ = tx.send(super::health::targets(&self.engine));
                Ok(Answer::ok(Value::Null))
            }
        }
    }

    fn list_apps(&self, filter: &AppFilter, embed: Embed) -> Answer {
        let lower = |s: &Option<String>| s.as_ref().map(|s| s.to_lowercase());
        let (cmd, id) = (lower(&filter.cmd), lower(&filter.id));
        let apps: Vec<Value> = self
            .engine
            .apps()
            .filter(|r| {
                cmd.as_ref().is_none_or(|c| {
                    r.app
                        .cmd
                        .as_ref()
                        .is_some_and(|x| x.to_lowercase().contains(c))
                })
            })
            .filter(|r| {
                id.as_ref()
                    .is_none_or(|i| r.app.id.to_string().contains(i.as_str()))
            })
            .filter(|r| {
                filter
                    .label
                    .as_ref()
                    .is_none_or(|l| label_matches(&r.app.labels, l))
            })
            .map(|r| {
                let mut v = self
                    .engine
                    .app_view(r, embed.tasks || embed.last_task_failure);
                if !embed.tasks {
                    v.tasks = None;
                }
                if !embed.last_task_failure {
                    v.last_task_failure = None;
                }
                serde_json::to_value(v).unwrap_or(Value::Null)
            })
            .collect();
        Answer::ok(json!({ "apps": apps }))
    }

    /// Gives each port definition of `app` asking for any service port (`port` 0) one of
    /// [`SERVICE_PORTS`] that no other app's definitions hold (as Marathon does); on a change
    /// of an app, a definition keeps the port it had at the same position. A definition is
    /// left at 0 if the range is used up.
    fn assign_service_ports(&self, app: &mut AppDefinition, before: Option<&AppDefinition>) {
        if let Some(before) = before {
            for (p, old) in app
                .port_definitions
                .iter_mut()
                .zip(&before.port_definitions)
            {
                if p.port == 0 && SERVICE_PORTS.contains(&old.port) {
                    p.port = old.port;
                }
            }
        }
        let mut used: std::collections::BTreeSet<u32> = self
            .engine
            .apps()
            .filter(|r| r.app.id != app.id)
            .flat_map(|r| r.app.port_definitions.iter().map(|p| p.port))
            .collect();
        used.extend(app.port_definitions.iter().map(|p| p.port));
        let mut free = SERVICE_PORTS.filter(|p| !used.contains(p));
        for p in app.port_definitions.iter_mut().filter(|p| p.port == 0) {
            match free.next() {
                Some(port) => p.port = port,
                None => break,
            }
        }
    }

    /// 409 if a deployment holds the app and the change is not forced.
    fn unlocked(&self, id: &PathId, force: bool) -> Result<(), ApiError> {
        match self.engine.deployment_of(id) {
            Some(d) if !force => Err(ApiError::locked(vec![d.id.to_string()])),
            _ => Ok(()),
        }
    }

    async fn create_app(
        &mut self,
        app: AppDefinition,
        effects: &mut Vec<Effect>,
    ) -> Result<Answer, ApiError> {
        let now = Timestamp::now();
        let mut app = app;
        app.version = Some(now);
        self.assign_service_ports(&mut app, None);
        let record = AppRecord {
            app,
            config_version: now,
        };
        self.records.create(&record).await?;
        let id = record.app.id.clone();
        let d = Deployment::plan(&id, None, Some(record.app.clone()), now, true);
        self.records.put_deployment(&d).await?;
        self.api_post_event("/v2/apps", &record.app);
        effects.extend(self.engine.app_changed(record, d.clone(), now.0));
        let record = self.engine.app(&id).ok_or_else(|| no_app(&id))?;
        let mut view =
            serde_json::to_value(self.engine.app_view(record, true)).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut view {
            m.remove("lastTaskFailure");
        }
        Ok(Answer {
            status: 201,
            body: view,
            headers: vec![
                ("Location", format!("/v2/apps{id}")),
                ("Marathon-Deployment-Id", d.id.0.clone()),
            ],
        })
    }

    async fn update_app(
        &mut self,
        id: PathId,
        mut fields: Map<String, Value>,
        force: bool,
        effects: &mut Vec<Effect>,
    ) -> Result<Answer, ApiError> {
        let current = self.engine.app(&id).cloned();
        let Some(current) = current else {
            // PUT creates.
            fields.insert("id".into(), json!(id.to_string()));
            let app = app_from_fields(fields)?;
            let mut answer = self.create_app(app, effects).await?;
            let d = answer
                .headers
                .iter()
                .find(|(k, _)| *k == "Marathon-Deployment-Id")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            answer.body = json!({"deploymentId": d, "version": answer.body["version"]});
            return Ok(answer);
        };
        self.unlocked(&id, force)?;
        let rollback = fields.len() == 1 && fields.contains_key("version");
        let target = if rollback {
            let v = fields["version"]
                .as_str()
                .and_then(|s| Timestamp::parse(s).ok())
                .ok_or_else(|| {
                    ApiError::invalid(vec![super::error::Violation::new(
                        "/version",
                        "expected a timestamp",
                    )])
                })?;
            self.records.version(&id, v).await?.ok_or_else(|| {
                ApiError::not_found(format!("App '{id}' does not exist in version {v}"))
            })?
        } else {
            let mut merged = match serde_json::to_value(&current.app) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            fields.remove("id");
            merged.remove("version");
            for (k, v) in fields {
                merged.insert(k, v);
            }
            app_from_fields(merged)?
        };
        if target.id != id {
            return Err(ApiError::invalid(vec![super::error::Violation::new(
                "/id",
                "the id in the body differs from the id in the path",
            )]));
        }
        let mut target = target;
        self.assign_service_ports(&mut target, Some(&current.app));
        let config_changed = !same_config(&current.app, &target);
        let now = Timestamp::now();
        let mut next = AppRecord {
            app: target,
            config_version: if config_changed {
                now
            } else {
                current.config_version
            },
        };
        next.app.version = Some(now);
        self.change(Some(current), Some(next), config_changed, effects)
            .await
    }

    /// Writes a change of an app (`None` before: created; `None` after: deleted) and its
    /// deployment, then tells the engine.
    async fn change(
        &mut self,
        before: Option<AppRecord>,
        after: Option<AppRecord>,
        config_changed: bool,
        effects: &mut Vec<Effect>,
    ) -> Result<Answer, ApiError> {
        let id = before
            .as_ref()
            .or(after.as_ref())
            .map(|r| r.app.id.clone())
            .expect("a change has a side");
        let now = after
            .as_ref()
            .map_or_else(Timestamp::now, AppRecord::version);
        let stored = self.records.get(&id).await?;
        match (&stored, &after) {
            (Some(stored), Some(next)) => self.records.replace(stored, next).await?,
            (None, Some(next)) => self.records.create(next).await?,
            (Some(_), None) => {
                self.records.delete(&id).await?;
            }
            (None, None) => return Err(no_app(&id)),
        }
        let d = Deployment::plan(
            &id,
            before.map(|r| r.app),
            after.as_ref().map(|r| r.app.clone()),
            now,
            config_changed,
        );
        self.records.put_deployment(&d).await?;
        match after {
            Some(next) => {
                self.api_post_event(&format!("/v2/apps{id}"), &next.app);
                effects.extend(self.engine.app_changed(next, d.clone(), now.0));
            }
            None => effects.extend(self.engine.app_removed(&id, d.clone(), now.0)),
        }
        Ok(Answer::deployment(&d.id, now, 200))
    }

    fn api_post_event(&self, uri: &str, app: &AppDefinition) {
        let e = Event::new(
            "api_post_event",
            Timestamp::now(),
            json!({"clientIp": "", "uri": uri, "appDefinition": app}),
        );
        let _ = self.events.send(Arc::new(e));
    }

    fn tasks(&self, app: Option<PathId>, states: &[String]) -> Result<Answer, ApiError> {
        let wanted: Vec<String> = states.iter().map(|s| s.to_lowercase()).collect();
        let keep = |c: Condition| {
            wanted.is_empty()
                || wanted.iter().any(|w| match w.as_str() {
                    "running" => c == Condition::Running,
                    "staging" => matches!(
                        c,
                        Condition::Provisioned | Condition::Staging | Condition::Starting
                    ),
                    other => c.mesos_state().eq_ignore_ascii_case(other),
                })
        };
        let tasks: Vec<Value> = match &app {
            Some(id) => {
                self.engine.app(id).ok_or_else(|| no_app(id))?;
                self.engine
                    .instances_of(id)
                    .filter(|i| keep(i.condition))
                    .map(|i| serde_json::to_value(self.engine.task_view(i)).unwrap_or(Value::Null))
                    .collect()
            }
            None => self
                .engine
                .all_instances()
                .filter(|i| i.condition.may_run() && keep(i.condition))
                .map(|i| serde_json::to_value(self.engine.task_view(i)).unwrap_or(Value::Null))
                .collect(),
        };
        Ok(Answer::ok(json!({ "tasks": tasks })))
    }

    async fn kill_tasks(
        &mut self,
        request: KillTasks,
        effects: &mut Vec<Effect>,
    ) -> Result<Answer, ApiError> {
        let KillTasks {
            app,
            ids,
            host,
            scale,
            wipe,
            single,
        } = request;
        if scale && wipe {
            return Err(ApiError::new(
                400,
                "You cannot use scale and wipe at the same time.",
            ));
        }
        if let Some(a) = &app {
            self.engine.app(a).ok_or_else(|| no_app(a))?;
        }
        // The tasks meant, each with its app.
        let mut chosen: Vec<(TaskId, PathId)> = Vec::new();
        let live: Vec<(TaskId, PathId, String)> = self
            .engine
            .all_instances()
            .filter(|i| i.condition.may_run())
            .filter(|i| app.as_ref().is_none_or(|a| &i.app_id == a))
            .filter_map(|i| Some((i.task_id()?, i.app_id.clone(), i.host().to_string())))
            .collect();
        match ids {
            Some(ids) => {
                for t in ids {
                    match live.iter().find(|(id, _, _)| id.as_str() == t) {
                        Some((id, a, _)) => chosen.push((id.clone(), a.clone())),
                        None => {
                            return Err(ApiError::not_found(format!("Task '{t}' does not exist")))
                        }
                    }
                }
            }
            None => chosen.extend(
                live.iter()
                    .filter(|(_, _, h)| host.as_ref().is_none_or(|w| w == h))
                    .map(|(t, a, _)| (t.clone(), a.clone())),
            ),
        }
        let tasks: Vec<TaskId> = chosen.iter().map(|(t, _)| t.clone()).collect();
        // Scaled or wiped: the instances are stopped for good (not relaunched); otherwise only
        // their tasks are killed and the instances relaunched.
        let (killed, fx) = self.engine.kill_tasks(&tasks, scale || wipe, now());
        effects.extend(fx);
        if scale {
            // Fewer instances wanted: each app's count goes down by its tasks killed.
            let mut per_app: BTreeMap<PathId, u32> = BTreeMap::new();
            for (_, a) in &chosen {
                *per_app.entry(a.clone()).or_default() += 1;
            }
            let mut last = None;
            for (a, n) in per_app {
                let Some(current) = self.engine.app(&a).cloned() else {
                    continue;
                };
                let mut next = current.clone();
                next.app.instances = next.app.instances.saturating_sub(n);
                next.app.version = Some(Timestamp::now());
                last = Some(
                    self.change(Some(current), Some(next), false, effects)
                        .await?,
                );
            }
            return last.ok_or_else(|| ApiError::not_found("No task to kill"));
        }
        if single {
            let task = killed
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::not_found("Task does not exist"))?;
            return Ok(Answer::ok(json!({ "task": task })));
        }
        Ok(Answer::ok(json!({ "tasks": killed })))
    }

    async fn cancel_deployment(
        &mut self,
        id: DeploymentId,
        force: bool,
        effects: &mut Vec<Effect>,
    ) -> Result<Answer, ApiError> {
        let d = self
            .engine
            .deployments()
            .find(|d| d.id == id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("DeploymentPlan {id} does not exist")))?;
        self.engine.cancel_deployment(&id);
        self.records.forget_deployment(&id).await?;
        if force {
            return Ok(Answer {
                status: 202,
                body: Value::Null,
                headers: Vec::new(),
            });
        }
        // A rollback: the app as it was before, by a new deployment.
        let current = self.engine.app(&d.app_id).cloned();
        let now = Timestamp::now();
        let before = d.original.map(|app| {
            let config_changed = current.as_ref().is_none_or(|c| !same_config(&c.app, &app));
            let config_version = match &current {
                Some(c) if !config_changed => c.config_version,
                _ => now,
            };
            let mut app = app;
            app.version = Some(now);
            (
                AppRecord {
                    app,
                    config_version,
                },
                config_changed,
            )
        });
        match before {
            Some((record, config_changed)) => {
                self.change(current, Some(record), config_changed, effects)
                    .await
            }
            None => self.change(current, None, false, effects).await,
        }
    }

    fn queue(&mut self) -> Answer {
        let items: Vec<Value> = self
            .engine
            .queue(now())
            .into_iter()
            .map(|(w, app)| {
                json!({
                    "app": app,
                    "count": w.count,
                    "delay": w.delay,
                    "since": w.since,
                    "processedOffersSummary": {"processedOffersCount": 0, "unusedOffersCount": 0},
                })
            })
            .collect();
        Answer::ok(json!({ "queue": items }))
    }

    fn info_json(&self) -> Value {
        let i = &self.info;
        json!({
            "name": "drover",
            "version": env!("CARGO_PKG_VERSION"),
            "buildref": "unknown",
            "elected": true,
            "leader": i.http_address,
            "frameworkId": self.framework_id.as_ref().map(FrameworkId::as_str),
            "marathon_config": {
                "master": format!("drover://{}", i.masters.join(",")),
                "failover_timeout": i.failover_timeout_seconds as u64,
                "framework_name": i.framework_name,
                "ha": true,
                "checkpoint": true,
                "local_port_min": 10000,
                "local_port_max": 20000,
                "executor": "//cmd",
                "hostname": i.http_address.rsplit_once(':').map_or(i.http_address.as_str(), |(h, _)| h),
                "webui_url": null,
                "mesos_role": i.role,
                "task_launch_timeout": 300000,
                "reconciliation_initial_delay": 0,
                "reconciliation_interval": super::engine::PROVISIONED_RECONCILE_MS,
                "mesos_user": null,
                "leader_proxy_connection_timeout_ms": 5000,
                "leader_proxy_read_timeout_ms": 10000,
                "features": [],
                "mesos_leader_ui_url": null,
            },
            "zookeeper_config": {
                "zk": format!("drover://{}/{}", i.masters.join(","), i.framework_name),
                "zk_timeout": 10000,
                "zk_session_timeout": 10000,
                "zk_max_versions": 50,
            },
            "event_subscriber": null,
            "http_config": {
                "http_port": i.http_address.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).unwrap_or(0),
                "https_port": 0,
            },
        })
    }
}

fn now() -> u64 {
    drover_model::unix_ms()
}

/// Resolves at `at_ms` (wall clock), or never.
async fn wake(at_ms: Option<u64>) {
    match at_ms {
        Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now()))).await,
        None => std::future::pending().await,
    }
}

fn no_app(id: &PathId) -> ApiError {
    ApiError::not_found(format!("App '{id}' does not exist"))
}

/// Whether two definitions differ only in what a scaling changes.
fn same_config(a: &AppDefinition, b: &AppDefinition) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.instances = 0;
    b.instances = 0;
    a.version = None;
    b.version = None;
    a == b
}

/// Marathon's label selector, in its simplest forms: `key`, `key==value`, `key!=value`.
fn label_matches(labels: &BTreeMap<String, String>, selector: &str) -> bool {
    selector.split(',').map(str::trim).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).is_none_or(|x| x != v.trim())
        } else if let Some((k, v)) = term.split_once("==") {
            labels.get(k.trim()).is_some_and(|x| x == v.trim())
        } else {
            labels.contains_key(term)
        }
    })
}

/// Carries out effect batches in order: each batch's record writes together, then its
/// driver calls.
async fn writer<S: KvStore + Send + Sync + 'static>(
    records: Arc<Records<S>>,
    driver: Driver,
    mut batches: mpsc::Receiver<Batch>,
    refused: mpsc::Sender<Vec<(InstanceId, u32)>>,
    fence: Option<watch::Receiver<Instant>>,
) {
    while let Some(batch) = batches.recv().await {
        // Past the lease: another scheduler may be active; nothing more goes out.
        if fence
            .as_ref()
            .is_some_and(|f| Instant::now() >= *f.borrow())
        {
            tracing::warn!("the scheduler lease has run out; its effects are dropped");
            return;
        }
        let writes_ok = write_all(&records, batch.writes).await;
        let mut acks: Vec<TaskStatus> = Vec::new();
        let mut calls = Vec::new();
        let mut offers_switch = Vec::new();
        for effect in batch.calls {
            match effect {
                Effect::Acknowledge(s) => acks.push(s),
                Effect::Suppress | Effect::Revive => offers_switch.push(effect),
                other => calls.push(other),
            }
        }
        let driver_ref = &driver;
        let refused_ref = &refused;
        let sends = calls.into_iter().map(|effect| async move {
            call_driver(driver_ref, effect, writes_ok, refused_ref).await;
        });
        futures::future::join_all(sends).await;
        if !acks.is_empty() {
            if let Err(e) = driver.acknowledge_all(&acks).await {
                tracing::debug!(error = %e, "acknowledgements not sent; the master will redeliver");
            }
        }
        for e in offers_switch {
            let r = match e {
                Effect::Revive => driver.revive().await,
                _ => driver.suppress().await,
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "SUPPRESS/REVIVE failed");
            }
        }
    }
}

/// Makes every write; whether all succeeded. Only the last write of a key in one batch is
/// made (an instance recorded then forgotten in one batch is simply forgotten).
async fn write_all<S: KvStore + Send + Sync>(records: &Records<S>, writes: Vec<Write>) -> bool {
    let mut last: BTreeMap<String, Write> = BTreeMap::new();
    for w in writes {
        let key = match &w {
            Write::Instance(i) => format!("i/{}", i.id),
            Write::ForgetInstance(id) => format!("i/{id}"),
            Write::ForgetDeployment(id) => format!("d/{id}"),
        };
        last.insert(key, w);
    }
    let results = futures::future::join_all(last.into_values().map(|w| async move {
        match w {
            Write::Instance(i) => records.put_instance(&i).await,
            Write::ForgetInstance(id) => records.forget_instance(&id).await,
            Write::ForgetDeployment(id) => records.forget_deployment(&id).await,
        }
    }))
    .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        tracing::warn!(failed, "records not written");
    }
    failed == 0
}

async fn call_driver(
    driver: &Driver,
    effect: Effect,
    writes_ok: bool,
    refused: &mpsc::Sender<Vec<(InstanceId, u32)>>,
) {
    match effect {
        Effect::Launch {
            offer_id, launches, ..
        } => {
            let ids: Vec<(InstanceId, u32)> = launches
                .iter()
                .map(|(i, _)| (i.id.clone(), i.incarnation))
                .collect();
            if !writes_ok {
                let _ = driver
                    .decline(std::slice::from_ref(&offer_id), Some(0.0))
                    .await;
                let _ = refused.send(ids).await;
                return;
            }
            let tasks = launches.into_iter().map(|(_, t)| t).collect();
            match driver
                .accept(std::slice::from_ref(&offer_id), tasks, None)
                .await
            {
                Ok(()) => {}
                Err(crate::driver::DriverError::Ambiguous(e)) => {
                    // Reconciled later by the engine (the records name the tasks).
                    tracing::warn!(error = %e, offer = %offer_id, "ACCEPT outcome unknown");
                }
                Err(e) => {
                    tracing::info!(error = %e, offer = %offer_id, "ACCEPT refused; the instances wait again");
                    let _ = refused.send(ids).await;
                }
            }
        }
        Effect::Decline {
            offer_ids,
            refuse_seconds,
        } => {
            if let Err(e) = driver.decline(&offer_ids, Some(refuse_seconds)).await {
                tracing::debug!(error = %e, "DECLINE failed; the offers expire");
            }
        }
        Effect::Kill { task_id, grace, .. } => {
            if let Err(e) = driver.kill(&task_id, grace).await {
                tracing::warn!(error = %e, task = %task_id, "KILL failed; asked again later");
            }
        }
        Effect::KillTask { task_id } => {
            if let Err(e) = driver.kill(&task_id, None).await {
                tracing::warn!(error = %e, task = %task_id, "KILL failed");
            }
        }
        Effect::Reconcile(tasks) => {
            if let Err(e) = driver.reconcile_on(&tasks).await {
                tracing::warn!(error = %e, "RECONCILE failed; asked again later");
            }
        }
        _ => {}
    }
}
