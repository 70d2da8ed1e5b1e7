//! The Marathon benchmark (`drover bench marathon`): what a user of `/v2` waits for, on 3
//! masters (fsync on) with simulated agents (tasks are timers; every figure printed says so)
//! and `drover scheduler` processes.
//!
//! - **Big apps**: for each `INSTANCESxAGENTS` scenario, a fresh cluster; the time from
//!   `POST /v2/apps` of one app of that many instances until `GET /v2/apps` counts them all
//!   RUNNING (polled every 10 ms, counts only).
//! - **Single-instance apps**: `--singles` apps created one after another; for each, the time
//!   from its POST until its first `status_update_event` TASK_RUNNING on `/v2/events`.
//! - **Listing**: `GET /v2/apps` with `--list-apps` apps (of no instances), `--list-samples`
//!   times; p50 and p99.
//! - **Takeover**: two schedulers; the active one SIGKILLed `--takeovers` times (restarted
//!   as the standby each time); the time until the other answers `/v2/leader` with itself and
//!   its `/v2/info` names the framework (subscribed again).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::percentile_ms;
use crate::cluster::marathon::MarathonScheduler;
use crate::cluster::{ClusterError, LocalCluster};

/// The options of `drover bench marathon`.
#[derive(clap::Args, Clone, Debug)]
pub struct MarathonBenchOptions {
    #[arg(long, default_value_t = 3)]
    pub masters: u64,
    /// Big-app scenarios, INSTANCESxSIMULATED_AGENTS, each on a fresh cluster.
    #[arg(long, value_delimiter = ',', default_value = "1000x100,10000x1000")]
    pub scenarios: Vec<String>,
    /// Single-instance apps created one after another (POST to first RUNNING).
    #[arg(long, default_value_t = 50)]
    pub singles: usize,
    /// Apps present while `GET /v2/apps` is timed.
    #[arg(long, default_value_t = 1000)]
    pub list_apps: usize,
    #[arg(long, default_value_t = 200)]
    pub list_samples: usize,
    /// SIGKILLs of the active scheduler.
    #[arg(long, default_value_t = 5)]
    pub takeovers: usize,
    /// Deadline of each step, seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MarathonBenchError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Wait(#[from] crate::wait::WaitError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Http(String),
}

/// One big-app scenario's figure.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BigApp {
    pub instances: usize,
    pub agents: usize,
    pub seconds_to_all_running: f64,
}

/// Everything the run measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MarathonFigures {
    pub big_apps: Vec<BigApp>,
    pub single_p50_ms: f64,
    pub single_p99_ms: f64,
    pub list_apps: usize,
    pub list_p50_ms: f64,
    pub list_p99_ms: f64,
    pub takeover_ms: Vec<f64>,
    pub takeover_p50_ms: f64,
    pub takeover_p99_ms: f64,
}

/// A scheduler of the benchmark's cluster, on a free port, logging into `dir`.
fn scheduler(
    binary: &Path,
    dir: &Path,
    masters: &str,
    name: &str,
) -> Result<MarathonScheduler, MarathonBenchError> {
    Ok(MarathonScheduler::start_on_free_port(
        binary,
        masters,
        dir.join(format!("{name}.log")),
        &[],
    )?)
}

async fn send(
    method: reqwest::Method,
    addr: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), MarathonBenchError> {
    crate::http::Http::plain()
        .request_json(method, addr, path, body.as_ref(), Duration::from_secs(30))
        .await
        .map_err(MarathonBenchError::Http)
}

/// Waits until the scheduler at `addr` is a standby of the one at `active`.
async fn wait_standby(
    addr: &str,
    active: &str,
    timeout: Duration,
) -> Result<(), MarathonBenchError> {
    crate::wait::wait_until(
        "the standby to name the active scheduler",
        timeout,
        || async move {
            let (s, leader) = send(reqwest::Method::GET, addr, "/v2/leader", None)
                .await
                .map_err(|e| e.to_string())?;
            (s == 200 && leader["leader"] == active)
                .then_some(())
                .ok_or_else(|| format!("leader: {s} {leader}"))
        },
    )
    .await?;
    Ok(())
}

/// Waits until the scheduler at `addr` is active and subscribed.
async fn wait_active(addr: &str, timeout: Duration) -> Result<(), MarathonBenchError> {
    crate::wait::wait_until("the scheduler to be active", timeout, || async move {
        let (s, leader) = send(reqwest::Method::GET, addr, "/v2/leader", None)
            .await
            .map_err(|e| e.to_string())?;
        if s != 200 || leader["leader"] != addr {
            return Err(format!("leader: {s} {leader}"));
        }
        let (_, info) = send(reqwest::Method::GET, addr, "/v2/info", None)
            .await
            .map_err(|e| e.to_string())?;
        info["frameworkId"]
            .is_string()
            .then_some(())
            .ok_or_else(|| "not subscribed".to_string())
    })
    .await?;
    Ok(())
}

fn app(id: &str, instances: usize) -> Value {
    json!({"id": id, "cmd": "sleep 100000", "instances": instances, "cpus": 0.01, "mem": 4})
}

/// Runs the benchmark; `report` gets each line of figures as it comes.
pub async fn marathon(
    binary: PathBuf,
    dir: PathBuf,
    opts: &MarathonBenchOptions,
    mut report: impl FnMut(&str),
) -> Result<MarathonFigures, MarathonBenchError> {
    let timeout = Duration::from_secs(opts.timeout_seconds);
    let mut figures = MarathonFigures::default();
    let mut scenarios = Vec::new();
    for s in &opts.scenarios {
        let parsed = s
            .split_once('x')
            .and_then(|(i, a)| Some((i.parse::<usize>().ok()?, a.parse::<usize>().ok()?)))
            .filter(|(i, a)| *i > 0 && *a > 0);
        scenarios.push(parsed.ok_or_else(|| {
            MarathonBenchError::Usage(format!("--scenarios: {s:?} is not INSTANCESxAGENTS"))
        })?);
    }
    for (n, (instances, agents)) in scenarios.iter().enumerate() {
        let sub = dir.join(format!("big-{n}"));
        let cluster = super::start_with_simulated_agents(
            binary.clone(),
            sub.clone(),
            opts.masters,
            *agents,
            &[],
            timeout,
        )
        .await?;
        let result = big_app(&binary, &sub, &cluster, *instances, timeout).await;
        drop(cluster);
        let seconds = result?;
        report(&format!(
            "big app: {instances} instances on {agents} simulated agents: all RUNNING {seconds:.2} s after the POST [SIMULATED agents]"
        ));
        figures.big_apps.push(BigApp {
            instances: *instances,
            agents: *agents,
            seconds_to_all_running: seconds,
        });
    }
    let sub = dir.join("small");
    let cluster = super::start_with_simulated_agents(
        binary.clone(),
        sub.clone(),
        opts.masters,
        10,
        &[],
        timeout,
    )
    .await?;
    let masters = cluster.addrs().join(",");
    let mut a = scheduler(&binary, &sub, &masters, "scheduler-a")?;
    wait_active(&a.addr, timeout).await?;
    singles(&a.addr, opts.singles, timeout, &mut figures).await?;
    report(&format!(
        "single-instance apps: POST to first RUNNING p50 {:.1} ms p99 {:.1} ms ({} apps, one at a time) [SIMULATED agents]",
        figures.single_p50_ms, figures.single_p99_ms, opts.singles
    ));
    listing(&a.addr, opts.list_apps, opts.list_samples, &mut figures).await?;
    report(&format!(
        "GET /v2/apps with {} apps: p50 {:.2} ms p99 {:.2} ms ({} requests)",
        figures.list_apps, figures.list_p50_ms, figures.list_p99_ms, opts.list_samples
    ));
    let mut b = scheduler(&binary, &sub, &masters, "scheduler-b")?;
    for round in 0..opts.takeovers {
        // The standby must be one (it names the active scheduler) before the kill.
        wait_standby(&b.addr, &a.addr, timeout).await?;
        let killed = Instant::now();
        a.kill().await;
        wait_active(&b.addr, timeout).await?;
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        figures.takeover_ms.push(ms);
        report(&format!(
            "takeover {}: {ms:.0} ms from SIGKILL to the standby active and subscribed",
            round + 1
        ));
        a = scheduler(&binary, &sub, &masters, &format!("scheduler-{round}"))?;
        std::mem::swap(&mut a, &mut b);
    }
    let mut sorted: Vec<Duration> = figures
        .takeover_ms
        .iter()
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    sorted.sort_unstable();
    figures.takeover_p50_ms = percentile_ms(&sorted, 50.0);
    figures.takeover_p99_ms = percentile_ms(&sorted, 99.0);
    report(&format!(
        "scheduler takeover: p50 {:.0} ms p99 {:.0} ms over {} SIGKILLs",
        figures.takeover_p50_ms, figures.takeover_p99_ms, opts.takeovers
    ));
    a.kill().await;
    b.kill().await;
    drop(cluster);
    Ok(figures)
}

async fn big_app(
    binary: &Path,
    dir: &Path,
    cluster: &LocalCluster,
    instances: usize,
    timeout: Duration,
) -> Result<f64, MarathonBenchError> {
    let masters = cluster.addrs().join(",");
    let mut s = scheduler(binary, dir, &masters, "scheduler")?;
    wait_active(&s.addr, timeout).await?;
    let started = Instant::now();
    let (status, body) = send(
        reqwest::Method::POST,
        &s.addr,
        "/v2/apps",
        Some(app("/big", instances)),
    )
    .await?;
    if status != 201 {
        return Err(MarathonBenchError::Http(format!(
            "POST /v2/apps: {status} {body}"
        )));
    }
    let addr = s.addr.clone();
    crate::wait::wait_until_every(
        "all instances running",
        timeout,
        Duration::from_millis(10),
        || {
            let addr = addr.clone();
            async move {
                let (_, body) = send(reqwest::Method::GET, &addr, "/v2/apps?id=big", None)
                    .await
                    .map_err(|e| e.to_string())?;
                let running = body["apps"][0]["tasksRunning"].as_u64().unwrap_or(0) as usize;
                (running >= instances)
                    .then_some(())
                    .ok_or_else(|| format!("{running} of {instances} running"))
            }
        },
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    s.kill().await;
    Ok(seconds)
}

async fn singles(
    addr: &str,
    count: usize,
    timeout: Duration,
    figures: &mut MarathonFigures,
) -> Result<(), MarathonBenchError> {
    let mut events = reqwest::Client::new()
        .get(format!(
            "http://{addr}/v2/events?event_type=status_update_event"
        ))
        .send()
        .await
        .map_err(|e| MarathonBenchError::Http(e.to_string()))?;
    let mut pending = String::new();
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let id = format!("/single-{n}");
        let started = Instant::now();
        let (status, body) =
            send(reqwest::Method::POST, addr, "/v2/apps", Some(app(&id, 1))).await?;
        if status != 201 {
            return Err(MarathonBenchError::Http(format!(
                "POST /v2/apps: {status} {body}"
            )));
        }
        let deadline = started + timeout;
        'wait: loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, events.chunk())
                .await
                .map_err(|_| {
                    MarathonBenchError::Http(format!("{id}: no RUNNING within {timeout:?}"))
                })?
                .map_err(|e| MarathonBenchError::Http(e.to_string()))?
                .ok_or_else(|| MarathonBenchError::Http("the event stream ended".into()))?;
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(at) = pending.find('\n') {
                let line: String = pending.drain(..=at).collect();
                let Some(data) = line.trim_end().strip_prefix("data: ") else {
                    continue;
                };
                let Ok(e) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if e["appId"] == id.as_str() && e["taskStatus"] == "TASK_RUNNING" {
                    latencies.push(started.elapsed());
                    break 'wait;
                }
            }
        }
    }
    latencies.sort_unstable();
    figures.single_p50_ms = percentile_ms(&latencies, 50.0);
    figures.single_p99_ms = percentile_ms(&latencies, 99.0);
    Ok(())
}

async fn listing(
    addr: &str,
    apps: usize,
    samples: usize,
    figures: &mut MarathonFigures,
) -> Result<(), MarathonBenchError> {
    use futures::stream::{self, StreamExt};
    let created: Vec<Result<(u16, Value), MarathonBenchError>> = stream::iter(0..apps)
        .map(|n| async move {
            let mut a = app(&format!("/list/app-{n:05}"), 0);
            a["labels"] = json!({"bench": "list"});
            send(reqwest::Method::POST, addr, "/v2/apps", Some(a)).await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for c in created {
        let (status, body) = c?;
        if status != 201 {
            return Err(MarathonBenchError::Http(format!(
                "POST /v2/apps: {status} {body}"
            )));
        }
    }
    let mut times = Vec::with_capacity(samples);
    let mut seen = 0;
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        let (_, body) = send(reqwest::Method::GET, addr, "/v2/apps", None).await?;
        times.push(started.elapsed());
        seen = body["apps"].as_array().map_or(0, Vec::len);
    }
    times.sort_unstable();
    figures.list_apps = seen;
    figures.list_p50_ms = percentile_ms(&times, 50.0);
    figures.list_p99_ms = percentile_ms(&times, 99.0);
    Ok(())
}
