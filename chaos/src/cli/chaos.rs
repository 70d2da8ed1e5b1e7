//! `drover chaos`: its arguments, the runs it starts and the verdicts it prints.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::CommandError;
use crate::checker::Results;

#[derive(Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub what: ChaosWhat,
}

#[derive(Subcommand)]
pub enum ChaosWhat {
    /// Start a cluster, run workloads under a seeded fault schedule, heal, check the
    /// invariants; exit 0 only when every checker says valid.
    Run {
        #[command(flatten)]
        opts: crate::run::ChaosOptions,
    },
    /// Internal: one scheduler of the chaos tasks workload, started by `chaos run`.
    #[command(hide = true)]
    Scheduler(crate::workload::tasks::SchedulerArgs),
    /// Re-run the checkers on a saved run directory (rewrites its results.json).
    Check {
        /// The directory a `chaos run --out` wrote.
        dir: PathBuf,
        /// Time the checkers may take in all before they answer "unknown".
        #[arg(long, default_value = "120s", value_parser = crate::run::parse_duration)]
        time_limit: Duration,
    },
}

/// Prints the verdict of each checker; true when all are valid.
fn print_results(results: &Results, dir: &Path) -> bool {
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
    results.valid
}

/// Runs `drover chaos …`: true when every checker says valid (or there is nothing to check).
/// `shutdown` ends the internal scheduler.
pub async fn run(
    what: ChaosWhat,
    shutdown: impl Future<Output = ()>,
) -> Result<bool, CommandError> {
    match what {
        ChaosWhat::Run { opts } => {
            let binary = std::env::current_exe().map_err(CommandError::Binary)?;
            let summary = crate::run::run(binary, &opts, |line| eprintln!("chaos: {line}")).await?;
            println!(
                "seed {}: {} records, faults {:?} ({} failed to inject)",
                summary.seed, summary.records, summary.faults.by_kind, summary.faults.errors
            );
            Ok(print_results(&summary.results, &opts.out))
        }
        ChaosWhat::Scheduler(args) => {
            crate::workload::tasks::run_scheduler(args, shutdown).await?;
            Ok(true)
        }
        ChaosWhat::Check { dir, time_limit } => {
            let results = crate::run::check_saved(&dir, time_limit)?;
            Ok(print_results(&results, &dir))
        }
    }
}
