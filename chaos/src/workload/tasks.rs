//! The tasks workload: schedulers, each a real process (`drover chaos scheduler`, started by
//! the cluster like any node, [`crate::cluster`]), each a framework on the driver library that
//! keeps a few long tasks running, launches short ones at the run's rate, kills a long one now
//! and then while all of them run, and
//! records everything it sees and does for the task checkers ([`crate::checker::tasks`]).
//!
//! Scheduler `k` records what arrives as process `tasks` (k = 0) or `tasks<k>`, and each call
//! it makes as `<that>-op-<incarnation>.<n>` (calls in flight together pair up):
//! `subscribed` / `disconnected`, every `offer` (id, agent, resources) and `rescind`, every
//! `update` (task, state, uuid, reason, agent), and the calls `accept` (offers and tasks),
//! `decline`, `kill`, `ack`, `reconcile`, each invoke then ok / fail / info. It records
//! durably before it acts, into its own file on the run's clock; the runner merges the files.
//! Every task's command first appends `<task> <agent>` to `launches.log` in the run's
//! directory: that is what the agents ran, for the double-launch checker. With `--image` every
//! task runs as a Docker container of that image, the run's directory mounted into it.
//!
//! The frameworks are partition-aware with a long failover timeout, so a scheduler cut off,
//! paused or killed keeps its tasks. A scheduler started again (a new incarnation) fails over
//! with the framework id its predecessor saved, reconciles every task, and launches nothing
//! until the answer is in. On SIGTERM it launches nothing more, kills its tasks, waits
//! (bounded) until it knows a terminal state for every task it launched, records `drained`
//! (with what it never learned) and exits.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::v1::{self, TaskState};
use drover_resources::Resources;
use drover_scheduler::driver::{
    is_terminal, Api, Driver, DriverError, DriverEvent, DriverOptions, EventStream, FrameworkInfo,
    OfferId, TaskId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;

use super::{BoxFuture, Context, Workload, WorkloadError};
use crate::history::{Clock, Kind, Mode, Recorder};

/// The frameworks' name (`chaos-tasks-<k>`; their tasks are told apart by framework id).
pub const FRAMEWORK_NAME: &str = "chaos-tasks";
/// Prefix of the tasks that run until killed.
pub const LONG_PREFIX: &str = "long-";
/// What each task asks for.
pub const TASK_RESOURCES: &str = "cpus:0.05;mem:8";
/// The file (in the run's directory) every task appends its launch to.
pub const LAUNCHES_FILE: &str = "launches.log";

/// Its shape.
#[derive(Clone, Debug)]
pub struct TasksWorkload {
    /// Scheduler processes, each its own framework.
    pub schedulers: usize,
    /// Tasks each scheduler keeps running until killed (the instances it wants).
    pub long_tasks: usize,
    /// Out of every 10 ticks while all the long tasks run, how many kill one of them (the
    /// others launch a short one).
    pub kills_per_10: u32,
    /// Tasks waiting for an offer at most; beyond it ticks launch nothing.
    pub max_queued: usize,
    /// How long the framework waits at the end for the fate of every task it launched.
    pub drain_timeout: Duration,
}

impl Default for TasksWorkload {
    fn default() -> Self {
        Self {
            schedulers: 2,
            long_tasks: 3,
            kills_per_10: 2,
            max_queued: 20,
            drain_timeout: Duration::from_secs(60),
        }
    }
}

impl Workload for TasksWorkload {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn schedulers(&self) -> usize {
        self.schedulers
    }

    /// The work is done by the scheduler processes the cluster runs; nothing in this one.
    fn run(self: Arc<Self>, _ctx: Context) -> BoxFuture<Result<(), WorkloadError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The process name scheduler `index` records its events under.
pub fn events_process(index: usize) -> String {
    if index == 0 {
        "tasks".into()
    } else {
        format!("tasks{index}")
    }
}

/// Whether `process` is a scheduler's event stream (`tasks`, `tasks1`, …).
pub fn is_events_process(process: &str) -> bool {
    process
        .strip_prefix("tasks")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `process` is one of a scheduler's calls (`tasks-op-…`, `tasks1-op-…`).
pub fn is_call_process(process: &str) -> bool {
    process
        .split_once("-op-")
        .is_some_and(|(events, _)| is_events_process(events))
}

/// The options of `drover chaos scheduler` (started by the runner, not by hand).
#[derive(clap::Args, Clone, Debug)]
pub struct SchedulerArgs {
    /// The masters (their fault-layer fronts), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub masters: Vec<String>,
    /// Source address of its connections (so the fault layer can cut it off).
    #[arg(long)]
    pub bind_ip: Option<std::net::IpAddr>,
    /// The run's directory: its history file, its framework id and `launches.log` live there.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Which scheduler of the run.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Which life of it (0 first; each restart counts one up).
    #[arg(long, default_value_t = 0)]
    pub incarnation: u64,
    /// CLOCK_MONOTONIC at the run's start, nanoseconds (the run's time line).
    #[arg(long)]
    pub clock_base_ns: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ticks per second (each launches a short task or kills a long one).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// The framework API it speaks.
    #[arg(long, value_enum, default_value_t = Api::Grpc)]
    pub api: Api,
    /// Run every task as a Docker container of this image (host network, the run's directory
    /// mounted at its own path so that the tasks can append to `launches.log`).
    #[arg(long)]
    pub image: Option<String>,
}

/// How the tasks workload's tasks run (`drover chaos run --containers`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Containers {
    /// Plain commands, by the command executor.
    #[default]
    None,
    /// Docker containers of the test image, built locally (`drover_agent::testing`).
    Docker,
}

/// The container every task of a run with `--image` runs in: `image` on the host's network,
/// with `run_dir` mounted read-write at the same path.
pub fn task_container(image: &str, run_dir: &std::path::Path) -> v1::ContainerInfo {
    use drover_model::container::{ContainerSpec, VolumeSpec};
    let dir = run_dir.display().to_string();
    ContainerSpec {
        volumes: vec![VolumeSpec {
            container_path: dir.clone(),
            host_path: dir,
            read_only: false,
        }],
        ..ContainerSpec::of_image(image)
    }
    .to_proto()
}

/// Where scheduler `index`'s incarnation `incarnation` writes its history.
pub fn history_path(run_dir: &std::path::Path, index: usize, incarnation: u64) -> PathBuf {
    run_dir.join(format!("scheduler-{index}.{incarnation}.jsonl"))
}

/// Where scheduler `index` saves its framework id for its next incarnation.
pub fn framework_id_path(run_dir: &std::path::Path, index: usize) -> PathBuf {
    run_dir.join(format!("scheduler-{index}.framework-id"))
}

/// `drover chaos scheduler`: one scheduler process's life, until `shutdown` (then it drains).
pub async fn run_scheduler(
    args: SchedulerArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkloadError> {
    let shape = Arc::new(TasksWorkload::default());
    let task_res: Resources = TASK_RESOURCES
        .parse()
        .map_err(|e| WorkloadError::Setup(format!("task resources: {e}")))?;
    let clock = Clock {
        base_ns: args.clock_base_ns,
    };
    let history = history_path(&args.run_dir, args.index, args.incarnation);
    let (rec, writer) = Recorder::start(&history, clock, Mode::Durable)
        .map_err(|e| WorkloadError::Setup(e.to_string()))?;
    let id_file = framework_id_path(&args.run_dir, args.index);
    let saved_id = std::fs::read_to_string(&id_file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(drover_scheduler::driver::FrameworkId::new);
    let mut info = FrameworkInfo::new(format!("{FRAMEWORK_NAME}-{}", args.index));
    info.failover_timeout_seconds = 7.0 * 24.0 * 3600.0;
    info.partition_aware = true;
    info.id = saved_id;
    let options = DriverOptions {
        bind_ip: args.bind_ip,
        call_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(2),
        api: args.api,
        ..DriverOptions::default()
    };
    let (driver, events) = Driver::start(&args.masters, info, options)
        .map_err(|e| WorkloadError::Setup(e.to_string()))?;
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Context {
        rec: rec.clone(),
        masters: args.masters.clone(),
        faults_stopped: stop.clone(),
        stop,
        rate: args.rate,
        seed: args.seed,
        binary: None,
        out: None,
    };
    let fw = Framework {
        shape,
        rng: StdRng::seed_from_u64(
            args.seed
                .wrapping_add(args.index as u64 * 1000)
                .wrapping_add(args.incarnation),
        ),
        launches: args.run_dir.join(LAUNCHES_FILE),
        container: args
            .image
            .as_deref()
            .map(|image| task_container(image, &args.run_dir)),
        task_user: match args.image {
            Some(_) => String::new(),
            None => nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default(),
        },
        ctx,
        driver,
        task_res,
        queue: VecDeque::new(),
        tasks: BTreeMap::new(),
        seen_uuids: HashSet::new(),
        next_task: 0,
        index: args.index,
        incarnation: args.incarnation,
        ops: Arc::new(AtomicU64::new(0)),
        recovering: args.incarnation > 0,
        id_file,
    };
    let run = fw.run(events);
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => {}
        () = shutdown => {
            let _ = stop_tx.send(true);
            run.await;
        }
    }
    drop(rec);
    writer
        .finish()
        .await
        .map_err(|e| WorkloadError::Setup(e.to_string()))?;
    Ok(())
}

/// What the framework knows of one of its tasks.
#[derive(Clone, Debug)]
struct Known {
    state: Option<TaskState>,
    agent: Option<String>,
    /// The ACCEPT that carried it had an unknown outcome: it may never have launched.
    uncertain: bool,
    /// The ACCEPT that carries it is not answered yet: a TASK_UNKNOWN now (a reconciliation
    /// or a KILL that raced it) says nothing of whether it launches.
    accepting: bool,
}

struct Framework {
    shape: Arc<TasksWorkload>,
    ctx: Context,
    driver: Driver,
    rng: StdRng,
    task_res: Resources,
    launches: PathBuf,
    /// The container every task runs in (`--image`), or none: plain commands.
    container: Option<v1::ContainerInfo>,
    /// Whom its command tasks run as: whoever runs the chaos run, as their commands append
    /// to `launches.log` in its directory (agents run with `--allow-root-tasks` for a run
    /// as root). Empty for containers (their user is the image's).
    task_user: String,
    /// Tasks waiting for an offer.
    queue: VecDeque<v1::TaskInfo>,
    /// Every task handed to an ACCEPT (ok or unknown), by id.
    tasks: BTreeMap<String, Known>,
    seen_uuids: HashSet<String>,
    next_task: u64,
    /// Which scheduler of the run, and which life of it (task ids carry both, so none is
    /// reused).
    index: usize,
    incarnation: u64,
    ops: Arc<AtomicU64>,
    /// A restarted scheduler launches nothing until its first reconciliation answered.
    recovering: bool,
    /// Where the framework id is saved for the next incarnation.
    id_file: PathBuf,
}

/// What a spawned call reports back to the framework's loop.
enum Outcome {
    /// ACCEPT: the tasks, and whether the call failed for certain (they did not launch).
    Accepted {
        tasks: Vec<v1::TaskInfo>,
        kind: Kind,
    },
    /// The implicit reconciliation of a restarted scheduler was sent (its answers are queued
    /// on the event stream ahead of anything that follows).
    Reconciled(Kind),
}

fn state_of(s: &v1::TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap_or(TaskState::Unspecified)
}

fn kind_of(e: &DriverError) -> Kind {
    match e {
        DriverError::Ambiguous(_) => Kind::Info,
        _ => Kind::Fail,
    }
}

/// Runs one call as its own process: invoke, then ok / fail / info.
async fn call<F, Fut>(
    rec: Recorder,
    ops: (String, Arc<AtomicU64>),
    f: &'static str,
    args: serde_json::Value,
    body: F,
) -> Kind
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), DriverError>>,
{
    let process = format!("{}.{}", ops.0, ops.1.fetch_add(1, Ordering::Relaxed));
    rec.record(&process, Kind::Invoke, f, args.clone(), None)
        .await;
    let (kind, error) = match body().await {
        Ok(()) => (Kind::Ok, None),
        Err(e) => (kind_of(&e), Some(e.to_string())),
    };
    rec.record(&process, kind, f, args, error).await;
    kind
}

impl Framework {
    /// The prefix of its calls' process names and their counter.
    fn ops(&self) -> (String, Arc<AtomicU64>) {
        (
            format!("{}-op-{}", events_process(self.index), self.incarnation),
            self.ops.clone(),
        )
    }

    fn new_task(&mut self, long: bool) -> v1::TaskInfo {
        self.next_task += 1;
        let n = format!("{}.{}-{}", self.index, self.incarnation, self.next_task);
        let id = if long {
            format!("{LONG_PREFIX}{n}")
        } else {
            format!("short-{n}")
        };
        let log = self.launches.display().to_string();
        let record = format!("echo \"$DROVER_TASK_ID $DROVER_AGENT_ID\" >> '{log}'");
        let shell = if long {
            format!("{record}; exec sleep 3600")
        } else if self.rng.random_range(0..4) == 0 {
            format!("{record}; sleep 0.3; exit 3")
        } else {
            format!("{record}; sleep 0.3")
        };
        v1::TaskInfo {
            task_id: id.clone(),
            name: id,
            resources: self.task_res.to_proto(),
            command: Some(v1::CommandInfo {
                shell,
                environment: Default::default(),
                user: self.task_user.clone(),
                ..Default::default()
            }),
            kill_grace_seconds: 0.5,
            health_check: None,
            container: self.container.clone(),
            ..Default::default()
        }
    }

    /// Long tasks wanted and not yet launched or queued.
    fn long_missing(&self) -> usize {
        let live = self
            .tasks
            .iter()
            .filter(|(id, k)| id.starts_with(LONG_PREFIX) && !k.state.is_some_and(is_terminal))
            .count();
        let queued = self
            .queue
            .iter()
            .filter(|t| t.task_id.starts_with(LONG_PREFIX))
            .count();
        self.shape.long_tasks.saturating_sub(live + queued)
    }

    async fn note(&self, f: &str, value: serde_json::Value) {
        self.ctx
            .rec
            .record(&events_process(self.index), Kind::Info, f, value, None)
            .await;
    }

    async fn run(mut self, mut events: EventStream) {
        let (done_tx, mut done) = tokio::sync::mpsc::channel::<Outcome>(256);
        let period = Duration::from_secs_f64((1.0 / self.ctx.rate.max(0.1)).min(60.0));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconcile = tokio::time::interval(Duration::from_secs(10));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.ctx.stop.clone();
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            if let Some(since) = stopping {
                let pending = self.pending();
                if pending.is_empty() || since.elapsed() >= self.shape.drain_timeout {
                    self.note("drained", json!({"pending": pending})).await;
                    self.driver.stop().await;
                    return;
                }
            }
            tokio::select! {
                e = events.next_event() => match e {
                    Some(e) => self.on_event(e, stopping.is_some(), &done_tx).await,
                    None => {
                        self.note("drained", json!({"pending": self.pending(), "error": "driver stopped"})).await;
                        return;
                    }
                },
                Some(o) = done.recv() => self.on_outcome(o),
                _ = tick.tick(), if stopping.is_none() => self.on_tick(),
                _ = reconcile.tick() => {
                    if self.recovering {
                        self.reconcile_everything(&done_tx);
                    } else {
                        self.reconcile_uncertain(stopping.is_some());
                    }
                    // Draining: kill again what still runs (a launch in flight at the stop
                    // started after the first kills; a kill may have failed).
                    if stopping.is_some() {
                        self.kill_all();
                    }
                }
                changed = stop.changed(), if stopping.is_none() => {
                    // A dropped sender also means stop.
                    if changed.is_err() || *stop.borrow_and_update() {
                        stopping = Some(tokio::time::Instant::now());
                        self.queue.clear();
                        self.kill_all();
                    }
                }
            }
        }
    }

    /// Tasks whose fate the framework does not know yet.
    fn pending(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|(_, k)| !k.state.is_some_and(is_terminal))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn on_tick(&mut self) {
        if self.recovering {
            return;
        }
        for _ in 0..self.long_missing() {
            let t = self.new_task(true);
            self.queue.push_back(t);
        }
        let running_long: Vec<String> = self
            .tasks
            .iter()
            .filter(|(id, k)| {
                id.starts_with(LONG_PREFIX) && k.state == Some(TaskState::TaskRunning)
            })
            .map(|(id, _)| id.clone())
            .collect();
        // A long task is killed only while every wanted one runs: each kill then follows a
        // moment when all ran, which is what the liveness checker looks for after the heal.
        // Killing whichever runs, a kill a second at the default rate, outpaced the
        // replacements where a task takes seconds to start (containers on a loaded engine),
        // so all of them might never run at once with the cluster healthy.
        let all_run = !running_long.is_empty() && running_long.len() >= self.shape.long_tasks;
        if all_run && self.rng.random_range(0..10) < self.shape.kills_per_10 {
            let victim = running_long[self.rng.random_range(0..running_long.len())].clone();
            self.kill(victim);
        } else if self.queue.len() < self.shape.max_queued {
            let t = self.new_task(false);
            self.queue.push_back(t);
        }
    }

    fn kill(&self, task: String) {
        let (rec, ops, d) = (self.ctx.rec.clone(), self.ops(), self.driver.clone());
        tokio::spawn(async move {
            let id = TaskId::new(task.clone());
            call(rec, ops, "kill", json!({"task": task}), || async move {
                d.kill(&id, Some(Duration::from_millis(500))).await
            })
            .await
        });
    }

    fn kill_all(&self) {
        for id in self.pending() {
            self.kill(id);
        }
    }

    /// Asks about tasks whose launch is uncertain or whose state is not known yet (and, while
    /// draining, about every pending one).
    fn reconcile_uncertain(&self, draining: bool) {
        let ids: Vec<(TaskId, Option<drover_scheduler::driver::AgentId>)> = self
            .tasks
            .iter()
            .filter(|(_, k)| {
                (k.uncertain && k.state.is_none())
                    || (draining && !k.state.is_some_and(is_terminal))
            })
            .take(drover_scheduler::driver::MAX_IDS_PER_CALL)
            .map(|(id, k)| {
                (
                    TaskId::new(id.clone()),
                    k.agent.clone().map(drover_scheduler::driver::AgentId::new),
                )
            })
            .collect();
        if ids.is_empty() {
            return;
        }
        let (rec, ops, d) = (self.ctx.rec.clone(), self.ops(), self.driver.clone());
        let names: Vec<&str> = ids.iter().map(|(t, _)| t.as_str()).collect();
        let args = json!({"tasks": names});
        tokio::spawn(async move {
            call(rec, ops, "reconcile", args, || async move {
                d.reconcile_on(&ids).await
            })
            .await
        });
    }

    /// Saves the framework id for the next incarnation (write and rename: a kill mid-write
    /// leaves the old file whole).
    fn save_framework_id(&self, id: &str) {
        let tmp = self.id_file.with_extension("tmp");
        if std::fs::write(&tmp, id).is_ok() {
            let _ = std::fs::rename(&tmp, &self.id_file);
        }
    }

    /// Implicit reconciliation: the master answers with every live task of the framework.
    fn reconcile_everything(&self, done: &tokio::sync::mpsc::Sender<Outcome>) {
        let (rec, ops, d) = (self.ctx.rec.clone(), self.ops(), self.driver.clone());
        let done = done.clone();
        tokio::spawn(async move {
            let kind = call(rec, ops, "reconcile", json!({"tasks": []}), || async move {
                d.reconcile_on(&[]).await
            })
            .await;
            let _ = done.send(Outcome::Reconciled(kind)).await;
        });
    }

    async fn on_event(
        &mut self,
        e: DriverEvent,
        stopping: bool,
        done: &tokio::sync::mpsc::Sender<Outcome>,
    ) {
        match e {
            DriverEvent::Subscribed {
                framework_id,
                master_id,
                resubscribed,
                ..
            } => {
                self.note(
                    "subscribed",
                    json!({"framework": framework_id.as_str(), "master": master_id,
                           "resubscribed": resubscribed, "incarnation": self.incarnation}),
                )
                .await;
                self.save_framework_id(framework_id.as_str());
                if self.recovering {
                    self.reconcile_everything(done);
                }
            }
            DriverEvent::Disconnected { reason } => {
                self.note("disconnected", json!({"reason": reason})).await;
            }
            DriverEvent::Error(e) => {
                self.note("error", json!({"error": e})).await;
            }
            DriverEvent::Rescind(id) => {
                self.note("rescind", json!({"offer": id.as_str()})).await;
            }
            DriverEvent::Offers(offers) => {
                for o in offers {
                    self.note(
                        "offer",
                        json!({"offer": o.id.as_str(), "agent": o.agent_id.as_str(),
                               "resources": o.resources.to_string()}),
                    )
                    .await;
                    self.use_offer(o, stopping, done);
                }
            }
            DriverEvent::Update(s) => self.on_update(s).await,
        }
    }

    fn use_offer(
        &mut self,
        o: drover_scheduler::driver::Offer,
        stopping: bool,
        done: &tokio::sync::mpsc::Sender<Outcome>,
    ) {
        let mut left = o.resources.clone();
        let mut take = Vec::new();
        while !stopping && take.len() < 10 {
            let Some(rest) = self
                .queue
                .front()
                .and_then(|_| left.checked_sub(&self.task_res).ok())
            else {
                break;
            };
            left = rest;
            take.extend(self.queue.pop_front());
        }
        let (rec, ops, d) = (self.ctx.rec.clone(), self.ops(), self.driver.clone());
        let offer = o.id.as_str().to_string();
        if take.is_empty() {
            tokio::spawn(async move {
                let ids = [OfferId::new(offer.clone())];
                call(
                    rec,
                    ops,
                    "decline",
                    json!({"offers": [offer]}),
                    || async move { d.decline(&ids, Some(1.0)).await },
                )
                .await
            });
            return;
        }
        for t in &take {
            self.tasks.insert(
                t.task_id.clone(),
                Known {
                    state: None,
                    agent: Some(o.agent_id.as_str().to_string()),
                    uncertain: true,
                    accepting: true,
                },
            );
        }
        let names: Vec<String> = take.iter().map(|t| t.task_id.clone()).collect();
        let args = json!({"offers": [offer], "agent": o.agent_id.as_str(), "tasks": names,
                          "resources": TASK_RESOURCES});
        let done = done.clone();
        tokio::spawn(async move {
            let ids = [OfferId::new(offer)];
            let tasks = take.clone();
            let kind = call(rec, ops, "accept", args, || async move {
                d.accept(&ids, tasks, Some(1.0)).await
            })
            .await;
            let _ = done.send(Outcome::Accepted { tasks: take, kind }).await;
        });
    }

    fn on_outcome(&mut self, o: Outcome) {
        match o {
            Outcome::Reconciled(Kind::Ok) => self.recovering = false,
            // Not sent: ask again at the next subscription or tick of the reconcile timer.
            Outcome::Reconciled(_) => {}
            Outcome::Accepted { tasks, kind } => {
                for t in &tasks {
                    if let Some(k) = self.tasks.get_mut(&t.task_id) {
                        k.accepting = false;
                    }
                }
                self.accepted(tasks, kind);
            }
        }
    }

    /// An ACCEPT's answer: what it says of its tasks.
    fn accepted(&mut self, tasks: Vec<v1::TaskInfo>, kind: Kind) {
        match kind {
            Kind::Ok => {
                for t in &tasks {
                    if let Some(k) = self.tasks.get_mut(&t.task_id) {
                        k.uncertain = false;
                    }
                }
            }
            // Certainly not launched: the same tasks (same ids) go back to the queue.
            Kind::Fail => {
                for t in tasks.into_iter().rev() {
                    if self
                        .tasks
                        .get(&t.task_id)
                        .is_some_and(|k| k.state.is_none())
                    {
                        self.tasks.remove(&t.task_id);
                        self.queue.push_front(t);
                    }
                }
            }
            // Maybe launched: reconciliation will tell; they stay uncertain until then.
            _ => {}
        }
    }

    async fn on_update(&mut self, s: v1::TaskStatus) {
        let state = state_of(&s);
        self.note(
            "update",
            json!({"task": s.task_id, "state": state.as_str_name(), "uuid": s.uuid,
                   "reason": s.reason, "agent": s.agent_id, "exit_code": s.exit_code}),
        )
        .await;
        let fresh = s.uuid.is_empty() || self.seen_uuids.insert(s.uuid.clone());
        // The master has no record of it: reconciliation answers TASK_UNKNOWN, or TASK_GONE
        // when the agent named is registered (as Mesos does). A task the registry has as GONE
        // (its agent removed) answers the same, and is taken for not launched too: either way
        // it does not run, and a new task (a new id) replaces it.
        let no_record = state == TaskState::TaskUnknown
            || (state == TaskState::TaskGone && s.reason == "reconciliation" && s.uuid.is_empty());
        if let Some(k) = self.tasks.get_mut(&s.task_id) {
            if no_record {
                // The uncertain ACCEPT did not launch it (one not answered yet may still).
                if k.uncertain && !k.accepting && k.state.is_none() {
                    k.state = Some(TaskState::TaskDropped);
                }
            } else if fresh && !k.state.is_some_and(is_terminal) {
                k.state = Some(state);
                if !s.agent_id.is_empty() {
                    k.agent = Some(s.agent_id.clone());
                }
            }
        } else if !no_record {
            // A task it gave up on after a failed ACCEPT that launched anyway: track it.
            self.tasks.insert(
                s.task_id.clone(),
                Known {
                    state: Some(state),
                    agent: Some(s.agent_id.clone()),
                    uncertain: false,
                    accepting: false,
                },
            );
        }
        if !s.uuid.is_empty() {
            let (rec, ops, d) = (self.ctx.rec.clone(), self.ops(), self.driver.clone());
            let args = json!({"task": s.task_id, "uuid": s.uuid});
            tokio::spawn(async move {
                call(
                    rec,
                    ops,
                    "ack",
                    args,
                    || async move { d.acknowledge(&s).await },
                )
                .await
            });
        }
    }
}
