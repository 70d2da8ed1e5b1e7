//! `drover bench`: its arguments, the benchmarks it runs and the figures it prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::CommandError;
use crate::bench::{
    failover, launch, recovery, soak, store_writes, WriteBenchOptions, WriteFigures,
};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Store write throughput and commit latency at several client counts (fsync on).
    Store {
        #[arg(long, default_value_t = 3)]
        masters: u64,
        /// Concurrent clients, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
        clients: Vec<usize>,
        /// Measured seconds per client count.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Warm-up seconds before each measurement.
        #[arg(long, default_value_t = 2)]
        warmup_seconds: u64,
        #[arg(long, default_value_t = 64)]
        value_bytes: usize,
        /// HTTP/2 connections the clients are spread over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Mutual TLS on every connection (Raft between the masters, the clients'), with
        /// certificates from a CA made for the run.
        #[arg(long)]
        tls: bool,
    },
    /// One DRF allocation cycle, the allocator alone (no I/O): 1 000 agents × 100 frameworks
    /// and 10 000 × 1 000 by default; median, p99 and max.
    Allocator {
        /// Scenarios as AGENTSxFRAMEWORKS.
        #[arg(long, value_delimiter = ',', default_value = "1000x100,10000x1000")]
        sizes: Vec<String>,
        /// Roles the frameworks are spread over (weights 1, 2, 3, …).
        #[arg(long, default_value_t = 10)]
        roles: usize,
        /// Timed cycles per scenario.
        #[arg(long, default_value_t = 50)]
        samples: usize,
        /// Rounds of "every framework declines everything" before the second cycle.
        #[arg(long, default_value_t = 10)]
        decline_rounds: usize,
    },
    /// Tasks launched per second from ACCEPT to RUNNING, and their latency, through 3 masters
    /// (fsync on) and real agents or (`--simulate`) simulated ones; then the masters' memory.
    Launch {
        #[command(flatten)]
        opts: launch::LaunchBenchOptions,
        /// Keep the cluster's directory (data and every process's log) after the run.
        #[arg(long)]
        keep: bool,
    },
    /// SIGKILL the leader repeatedly with simulated agents, long-running tasks and a churn of
    /// short ones: time until a new leader, its first offer, and its first status update
    /// reach a framework.
    Recovery {
        #[command(flatten)]
        opts: recovery::RecoveryBenchOptions,
        /// Keep the cluster's directory (data and every process's log) after the run.
        #[arg(long)]
        keep: bool,
    },
    /// A long steady load with the leader SIGKILLed now and then (simulated agents, a churn of
    /// short tasks, store writes): every `--report-every`, each master's memory, the registry's
    /// sizes, snapshot bytes and the launch rate; at the end, how much memory moved.
    Soak {
        #[command(flatten)]
        opts: soak::SoakBenchOptions,
        /// Keep the cluster's directory (data and every process's log) after the run.
        #[arg(long)]
        keep: bool,
    },
    /// A restarted agent reading back its work directory: whole scans of `--tasks` ended
    /// task directories (written first, in a temporary directory) and of the process table.
    AgentRecovery {
        #[arg(long, default_value_t = 6000)]
        tasks: usize,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// The Marathon scheduler on simulated agents: big apps POSTed until all RUNNING,
    /// single-instance apps from POST to first RUNNING, `GET /v2/apps` with many apps, and
    /// the takeover of a SIGKILLed active scheduler by its standby.
    Marathon {
        #[command(flatten)]
        opts: crate::bench::marathon::MarathonBenchOptions,
        /// Keep the clusters' directory (data and every process's log) after the run.
        #[arg(long)]
        keep: bool,
    },
    /// SIGKILL the leader repeatedly; time until a new leader commits a write.
    Failover {
        #[arg(long, default_value_t = 3)]
        masters: u64,
        #[arg(long, default_value_t = 10)]
        trials: usize,
    },
}

/// One line of `drover bench soak`'s figures.
fn print_soak_sample(s: &soak::SoakSample) {
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let masters: Vec<String> = s
        .masters
        .iter()
        .map(|(id, rss, snap)| {
            let lead = if s.leader == Some(*id) { "*" } else { "" };
            format!(
                "m{id}{lead} {} MiB snap {}",
                rss.map_or("?".into(), |r| format!("{r:.0}")),
                snap.map_or("-".into(), |b| format!("{:.2} MiB", b as f64 / 1048576.0))
            )
        })
        .collect();
    println!(
        "t={:>5.0}s  {:>6.0} launches/s  {:>4.0} writes/s  tasks {} (live {})  frameworks {}  store keys {} ({} bytes)  kills {}  |  {} [SIMULATED agents]",
        s.at_seconds,
        s.launches_per_sec,
        s.store_writes_per_sec,
        opt(s.tasks),
        opt(s.live_tasks),
        opt(s.frameworks),
        opt(s.store_keys),
        opt(s.store_bytes),
        s.kills,
        masters.join("  ")
    );
}

/// After a benchmark: keeps its cluster's directory (and says where) or removes it.
fn keep_or_remove(keep: bool, dir: &Path) {
    if keep {
        println!("kept the cluster's directory: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn print_write_figures(f: &WriteFigures) {
    println!(
        "clients {:>4}  {:>9.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  ({} ok, {} errors in {:.1} s)",
        f.clients, f.ops_per_sec, f.p50_ms, f.p99_ms, f.max_ms, f.ops, f.errors, f.seconds
    );
}

/// `drover bench agent-recovery`: the agent's recovery scan alone, in this process.
fn bench_agent_recovery(dir: &Path, tasks: usize, samples: usize) -> Result<(), CommandError> {
    use drover_agent::recovery_bench;
    println!(
        "agent recovery benchmark: one scan of {tasks} ended task directories and of the process table, {samples} samples (files in the page cache after the first)"
    );
    let work_dir = dir.join("agent");
    let populated = recovery_bench::populate(&work_dir, tasks);
    let f = populated.map(|()| recovery_bench::time_scans(&work_dir, samples));
    let _ = std::fs::remove_dir_all(dir);
    let f = f.map_err(CommandError::AgentRecovery)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = f.samples[f.samples.len() / 2];
    println!(
        "{} task directories, {} processes: median {:.1} ms ({:.1} µs per directory), min {:.1} ms, max {:.1} ms",
        f.task_dirs,
        f.processes,
        ms(median),
        ms(median) * 1000.0 / f.task_dirs.max(1) as f64,
        ms(f.samples[0]),
        ms(f.samples[f.samples.len() - 1])
    );
    Ok(())
}

/// `drover bench allocator`: the allocator alone, in this process.
fn bench_allocator(
    sizes: &[String],
    roles: usize,
    samples: usize,
    decline_rounds: usize,
) -> Result<(), CommandError> {
    use drover_master::allocator::bench;
    println!(
        "allocator benchmark: one DRF allocation cycle, the pure allocator in one thread (no I/O), {roles} weighted roles, {samples} samples per cycle"
    );
    for size in sizes {
        let (agents, frameworks) = size
            .split_once('x')
            .and_then(|(a, f)| Some((a.parse::<usize>().ok()?, f.parse::<usize>().ok()?)))
            .ok_or_else(|| CommandError::Sizes(size.clone()))?;
        let scenario = bench::Scenario {
            agents,
            frameworks,
            roles: roles.clamp(1, frameworks.max(1)),
            samples,
            decline_rounds,
        };
        for f in bench::run(&scenario, |step| {
            eprintln!("  {agents} agents × {frameworks} frameworks: {step}")
        }) {
            println!(
                "{:>6} agents × {:>5} frameworks  {:<8}  {:>6} offers  median {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} samples)",
                f.agents, f.frameworks, f.name, f.offers, f.median_ms, f.p99_ms, f.max_ms, f.samples
            );
        }
    }
    Ok(())
}

/// Runs `drover bench …` and prints its figures.
pub async fn run(what: BenchWhat) -> Result<(), CommandError> {
    let binary = std::env::current_exe().map_err(CommandError::Binary)?;
    let dir = std::env::temp_dir().join(format!("drover-bench-{}", std::process::id()));
    match what {
        BenchWhat::Allocator {
            sizes,
            roles,
            samples,
            decline_rounds,
        } => bench_allocator(&sizes, roles, samples, decline_rounds),
        BenchWhat::Store {
            masters,
            clients,
            seconds,
            warmup_seconds,
            value_bytes,
            connections,
            tls,
        } => {
            let opts = WriteBenchOptions {
                masters,
                client_counts: clients,
                duration: Duration::from_secs(seconds),
                warmup: Duration::from_secs(warmup_seconds),
                value_bytes,
                connections,
                tls,
            };
            let result = bench_store(binary, &dir, &opts).await;
            let _ = std::fs::remove_dir_all(&dir);
            result
        }
        BenchWhat::Launch { opts, keep } => {
            let f = bench_launch(binary, &dir, &opts).await;
            keep_or_remove(keep, &dir);
            f
        }
        BenchWhat::Marathon { opts, keep } => {
            println!(
                "marathon benchmark: {} masters (fsync on), simulated agents, drover scheduler",
                opts.masters
            );
            let f = crate::bench::marathon::marathon(binary, dir.clone(), &opts, |line| {
                println!("{line}")
            })
            .await;
            keep_or_remove(keep, &dir);
            let f = f?;
            println!(
                "figures (JSON): {}",
                serde_json::to_string(&f).unwrap_or_default()
            );
            Ok(())
        }
        BenchWhat::Soak { opts, keep } => {
            let f = bench_soak(binary, &dir, &opts).await;
            keep_or_remove(keep, &dir);
            f
        }
        BenchWhat::Recovery { opts, keep } => {
            let f = bench_recovery(binary, &dir, &opts).await;
            keep_or_remove(keep, &dir);
            f
        }
        BenchWhat::AgentRecovery { tasks, samples } => {
            bench_agent_recovery(&dir, tasks, samples.max(1))
        }
        BenchWhat::Failover { masters, trials } => {
            let result = bench_failover(binary, &dir, masters, trials).await;
            let _ = std::fs::remove_dir_all(&dir);
            result
        }
    }
}

/// `drover bench store`: committed writes per second and their latency, per client count.
async fn bench_store(
    binary: PathBuf,
    dir: &Path,
    opts: &WriteBenchOptions,
) -> Result<(), CommandError> {
    println!(
        "store write benchmark: {} masters on loopback, fsync on (every log append and vote is fsynced before it is acknowledged), {}-byte values, {} s per run, {}",
        opts.masters,
        opts.value_bytes,
        opts.duration.as_secs(),
        if opts.tls {
            "mutual TLS on every connection"
        } else {
            "plain TCP"
        }
    );
    store_writes(binary, dir.to_path_buf(), opts, print_write_figures).await?;
    Ok(())
}

/// `drover bench launch`: tasks launched per second and ACCEPT → RUNNING latency.
async fn bench_launch(
    binary: PathBuf,
    dir: &Path,
    opts: &launch::LaunchBenchOptions,
) -> Result<(), CommandError> {
    let kind = if opts.simulate {
        "SIMULATED agents (tasks are timers, no processes; in one agent process)"
    } else {
        "real agents (every task a real executor process)"
    };
    println!(
        "launch benchmark: {masters} masters on loopback, fsync on, {agents} {kind}, {tasks} tasks of {task_resources} running {command:?}, up to {per_offer} per offer{}",
        opts.rate.map_or(String::new(), |r| format!(", at most {r} tasks/s")),
        masters = opts.masters,
        agents = opts.agents,
        tasks = opts.tasks,
        task_resources = opts.task_resources,
        command = opts.command,
        per_offer = opts.per_offer,
    );
    if opts.no_acknowledge {
        println!("the framework does NOT acknowledge status updates (--no-acknowledge)");
    }
    if opts.containers == crate::workload::tasks::Containers::Docker {
        println!(
            "each round with the command executor is followed by one with the same tasks as Docker containers (image {}, host network)",
            drover_agent::testing::TEST_IMAGE
        );
    }
    let all = launch::launch(binary, dir.to_path_buf(), opts, |line| {
        eprintln!("  {line}");
    })
    .await?;
    for f in &all {
        print_launch_figures(f);
    }
    let sim = if all.first().is_some_and(|f| f.simulated) {
        " [SIMULATED agents]"
    } else {
        ""
    };
    // Each figure's median over the trials, per API and kind of task.
    let median = |label: &str, figure: fn(&launch::LaunchFigures) -> f64| {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|f| f.label() == label)
            .map(figure)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let figures = |label: &str| {
        (
            median(label, |f| f.launches_per_sec),
            median(label, |f| f.p50_ms),
            median(label, |f| f.p99_ms),
        )
    };
    let labels: Vec<String> = ["grpc", "grpc docker", "http", "http docker"]
        .into_iter()
        .filter(|l| all.iter().any(|f| f.label() == *l))
        .map(String::from)
        .collect();
    if opts.trials > 1 {
        for label in &labels {
            let (rate, p50, p99) = figures(label);
            println!(
                "[{label}] median of {} trials: {rate:.0} launches/s  p50 {p50:.1} ms  p99 {p99:.1} ms{sim}",
                opts.trials
            );
        }
    }
    let change = |a: f64, b: f64| if a > 0.0 { (b - a) / a * 100.0 } else { 0.0 };
    for api in ["grpc", "http"] {
        let docker = format!("{api} docker");
        if labels.contains(&docker) {
            let ((c_rate, c50, c99), (d_rate, d50, d99)) = (figures(api), figures(&docker));
            println!(
                "[{api}] containers against commands{}: launches/s {:+.1} %  p50 {:+.1} %  p99 {:+.1} %",
                if opts.trials > 1 { " (medians)" } else { "" },
                change(c_rate, d_rate),
                change(c50, d50),
                change(c99, d99),
            );
        }
    }
    if all.iter().any(|f| f.api == "http") {
        let ((g_rate, g50, g99), (h_rate, h50, h99)) = (figures("grpc"), figures("http"));
        println!(
            "HTTP against gRPC{}: launches/s {:+.1} %  p50 {:+.1} %  p99 {:+.1} %{sim}",
            if opts.trials > 1 { " (medians)" } else { "" },
            change(g_rate, h_rate),
            change(g50, h50),
            change(g99, h99),
        );
    }
    println!(
        "figures (JSON): {}",
        serde_json::to_string(&all).unwrap_or_default()
    );
    Ok(())
}

fn print_launch_figures(f: &launch::LaunchFigures) {
    let sim = if f.simulated {
        " [SIMULATED agents]"
    } else {
        ""
    };
    let api = &f.label();
    println!(
        "[{api}] {} of {} tasks RUNNING ({} failed) in {:.2} s from the first ACCEPT: {:.0} launches/s{sim}",
        f.running, f.tasks, f.failed, f.seconds, f.launches_per_sec
    );
    println!(
        "[{api}] ACCEPT → RUNNING latency: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} ACCEPTs; each answered in p50 {:.1} ms  p99 {:.1} ms){sim}",
        f.p50_ms, f.p99_ms, f.max_ms, f.accepts, f.accept_call_p50_ms, f.accept_call_p99_ms
    );
    println!(
        "[{api}] of which RUNNING created on the agent → read by the framework: p50 {:.1} ms  p99 {:.1} ms (agent timestamps in whole ms){sim}",
        f.relay_p50_ms, f.relay_p99_ms
    );
    println!(
        "[{api}] {} agents registered in {:.1} s; leader changes during the run: {}{sim}",
        f.agents, f.registration_seconds, f.leader_changes
    );
    let secs = |c: Option<f64>| c.map_or_else(|| "unknown".to_string(), |c| format!("{c:.2} s"));
    println!(
        "[{api}] CPU during the run: leader {}, followers {}, agents {}, framework {}; {} Raft entries appended by the leader{sim}",
        secs(f.cpu.leader),
        secs(f.cpu.followers),
        secs(f.cpu.agents),
        secs(f.cpu.framework),
        f.raft_entries
            .map_or_else(|| "unknown".to_string(), |n| n.to_string())
    );
    for m in &f.masters {
        println!(
            "[{api}] master {}{}: resident memory {} with {} agents and {} tasks in the registry{sim}",
            m.id,
            if m.leader { " (leader)" } else { "" },
            m.rss_mib
                .map_or_else(|| "unknown".to_string(), |r| format!("{r:.0} MiB")),
            f.agents,
            f.tasks_in_registry
                .map_or_else(|| "unknown".to_string(), |n| n.to_string())
        );
    }
}

/// `drover bench soak`: a long run at a steady load with leader kills; memory drift per master.
async fn bench_soak(
    binary: PathBuf,
    dir: &Path,
    opts: &soak::SoakBenchOptions,
) -> Result<(), CommandError> {
    println!(
        "soak benchmark: {} masters on loopback, fsync on, {} SIMULATED agents, {} tasks/s of {:?}, {} store writes/s over {} keys, leader SIGKILLed every {:?}, for {:?}",
        opts.masters, opts.agents, opts.rate, opts.command, opts.store_rate, opts.store_keys, opts.kill_every, opts.duration
    );
    let f = soak::soak(
        binary,
        dir.to_path_buf(),
        opts,
        |line| eprintln!("  {line}"),
        print_soak_sample,
    )
    .await?;
    println!(
        "launched {} tasks ({} ended, {} ACCEPTs failed), {} store writes ({} failed), {} leader kills [SIMULATED agents]",
        f.launched, f.finished, f.accept_errors, f.store_writes, f.store_errors, f.kills
    );
    for (id, drift) in soak::memory_drift(&f.samples, &f.restarts, opts.settle) {
        match drift {
            Some(d) => println!(
                "master {id}: RSS {:.1} MiB at {:.0} s ({:?} after its start) -> {:.1} MiB at the end ({:+.1} %)",
                d.first_mib, d.at_seconds, opts.settle, d.last_mib, d.percent
            ),
            None => println!(
                "master {id}: started again less than {:?} before the end; no drift measured",
                opts.settle
            ),
        }
    }
    Ok(())
}

/// `drover bench recovery`: after a leader SIGKILL, the time to a new leader, its first offer
/// and its first relayed status update.
async fn bench_recovery(
    binary: PathBuf,
    dir: &Path,
    opts: &recovery::RecoveryBenchOptions,
) -> Result<(), CommandError> {
    println!(
        "recovery benchmark: {} masters on loopback, fsync on, {} SIMULATED agents, {} tasks running until killed, {} short tasks in flight; SIGKILL the leader {} times",
        opts.masters, opts.agents, opts.long_tasks, opts.churn, opts.trials
    );
    let f = recovery::recovery(
        binary,
        dir.to_path_buf(),
        opts,
        |line| eprintln!("  {line}"),
        |trial, t| {
            println!(
                "trial {trial:>3}: killed master {}; master {} leads after {:.1} ms, first offer after {:.1} ms, first status update after {:.1} ms [SIMULATED agents]",
                t.killed, t.new_leader, t.leader_ms, t.offer_ms, t.update_ms
            )
        },
    )
    .await?;
    for (what, s) in [
        ("new leader", &f.leader),
        ("first offer", &f.offer),
        ("first status update", &f.update),
    ] {
        println!(
            "{what:<20} over {} trials: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} agents, {} running tasks) [SIMULATED agents]",
            f.trials.len(),
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            f.agents,
            f.running_tasks
        );
    }
    Ok(())
}

/// `drover bench failover`: after a leader SIGKILL, the time until a write commits again.
async fn bench_failover(
    binary: PathBuf,
    dir: &Path,
    masters: u64,
    trials: usize,
) -> Result<(), CommandError> {
    println!("failover benchmark: {masters} masters, fsync on, SIGKILL the leader {trials} times");
    let f = failover(
        binary,
        dir.to_path_buf(),
        masters,
        trials,
        |trial, took, old, new| {
            println!(
            "trial {trial:>3}: killed master {old}; master {new} committed a write after {:.1} ms",
            took.as_secs_f64() * 1000.0
        );
        },
    )
    .await?;
    println!(
        "failover over {} trials: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        f.trials.len(),
        f.p50_ms,
        f.p99_ms,
        f.max_ms
    );
    Ok(())
}
