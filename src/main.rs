//! `drover`: the one binary. This file only parses arguments, sets up logging and hands over
//! to the crate that does the work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use drover_client::MasterClient;
use drover_scheduler::cli::{self, store::CasExpectation, store::StoreCommand, Exit};

mod owner;

/// jemalloc, not glibc's malloc: in two 14-minute `drover bench soak` runs (1 000 launches/s,
/// leader killed every 4 minutes, before the Raft log's memtables were bounded) settled masters
/// held 165–190 MiB with it against 205–220 MiB with glibc's, which keeps freed memory in its
/// per-thread arenas; jemalloc's background threads return unused pages within seconds.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Drover: a highly available cluster manager"
)]
struct Cli {
    /// Log format: human (default) or json.
    #[arg(
        long,
        global = true,
        env = "DROVER_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "debug,openraft=info".
    #[arg(long, global = true, env = "DROVER_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master replica (Raft over RocksDB; gRPC and HTTP on one port).
    Master(MasterArgs),
    /// Read and write a framework's replicated store.
    Store(StoreArgs),
    /// Inspect the masters and replace them.
    Cluster(ClusterArgs),
    /// Print the current leader as JSON.
    Leader(MastersArg),
    /// Run a local cluster in child processes until Ctrl-C.
    Up(UpArgs),
    /// Measure the cluster: store write throughput and latency, leader failover time.
    Bench(BenchArgs),
    /// Jepsen-style runs: a real cluster under faults, a recorded history, checkers.
    Chaos(ChaosArgs),
    /// Run one command as a task on the cluster, print its statuses, exit with its status
    /// (in the spirit of mesos-execute): `drover run -- 'echo hi'`.
    Run(drover_scheduler::run::RunArgs),
    /// Run an agent: register with the leader, offer this machine's resources, run tasks.
    /// `drover agent drain|reactivate|remove AGENT` maintains one through the masters.
    Agent(AgentCommand),
    /// Internal: one task's executor, started by the agent.
    #[command(hide = true)]
    Executor(drover_agent::ExecutorArgs),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct AgentCommand {
    #[command(subcommand)]
    op: Option<AgentOp>,
    #[command(flatten)]
    run: Option<drover_agent::AgentArgs>,
}

#[derive(Subcommand)]
enum AgentOp {
    /// No new offers on AGENT; its tasks are killed with their grace period.
    Drain {
        agent: String,
        /// Wait until no task is left on it (up to this many seconds; exit 1 if some are).
        #[arg(long, num_args = 0..=1, default_missing_value = "300")]
        wait: Option<u64>,
        #[command(flatten)]
        masters: MastersArg,
    },
    /// Undo a drain: AGENT's resources are offered again.
    Reactivate {
        agent: String,
        #[command(flatten)]
        masters: MastersArg,
    },
    /// Take AGENT out for good (GONE): its tasks end as TASK_GONE_BY_OPERATOR (TASK_LOST for
    /// frameworks that are not partition-aware) and it cannot register under its id again.
    Remove {
        agent: String,
        #[command(flatten)]
        masters: MastersArg,
    },
}

#[derive(Args, Clone)]
struct MastersArg {
    /// Masters to contact, any subset of the cluster (host:port,…).
    #[arg(
        long,
        env = "DROVER_MASTERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:5050,127.0.0.1:5052,127.0.0.1:5054"
    )]
    masters: Vec<String>,
}

#[derive(Args)]
struct MasterArgs {
    /// A TOML file with any of these settings (same names, e.g. `heartbeat_ms = 30`). Flags and
    /// DROVER_* variables win over the file, the file over the defaults.
    #[arg(long, env = "DROVER_CONFIG")]
    config: Option<PathBuf>,
    /// This master's id in the cluster (a positive integer, never reused). Required.
    #[arg(long, env = "DROVER_MASTER_ID")]
    id: Option<u64>,
    /// Address to listen on for gRPC and HTTP.
    #[arg(long, env = "DROVER_LISTEN", default_value = "127.0.0.1:5050")]
    listen: std::net::SocketAddr,
    /// The founding masters, this one included: 1=host:port,2=host:port,… Required.
    #[arg(long, env = "DROVER_PEERS")]
    peers: Option<String>,
    /// Where this master keeps its Raft log, snapshots and identity. Required.
    #[arg(long, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Leader heartbeat interval, milliseconds. openraft 0.9 also gives every AppendEntries
    /// this long to be answered (received, appended and fsynced by the follower).
    #[arg(long, env = "DROVER_HEARTBEAT_MS", default_value_t = 50)]
    heartbeat_ms: u64,
    /// Election timeout range, milliseconds. A follower campaigns after hearing nothing from
    /// its leader for MAX (the leader lease) plus a timeout drawn in [MIN, MAX) at start.
    #[arg(long, env = "DROVER_ELECTION_TIMEOUT_MIN_MS", default_value_t = 250)]
    election_timeout_min_ms: u64,
    #[arg(long, env = "DROVER_ELECTION_TIMEOUT_MAX_MS", default_value_t = 500)]
    election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, env = "DROVER_SNAPSHOT_EVERY", default_value_t = 10_000)]
    snapshot_every: u64,
    /// Log entries kept behind the latest snapshot.
    #[arg(long, env = "DROVER_KEEP_LOGS", default_value_t = 1_000)]
    keep_logs: u64,
    /// How long a write or linearizable read may wait for a quorum, milliseconds.
    #[arg(long, env = "DROVER_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    write_timeout_ms: u64,
    /// Source IP for connections to other masters (default: chosen by the kernel).
    #[arg(long, env = "DROVER_PEER_BIND_IP")]
    peer_bind_ip: Option<std::net::IpAddr>,
    /// How long `cluster add-master` waits on this leader for the new learner to catch up
    /// before it gives up (the learner stays; add-master again promotes it), milliseconds.
    #[arg(long, env = "DROVER_CATCH_UP_TIMEOUT_MS", default_value_t = 60_000)]
    catch_up_timeout_ms: u64,
    /// How often the leader runs a full DRF allocation cycle, milliseconds (events such as a
    /// new agent, freed resources or REVIVE also trigger one).
    #[arg(long, env = "DROVER_ALLOCATION_INTERVAL_MS", default_value_t = 1_000)]
    allocation_interval_ms: u64,
    /// An offer unused for this long is rescinded, milliseconds.
    #[arg(long, env = "DROVER_OFFER_TIMEOUT_MS", default_value_t = 60_000)]
    offer_timeout_ms: u64,
    /// How often agents heartbeat, milliseconds (told to agents when they register).
    #[arg(long, env = "DROVER_AGENT_HEARTBEAT_MS", default_value_t = 5_000)]
    agent_heartbeat_ms: u64,
    /// An agent silent for this long is marked UNREACHABLE, milliseconds.
    #[arg(long, env = "DROVER_AGENT_TIMEOUT_MS", default_value_t = 30_000)]
    agent_timeout_ms: u64,
    /// How often subscribed frameworks get a HEARTBEAT event, milliseconds.
    #[arg(long, env = "DROVER_FRAMEWORK_HEARTBEAT_MS", default_value_t = 5_000)]
    framework_heartbeat_ms: u64,
    /// After a leader change, how long agents have to register again (with their tasks)
    /// before they are marked UNREACHABLE, and the least time every framework has to
    /// subscribe again before its failover timeout tears it down, milliseconds.
    #[arg(
        long,
        env = "DROVER_AGENT_REREGISTER_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    agent_reregister_timeout_ms: u64,
    /// An agent UNREACHABLE for this long is removed (GONE: its tasks end as TASK_GONE, and it
    /// may not register under its id again), milliseconds.
    #[arg(
        long,
        env = "DROVER_AGENT_REMOVAL_TIMEOUT_MS",
        default_value_t = 3_600_000
    )]
    agent_removal_timeout_ms: u64,
    /// Completed tasks (ended, last update acknowledged) each framework keeps in the
    /// registry; the oldest beyond it are forgotten (as Mesos's
    /// --max_completed_tasks_per_framework).
    #[arg(
        long,
        env = "DROVER_MAX_COMPLETED_TASKS_PER_FRAMEWORK",
        default_value_t = 1_000
    )]
    max_completed_tasks_per_framework: u32,
    /// Completed frameworks (torn down, no live task) kept with their tasks; the oldest beyond
    /// it are forgotten (as Mesos's --max_completed_frameworks).
    #[arg(long, env = "DROVER_MAX_COMPLETED_FRAMEWORKS", default_value_t = 50)]
    max_completed_frameworks: u32,
}

#[derive(Args)]
struct StoreArgs {
    #[command(flatten)]
    masters: MastersArg,
    /// The framework whose store to use.
    #[arg(long, env = "DROVER_FRAMEWORK", default_value = "default")]
    framework: String,
    #[command(subcommand)]
    op: StoreOp,
}

#[derive(Subcommand)]
enum StoreOp {
    /// Write VALUE under KEY; prints the new version.
    Put { key: String, value: String },
    /// Print the value of KEY (exit 1 if absent).
    Get {
        key: String,
        /// Also print the version (to stderr).
        #[arg(long)]
        show_version: bool,
    },
    /// Delete KEY.
    Delete { key: String },
    /// Set KEY to NEW only if it holds EXPECTED (exit 1 if it does not).
    Cas {
        key: String,
        /// EXPECTED NEW, or only NEW with --absent.
        #[arg(num_args = 1..=2, required = true)]
        values: Vec<String>,
        /// Read EXPECTED as a version number instead of a value.
        #[arg(long, conflicts_with = "absent")]
        by_version: bool,
        /// Require KEY to be absent; give only NEW.
        #[arg(long)]
        absent: bool,
    },
    /// List keys in order.
    List {
        #[arg(long, default_value = "")]
        start_after: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Args)]
struct ClusterArgs {
    #[command(flatten)]
    masters: MastersArg,
    #[command(subcommand)]
    op: ClusterOp,
}

#[derive(Subcommand)]
enum ClusterOp {
    /// The leader's view of the membership and each master's own state.
    Status,
    /// Add a running, empty master: learner first, voter once caught up.
    AddMaster {
        #[arg(long)]
        id: u64,
        /// Its host:port.
        #[arg(long)]
        addr: String,
    },
    /// Remove a master from the cluster.
    RemoveMaster {
        #[arg(long)]
        id: u64,
    },
    /// Set a role's weight for DRF (default 1): weight 3 gets three times the share of 1.
    SetWeight { role: String, weight: f64 },
    /// Hand leadership to another master (before restarting the leader): writes pause for
    /// about the election timeout instead of the cluster losing its leader.
    TransferLeader {
        /// The master to lead (default: the most caught-up voter).
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Args)]
struct UpArgs {
    /// How many masters (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    masters: u64,
    /// How many agents (on the odd ports after the first master's).
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// Where data and logs go.
    #[arg(long, default_value = ".drover")]
    data_dir: PathBuf,
    /// First master port; masters use it and every second port after it.
    #[arg(long, default_value_t = 5050)]
    base_port: u16,
}

#[derive(Args)]
struct ChaosArgs {
    #[command(subcommand)]
    what: ChaosWhat,
}

#[derive(Subcommand)]
enum ChaosWhat {
    /// Start a cluster, run workloads under a seeded fault schedule, heal, check the
    /// invariants; exit 0 only when every checker says valid.
    Run {
        #[command(flatten)]
        opts: drover_chaos::run::ChaosOptions,
    },
    /// Internal: one scheduler of the chaos tasks workload, started by `chaos run`.
    #[command(hide = true)]
    Scheduler(drover_chaos::workload::tasks::SchedulerArgs),
    /// Re-run the checkers on a saved run directory (rewrites its results.json).
    Check {
        /// The directory a `chaos run --out` wrote.
        dir: PathBuf,
        /// Time the checkers may take in all before they answer "unknown".
        #[arg(long, default_value = "120s", value_parser = drover_chaos::run::parse_duration)]
        time_limit: Duration,
    },
}

/// Prints the verdict of each checker and returns the exit code: 0 when all are valid, 1 when
/// any is invalid or unknown.
fn print_results(results: &drover_chaos::checker::Results, dir: &std::path::Path) -> ExitCode {
    for c in &results.checkers {
        println!(
            "{:<28} {:<8} {}",
            c.checker,
            format!("{:?}", c.valid).to_lowercase(),
            c.summary
        );
    }
    println!(
        "{}: {}",
        if results.valid { "VALID" } else { "NOT VALID" },
        dir.join("results.json").display()
    );
    if results.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run_chaos(what: ChaosWhat) -> anyhow::Result<ExitCode> {
    match what {
        ChaosWhat::Run { opts } => {
            let binary = std::env::current_exe().context("locating the drover binary")?;
            let summary =
                drover_chaos::run::run(binary, &opts, |line| eprintln!("chaos: {line}")).await?;
            println!(
                "seed {}: {} records, faults {:?} ({} failed to inject)",
                summary.seed, summary.records, summary.faults.by_kind, summary.faults.errors
            );
            Ok(print_results(&summary.results, &opts.out))
        }
        ChaosWhat::Scheduler(args) => {
            drover_chaos::workload::tasks::run_scheduler(args, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        ChaosWhat::Check { dir, time_limit } => {
            let results = drover_chaos::run::check_saved(&dir, time_limit)?;
            Ok(print_results(&results, &dir))
        }
    }
}

#[derive(Args)]
struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
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
        opts: drover_chaos::bench::launch::LaunchBenchOptions,
        /// Keep the cluster's directory (data and every process's log) after the run.
        #[arg(long)]
        keep: bool,
    },
    /// SIGKILL the leader repeatedly with simulated agents, long-running tasks and a churn of
    /// short ones: time until a new leader, its first offer, and its first status update
    /// reach a framework.
    Recovery {
        #[command(flatten)]
        opts: drover_chaos::bench::recovery::RecoveryBenchOptions,
        /// Keep the cluster's directory (data and every process's log) after the run.
        #[arg(long)]
        keep: bool,
    },
    /// A long steady load with the leader SIGKILLed now and then (simulated agents, a churn of
    /// short tasks, store writes): every `--report-every`, each master's memory, the registry's
    /// sizes, snapshot bytes and the launch rate; at the end, how much memory moved.
    Soak {
        #[command(flatten)]
        opts: drover_chaos::bench::soak::SoakBenchOptions,
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
    /// SIGKILL the leader repeatedly; time until a new leader commits a write.
    Failover {
        #[arg(long, default_value_t = 3)]
        masters: u64,
        #[arg(long, default_value_t = 10)]
        trials: usize,
    },
}

fn init_logging(format: LogFormat, filter: Option<String>, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// One line of `drover bench soak`'s figures.
fn print_soak_sample(s: &drover_chaos::bench::soak::SoakSample) {
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
fn keep_or_remove(keep: bool, dir: &std::path::Path) {
    if keep {
        println!("kept the cluster's directory: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn client(m: &MastersArg) -> anyhow::Result<MasterClient> {
    Ok(MasterClient::new(&m.masters)?)
}

fn exit(r: Result<Exit, cli::CliError>) -> ExitCode {
    match r {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::No) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C, or when the harness that started this process is gone.
async fn shutdown_signal() {
    tokio::select! {
        () = signals() => {}
        () = owner::gone() => {}
    }
}

/// How an agent stops: on a signal its executors keep running (the next agent recovers them);
/// when its owner is gone nothing will start it again, so its tasks are killed too.
async fn agent_stop() -> drover_agent::Stop {
    tokio::select! {
        () = signals() => drover_agent::Stop::KeepTasks,
        () = owner::gone() => drover_agent::Stop::KillTasks,
    }
}

async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `drover master --config FILE`: the master's settings in TOML.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterFile {
    id: Option<u64>,
    listen: Option<std::net::SocketAddr>,
    peers: Option<String>,
    data_dir: Option<PathBuf>,
    heartbeat_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every: Option<u64>,
    keep_logs: Option<u64>,
    write_timeout_ms: Option<u64>,
    peer_bind_ip: Option<std::net::IpAddr>,
    catch_up_timeout_ms: Option<u64>,
    allocation_interval_ms: Option<u64>,
    offer_timeout_ms: Option<u64>,
    agent_heartbeat_ms: Option<u64>,
    agent_timeout_ms: Option<u64>,
    framework_heartbeat_ms: Option<u64>,
    agent_reregister_timeout_ms: Option<u64>,
    agent_removal_timeout_ms: Option<u64>,
    max_completed_tasks_per_framework: Option<u32>,
    max_completed_frameworks: Option<u32>,
}

/// Fills every setting not given by flag or environment from the config file.
fn merge_master_file(mut a: MasterArgs, given: &clap::ArgMatches) -> anyhow::Result<MasterArgs> {
    let Some(path) = &a.config else {
        return Ok(a);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let f: MasterFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let explicit = |id: &str| {
        matches!(
            given.value_source(id),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        )
    };
    macro_rules! fill {
        ($($field:ident),*) => {$(
            if !explicit(stringify!($field)) {
                if let Some(v) = f.$field {
                    a.$field = v.into();
                }
            }
        )*};
    }
    fill!(
        id,
        listen,
        peers,
        data_dir,
        heartbeat_ms,
        election_timeout_min_ms,
        election_timeout_max_ms,
        snapshot_every,
        keep_logs,
        write_timeout_ms,
        peer_bind_ip,
        catch_up_timeout_ms,
        allocation_interval_ms,
        offer_timeout_ms,
        agent_heartbeat_ms,
        agent_timeout_ms,
        framework_heartbeat_ms,
        agent_reregister_timeout_ms,
        agent_removal_timeout_ms,
        max_completed_tasks_per_framework,
        max_completed_frameworks
    );
    Ok(a)
}

async fn run_master(a: MasterArgs) -> anyhow::Result<()> {
    let missing =
        |what: &str| anyhow::anyhow!("{what} is required (flag, DROVER_* variable or config file)");
    let id = a.id.ok_or_else(|| missing("--id"))?;
    let peers = a.peers.as_deref().ok_or_else(|| missing("--peers"))?;
    let data_dir = a.data_dir.clone().ok_or_else(|| missing("--data-dir"))?;
    let peers = drover_master::parse_peers(peers).map_err(|e| anyhow::anyhow!("--peers: {e}"))?;
    if a.election_timeout_min_ms <= a.heartbeat_ms
        || a.election_timeout_max_ms <= a.election_timeout_min_ms
    {
        anyhow::bail!(
            "need --heartbeat-ms < --election-timeout-min-ms < --election-timeout-max-ms"
        );
    }
    let mut config = drover_master::MasterConfig::new(id, a.listen, peers, data_dir);
    config.heartbeat_interval = Duration::from_millis(a.heartbeat_ms);
    config.election_timeout_min = Duration::from_millis(a.election_timeout_min_ms);
    config.election_timeout_max = Duration::from_millis(a.election_timeout_max_ms);
    config.snapshot_every_entries = a.snapshot_every;
    config.keep_entries_after_snapshot = a.keep_logs;
    config.write_timeout = Duration::from_millis(a.write_timeout_ms);
    config.peer_bind_ip = a.peer_bind_ip;
    config.catch_up_timeout = Duration::from_millis(a.catch_up_timeout_ms);
    for (flag, v) in [
        ("--allocation-interval-ms", a.allocation_interval_ms),
        ("--offer-timeout-ms", a.offer_timeout_ms),
        ("--agent-heartbeat-ms", a.agent_heartbeat_ms),
        ("--agent-timeout-ms", a.agent_timeout_ms),
        ("--framework-heartbeat-ms", a.framework_heartbeat_ms),
        (
            "--agent-reregister-timeout-ms",
            a.agent_reregister_timeout_ms,
        ),
        ("--agent-removal-timeout-ms", a.agent_removal_timeout_ms),
    ] {
        if v == 0 {
            anyhow::bail!("{flag} must be greater than 0");
        }
    }
    if a.agent_timeout_ms <= a.agent_heartbeat_ms {
        anyhow::bail!("need --agent-heartbeat-ms < --agent-timeout-ms");
    }
    config.offers.allocation_interval = Duration::from_millis(a.allocation_interval_ms);
    config.offers.offer_timeout = Duration::from_millis(a.offer_timeout_ms);
    config.offers.agent_heartbeat_interval = Duration::from_millis(a.agent_heartbeat_ms);
    config.offers.agent_timeout = Duration::from_millis(a.agent_timeout_ms);
    config.offers.framework_heartbeat_interval = Duration::from_millis(a.framework_heartbeat_ms);
    config.offers.agent_reregister_timeout = Duration::from_millis(a.agent_reregister_timeout_ms);
    config.offers.agent_removal_timeout = Duration::from_millis(a.agent_removal_timeout_ms);
    config.offers.max_completed_tasks_per_framework = a.max_completed_tasks_per_framework;
    config.offers.max_completed_frameworks = a.max_completed_frameworks;
    let prometheus =
        drover_master::metrics::install().context("installing the metrics recorder")?;
    drover_master::run(config, prometheus, shutdown_signal()).await?;
    Ok(())
}

fn print_write_figures(f: &drover_chaos::bench::WriteFigures) {
    println!(
        "clients {:>4}  {:>9.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  ({} ok, {} errors in {:.1} s)",
        f.clients, f.ops_per_sec, f.p50_ms, f.p99_ms, f.max_ms, f.ops, f.errors, f.seconds
    );
}

/// `drover bench agent-recovery`: the agent's recovery scan alone, in this process.
fn bench_agent_recovery(dir: &std::path::Path, tasks: usize, samples: usize) -> anyhow::Result<()> {
    use drover_agent::recovery_bench;
    println!(
        "agent recovery benchmark: one scan of {tasks} ended task directories and of the process table, {samples} samples (files in the page cache after the first)"
    );
    let work_dir = dir.join("agent");
    let populated = recovery_bench::populate(&work_dir, tasks);
    let f = populated.map(|()| recovery_bench::time_scans(&work_dir, samples));
    let _ = std::fs::remove_dir_all(dir);
    let f = f?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
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
) -> anyhow::Result<()> {
    use drover_master::allocator::bench;
    println!(
        "allocator benchmark: one DRF allocation cycle, the pure allocator in one thread (no I/O), {roles} weighted roles, {samples} samples per cycle"
    );
    for size in sizes {
        let (agents, frameworks) = size
            .split_once('x')
            .and_then(|(a, f)| Some((a.parse::<usize>().ok()?, f.parse::<usize>().ok()?)))
            .with_context(|| {
                format!("--sizes: {size:?} is not AGENTSxFRAMEWORKS, e.g. 1000x100")
            })?;
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

async fn run_bench(what: BenchWhat) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the drover binary")?;
    let dir = std::env::temp_dir().join(format!("drover-bench-{}", std::process::id()));
    let result = match what {
        BenchWhat::Allocator {
            sizes,
            roles,
            samples,
            decline_rounds,
        } => return bench_allocator(&sizes, roles, samples, decline_rounds),
        BenchWhat::Store {
            masters,
            clients,
            seconds,
            warmup_seconds,
            value_bytes,
            connections,
        } => {
            println!(
                "store write benchmark: {masters} masters on loopback, fsync on (every log append and vote is fsynced before it is acknowledged), {value_bytes}-byte values, {seconds} s per run"
            );
            let opts = drover_chaos::bench::WriteBenchOptions {
                masters,
                client_counts: clients,
                duration: Duration::from_secs(seconds),
                warmup: Duration::from_secs(warmup_seconds),
                value_bytes,
                connections,
            };
            drover_chaos::bench::store_writes(binary, dir.clone(), &opts, print_write_figures)
                .await
                .map(|_| ())
        }
        BenchWhat::Launch { opts, keep } => {
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
            let f = drover_chaos::bench::launch::launch(binary, dir.clone(), &opts, |line| {
                eprintln!("  {line}");
            })
            .await;
            keep_or_remove(keep, &dir);
            let f = f?;
            let sim = if f.simulated {
                " [SIMULATED agents]"
            } else {
                ""
            };
            println!(
                "{} of {} tasks RUNNING ({} failed) in {:.2} s from the first ACCEPT: {:.0} launches/s{sim}",
                f.running, f.tasks, f.failed, f.seconds, f.launches_per_sec
            );
            println!(
                "ACCEPT → RUNNING latency: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} ACCEPTs){sim}",
                f.p50_ms, f.p99_ms, f.max_ms, f.accepts
            );
            println!(
                "{} agents registered in {:.1} s; leader changes during the run: {}{sim}",
                f.agents, f.registration_seconds, f.leader_changes
            );
            for m in &f.masters {
                println!(
                    "master {}{}: resident memory {} with {} agents and {} tasks in the registry{sim}",
                    m.id,
                    if m.leader { " (leader)" } else { "" },
                    m.rss_mib
                        .map_or_else(|| "unknown".to_string(), |r| format!("{r:.0} MiB")),
                    f.agents,
                    f.tasks_in_registry
                        .map_or_else(|| "unknown".to_string(), |n| n.to_string())
                );
            }
            return Ok(());
        }
        BenchWhat::Soak { opts, keep } => {
            println!(
                "soak benchmark: {} masters on loopback, fsync on, {} SIMULATED agents, {} tasks/s of {:?}, {} store writes/s over {} keys, leader SIGKILLed every {:?}, for {:?}",
                opts.masters, opts.agents, opts.rate, opts.command, opts.store_rate, opts.store_keys, opts.kill_every, opts.duration
            );
            let f = drover_chaos::bench::soak::soak(
                binary,
                dir.clone(),
                &opts,
                |line| eprintln!("  {line}"),
                print_soak_sample,
            )
            .await;
            keep_or_remove(keep, &dir);
            let f = f?;
            println!(
                "launched {} tasks ({} ended, {} ACCEPTs failed), {} store writes ({} failed), {} leader kills [SIMULATED agents]",
                f.launched, f.finished, f.accept_errors, f.store_writes, f.store_errors, f.kills
            );
            for (id, drift) in
                drover_chaos::bench::soak::memory_drift(&f.samples, &f.restarts, opts.settle)
            {
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
            return Ok(());
        }
        BenchWhat::Recovery { opts, keep } => {
            println!(
                "recovery benchmark: {} masters on loopback, fsync on, {} SIMULATED agents, {} tasks running until killed, {} short tasks in flight; SIGKILL the leader {} times",
                opts.masters, opts.agents, opts.long_tasks, opts.churn, opts.trials
            );
            let f = drover_chaos::bench::recovery::recovery(
                binary,
                dir.clone(),
                &opts,
                |line| eprintln!("  {line}"),
                |trial, t| {
                    println!(
                        "trial {trial:>3}: killed master {}; master {} leads after {:.1} ms, first offer after {:.1} ms, first status update after {:.1} ms [SIMULATED agents]",
                        t.killed, t.new_leader, t.leader_ms, t.offer_ms, t.update_ms
                    )
                },
            )
            .await;
            keep_or_remove(keep, &dir);
            let f = f?;
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
            return Ok(());
        }
        BenchWhat::AgentRecovery { tasks, samples } => {
            return bench_agent_recovery(&dir, tasks, samples.max(1));
        }
        BenchWhat::Failover { masters, trials } => {
            println!("failover benchmark: {masters} masters, fsync on, SIGKILL the leader {trials} times");
            drover_chaos::bench::failover(binary, dir.clone(), masters, trials, |trial, took, old, new| {
                println!(
                    "trial {trial:>3}: killed master {old}; master {new} committed a write after {:.1} ms",
                    took.as_secs_f64() * 1000.0
                );
            })
            .await
            .map(|f| {
                println!(
                    "failover over {} trials: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    f.trials.len(),
                    f.p50_ms,
                    f.p99_ms,
                    f.max_ms
                );
            })
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result?)
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // An executor (one per task) runs on one thread: hundreds of them share the host.
    let runtime = if matches!(cli.command, Command::Executor(_)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(run(cli, matches)),
        Err(e) => {
            eprintln!("drover: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, matches: clap::ArgMatches) -> ExitCode {
    let server = matches!(
        cli.command,
        Command::Master(_)
            | Command::Up(_)
            | Command::Agent(AgentCommand { op: None, .. })
            | Command::Executor(_)
    );
    init_logging(
        cli.log_format,
        cli.log,
        if server { "info,openraft=warn" } else { "warn" },
    );
    let result: anyhow::Result<ExitCode> = async {
        Ok(match cli.command {
            Command::Master(a) => {
                let given = matches
                    .subcommand_matches("master")
                    .expect("the master subcommand matched");
                run_master(merge_master_file(a, given)?).await?;
                ExitCode::SUCCESS
            }
            Command::Store(s) => {
                let c = client(&s.masters)?;
                let cmd = match s.op {
                    StoreOp::Put { key, value } => StoreCommand::Put { key, value },
                    StoreOp::Get { key, show_version } => StoreCommand::Get { key, show_version },
                    StoreOp::Delete { key } => StoreCommand::Delete { key },
                    StoreOp::Cas {
                        key,
                        mut values,
                        by_version,
                        absent,
                    } => {
                        let (expected, new) = match (absent, values.len()) {
                            (true, 1) => (CasExpectation::Absent, values.remove(0)),
                            (false, 2) => {
                                let new = values.remove(1);
                                let exp = values.remove(0);
                                let expected = if by_version {
                                    CasExpectation::Version(exp.parse().with_context(|| {
                                        format!("EXPECTED: {exp:?} is not a version number")
                                    })?)
                                } else {
                                    CasExpectation::Value(exp)
                                };
                                (expected, new)
                            }
                            (true, _) => anyhow::bail!("cas --absent takes KEY NEW"),
                            (false, _) => anyhow::bail!("cas takes KEY EXPECTED NEW"),
                        };
                        StoreCommand::Cas { key, expected, new }
                    }
                    StoreOp::List { start_after, limit } => {
                        StoreCommand::List { start_after, limit }
                    }
                };
                exit(cli::store::run(&c, &s.framework, cmd).await)
            }
            Command::Cluster(c) => {
                let client = client(&c.masters)?;
                exit(match c.op {
                    ClusterOp::Status => cli::cluster::status(&client, &c.masters.masters).await,
                    ClusterOp::AddMaster { id, addr } => {
                        cli::cluster::add_master(
                            &client.with_deadline(Duration::from_secs(120)),
                            id,
                            &addr,
                        )
                        .await
                    }
                    ClusterOp::RemoveMaster { id } => {
                        cli::cluster::remove_master(
                            &client.with_deadline(Duration::from_secs(30)),
                            id,
                        )
                        .await
                    }
                    ClusterOp::SetWeight { role, weight } => {
                        match client.set_role_weight(&role, weight).await {
                            Ok(()) => {
                                println!("role {role}: weight {weight}");
                                Ok(Exit::Success)
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                    ClusterOp::TransferLeader { to } => {
                        cli::cluster::transfer_leader(
                            &client.with_deadline(Duration::from_secs(30)),
                            to,
                        )
                        .await
                    }
                })
            }
            Command::Leader(m) => exit(cli::cluster::leader(&client(&m)?).await),
            Command::Up(u) => {
                let binary = std::env::current_exe().context("locating the drover binary")?;
                drover_chaos::up::run(drover_chaos::up::UpOptions {
                    binary,
                    base_dir: u.data_dir,
                    masters: u.masters,
                    agents: u.agents,
                    base_port: u.base_port,
                    master_args: Vec::new(),
                    agent_args: Vec::new(),
                })
                .await?;
                ExitCode::SUCCESS
            }
            Command::Bench(b) => {
                run_bench(b.what).await?;
                ExitCode::SUCCESS
            }
            Command::Chaos(c) => run_chaos(c.what).await?,
            Command::Agent(AgentCommand { op: Some(op), .. }) => match op {
                AgentOp::Drain {
                    agent,
                    wait,
                    masters,
                } => {
                    let c = client(&masters)?;
                    exit(cli::agents::drain(&c, &agent, wait.map(Duration::from_secs)).await)
                }
                AgentOp::Reactivate { agent, masters } => {
                    exit(cli::agents::reactivate(&client(&masters)?, &agent).await)
                }
                AgentOp::Remove { agent, masters } => {
                    exit(cli::agents::remove(&client(&masters)?, &agent).await)
                }
            },
            Command::Agent(AgentCommand { op: None, run }) => {
                let run = run.context("drover agent: give --work-dir (see drover agent --help)")?;
                let prometheus =
                    drover_agent::metrics::install().context("installing the metrics recorder")?;
                drover_agent::run(run, prometheus, agent_stop()).await?;
                ExitCode::SUCCESS
            }
            Command::Executor(args) => match drover_agent::run_executor(args).await {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("drover executor: {e}");
                    ExitCode::from(1)
                }
            },
            Command::Run(args) => match drover_scheduler::run::run(args).await {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("drover run: {e}");
                    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
                }
            },
        })
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
