//! `drover`: the one binary. This file only parses arguments, sets up logging and hands over
//! to the crate that does the work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use admin::{store::CasExpectation, store::StoreCommand, Exit};
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use drover_client::MasterClient;

mod admin;
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
    Master(drover_master::config::MasterArgs),
    /// Read and write a framework's replicated store.
    Store(StoreArgs),
    /// Inspect the masters and replace them.
    Cluster(ClusterArgs),
    /// Print the current leader as JSON.
    Leader(MastersArg),
    /// Apps on the Marathon-compatible scheduler: add, list, show, scale, restart, update, rm.
    App {
        #[command(flatten)]
        scheduler: admin::apps::SchedulerArg,
        #[command(subcommand)]
        op: admin::apps::AppOp,
    },
    /// Tasks of the scheduler's apps: list, kill.
    Task {
        #[command(flatten)]
        scheduler: admin::apps::SchedulerArg,
        #[command(subcommand)]
        op: admin::apps::TaskOp,
    },
    /// The scheduler's deployments: list, rollback.
    Deployment {
        #[command(flatten)]
        scheduler: admin::apps::SchedulerArg,
        #[command(subcommand)]
        op: admin::apps::DeploymentOp,
    },
    /// Follow the scheduler's event stream (reconnects when it breaks).
    Watch {
        #[command(flatten)]
        scheduler: admin::apps::SchedulerArg,
    },
    /// Run a local cluster in child processes until Ctrl-C.
    Up(UpArgs),
    /// Measure the cluster: store write throughput and latency, leader failover time.
    Bench(drover_chaos::cli::bench::BenchArgs),
    /// Jepsen-style runs: a real cluster under faults, a recorded history, checkers.
    Chaos(drover_chaos::cli::chaos::ChaosArgs),
    /// Run one command as a task on the cluster, print its statuses, exit with its status
    /// (in the spirit of mesos-execute): `drover run -- 'echo hi'`.
    Run(drover_scheduler::run::RunArgs),
    /// The Marathon-compatible scheduler: keeps apps running, serves `/v2` (default :8080).
    Scheduler(drover_scheduler::marathon::serve::SchedulerArgs),
    /// Run an agent: register with the leader, offer this machine's resources, run tasks.
    /// `drover agent drain|deactivate|reactivate|remove AGENT` maintains one through the
    /// masters.
    Agent(Box<AgentCommand>),
    /// Internal: one task's executor, started by the agent.
    #[command(hide = true)]
    Executor(drover_agent::ExecutorArgs),
    /// A development certificate authority: `drover certs init --dir D`, then
    /// `drover certs issue --dir D --role master|agent|framework|client --name N --host H`.
    Certs {
        #[command(subcommand)]
        op: admin::certs::CertsOp,
    },
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
    /// No new offers on AGENT (its outstanding ones rescinded); its tasks keep running.
    Deactivate {
        agent: String,
        #[command(flatten)]
        masters: MastersArg,
    },
    /// Undo a drain or a deactivation: AGENT's resources are offered again.
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
    /// Mutual TLS to the masters, with an operator's (client) certificate.
    #[command(flatten)]
    tls: drover_tls::TlsArgs,
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
    /// How many Marathon-compatible schedulers (one active, the others standbys).
    #[arg(long, default_value_t = 2)]
    schedulers: usize,
    /// The first scheduler's port (`/v2`); the others use the ports after it.
    #[arg(long, default_value_t = 8080)]
    scheduler_port: u16,
    /// Plain TCP and HTTP, no certificates. By default every connection is mutual TLS, with
    /// a CA and certificates made under the data directory's `tls/`.
    #[arg(long)]
    insecure: bool,
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

fn client(m: &MastersArg) -> anyhow::Result<MasterClient> {
    let tls = match m.tls.files()? {
        None => None,
        Some(files) => Some(drover_tls::LiveTls::fixed(files, drover_tls::Role::Client)?),
    };
    let dialer = drover_client::channel::Dialer {
        bind_ip: None,
        tls: tls.map(|t| t.client(&[drover_tls::Role::Master])),
    };
    Ok(MasterClient::with_dialer(
        &m.masters,
        drover_client::RetryPolicy::default(),
        dialer,
    )?)
}

/// How a `drover app|task|deployment|watch` command ended.
fn apps_exit(r: Result<(), admin::apps::AppsError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn exit(r: Result<Exit, admin::CliError>) -> ExitCode {
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
    let server = match &cli.command {
        Command::Agent(a) => a.op.is_none(),
        c => matches!(
            c,
            Command::Master(_) | Command::Up(_) | Command::Executor(_) | Command::Scheduler(_)
        ),
    };
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
                let config = a.merge_file(given)?.into_config()?;
                let prometheus =
                    drover_master::metrics::install().context("installing the metrics recorder")?;
                drover_master::run(config, prometheus, shutdown_signal()).await?;
                ExitCode::SUCCESS
            }
            Command::Store(s) => store(s).await?,
            Command::Certs { op } => match admin::certs::run(op) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("drover certs: {e}");
                    ExitCode::from(2)
                }
            },
            Command::Cluster(c) => cluster(c).await?,
            Command::Leader(m) => exit(admin::cluster::leader(&client(&m)?).await),
            Command::App { scheduler, op } => apps_exit(admin::apps::app(&scheduler, op).await),
            Command::Task { scheduler, op } => apps_exit(admin::apps::task(&scheduler, op).await),
            Command::Deployment { scheduler, op } => {
                apps_exit(admin::apps::deployment(&scheduler, op).await)
            }
            Command::Watch { scheduler } => apps_exit(admin::apps::watch(&scheduler).await),
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
                    schedulers: u.schedulers,
                    scheduler_port: u.scheduler_port,
                    tls: !u.insecure,
                })
                .await?;
                ExitCode::SUCCESS
            }
            Command::Bench(b) => {
                drover_chaos::cli::bench::run(b.what).await?;
                ExitCode::SUCCESS
            }
            Command::Chaos(c) => {
                if drover_chaos::cli::chaos::run(c.what, shutdown_signal()).await? {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Command::Agent(a) => match *a {
                AgentCommand { op: Some(op), .. } => match op {
                    AgentOp::Drain {
                        agent,
                        wait,
                        masters,
                    } => {
                        let c = client(&masters)?;
                        exit(admin::agents::drain(&c, &agent, wait.map(Duration::from_secs)).await)
                    }
                    AgentOp::Deactivate { agent, masters } => {
                        exit(admin::agents::deactivate(&client(&masters)?, &agent).await)
                    }
                    AgentOp::Reactivate { agent, masters } => {
                        exit(admin::agents::reactivate(&client(&masters)?, &agent).await)
                    }
                    AgentOp::Remove { agent, masters } => {
                        exit(admin::agents::remove(&client(&masters)?, &agent).await)
                    }
                },
                AgentCommand { op: None, run } => {
                    let run =
                        run.context("drover agent: give --work-dir (see drover agent --help)")?;
                    let prometheus = drover_agent::metrics::install()
                        .context("installing the metrics recorder")?;
                    drover_agent::run(run, prometheus, agent_stop()).await?;
                    ExitCode::SUCCESS
                }
            },
            Command::Executor(args) => match drover_agent::run_executor(args).await {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("drover executor: {e}");
                    ExitCode::from(1)
                }
            },
            Command::Scheduler(args) => {
                let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
                    .install_recorder()
                    .context("installing the metrics recorder")?;
                drover_scheduler::marathon::serve::serve(args, Some(prometheus), shutdown_signal())
                    .await?;
                ExitCode::SUCCESS
            }
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

/// `drover store …`: one framework store operation.
async fn store(s: StoreArgs) -> anyhow::Result<ExitCode> {
    let c = client(&s.masters)?;
    let cmd = store_command(s.op)?;
    Ok(exit(admin::store::run(&c, &s.framework, cmd).await))
}

/// The store operation the arguments name (`cas` checks its arity and expectation here).
fn store_command(op: StoreOp) -> anyhow::Result<StoreCommand> {
    Ok(match op {
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
        StoreOp::List { start_after, limit } => StoreCommand::List { start_after, limit },
    })
}

/// `drover cluster …`: status and membership of the masters, role weights.
async fn cluster(c: ClusterArgs) -> anyhow::Result<ExitCode> {
    let client = client(&c.masters)?;
    Ok(exit(match c.op {
        ClusterOp::Status => admin::cluster::status(&client, &c.masters.masters).await,
        ClusterOp::AddMaster { id, addr } => {
            admin::cluster::add_master(&client.with_deadline(Duration::from_secs(120)), id, &addr)
                .await
        }
        ClusterOp::RemoveMaster { id } => {
            admin::cluster::remove_master(&client.with_deadline(Duration::from_secs(30)), id).await
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
            admin::cluster::transfer_leader(&client.with_deadline(Duration::from_secs(30)), to)
                .await
        }
    }))
}
