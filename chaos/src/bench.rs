//! Benchmarks against a real local cluster: framework-store write throughput and commit
//! latency by number of concurrent clients, leader failover time, and ([`launch`]) tasks
//! launched per second from ACCEPT to RUNNING.
//!
//! Both start their own cluster of real `drover master` processes (fsync on, as always: there
//! is no switch to turn it off) in a temporary directory, so the figures are reproducible by one
//! command. Latencies are measured by the client, end to end: request sent to reply received,
//! which includes the gRPC round trip, the leader's fsync, replication to and fsync on a quorum,
//! and apply.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_client::{MasterClient, RetryPolicy};

use crate::cluster::{ClusterError, ClusterSpec, LocalCluster};

pub mod launch;
pub mod marathon;
pub mod recovery;
pub mod soak;

/// Figures for one client count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WriteFigures {
    pub clients: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug)]
pub struct WriteBenchOptions {
    pub masters: u64,
    pub client_counts: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    pub value_bytes: usize,
    /// Separate HTTP/2 connections the clients are spread over.
    pub connections: usize,
    /// Mutual TLS on every connection (Raft and the clients').
    pub tls: bool,
}

/// Percentile (0..=100) of sorted samples, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// A process's resident memory, MiB; `None` when `/proc` does not tell.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user and system) the process `pid` has used so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time in a `/proc/<pid>/stat` line, whose counts are in Linux's USER_HZ ticks (100 a
/// second on every architecture). Pure.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The fields after the command name (in parentheses, and it may hold spaces): the state
    // is field 3, utime field 14 and stime field 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: f64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// How many tasks of `task` fit in `offered`, at most `max`.
pub(crate) fn fits(
    offered: &drover_resources::Resources,
    task: &drover_resources::Resources,
    max: usize,
) -> usize {
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

/// Waits until the master at `addr` counts `want` active agents (from its metrics: a
/// `/v1/state` of thousands of agents is heavy to read every poll).
pub(crate) async fn wait_for_active_agents(
    addr: &str,
    want: usize,
    timeout: Duration,
) -> Result<(), crate::wait::WaitError> {
    crate::wait::wait_until("agents registered", timeout, || async move {
        let body = crate::http::get(addr, "/metrics").await?;
        let active = crate::http::metric(&body, "drover_master_agents{state=\"active\"}")
            .unwrap_or(0.0) as usize;
        if active >= want {
            Ok(())
        } else {
            Err(format!("{active} of {want} agents active"))
        }
    })
    .await
}

/// Resources of each benchmark agent (room for thousands of small tasks).
pub(crate) const BENCH_AGENT_RESOURCES: &str = "cpus:64;mem:65536;disk:65536;ports:[31000-32000]";

/// Starts `masters` masters (with `master_args`) and one agent process simulating `agents`
/// agents, and waits until a leader counts them all active.
pub(crate) async fn start_with_simulated_agents(
    binary: PathBuf,
    dir: PathBuf,
    masters: u64,
    agents: usize,
    master_args: &[String],
    registration_timeout: Duration,
) -> Result<LocalCluster, ClusterError> {
    let mut spec = ClusterSpec::on_free_ports(binary, dir, masters)?.with_agents(1)?;
    spec.master_args = master_args.to_vec();
    spec.agent_args = vec![
        "--resources".into(),
        BENCH_AGENT_RESOURCES.into(),
        "--simulate".into(),
        agents.to_string(),
    ];
    let cluster = LocalCluster::start(spec).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    wait_for_active_agents(&leader.leader_addr, agents, registration_timeout).await?;
    Ok(cluster)
}

async fn start_cluster(
    binary: PathBuf,
    dir: PathBuf,
    masters: u64,
    tls: bool,
) -> Result<LocalCluster, ClusterError> {
    let mut spec = ClusterSpec::on_free_ports(binary, dir, masters)?;
    spec.tls = tls;
    let cluster = LocalCluster::start(spec).await?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    Ok(cluster)
}

/// Runs the write benchmark; `report` is called with each client count's figures as they come.
pub async fn store_writes(
    binary: PathBuf,
    dir: PathBuf,
    opts: &WriteBenchOptions,
    mut report: impl FnMut(&WriteFigures),
) -> Result<Vec<WriteFigures>, ClusterError> {
    let mut cluster = start_cluster(binary, dir, opts.masters, opts.tls).await?;
    let addrs = cluster.addrs();
    // Each its own connection, dialled as the cluster's own client is (TLS or not).
    let dialer = cluster.client().dialer().clone();
    let clients: Vec<MasterClient> = (0..opts.connections.max(1))
        .map(|_| MasterClient::with_dialer(&addrs, RetryPolicy::default(), dialer.clone()))
        .collect::<Result<_, _>>()?;
    let value = vec![b'x'; opts.value_bytes];
    let mut all = Vec::new();
    for &n in &opts.client_counts {
        // Warm up: connections, leader discovery, allocator and page cache.
        run_writers(&clients, n, opts.warmup, &value).await;
        let (samples, errors, elapsed) = run_writers(&clients, n, opts.duration, &value).await;
        let mut sorted = samples;
        sorted.sort_unstable();
        let f = WriteFigures {
            clients: n,
            ops: sorted.len() as u64,
            errors,
            seconds: elapsed.as_secs_f64(),
            ops_per_sec: sorted.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile_ms(&sorted, 50.0),
            p99_ms: percentile_ms(&sorted, 99.0),
            max_ms: sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        };
        report(&f);
        all.push(f);
    }
    cluster.stop_all(Duration::from_secs(10)).await?;
    Ok(all)
}

/// `n` closed-loop writers for `duration`; returns per-op latencies, errors and elapsed time.
async fn run_writers(
    clients: &[MasterClient],
    n: usize,
    duration: Duration,
    value: &[u8],
) -> (Vec<Duration>, u64, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..n {
        let client = clients[w % clients.len()].clone();
        let value = value.to_vec();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("w{w}/k{}", i % 64);
                i += 1;
                let t = Instant::now();
                match client.put("bench", &key, value.clone()).await {
                    Ok(_) => samples.push(t.elapsed()),
                    Err(e) => {
                        if errors == 0 {
                            tracing::warn!(writer = w, "write failed: {e}");
                        }
                        errors += 1
                    }
                }
            }
            (samples, errors)
        });
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((s, e)) = r {
            samples.extend(s);
            errors += e;
        }
    }
    (samples, errors, started.elapsed())
}

/// Figures of the failover benchmark.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailoverFigures {
    pub trials: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Kills the leader with SIGKILL `trials` times; each time measures from the kill until a write
/// is committed by a new leader. The killed master is restarted and caught up between trials.
pub async fn failover(
    binary: PathBuf,
    dir: PathBuf,
    masters: u64,
    trials: usize,
    mut report: impl FnMut(usize, Duration, u64, u64),
) -> Result<FailoverFigures, ClusterError> {
    let mut cluster = start_cluster(binary, dir, masters, false).await?;
    let probe = MasterClient::with_policy(
        &cluster.addrs(),
        RetryPolicy {
            deadline: Duration::from_secs(30),
            backoff_start: Duration::from_millis(2),
            backoff_max: Duration::from_millis(10),
        },
    )?;
    let mut times = Vec::new();
    for trial in 0..trials {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        // Every replica caught up before the kill, so the trial measures failover only.
        crate::wait::wait_until("all masters caught up", Duration::from_secs(30), || {
            let cluster = &cluster;
            async move {
                let mut behind = Vec::new();
                for m in cluster.masters() {
                    let s = cluster.status(m.id).await.map_err(|e| e.to_string())?;
                    if s.applied_index < leader.committed_index {
                        behind.push(m.id);
                    }
                }
                if behind.is_empty() {
                    Ok(())
                } else {
                    Err(format!("behind: {behind:?}"))
                }
            }
        })
        .await?;
        probe.put("bench", "failover", b"before".to_vec()).await?;
        let killed = leader.node_id;
        let t0 = Instant::now();
        cluster.kill(killed).await?;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match probe
                .put(
                    "bench",
                    &format!("failover/{trial}/{attempt}"),
                    b"after".to_vec(),
                )
                .await
            {
                Ok(_) => break,
                Err(drover_client::ClientError::Ambiguous(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let took = t0.elapsed();
        let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        report(trial + 1, took, killed, new_leader.node_id);
        times.push(took);
        cluster.start_master(killed)?;
    }
    cluster.stop_all(Duration::from_secs(10)).await?;
    let mut sorted = times.clone();
    sorted.sort_unstable();
    Ok(FailoverFigures {
        trials: times.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
        p50_ms: percentile_ms(&sorted, 50.0),
        p99_ms: percentile_ms(&sorted, 99.0),
        max_ms: sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (drover (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(super::stat_cpu_seconds(stat), Some(3.25));
        assert_eq!(super::stat_cpu_seconds("4242 (drover) S 1"), None);
    }
}
