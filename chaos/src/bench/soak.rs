//! The soak benchmark (`drover bench soak`): a cluster under a steady load for a long time,
//! with its leader killed now and then, to show that what the masters hold stays flat.
//!
//! Starts its own masters (fsync on) and one `drover agent --simulate N` process (tasks are
//! timers; every line printed says the agents are simulated). A framework on the driver
//! library launches short tasks at `--rate` per second for the whole run and acknowledges
//! every update, so completed tasks pile up unless the masters forget them; store clients
//! overwrite `--store-keys` keys at `--store-rate` writes per second; every `--kill-every` the
//! leader is SIGKILLed and started again once another leads. Every `--report-every` it reads
//! each master's resident memory, the registry's sizes (from the leader's metrics), each
//! master's snapshot file and the launches since the last report, and prints a line; at the
//! end, the change of each master's memory from the first report after `--settle` to the last.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_client::MasterClient;
use drover_proto::v1;
use drover_resources::Resources;
use drover_scheduler::driver::{Driver, DriverEvent, DriverOptions, FrameworkInfo, Offer, OfferId};
use tokio::task::JoinSet;

use super::{fits, rss_mib};
use crate::cluster::{ClusterError, LocalCluster, MasterId};
use crate::http::{metric, metric_sum};

/// The options of `drover bench soak` (their doc comments are its help).
#[derive(clap::Args, Clone, Debug)]
pub struct SoakBenchOptions {
    #[arg(long, default_value_t = 3)]
    pub masters: u64,
    /// Simulated agents (one agent process).
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// How long the load runs, e.g. 30m.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Tasks launched per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// The tasks' command (on simulated agents `sleep N` is a timer of N seconds).
    #[arg(long, default_value = "sleep 1")]
    pub command: String,
    /// Store writes per second (puts over a fixed set of keys).
    #[arg(long, default_value_t = 100.0)]
    pub store_rate: f64,
    /// Keys the store writes cycle over.
    #[arg(long, default_value_t = 10_000)]
    pub store_keys: usize,
    /// SIGKILL the leader this often (and start it again); 0s for never.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub kill_every: Duration,
    /// How often a line of figures is printed.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub report_every: Duration,
    /// Memory is compared from the first report after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Extra arguments for every master.
    #[arg(long = "master-arg", allow_hyphen_values = true)]
    pub master_args: Vec<String>,
}

/// One report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SoakSample {
    pub at_seconds: f64,
    pub leader: Option<u64>,
    /// Per master: (id, resident memory in MiB, snapshot file bytes).
    pub masters: Vec<(u64, Option<f64>, Option<u64>)>,
    /// Tasks in the leader's registry, and how many of them are live.
    pub tasks: Option<u64>,
    pub live_tasks: Option<u64>,
    pub frameworks: Option<u64>,
    pub store_keys: Option<u64>,
    pub store_bytes: Option<u64>,
    /// Tasks launched (committed ACCEPTs) per second since the last report.
    pub launches_per_sec: f64,
    pub store_writes_per_sec: f64,
    pub kills: u64,
}

/// What the run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SoakFigures {
    pub samples: Vec<SoakSample>,
    pub launched: u64,
    pub finished: u64,
    pub accept_errors: u64,
    pub store_writes: u64,
    pub store_errors: u64,
    pub kills: u64,
    /// When each killed master was started again (seconds into the run, master id).
    pub restarts: Vec<(f64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SoakBenchError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Wait(#[from] crate::wait::WaitError),
    #[error("driver: {0}")]
    Driver(String),
    #[error("{0}")]
    Usage(String),
}

/// Counters shared by the load's parts.
#[derive(Default)]
struct Counters {
    launched: AtomicU64,
    finished: AtomicU64,
    accept_errors: AtomicU64,
    store_writes: AtomicU64,
    store_errors: AtomicU64,
}

/// Offers kept longer than this are declined (before the master would rescind them).
const OFFER_HOLD: Duration = Duration::from_secs(5);
/// Most tasks launched from one offer.
const PER_OFFER: usize = 100;
/// ACCEPT and ACKNOWLEDGE calls in flight at once.
const CALLS_IN_FLIGHT: usize = 64;

/// The framework: launches tasks at the rate on the offers it holds, acknowledges everything.
async fn framework(
    driver: Driver,
    mut events: drover_scheduler::driver::EventStream,
    rate: f64,
    command: String,
    counters: Arc<Counters>,
) {
    let task: Resources = "cpus:0.01;mem:1".parse().expect("task resources");
    let mut held: VecDeque<(Offer, Instant)> = VecDeque::new();
    let mut calls: JoinSet<()> = JoinSet::new();
    let mut next = 0u64;
    let mut budget = 0.0f64;
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut unacked: Vec<v1::TaskStatus> = Vec::new();
    loop {
        tokio::select! {
            e = events.next_event() => match e {
                None => return,
                Some(DriverEvent::Offers(offers)) => {
                    held.extend(offers.into_iter().map(|o| (o, Instant::now())));
                }
                Some(DriverEvent::Rescind(id)) => held.retain(|(o, _)| o.id != id),
                Some(DriverEvent::Update(s)) => {
                    let state = v1::TaskState::try_from(s.state).unwrap_or(v1::TaskState::Unspecified);
                    if !s.uuid.is_empty() {
                        if drover_scheduler::driver::is_terminal(state) {
                            counters.finished.fetch_add(1, Ordering::Relaxed);
                        }
                        unacked.push(s);
                    }
                }
                Some(DriverEvent::Error(e)) => {
                    tracing::error!("soak framework: {e}");
                    return;
                }
                Some(DriverEvent::Subscribed { .. } | DriverEvent::Disconnected { .. }) => {
                    held.clear();
                }
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            _ = tick.tick() => {
                let now = Instant::now();
                budget = (budget + rate * (now - last).as_secs_f64()).min(rate.max(1.0));
                last = now;
                // Stale offers go back.
                let stale: Vec<OfferId> = held
                    .iter()
                    .filter(|(_, at)| at.elapsed() > OFFER_HOLD)
                    .map(|(o, _)| o.id.clone())
                    .collect();
                if !stale.is_empty() {
                    held.retain(|(_, at)| at.elapsed() <= OFFER_HOLD);
                    let d = driver.clone();
                    calls.spawn(async move {
                        let _ = d.decline(&stale, Some(1.0)).await;
                    });
                }
                while budget >= 1.0 && calls.len() < CALLS_IN_FLIGHT {
                    let Some((offer, _)) = held.pop_front() else { break };
                    let fit = fits(&offer.resources, &task, PER_OFFER.min(budget as usize));
                    if fit == 0 {
                        let d = driver.clone();
                        calls.spawn(async move {
                            let _ = d.decline(&[offer.id], Some(1.0)).await;
                        });
                        continue;
                    }
                    budget -= fit as f64;
                    let tasks: Vec<v1::TaskInfo> = (0..fit)
                        .map(|_| {
                            next += 1;
                            v1::TaskInfo {
                                task_id: format!("soak-{next}"),
                                name: "soak".into(),
                                resources: task.to_proto(),
                                command: Some(v1::CommandInfo {
                                    shell: command.clone(),
                                    environment: Default::default(),
                                    ..Default::default()
                                }),
                                kill_grace_seconds: 0.0,
                                health_check: None,
                                ..Default::default()
                            }
                        })
                        .collect();
                    let (d, c) = (driver.clone(), counters.clone());
                    calls.spawn(async move {
                        match d.accept(&[offer.id], tasks, Some(0.0)).await {
                            Ok(()) => c.launched.fetch_add(fit as u64, Ordering::Relaxed),
                            Err(_) => c.accept_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    });
                }
                if !unacked.is_empty() && calls.len() < CALLS_IN_FLIGHT {
                    let batch = std::mem::take(&mut unacked);
                    let d = driver.clone();
                    calls.spawn(async move {
                        let _ = d.acknowledge_all(&batch).await;
                    });
                }
            }
        }
    }
}

/// Store clients: puts over `keys` keys at `rate` per second, in 16 parallel lanes.
async fn store_load(client: MasterClient, rate: f64, keys: usize, counters: Arc<Counters>) {
    const LANES: usize = 16;
    let mut lanes = JoinSet::new();
    for lane in 0..LANES {
        let (client, counters) = (client.clone(), counters.clone());
        let every = Duration::from_secs_f64(LANES as f64 / rate.max(0.001));
        lanes.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = lane;
            loop {
                tick.tick().await;
                let key = format!("soak-{:06}", n % keys.max(1));
                n += LANES;
                match client.put("soak", &key, vec![b'v'; 100]).await {
                    Ok(_) => counters.store_writes.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.store_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while lanes.join_next().await.is_some() {}
}

/// The size of the newest snapshot file under a master's data directory.
fn snapshot_bytes(data_dir: &Path) -> Option<u64> {
    std::fs::read_dir(data_dir.join("snapshots"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
}

async fn sample(cluster: &LocalCluster, started: Instant) -> SoakSample {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .ok()
        .map(|s| (s.node_id, s.leader_addr));
    let masters = cluster
        .masters()
        .map(|m| (m.id, m.pid().and_then(rss_mib), snapshot_bytes(&m.data_dir)))
        .collect();
    let body = match &leader {
        Some((_, addr)) => crate::http::get(addr, "/metrics").await.ok(),
        None => None,
    };
    let body = body.as_deref().unwrap_or("");
    let count = |name: &str, filter: &str| metric_sum(body, name, filter).map(|v| v as u64);
    let tasks = count("drover_master_tasks", "");
    let ended: u64 = drover_model::TaskState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .filter_map(|s| count("drover_master_tasks", &format!("\"{}\"", s.mesos_name())))
        .sum();
    SoakSample {
        at_seconds: started.elapsed().as_secs_f64(),
        leader: leader.map(|(id, _)| id),
        masters,
        tasks,
        live_tasks: tasks.map(|t| t.saturating_sub(ended)),
        frameworks: count("drover_master_frameworks", ""),
        store_keys: metric(body, "drover_master_store_keys").map(|v| v as u64),
        store_bytes: metric(body, "drover_master_store_bytes").map(|v| v as u64),
        launches_per_sec: 0.0,
        store_writes_per_sec: 0.0,
        kills: 0,
    }
}

/// SIGKILLs the leader, waits (bounded) for another to lead, and starts the killed master
/// again; the killed master, if a leader was found.
async fn kill_leader(cluster: &mut LocalCluster) -> Result<Option<MasterId>, SoakBenchError> {
    let Ok(l) = cluster.wait_for_leader(Duration::from_secs(10)).await else {
        return Ok(None);
    };
    cluster.kill(l.node_id).await?;
    let others: Vec<u64> = cluster
        .masters()
        .map(|m| m.id)
        .filter(|id| *id != l.node_id)
        .collect();
    let _ = cluster
        .wait_for_leader_among(&others, l.term, Duration::from_secs(30))
        .await;
    cluster.start_master(l.node_id)?;
    Ok(Some(l.node_id))
}

/// Starts the load: the framework launching tasks at the rate, and the store writers.
fn start_load(
    cluster: &LocalCluster,
    opts: &SoakBenchOptions,
    counters: &Arc<Counters>,
) -> Result<(Driver, JoinSet<()>), SoakBenchError> {
    let mut info = FrameworkInfo::new("bench-soak");
    info.failover_timeout_seconds = 3600.0;
    info.partition_aware = true;
    let (driver, events) = Driver::start(&cluster.addrs(), info, DriverOptions::default())
        .map_err(|e| SoakBenchError::Driver(e.to_string()))?;
    let mut load = JoinSet::new();
    load.spawn(framework(
        driver.clone(),
        events,
        opts.rate,
        opts.command.clone(),
        counters.clone(),
    ));
    let store = MasterClient::new(&cluster.addrs()).map_err(ClusterError::from)?;
    if opts.store_rate > 0.0 {
        load.spawn(store_load(
            store,
            opts.store_rate,
            opts.store_keys,
            counters.clone(),
        ));
    }
    Ok((driver, load))
}

/// Runs the soak; `report` gets every sample as it is taken, `progress` a line now and then.
pub async fn soak(
    binary: PathBuf,
    dir: PathBuf,
    opts: &SoakBenchOptions,
    mut progress: impl FnMut(&str),
    mut report: impl FnMut(&SoakSample),
) -> Result<SoakFigures, SoakBenchError> {
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        return Err(SoakBenchError::Usage("--rate: a positive number".into()));
    }
    if opts.report_every.is_zero() {
        return Err(SoakBenchError::Usage("--report-every: more than 0".into()));
    }
    let mut cluster = super::start_with_simulated_agents(
        binary,
        dir,
        opts.masters,
        opts.agents,
        &opts.master_args,
        Duration::from_secs(300),
    )
    .await?;
    progress(&format!(
        "{} SIMULATED agents registered; launching {} tasks/s ({:?}), {} store writes/s over {} keys, SIGKILL of the leader every {:?}",
        opts.agents, opts.rate, opts.command, opts.store_rate, opts.store_keys, opts.kill_every
    ));
    let counters = Arc::new(Counters::default());
    let (driver, mut load) = start_load(&cluster, opts, &counters)?;

    let started = Instant::now();
    let end = started + opts.duration;
    let mut next_report = started + opts.report_every;
    let mut next_kill = (!opts.kill_every.is_zero()).then(|| started + opts.kill_every);
    let (mut kills, mut last_launched, mut last_writes, mut last_at) = (0u64, 0u64, 0u64, started);
    let mut samples = Vec::new();
    let mut restarts = Vec::new();
    while Instant::now() < end {
        let wake = next_kill
            .map_or(next_report, |k| k.min(next_report))
            .min(end);
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        if next_kill.is_some_and(|k| now >= k) {
            next_kill = Some(now + opts.kill_every);
            if let Some(killed) = kill_leader(&mut cluster).await? {
                restarts.push((started.elapsed().as_secs_f64(), killed));
                kills += 1;
                progress(&format!("SIGKILLed leader master {killed} (kill {kills})"));
            }
        }
        if now >= next_report {
            next_report += opts.report_every;
            let mut s = sample(&cluster, started).await;
            let launched = counters.launched.load(Ordering::Relaxed);
            let writes = counters.store_writes.load(Ordering::Relaxed);
            let dt = now.duration_since(last_at).as_secs_f64().max(0.001);
            s.launches_per_sec = (launched - last_launched) as f64 / dt;
            s.store_writes_per_sec = (writes - last_writes) as f64 / dt;
            s.kills = kills;
            (last_launched, last_writes, last_at) = (launched, writes, now);
            report(&s);
            samples.push(s);
        }
    }
    load.abort_all();
    driver.teardown().await.ok();
    driver.stop().await;
    cluster.stop_all(Duration::from_secs(20)).await?;
    Ok(SoakFigures {
        samples,
        launched: counters.launched.load(Ordering::Relaxed),
        finished: counters.finished.load(Ordering::Relaxed),
        accept_errors: counters.accept_errors.load(Ordering::Relaxed),
        store_writes: counters.store_writes.load(Ordering::Relaxed),
        store_errors: counters.store_errors.load(Ordering::Relaxed),
        kills,
        restarts,
    })
}

/// One master's memory from a settled point to the end of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Drift {
    /// When the first figure was read, seconds into the run.
    pub at_seconds: f64,
    pub first_mib: f64,
    pub last_mib: f64,
    pub percent: f64,
}

/// Per master, its memory in the first sample at least `settle` after it (last) started, and
/// in the last sample, and the change in percent; `None` when it restarted too late for that.
/// A master killed and started again is measured from its new start: a process's memory
/// grows for a while after it starts, whatever its load.
pub fn memory_drift(
    samples: &[SoakSample],
    restarts: &[(f64, u64)],
    settle: Duration,
) -> Vec<(u64, Option<Drift>)> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    last.masters
        .iter()
        .map(|(id, end, _)| {
            let since = restarts
                .iter()
                .filter(|(_, m)| m == id)
                .map(|(at, _)| *at)
                .fold(0.0, f64::max)
                + settle.as_secs_f64();
            let first = samples
                .iter()
                .find(|s| s.at_seconds >= since)
                .and_then(|s| {
                    let rss = s.masters.iter().find(|(i, _, _)| i == id)?.1?;
                    Some((s.at_seconds, rss))
                });
            let drift = first.zip(*end).map(|((at, a), b)| Drift {
                at_seconds: at,
                first_mib: a,
                last_mib: b,
                percent: (b - a) / a * 100.0,
            });
            (*id, drift)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, rss: [f64; 2]) -> SoakSample {
        SoakSample {
            at_seconds: t,
            leader: Some(1),
            masters: vec![(1, Some(rss[0]), None), (2, Some(rss[1]), None)],
            tasks: None,
            live_tasks: None,
            frameworks: None,
            store_keys: None,
            store_bytes: None,
            launches_per_sec: 0.0,
            store_writes_per_sec: 0.0,
            kills: 0,
        }
    }

    #[test]
    fn drift_is_measured_from_settle_after_each_masters_last_start() {
        let samples = [
            at(60.0, [100.0, 100.0]),
            at(120.0, [110.0, 2.0]),
            at(180.0, [110.0, 90.0]),
            at(240.0, [121.0, 99.0]),
        ];
        // Master 2 was started again at 110 s.
        let d = memory_drift(&samples, &[(110.0, 2)], Duration::from_secs(60));
        let one = d[0].1.clone().expect("measured");
        assert_eq!(
            (one.at_seconds, one.first_mib, one.last_mib),
            (60.0, 100.0, 121.0)
        );
        assert!((one.percent - 21.0).abs() < 1e-9);
        let two = d[1].1.clone().expect("measured");
        assert_eq!(
            (two.at_seconds, two.first_mib, two.last_mib),
            (180.0, 90.0, 99.0)
        );
        assert!((two.percent - 10.0).abs() < 1e-9);
        // Started again too late: nothing to compare.
        let d = memory_drift(&samples, &[(200.0, 2)], Duration::from_secs(60));
        assert_eq!(d[1], (2, None));
    }
}
