//! The launch benchmark (`drover bench launch`): how fast tasks go from ACCEPT to RUNNING
//! through a real cluster, and what the masters weigh afterwards.
//!
//! Starts its own masters (fsync on) and either real agents (tasks run by real executors) or
//! one `drover agent --simulate N` process (tasks are timers; every line printed says so).
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
    Driver, DriverEvent, DriverOptions, EventStream, FrameworkInfo, Offer, OfferId,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::percentile_ms;
use crate::cluster::{ClusterError, ClusterSpec, LocalCluster};
use crate::wait::wait_until;

/// What to run.
#[derive(Clone, Debug)]
pub struct LaunchBenchOptions {
    pub masters: u64,
    /// Agents: real processes, or simulated ones in one process.
    pub agents: usize,
    pub simulate: bool,
    /// Each agent's resources (`--resources`).
    pub agent_resources: String,
    pub tasks: usize,
    pub task_resources: String,
    /// The tasks' shell command (a simulated task runs `sleep N` as a timer).
    pub command: String,
    /// Most tasks launched from one offer.
    pub per_offer: usize,
    /// ACCEPTs in flight at once.
    pub concurrency: usize,
    /// Tasks launched per second at most (offers are held until the rate allows their use);
    /// `None`: every offer is used as it arrives.
    pub rate: Option<f64>,
    /// Extra arguments for every master.
    pub master_args: Vec<String>,
    /// The whole run's deadline.
    pub timeout: Duration,
}

/// One master's resident memory after the run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MasterMemory {
    pub id: u64,
    pub leader: bool,
    pub rss_mib: f64,
}

/// What the run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LaunchFigures {
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
    pub registration_seconds: f64,
    pub masters: Vec<MasterMemory>,
    /// Tasks in the leader's registry when memory was read.
    pub tasks_in_registry: u64,
}

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

/// One GET over HTTP/1.1 (the master's `/metrics`), body as text.
async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}

/// The value of a metric line `name_and_labels VALUE` in a Prometheus exposition.
fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name_and_labels).then(|| v.parse().ok()).flatten()
    })
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How many tasks of `task` fit in `offered`, at most `max`.
fn fits(offered: &Resources, task: &Resources, max: usize) -> usize {
    let mut left = offered.clone();
    let mut n = 0;
    while n < max {
        match left.checked_sub(task) {
            Ok(rest) => {
                left = rest;
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

struct Run {
    driver: Driver,
    task: Resources,
    opts: LaunchBenchOptions,
    /// Task numbers not launched yet.
    pending: VecDeque<usize>,
    sent: HashMap<String, Instant>,
    /// ACCEPTs as they leave (task ids, when), from the calls' tasks.
    sent_tx: tokio::sync::mpsc::UnboundedSender<(Vec<String>, Instant)>,
    latencies: Vec<Duration>,
    first_accept: Option<Instant>,
    last_running: Option<Instant>,
    failed: usize,
    accepts: usize,
    calls: JoinSet<Result<(), (Vec<String>, String)>>,
    permits: Arc<Semaphore>,
    /// Offers kept for later use (with `rate`), oldest first.
    held: VecDeque<Offer>,
    /// Tasks put into ACCEPTs so far.
    launched: usize,
    started: Option<Instant>,
    /// Updates received and not yet acknowledged; they go together once the calls in
    /// flight (at most [`ACKS_IN_FLIGHT`]) return, as a framework under load would.
    unacked: Vec<v1::TaskStatus>,
    acks: JoinSet<Result<(), String>>,
}

/// ACKNOWLEDGE calls in flight at once.
const ACKS_IN_FLIGHT: usize = 2;

impl Run {
    fn task_info(&self, n: usize) -> v1::TaskInfo {
        v1::TaskInfo {
            task_id: format!("bench-{n}"),
            name: format!("bench-{n}"),
            resources: self.task.to_proto(),
            command: Some(v1::CommandInfo {
                shell: self.opts.command.clone(),
                environment: Default::default(),
            }),
            kill_grace_seconds: 1.0,
        }
    }

    /// New offers: those no task fits are declined for the rest of the run; the others are
    /// used now or, with a rate, when it allows.
    fn offers(&mut self, offers: Vec<Offer>) {
        let mut unused: Vec<OfferId> = Vec::new();
        for o in offers {
            if fits(&o.resources, &self.task, 1) == 0 || self.pending.len() <= self.committed() {
                unused.push(o.id);
            } else {
                self.held.push_back(o);
            }
        }
        if !unused.is_empty() {
            let driver = self.driver.clone();
            self.calls.spawn(async move {
                driver
                    .decline(&unused, Some(3600.0))
                    .await
                    .map_err(|e| (Vec::new(), e.to_string()))
            });
        }
        self.release();
    }

    /// Tasks that the held offers will take (each offer takes up to `per_offer`).
    fn committed(&self) -> usize {
        self.held.len() * self.opts.per_offer
    }

    fn rescinded(&mut self, id: &OfferId) {
        self.held.retain(|o| &o.id != id);
    }

    /// Sends ACCEPTs for held offers as far as the rate allows (all of them without one).
    fn release(&mut self) {
        let started = *self.started.get_or_insert_with(Instant::now);
        let allowed = match self.opts.rate {
            Some(rate) => (started.elapsed().as_secs_f64() * rate).floor() as usize + 1,
            None => usize::MAX,
        };
        while self.launched < allowed && !self.pending.is_empty() {
            let Some(o) = self.held.pop_front() else {
                break;
            };
            let k = fits(&o.resources, &self.task, self.opts.per_offer)
                .min(self.pending.len())
                .min(allowed - self.launched);
            let numbers: Vec<usize> = (0..k).filter_map(|_| self.pending.pop_front()).collect();
            let tasks: Vec<v1::TaskInfo> = numbers.into_iter().map(|n| self.task_info(n)).collect();
            self.launched += tasks.len();
            self.accepts += 1;
            let permits = self.permits.clone();
            let driver = self.driver.clone();
            let (sent_tx, ids): (_, Vec<String>) = (
                self.sent_tx.clone(),
                tasks.iter().map(|t| t.task_id.clone()).collect(),
            );
            self.calls.spawn(async move {
                let _permit = permits.acquire_owned().await;
                // Latency counts from here: the ACCEPT leaves the framework.
                let _ = sent_tx.send((ids.clone(), Instant::now()));
                driver
                    .accept(std::slice::from_ref(&o.id), tasks, None)
                    .await
                    .map_err(|e| (ids, e.to_string()))
            });
        }
    }

    /// ACCEPTs that left: their tasks' clocks start.
    fn accepted(&mut self, ids: Vec<String>, at: Instant) {
        self.first_accept.get_or_insert(at);
        for id in ids {
            // An update that arrived before this (cannot, as the ACCEPT commits first) wins.
            self.sent.entry(id).or_insert(at);
        }
    }

    fn update(&mut self, status: v1::TaskStatus) {
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::Unspecified);
        if !status.uuid.is_empty() {
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
                self.last_running = Some(now);
            }
            _ => {
                self.sent.remove(&status.task_id);
                self.failed += 1;
                tracing::warn!(task = %status.task_id, state = ?state, message = %status.message, "a task ended before it ran");
            }
        }
    }

    /// Acknowledges what was received, if a call slot is free.
    fn flush_acks(&mut self) {
        while self.acks.len() < ACKS_IN_FLIGHT && !self.unacked.is_empty() {
            let n = self
                .unacked
                .len()
                .min(drover_scheduler::driver::MAX_IDS_PER_CALL);
            let batch: Vec<v1::TaskStatus> = self.unacked.drain(..n).collect();
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
        r: Result<Result<(), (Vec<String>, String)>, tokio::task::JoinError>,
    ) {
        if let Ok(Err((ids, e))) = r {
            if ids.is_empty() {
                tracing::warn!("call failed: {e}");
            } else {
                tracing::warn!(tasks = ids.len(), "ACCEPT failed: {e}");
                for id in ids {
                    if self.sent.remove(&id).is_some() {
                        self.failed += 1;
                    }
                }
            }
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

/// Runs the launch benchmark; `progress` gets a line now and then.
pub async fn launch(
    binary: PathBuf,
    dir: PathBuf,
    opts: &LaunchBenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<LaunchFigures, LaunchBenchError> {
    let task: Resources = opts
        .task_resources
        .parse()
        .map_err(|e| LaunchBenchError::Usage(format!("--task-resources: {e}")))?;
    let processes = if opts.simulate { 1 } else { opts.agents };
    let mut spec = ClusterSpec::on_free_ports(binary, dir, opts.masters)?.with_agents(processes)?;
    spec.master_args = opts.master_args.clone();
    spec.agent_args = vec!["--resources".into(), opts.agent_resources.clone()];
    if opts.simulate {
        spec.agent_args
            .extend(["--simulate".to_string(), opts.agents.to_string()]);
    }
    let deadline = Instant::now() + opts.timeout;
    let mut cluster = LocalCluster::start(spec).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let registering = Instant::now();
    progress(&format!("waiting for {} agents to register", opts.agents));
    let want = opts.agents as f64;
    let leader_addr = leader.leader_addr.clone();
    wait_until(
        "agents registered",
        opts.timeout.min(Duration::from_secs(600)),
        || {
            let addr = leader_addr.clone();
            async move {
                let body = http_get(&addr, "/metrics").await?;
                let active = metric(&body, "drover_master_agents{state=\"active\"}").unwrap_or(0.0);
                if active >= want {
                    Ok(())
                } else {
                    Err(format!("{active} of {want} agents active"))
                }
            }
        },
    )
    .await?;
    let registration_seconds = registering.elapsed().as_secs_f64();
    progress(&format!(
        "{} agents registered in {registration_seconds:.1} s; launching {} tasks",
        opts.agents, opts.tasks
    ));

    let (driver, mut events) = Driver::start(
        &cluster.addrs(),
        FrameworkInfo::new("bench-launch"),
        DriverOptions::default(),
    )
    .map_err(|e| LaunchBenchError::Driver(e.to_string()))?;
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut run = Run {
        driver: driver.clone(),
        task,
        opts: opts.clone(),
        pending: (0..opts.tasks).collect(),
        sent: HashMap::new(),
        latencies: Vec::with_capacity(opts.tasks),
        first_accept: None,
        last_running: None,
        failed: 0,
        accepts: 0,
        calls: JoinSet::new(),
        permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        held: VecDeque::new(),
        launched: 0,
        started: None,
        sent_tx,
        unacked: Vec::new(),
        acks: JoinSet::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_report = Instant::now();
    while !run.done() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LaunchBenchError::Timeout(
                opts.timeout,
                format!(
                    "{} of {} tasks running, {} failed",
                    run.latencies.len(),
                    opts.tasks,
                    run.failed
                ),
            ));
        }
        tokio::select! {
            e = next_event(&mut events) => match e? {
                DriverEvent::Offers(o) => run.offers(o),
                DriverEvent::Rescind(id) => run.rescinded(&id),
                DriverEvent::Update(s) => run.update(s),
                DriverEvent::Error(e) => return Err(LaunchBenchError::Driver(e)),
                DriverEvent::Disconnected { reason } => progress(&format!("driver disconnected: {reason}")),
                _ => {}
            },
            Some(r) = run.calls.join_next() => run.finished_call(r),
            Some(r) = run.acks.join_next() => run.finished_ack(r),
            Some((ids, at)) = sent_rx.recv() => run.accepted(ids, at),
            _ = tick.tick(), if run.opts.rate.is_some() => run.release(),
            _ = tokio::time::sleep(left) => {}
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            progress(&format!(
                "{} of {} tasks running ({} failed, {} not yet launched)",
                run.latencies.len(),
                opts.tasks,
                run.failed,
                run.pending.len()
            ));
        }
    }
    while let Some(r) = run.calls.join_next().await {
        run.finished_call(r);
    }
    while let Some(r) = run.acks.join_next().await {
        run.finished_ack(r);
    }

    // Memory with every task still in the registry.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let body = http_get(&leader.leader_addr, "/metrics")
        .await
        .unwrap_or_default();
    let tasks_in_registry: f64 = body
        .lines()
        .filter(|l| l.starts_with("drover_master_tasks{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    let masters: Vec<MasterMemory> = cluster
        .masters()
        .map(|m| MasterMemory {
            id: m.id,
            leader: m.id == leader.leader_id,
            rss_mib: m.pid().map_or(0.0, rss_mib),
        })
        .collect();

    let mut sorted = run.latencies.clone();
    sorted.sort_unstable();
    let seconds = match (run.first_accept, run.last_running) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let figures = LaunchFigures {
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
        registration_seconds,
        masters,
        tasks_in_registry: tasks_in_registry as u64,
    };
    driver.teardown().await.ok();
    driver.stop().await;
    cluster.stop_all(Duration::from_secs(20)).await?;
    Ok(figures)
}
