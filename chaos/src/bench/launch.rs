//! The launch benchmark (`drover bench launch`): how fast tasks go from ACCEPT to RUNNING
//! through a real cluster, and what the masters weigh afterwards.
//!
//! Starts its own masters (fsync on) and either real agents (tasks run by real executors, and
//! with `--containers docker` also, in a round of their own, as Docker containers) or one
//! `drover agent --simulate N` process (tasks are timers; every line printed says so).
//! One framework on the driver library packs up to `per_offer` tasks into each offer it
//! gets, sends the ACCEPTs concurrently, declines what it does not need for long, and
//! acknowledges every update. A task's latency is from its ACCEPT being sent to its
//! TASK_RUNNING reaching the framework: the ACCEPT's commit, RunTask to the agent, the
//! agent's STARTING and RUNNING each committed through Raft before it is forwarded.
//! Throughput is tasks RUNNING over the time from the first ACCEPT to the last RUNNING.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::v1;
use drover_resources::Resources;
use drover_scheduler::driver::{
    Api, Driver, DriverEvent, DriverOptions, EventStream, FrameworkInfo, Offer, OfferId,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::percentile_ms;
use crate::cluster::{ClusterError, ClusterSpec, LocalCluster};
use crate::workload::tasks::Containers;

/// What to run: the options of `drover bench launch` (their doc comments are its help).
#[derive(clap::Args, Clone, Debug)]
pub struct LaunchBenchOptions {
    #[arg(long, default_value_t = 3)]
    pub masters: u64,
    /// Agents: real `drover agent` processes running real executors, or with
    /// `--simulate` that many simulated agents in one process (tasks are timers).
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    #[arg(long)]
    pub simulate: bool,
    /// Each agent's resources.
    #[arg(
        long,
        default_value = "cpus:64;mem:65536;disk:65536;ports:[31000-32000]"
    )]
    pub agent_resources: String,
    #[arg(long, default_value_t = 500)]
    pub tasks: usize,
    #[arg(long, default_value = "cpus:0.1;mem:32")]
    pub task_resources: String,
    /// The tasks' command (for simulated agents, `sleep N` is a timer of N seconds).
    #[arg(long, default_value = "sleep 1")]
    pub command: String,
    /// Most tasks launched from one offer.
    #[arg(long, default_value_t = 10)]
    pub per_offer: usize,
    /// ACCEPTs in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Launch at most this many tasks per second (offers are held until the rate allows);
    /// without it every offer is used as it arrives, so latency includes the backlog.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Whole-run deadline, seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_seconds: u64,
    /// Extra arguments for every master, e.g. `--master-arg=--allocation-interval-ms=200`.
    #[arg(long = "master-arg", allow_hyphen_values = true)]
    pub master_args: Vec<String>,
    /// The framework API measured: `grpc`, or `http` (the Mesos v1 scheduler HTTP API), which
    /// measures a gRPC framework first and then an HTTP one on the same cluster, `--tasks`
    /// each, so that the two figures stand side by side.
    #[arg(long, value_enum, default_value_t = Api::Grpc)]
    pub api: Api,
    /// How many times to measure each API (alternating with `--api http`, each on a fresh
    /// cluster); the summary gives each figure's median over the trials.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub trials: u32,
    /// Do not acknowledge status updates: measures the launch and event path without the
    /// ACKNOWLEDGE calls' cost (each a committed write; over the Mesos HTTP API, one request
    /// per update). Every framework that relies on updates acknowledges them.
    #[arg(long)]
    pub no_acknowledge: bool,
    /// `docker`: measure the tasks as Docker containers (of a test image built locally) too:
    /// each round with the command executor is followed by one with containers, on a fresh
    /// cluster, the same tasks and command, so that the two figures stand side by side.
    #[arg(long, value_enum, default_value_t = Containers::None)]
    pub containers: Containers,
}

impl LaunchBenchOptions {
    /// The whole run's deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

/// `--rate`: a positive, finite number of tasks per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s}: must be a positive number of tasks per second"
        )),
    }
}

/// One master's resident memory after the run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MasterMemory {
    pub id: u64,
    pub leader: bool,
    /// `None` when it could not be read.
    pub rss_mib: Option<f64>,
}

/// What one framework's launches measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LaunchFigures {
    /// The framework API it spoke (`grpc`, `http`).
    pub api: String,
    /// How its tasks ran: `none` (the command executor) or `docker` (containers).
    pub containers: Containers,
    pub simulated: bool,
    pub agents: usize,
    pub tasks: usize,
    pub running: usize,
    /// Tasks that ended before RUNNING, or whose ACCEPT was refused.
    pub failed: usize,
    pub accepts: usize,
    pub seconds: f64,
    pub launches_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// How long the ACCEPT calls took to be answered (the part of the latency before the
    /// launch leaves the leader), p50 and p99.
    pub accept_call_p50_ms: f64,
    pub accept_call_p99_ms: f64,
    /// How long each RUNNING took from its creation on the agent (its `timestamp`, in whole
    /// milliseconds) to the framework's event loop, p50 and p99: the relay's part of the
    /// latency (commit on the leader, the event stream, the framework's decoding); the rest is
    /// the ACCEPT's way to the agent.
    pub relay_p50_ms: f64,
    pub relay_p99_ms: f64,
    pub registration_seconds: f64,
    pub masters: Vec<MasterMemory>,
    /// Tasks in the leader's registry when memory was read; `None` when the leader's
    /// metrics could not be read or did not have them.
    pub tasks_in_registry: Option<u64>,
    /// Raft terms that began between the agents' registration and the end of the run (0: the
    /// same leader throughout).
    pub leader_changes: u64,
    /// Where the CPU went from the framework's start to its last acknowledgement.
    pub cpu: CpuFigures,
    /// Raft log entries the leader appended meanwhile (writes are batched into entries, each
    /// synced on a majority); `None` when its metrics could not be read.
    pub raft_entries: Option<u64>,
}

/// CPU seconds (user and system) by role: used during one framework's run (what is
/// reported), or, while measuring, each process's clock at one moment; `None` where `/proc`
/// could not be read.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuFigures {
    pub leader: Option<f64>,
    /// The other masters together.
    pub followers: Option<f64>,
    /// The agent processes together.
    pub agents: Option<f64>,
    /// This process: the framework's driver and the benchmark's own work.
    pub framework: Option<f64>,
}

impl CpuFigures {
    /// The CPU clocks of `cluster`'s processes now, by role (`leader` is the leader's id):
    /// each the CPU used since the process started.
    fn read(cluster: &LocalCluster, leader: u64) -> Self {
        let sum = |pids: Vec<Option<u32>>| -> Option<f64> {
            pids.into_iter().map(|p| p.and_then(cpu_seconds)).sum()
        };
        Self {
            leader: sum(cluster
                .masters()
                .filter(|m| m.id == leader)
                .map(|m| m.pid())
                .collect()),
            followers: sum(cluster
                .masters()
                .filter(|m| m.id != leader)
                .map(|m| m.pid())
                .collect()),
            agents: sum(cluster.agents().map(|a| a.pid()).collect()),
            framework: cpu_seconds(std::process::id()),
        }
    }

    /// The CPU used from the clocks `self` to the clocks `later`.
    fn until(&self, later: &Self) -> Self {
        let d = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        Self {
            leader: d(self.leader, later.leader),
            followers: d(self.followers, later.followers),
            agents: d(self.agents, later.agents),
            framework: d(self.framework, later.framework),
        }
    }
}

/// The sum of metric `name` on the leader's `/metrics`; `None` when it cannot be read.
async fn leader_metric(leader_addr: &str, name: &str) -> Option<u64> {
    match http_get(leader_addr, "/metrics").await {
        Ok(body) => metric_sum(&body, name, "").map(|v| v as u64),
        Err(e) => {
            tracing::warn!("reading the leader's /metrics: {e}");
            None
        }
    }
}

/// The leader's count of appended Raft entries (see [`LaunchFigures::raft_entries`]).
const RAFT_ENTRIES: &str = "drover_master_raft_appended_entries_total";

/// The errors of the launch benchmark.
#[derive(Debug, thiserror::Error)]
pub enum LaunchBenchError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Wait(#[from] crate::wait::WaitError),
    #[error("driver: {0}")]
    Driver(String),
    #[error("{0}")]
    Usage(String),
    #[error("the run did not finish within {0:?}: {1}")]
    Timeout(Duration, String),
}

use super::{cpu_seconds, fits, rss_mib};
use crate::http::{get as http_get, metric_sum};

/// Why a call of the run failed.
enum CallError {
    /// An ACCEPT: its tasks were not launched.
    Accept {
        tasks: Vec<String>,
        error: String,
    },
    Decline(String),
}

struct Run {
    driver: Driver,
    /// The container each task runs in, or none (a command).
    container: Option<v1::ContainerInfo>,
    /// The tasks' id prefix (one per framework of the run).
    prefix: String,
    task: Resources,
    opts: LaunchBenchOptions,
    /// The next task number to launch: tasks `0..next_task` are in ACCEPTs already.
    next_task: usize,
    sent: HashMap<String, Instant>,
    /// ACCEPTs as they leave (task ids, when), from the calls' tasks.
    sent_tx: tokio::sync::mpsc::UnboundedSender<(Vec<String>, Instant)>,
    latencies: Vec<Duration>,
    /// Per RUNNING: from its creation on the agent to its arrival here.
    relayed: Vec<Duration>,
    /// When the first ACCEPT was sent: the rate's clock and the start of the throughput.
    first_accept: Option<Instant>,
    last_running: Option<Instant>,
    failed: usize,
    accepts: usize,
    /// Each answered call: how long an ACCEPT took to be answered (`None` for others).
    calls: JoinSet<Result<Option<Duration>, CallError>>,
    /// How long each answered ACCEPT took, from leaving to its answer.
    accept_calls: Vec<Duration>,
    permits: Arc<Semaphore>,
    /// Offers kept for later use (with `rate`), oldest first, each with the tasks it fits
    /// (at most `per_offer`).
    held: VecDeque<(OfferId, usize)>,
    /// The sum of the tasks the held offers fit.
    committed: usize,
    /// Updates received and not yet acknowledged; they go together once the calls in
    /// flight (at most [`ACKS_IN_FLIGHT`]) return, as a framework under load would.
    unacked: Vec<v1::TaskStatus>,
    acks: JoinSet<Result<(), String>>,
}

/// ACKNOWLEDGE calls in flight at once.
const ACKS_IN_FLIGHT: usize = 2;

impl Run {
    fn new(
        driver: Driver,
        container: Option<v1::ContainerInfo>,
        prefix: String,
        task: Resources,
        opts: &LaunchBenchOptions,
        sent_tx: tokio::sync::mpsc::UnboundedSender<(Vec<String>, Instant)>,
    ) -> Self {
        Self {
            driver,
            container,
            prefix,
            task,
            opts: opts.clone(),
            next_task: 0,
            sent: HashMap::new(),
            latencies: Vec::with_capacity(opts.tasks),
            relayed: Vec::with_capacity(opts.tasks),
            first_accept: None,
            last_running: None,
            failed: 0,
            accepts: 0,
            calls: JoinSet::new(),
            accept_calls: Vec::new(),
            permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            held: VecDeque::new(),
            committed: 0,
            sent_tx,
            unacked: Vec::new(),
            acks: JoinSet::new(),
        }
    }

    /// Launches every task: answers offers with ACCEPTs (at the rate, if one is set), starts
    /// each ACCEPT's clock when it leaves, stops each task's at RUNNING, until every task ran
    /// or failed, or `deadline` passes.
    async fn drive(
        &mut self,
        events: &mut EventStream,
        mut sent_rx: tokio::sync::mpsc::UnboundedReceiver<(Vec<String>, Instant)>,
        deadline: Instant,
        progress: &mut impl FnMut(&str),
    ) -> Result<(), LaunchBenchError> {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_report = Instant::now();
        while !self.done() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LaunchBenchError::Timeout(
                    self.opts.timeout(),
                    format!(
                        "{} of {} tasks running, {} failed",
                        self.latencies.len(),
                        self.opts.tasks,
                        self.failed
                    ),
                ));
            }
            tokio::select! {
                e = next_event(events) => match e? {
                    DriverEvent::Offers(o) => self.offers(o),
                    DriverEvent::Rescind(id) => self.rescinded(&id),
                    DriverEvent::Update(s) => {
                        // Start the clocks of the ACCEPTs that left before this update first
                        // (`select!` may poll this branch before the channel's).
                        while let Ok((ids, at)) = sent_rx.try_recv() {
                            self.accepted(ids, at);
                        }
                        self.update(s)
                    }
                    DriverEvent::Error(e) => return Err(LaunchBenchError::Driver(e)),
                    DriverEvent::Disconnected { reason } => progress(&format!("driver disconnected: {reason}")),
                    _ => {}
                },
                Some(r) = self.calls.join_next() => self.finished_call(r),
                Some(r) = self.acks.join_next() => self.finished_ack(r),
                Some((ids, at)) = sent_rx.recv() => self.accepted(ids, at),
                _ = tick.tick(), if self.opts.rate.is_some() => self.release(),
                _ = tokio::time::sleep(left) => {}
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                progress(&format!(
                    "{} of {} tasks running ({} failed, {} not yet launched)",
                    self.latencies.len(),
                    self.opts.tasks,
                    self.failed,
                    self.pending()
                ));
            }
        }
        Ok(())
    }

    fn task_info(&self, n: usize) -> v1::TaskInfo {
        v1::TaskInfo {
            task_id: format!("{}-{n}", self.prefix),
            name: format!("{}-{n}", self.prefix),
            resources: self.task.to_proto(),
            command: Some(v1::CommandInfo {
                shell: self.opts.command.clone(),
                environment: Default::default(),
                ..Default::default()
            }),
            kill_grace_seconds: 1.0,
            health_check: None,
            container: self.container.clone(),
            ..Default::default()
        }
    }

    /// Task numbers not launched yet.
    fn pending(&self) -> usize {
        self.opts.tasks - self.next_task
    }

    /// New offers: those no task fits, or not needed by the tasks not yet launched beyond
    /// what the held offers fit, are declined for the rest of the run; the others are used
    /// now or, with a rate, when it allows.
    fn offers(&mut self, offers: Vec<Offer>) {
        let mut unused: Vec<OfferId> = Vec::new();
        for o in offers {
            let fit = fits(&o.resources, &self.task, self.opts.per_offer);
            if fit == 0 || self.pending() <= self.committed {
                unused.push(o.id);
            } else {
                self.committed += fit;
                self.held.push_back((o.id, fit));
            }
        }
        self.decline(unused);
        self.release();
    }

    /// Declines `offers` for the rest of the run (an hour).
    fn decline(&mut self, offers: Vec<OfferId>) {
        if offers.is_empty() {
            return;
        }
        let driver = self.driver.clone();
        self.calls.spawn(async move {
            driver
                .decline(&offers, Some(3600.0))
                .await
                .map(|()| None)
                .map_err(|e| CallError::Decline(e.to_string()))
        });
    }

    fn rescinded(&mut self, id: &OfferId) {
        if let Some(i) = self.held.iter().position(|(held, _)| held == id) {
            if let Some((_, fit)) = self.held.remove(i) {
                self.committed -= fit;
            }
        }
    }

    /// Sends ACCEPTs for held offers as far as the rate allows (all of them without one);
    /// once every task is launched, declines the offers still held.
    fn release(&mut self) {
        // The rate's clock starts with the first ACCEPT, which it always allows.
        let allowed = match self.opts.rate {
            Some(rate) => {
                let elapsed = self.first_accept.map_or(0.0, |t| t.elapsed().as_secs_f64());
                ((elapsed * rate).floor() as usize).saturating_add(1)
            }
            None => usize::MAX,
        };
        let limit = allowed.min(self.opts.tasks);
        while self.next_task < limit {
            let Some((offer, fit)) = self.held.pop_front() else {
                break;
            };
            self.committed -= fit;
            let k = fit.min(limit - self.next_task);
            let tasks: Vec<v1::TaskInfo> = (self.next_task..self.next_task + k)
                .map(|n| self.task_info(n))
                .collect();
            self.next_task += k;
            self.accepts += 1;
            self.first_accept.get_or_insert_with(Instant::now);
            let permits = self.permits.clone();
            let driver = self.driver.clone();
            let sent_tx = self.sent_tx.clone();
            let ids: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
            self.calls.spawn(async move {
                let _permit = permits.acquire_owned().await;
                // Latency counts from here: the ACCEPT leaves the framework.
                let left = Instant::now();
                let _ = sent_tx.send((ids.clone(), left));
                driver
                    .accept(std::slice::from_ref(&offer), tasks, None)
                    .await
                    .map(|()| Some(left.elapsed()))
                    .map_err(|e| CallError::Accept {
                        tasks: ids,
                        error: e.to_string(),
                    })
            });
        }
        if self.pending() == 0 && !self.held.is_empty() {
            let unused: Vec<OfferId> = self.held.drain(..).map(|(id, _)| id).collect();
            self.committed = 0;
            self.decline(unused);
        }
    }

    /// ACCEPTs that left: their tasks' clocks start.
    fn accepted(&mut self, ids: Vec<String>, at: Instant) {
        for id in ids {
            self.sent.insert(id, at);
        }
    }

    fn update(&mut self, status: v1::TaskStatus) {
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::Unspecified);
        if !status.uuid.is_empty() && !self.opts.no_acknowledge {
            // Not gated by the permits: the event loop must keep reading (a framework that
            // falls behind its event stream is disconnected).
            self.unacked.push(status.clone());
            self.flush_acks();
        }
        let Some(sent) = self.sent.get(&status.task_id).copied() else {
            return;
        };
        match state {
            v1::TaskState::TaskStaging | v1::TaskState::TaskStarting => {}
            v1::TaskState::TaskRunning => {
                self.sent.remove(&status.task_id);
                let now = Instant::now();
                self.latencies.push(now - sent);
                let created = std::time::UNIX_EPOCH + Duration::from_millis(status.timestamp_ms);
                if let Ok(relayed) = std::time::SystemTime::now().duration_since(created) {
                    self.relayed.push(relayed);
                }
                self.last_running = Some(now);
            }
            _ => {
                self.sent.remove(&status.task_id);
                self.failed += 1;
                tracing::warn!(task = %status.task_id, state = ?state, message = %status.message, "a task ended before it ran");
            }
        }
    }

    /// Acknowledges everything received so far in one call (which the driver splits as
    /// needed), if a call slot is free.
    fn flush_acks(&mut self) {
        if self.acks.len() < ACKS_IN_FLIGHT && !self.unacked.is_empty() {
            let batch = std::mem::take(&mut self.unacked);
            let driver = self.driver.clone();
            self.acks.spawn(async move {
                driver
                    .acknowledge_all(&batch)
                    .await
                    .map_err(|e| e.to_string())
            });
        }
    }

    fn finished_ack(&mut self, r: Result<Result<(), String>, tokio::task::JoinError>) {
        if let Ok(Err(e)) = r {
            tracing::warn!("ACKNOWLEDGE failed: {e}");
        }
        self.flush_acks();
    }

    fn finished_call(
        &mut self,
        r: Result<Result<Option<Duration>, CallError>, tokio::task::JoinError>,
    ) {
        match r {
            Ok(Err(CallError::Decline(e))) => tracing::warn!("DECLINE failed: {e}"),
            Ok(Err(CallError::Accept { tasks, error })) => {
                tracing::warn!(tasks = tasks.len(), "ACCEPT failed: {error}");
                for id in tasks {
                    if self.sent.remove(&id).is_some() {
                        self.failed += 1;
                    }
                }
            }
            Ok(Ok(Some(took))) => self.accept_calls.push(took),
            Ok(Ok(None)) | Err(_) => {}
        }
    }

    fn done(&self) -> bool {
        self.latencies.len() + self.failed >= self.opts.tasks
    }
}

async fn next_event(events: &mut EventStream) -> Result<DriverEvent, LaunchBenchError> {
    events
        .next_event()
        .await
        .ok_or_else(|| LaunchBenchError::Driver("the driver stopped".into()))
}

/// Runs the launch benchmark: one framework per API measured (see
/// [`LaunchBenchOptions::api`]) and trial, each on a cluster of its own started afresh (the same
/// conditions for both: a second framework on the first one's cluster would find its offers
/// made faster by the first one's ending tasks); `progress` gets a line now and then.
pub async fn launch(
    binary: PathBuf,
    dir: PathBuf,
    opts: &LaunchBenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<LaunchFigures>, LaunchBenchError> {
    let task: Resources = opts
        .task_resources
        .parse()
        .map_err(|e| LaunchBenchError::Usage(format!("--task-resources: {e}")))?;
    let deadline = Instant::now() + opts.timeout();
    let apis: &[Api] = match opts.api {
        Api::Grpc => &[Api::Grpc],
        Api::Http => &[Api::Grpc, Api::Http],
    };
    let image = match opts.containers {
        Containers::None => None,
        Containers::Docker if opts.simulate => {
            return Err(LaunchBenchError::Usage(
                "--containers docker needs real agents, not --simulate".into(),
            ))
        }
        Containers::Docker => Some(
            drover_agent::testing::docker_test_image()
                .await
                .map_err(|why| LaunchBenchError::Usage(format!("--containers docker: {why}")))?,
        ),
    };
    // Each API's round with commands, then (with an image) the same with containers.
    let kinds: Vec<Option<&str>> = std::iter::once(None).chain(image.map(Some)).collect();
    let per_trial: Vec<(Api, Option<&str>)> = apis
        .iter()
        .flat_map(|&api| kinds.iter().map(move |&k| (api, k)))
        .collect();
    let rounds = per_trial
        .iter()
        .cycle()
        .take(per_trial.len() * opts.trials as usize);
    let mut all = Vec::with_capacity(per_trial.len() * opts.trials as usize);
    for (round, &(api, image)) in rounds.enumerate() {
        let name = crate::run::api_name(api);
        let label = figures_label(&name, image.is_some());
        let processes = if opts.simulate { 1 } else { opts.agents };
        let mut spec = ClusterSpec::on_free_ports(
            binary.clone(),
            dir.join(format!("{round}-{}", label.replace(' ', "-"))),
            opts.masters,
        )?
        .with_agents(processes)?;
        spec.master_args = opts.master_args.clone();
        spec.agent_args = vec!["--resources".into(), opts.agent_resources.clone()];
        if opts.simulate {
            spec.agent_args
                .extend(["--simulate".to_string(), opts.agents.to_string()]);
        }
        let mut cluster = LocalCluster::start(spec).await?;
        let measured = async {
            let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
            let registering = Instant::now();
            progress(&format!(
                "[{label}] waiting for {} agents to register",
                opts.agents
            ));
            super::wait_for_active_agents(
                &leader.leader_addr,
                opts.agents,
                opts.timeout().min(Duration::from_secs(600)),
            )
            .await?;
            let registration_seconds = registering.elapsed().as_secs_f64();
            progress(&format!(
                "[{label}] {} agents registered in {registration_seconds:.1} s; launching {} tasks",
                opts.agents, opts.tasks
            ));
            measure(
                &cluster,
                (api, image),
                task.clone(),
                opts,
                deadline,
                registration_seconds,
                &mut progress,
            )
            .await
        }
        .await;
        cluster.stop_all(Duration::from_secs(20)).await?;
        all.push(measured?);
    }
    Ok(all)
}

/// How a round's figures are labelled: its API, and `docker` when its tasks were containers.
pub fn figures_label(api: &str, containers: bool) -> String {
    if containers {
        format!("{api} docker")
    } else {
        api.to_string()
    }
}

impl LaunchFigures {
    /// [`figures_label`] of these figures.
    pub fn label(&self) -> String {
        figures_label(&self.api, self.containers == Containers::Docker)
    }
}

/// One framework on `api` launches `opts.tasks` tasks on `cluster` (as containers of `image`
/// when one is given); then it is torn down.
async fn measure(
    cluster: &LocalCluster,
    (api, image): (Api, Option<&str>),
    task: Resources,
    opts: &LaunchBenchOptions,
    deadline: Instant,
    registration_seconds: f64,
    progress: &mut impl FnMut(&str),
) -> Result<LaunchFigures, LaunchBenchError> {
    let first = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let first_term = first.term;
    let entries_before = leader_metric(&first.leader_addr, RAFT_ENTRIES).await;
    let cpu_before = CpuFigures::read(cluster, first.leader_id);
    let name = crate::run::api_name(api);
    let (driver, mut events) = Driver::start(
        &cluster.addrs(),
        FrameworkInfo::new(format!("bench-launch-{name}")),
        DriverOptions {
            api,
            ..DriverOptions::default()
        },
    )
    .map_err(|e| LaunchBenchError::Driver(e.to_string()))?;
    let (sent_tx, sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let container = image.map(|i| drover_model::container::ContainerSpec::of_image(i).to_proto());
    let mut run = Run::new(
        driver.clone(),
        container,
        format!("bench-{name}"),
        task,
        opts,
        sent_tx,
    );
    run.drive(&mut events, sent_rx, deadline, progress).await?;
    while let Some(r) = run.calls.join_next().await {
        run.finished_call(r);
    }
    while let Some(r) = run.acks.join_next().await {
        run.finished_ack(r);
    }
    let cpu = cpu_before.until(&CpuFigures::read(cluster, first.leader_id));

    // Memory with every task still in the registry.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let leader_changes = leader.term.saturating_sub(first_term);
    let raft_entries = match (
        entries_before,
        leader_metric(&leader.leader_addr, RAFT_ENTRIES).await,
    ) {
        (Some(a), Some(b)) if leader_changes == 0 => Some(b.saturating_sub(a)),
        _ => None,
    };
    let tasks_in_registry = leader_metric(&leader.leader_addr, "drover_master_tasks").await;
    let masters: Vec<MasterMemory> = cluster
        .masters()
        .map(|m| MasterMemory {
            id: m.id,
            leader: m.id == leader.leader_id,
            rss_mib: m.pid().and_then(rss_mib),
        })
        .collect();

    let mut sorted = run.latencies.clone();
    sorted.sort_unstable();
    let mut accept_calls = run.accept_calls.clone();
    accept_calls.sort_unstable();
    let mut relayed = run.relayed.clone();
    relayed.sort_unstable();
    let seconds = match (run.first_accept, run.last_running) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let figures = LaunchFigures {
        api: name,
        containers: if image.is_some() {
            Containers::Docker
        } else {
            Containers::None
        },
        simulated: opts.simulate,
        agents: opts.agents,
        tasks: opts.tasks,
        running: sorted.len(),
        failed: run.failed,
        accepts: run.accepts,
        seconds,
        launches_per_sec: if seconds > 0.0 {
            sorted.len() as f64 / seconds
        } else {
            0.0
        },
        p50_ms: percentile_ms(&sorted, 50.0),
        p99_ms: percentile_ms(&sorted, 99.0),
        max_ms: sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        accept_call_p50_ms: percentile_ms(&accept_calls, 50.0),
        accept_call_p99_ms: percentile_ms(&accept_calls, 99.0),
        relay_p50_ms: percentile_ms(&relayed, 50.0),
        relay_p99_ms: percentile_ms(&relayed, 99.0),
        registration_seconds,
        masters,
        tasks_in_registry,
        leader_changes,
        cpu,
        raft_entries,
    };
    driver.teardown().await.ok();
    driver.stop().await;
    Ok(figures)
}
