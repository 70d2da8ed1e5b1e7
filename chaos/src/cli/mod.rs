//! The `drover bench` and `drover chaos` commands: arguments, runs and what they print, so
//! that the binary only parses and dispatches.

pub mod bench;
pub mod chaos;

use crate::bench::launch::LaunchBenchError;
use crate::bench::recovery::RecoveryBenchError;
use crate::bench::soak::SoakBenchError;
use crate::cluster::ClusterError;
use crate::run::ChaosError;
use crate::workload::WorkloadError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("locating the drover binary: {0}")]
    Binary(std::io::Error),
    #[error("--sizes: {0:?} is not AGENTSxFRAMEWORKS, e.g. 1000x100")]
    Sizes(String),
    #[error("writing the agent's task directories: {0}")]
    AgentRecovery(drover_agent::checkpoint::CheckpointError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Launch(#[from] LaunchBenchError),
    #[error(transparent)]
    Recovery(#[from] RecoveryBenchError),
    #[error(transparent)]
    Soak(#[from] SoakBenchError),
    #[error(transparent)]
    Marathon(#[from] crate::bench::marathon::MarathonBenchError),
    #[error(transparent)]
    Chaos(#[from] ChaosError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}
