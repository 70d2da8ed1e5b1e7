//! The recovery benchmark (`drover bench recovery`): how long after a SIGKILL of the leader the
//! cluster works again, seen from a framework.
//!
//! Starts its own masters (fsync on) and one `drover agent --simulate N` process (tasks are
//! timers; every line printed says so). One framework on the driver library launches
//! `long_tasks` tasks that run until killed, and keeps `churn` short tasks (one second each)
//! in flight, so that status updates flow all the time; it acknowledges every update. Each
//! trial SIGKILLs the leader and measures, from the kill:
//!
//! - **leader**: until a surviving master reports itself leader of a later term (polled every
//!   5 ms);
//! - **offer**: until the framework, re-subscribed to the new leader, receives its first offer
//!   from it;
//! - **update**: until the framework receives the first status update the new leader forwards
//!   (a redelivery of one it had not acknowledged, or a fresh one).
//!
//! The killed master is restarted and caught up before the next trial.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_proto::v1;
use drover_resources::Resources;
use drover_scheduler::driver::{Driver, DriverEvent, DriverOptions, FrameworkInfo, OfferId};
use tokio::sync::mpsc;

use super::percentile_ms;
use crate::cluster::{ClusterError, LocalCluster, MasterId};
use crate::wait::{wait_until, WaitError};

/// What to run: the options of `drover bench recovery` (their doc comments are its help).
#[derive(clap::Args, Clone, Debug)]
pub struct RecoveryBenchOptions {
    #[arg(long, default_value_t = 3)]
    pub masters: u64,
    /// Simulated agents (one process).
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
    /// Tasks that run until killed (the "running tasks" the masters must keep track of).
    #[arg(long, default_value_t = 1000)]
    pub long_tasks: usize,
    /// Short tasks (1 s each) kept in flight, so that status updates flow.
    #[arg(long, default_value_t = 20)]
    pub churn: usize,
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Extra arguments for every master.
    #[arg(long = "master-arg", allow_hyphen_values = true)]
    pub master_args: Vec<String>,
}

/// One trial's times from the SIGKILL, milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Trial {
    pub killed: u64,
    pub new_leader: u64,
    pub leader_ms: f64,
    pub offer_ms: f64,
    pub update_ms: f64,
}

/// p50 / p99 / max of one measure, milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Spread {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(mut ms: Vec<f64>) -> Spread {
        ms.sort_by(f64::total_cmp);
        let d: Vec<Duration> = ms
            .iter()
            .map(|m| Duration::from_secs_f64(m / 1000.0))
            .collect();
        Spread {
            p50_ms: percentile_ms(&d, 50.0),
            p99_ms: percentile_ms(&d, 99.0),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RecoveryFigures {
    pub agents: usize,
    pub running_tasks: usize,
    pub trials: Vec<Trial>,
    pub leader: Spread,
    pub offer: Spread,
    pub update: Spread,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryBenchError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error("driver: {0}")]
    Driver(String),
}

/// What the framework saw, with when.
#[derive(Debug)]
enum Seen {
    Subscribed(u64),
    Offers,
    Update,
}

/// The framework: launches the long tasks, keeps the churn going, acknowledges everything,
/// and reports what it sees.
async fn framework(
    driver: Driver,
    mut events: drover_scheduler::driver::EventStream,
    opts: RecoveryBenchOptions,
    seen: mpsc::UnboundedSender<(Instant, Seen)>,
    running: tokio::sync::watch::Sender<usize>,
) {
    let task_res: Resources = "cpus:0.01;mem:1".parse().expect("task resources");
    let mut queue: VecDeque<v1::TaskInfo> = VecDeque::new();
    let info = |id: String, shell: &str| v1::TaskInfo {
        task_id: id.clone(),
        name: id,
        resources: task_res.to_proto(),
        command: Some(v1::CommandInfo {
            shell: shell.into(),
            environment: Default::default(),
            ..Default::default()
        }),
        kill_grace_seconds: 0.0,
        health_check: None,
        ..Default::default()
    };
    for i in 0..opts.long_tasks {
        queue.push_back(info(format!("long-{i}"), "sleep infinity"));
    }
    for i in 0..opts.churn {
        queue.push_back(info(format!("short-{i}"), "sleep 1"));
    }
    let mut next_short = opts.churn;
    let mut long_running = std::collections::HashSet::new();
    while let Some(e) = events.next_event().await {
        let now = Instant::now();
        match e {
            DriverEvent::Subscribed { master_id, .. } => {
                let _ = seen.send((now, Seen::Subscribed(master_id)));
            }
            DriverEvent::Offers(offers) => {
                let _ = seen.send((now, Seen::Offers));
                for o in offers {
                    let mut left = o.resources.clone();
                    let mut take = Vec::new();
                    while let Some(t) = queue.front() {
                        match left.checked_sub(&task_res) {
                            Ok(rest) if take.len() < 100 => {
                                left = rest;
                                let _ = t;
                                take.extend(queue.pop_front());
                            }
                            _ => break,
                        }
                    }
                    let ids: Vec<OfferId> = vec![o.id.clone()];
                    let d = driver.clone();
                    if take.is_empty() {
                        tokio::spawn(async move { d.decline(&ids, Some(0.5)).await });
                    } else {
                        tokio::spawn(async move { d.accept(&ids, take, Some(0.5)).await });
                    }
                }
            }
            DriverEvent::Update(s) => {
                if !s.uuid.is_empty() {
                    let _ = seen.send((now, Seen::Update));
                    let d = driver.clone();
                    let ack = s.clone();
                    tokio::spawn(async move { d.acknowledge(&ack).await });
                }
                let state = v1::TaskState::try_from(s.state).unwrap_or(v1::TaskState::Unspecified);
                if s.task_id.starts_with("long-") && state == v1::TaskState::TaskRunning {
                    long_running.insert(s.task_id.clone());
                    running.send_replace(long_running.len());
                }
                if s.task_id.starts_with("short-")
                    && drover_scheduler::driver::is_terminal(state)
                    && !s.uuid.is_empty()
                {
                    queue.push_back(info(format!("short-{next_short}"), "sleep 1"));
                    next_short += 1;
                }
            }
            DriverEvent::Error(e) => {
                tracing::error!("framework error: {e}");
                return;
            }
            DriverEvent::Rescind(_) | DriverEvent::Disconnected { .. } => {}
        }
    }
}

/// Runs the benchmark; `progress` gets a line now and then, `report` each trial.
pub async fn recovery(
    binary: PathBuf,
    dir: PathBuf,
    opts: &RecoveryBenchOptions,
    mut progress: impl FnMut(&str),
    mut report: impl FnMut(usize, &Trial),
) -> Result<RecoveryFigures, RecoveryBenchError> {
    let mut cluster = super::start_with_simulated_agents(
        binary,
        dir,
        opts.masters,
        opts.agents,
        &opts.master_args,
        Duration::from_secs(120),
    )
    .await?;
    progress(&format!(
        "{} SIMULATED agents registered; launching {} long tasks and keeping {} short ones in flight",
        opts.agents, opts.long_tasks, opts.churn
    ));
    let mut info = FrameworkInfo::new("bench-recovery");
    info.failover_timeout_seconds = 3600.0;
    info.partition_aware = true;
    let (driver, events) = Driver::start(&cluster.addrs(), info, DriverOptions::default())
        .map_err(|e| RecoveryBenchError::Driver(e.to_string()))?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (running_tx, mut running) = tokio::sync::watch::channel(0usize);
    let fw = tokio::spawn(framework(
        driver.clone(),
        events,
        opts.clone(),
        seen_tx,
        running_tx,
    ));
    let long = opts.long_tasks;
    tokio::time::timeout(Duration::from_secs(300), running.wait_for(|n| *n >= long))
        .await
        .map_err(|_| {
            RecoveryBenchError::Driver("the long tasks did not all start in 300 s".into())
        })?
        .map_err(|_| RecoveryBenchError::Driver("the framework stopped".into()))?;
    progress(&format!("{long} long tasks running"));

    let mut trials = Vec::new();
    for trial in 0..opts.trials {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        wait_until("all masters caught up", Duration::from_secs(60), || {
            let cluster = &cluster;
            async move {
                for m in cluster.masters() {
                    let s = cluster.status(m.id).await.map_err(|e| e.to_string())?;
                    if s.applied_index < leader.committed_index {
                        return Err(format!("master {} behind", m.id));
                    }
                }
                Ok(())
            }
        })
        .await?;
        // Let the churn settle, then forget what was seen before the kill.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while seen.try_recv().is_ok() {}
        let killed = leader.node_id;
        let t0 = Instant::now();
        cluster.kill(killed).await?;
        let survivors: Vec<u64> = cluster
            .masters()
            .map(|m| m.id)
            .filter(|id| *id != killed)
            .collect();
        // (a) a new leader, polled; (b), (c) from the framework.
        let (new_leader, leader_at) = new_leader(&cluster, &survivors, leader.term, t0).await?;
        let (offer_at, update_at) = first_offer_and_update(&mut seen, new_leader, t0).await?;
        let t = Trial {
            killed,
            new_leader,
            leader_ms: leader_at.as_secs_f64() * 1000.0,
            offer_ms: offer_at.as_secs_f64() * 1000.0,
            update_ms: update_at.as_secs_f64() * 1000.0,
        };
        report(trial + 1, &t);
        trials.push(t);
        cluster.start_master(killed)?;
    }
    fw.abort();
    driver.teardown().await.ok();
    driver.stop().await;
    cluster.stop_all(Duration::from_secs(20)).await?;
    Ok(RecoveryFigures {
        agents: opts.agents,
        running_tasks: opts.long_tasks,
        leader: Spread::of(trials.iter().map(|t| t.leader_ms).collect()),
        offer: Spread::of(trials.iter().map(|t| t.offer_ms).collect()),
        update: Spread::of(trials.iter().map(|t| t.update_ms).collect()),
        trials,
    })
}

/// Polls the surviving masters until one leads in a term after `old_term`: it, and how long
/// after `t0`.
async fn new_leader(
    cluster: &LocalCluster,
    survivors: &[MasterId],
    old_term: u64,
    t0: Instant,
) -> Result<(MasterId, Duration), RecoveryBenchError> {
    loop {
        let mut found = None;
        for id in survivors {
            if let Ok(s) = cluster.status(*id).await {
                if s.role == "leader" && s.term > old_term {
                    found = Some(s.node_id);
                }
            }
        }
        if let Some(id) = found {
            return Ok((id, t0.elapsed()));
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(RecoveryBenchError::Driver("no new leader in 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long after `t0` the framework, once subscribed to `new_leader`, saw its first offer and
/// its first status update.
async fn first_offer_and_update(
    seen: &mut mpsc::UnboundedReceiver<(Instant, Seen)>,
    new_leader: MasterId,
    t0: Instant,
) -> Result<(Duration, Duration), RecoveryBenchError> {
    let mut subscribed = false;
    let (mut offer_at, mut update_at) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let (Some(offer), Some(update)) = (offer_at, update_at) {
            return Ok((offer, update));
        }
        let (at, what) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .map_err(|_| {
                RecoveryBenchError::Driver("no offer or update from the new leader in 60 s".into())
            })?
            .ok_or_else(|| RecoveryBenchError::Driver("the framework stopped".into()))?;
        match what {
            Seen::Subscribed(m) => subscribed = m == new_leader,
            Seen::Offers if subscribed && offer_at.is_none() => offer_at = Some(at - t0),
            Seen::Update if subscribed && update_at.is_none() => update_at = Some(at - t0),
            _ => {}
        }
    }
}
