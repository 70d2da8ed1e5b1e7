//! Workloads: clients that drive a cluster during a chaos run and record every operation in
//! the history (invoke, then ok / fail / info), each with the checkers that judge what they
//! recorded.
//!
//! A workload is a value implementing [`Workload`]; `drover chaos run --workload a,b` runs
//! several side by side, in this process or as processes the cluster runs
//! ([`Workload::schedulers`]). The store workload ([`store`]) exercises the framework store;
//! the tasks workload ([`tasks`]) frameworks on the driver library, each a scheduler process;
//! the marathon workload ([`marathon`]) apps through `/v2` of two `drover scheduler`s. A new
//! one plugs in by implementing the trait and naming itself in [`by_name`].

pub mod marathon;
pub mod store;
pub mod tasks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::history::Recorder;

/// What a workload gets to run with.
#[derive(Clone)]
pub struct Context {
    pub rec: Recorder,
    /// Addresses clients use to reach the masters (every master; the leader is followed).
    pub masters: Vec<String>,
    /// Turns true when the workload must stop invoking operations.
    pub stop: watch::Receiver<bool>,
    /// Operations per second this workload should aim for in total.
    pub rate: f64,
    pub seed: u64,
    /// Turns true when the nemesis stops injecting faults (a workload with faults of its own
    /// stops them then).
    pub faults_stopped: watch::Receiver<bool>,
    /// The `drover` binary, for workloads that run processes of their own.
    pub binary: Option<std::path::PathBuf>,
    /// The run's output directory (their logs go there).
    pub out: Option<std::path::PathBuf>,
}

/// Why a workload could not run (its operations' failures are history, not errors).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{0}")]
    Setup(String),
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A workload of a chaos run.
pub trait Workload: Send + Sync {
    /// Its name on the command line and in the history's process names.
    fn name(&self) -> &'static str;
    /// Runs the clients until `ctx.stop`, recording every operation.
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<Result<(), WorkloadError>>;
    /// Scheduler processes the cluster must run for it (`drover chaos scheduler`), which the
    /// nemesis can kill, pause and cut off like any node.
    fn schedulers(&self) -> usize {
        0
    }
}

/// The workloads `drover chaos run --workload` knows.
pub const NAMES: [&str; 3] = ["store", "tasks", "marathon"];

/// The workload named `name` with its default shape.
pub fn by_name(name: &str) -> Result<Arc<dyn Workload>, String> {
    match name {
        "store" => Ok(Arc::new(store::StoreWorkload::default())),
        "tasks" => Ok(Arc::new(tasks::TasksWorkload::default())),
        "marathon" => Ok(Arc::new(marathon::MarathonWorkload::default())),
        other => Err(format!(
            "unknown workload {other:?}; choose from {}",
            NAMES.join(", ")
        )),
    }
}
