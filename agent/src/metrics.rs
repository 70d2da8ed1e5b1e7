//! The agent's metrics: every name and its description, in one place.
//!
//! Names are in base units. Who writes what: the task tables ([`crate::launcher`] and
//! [`crate::simulate`]) keep `drover_agent_tasks{state}` (tasks this process knows, by their
//! latest state; finished ones until they are forgotten); the status update manager counts
//! `drover_agent_status_updates_total{outcome}`; the registration loops keep
//! `drover_agent_registered` (registered agents: 0 or 1, or up to N when simulating); the
//! task table also keeps `drover_agent_containers{state}`, the start latency of containers
//! and the image pull failures;
//! [`crate::server`] sets `drover_agent_simulated`.

use metrics::{describe_counter, describe_gauge, describe_histogram};

use crate::update::TaskState;

pub const TASKS: &str = "drover_agent_tasks";
pub const STATUS_UPDATES_TOTAL: &str = "drover_agent_status_updates_total";
pub const REGISTERED: &str = "drover_agent_registered";
pub const SIMULATED: &str = "drover_agent_simulated";
pub const EXECUTOR_CONNECTIONS: &str = "drover_agent_executor_connections";
pub const RECOVERED_TASKS_TOTAL: &str = "drover_agent_recovered_tasks_total";
pub const GC_COMPLETED_SANDBOXES: &str = "drover_agent_gc_completed_sandboxes";
pub const GC_REMOVED_TOTAL: &str = "drover_agent_gc_removed_total";
pub const GC_DISK_USAGE_RATIO: &str = "drover_agent_gc_disk_usage_ratio";
pub const GC_CONTAINERS_REMOVED_TOTAL: &str = "drover_agent_gc_containers_removed_total";
pub const CONTAINERS: &str = "drover_agent_containers";
pub const CONTAINER_START_SECONDS: &str = "drover_agent_container_start_seconds";
pub const IMAGE_PULL_FAILURES_TOTAL: &str = "drover_agent_image_pull_failures_total";
pub const EXECUTOR_NEWS_DROPPED_TOTAL: &str = "drover_agent_executor_news_dropped_total";

/// `outcome` label values of [`STATUS_UPDATES_TOTAL`].
pub const OUTCOME_SENT: &str = "sent";
pub const OUTCOME_ACKED: &str = "acked";
pub const OUTCOME_DROPPED: &str = "dropped";
pub const OUTCOME_RETRIED: &str = "retried";

/// Installs the process-wide Prometheus recorder and describes every metric. Call once.
pub fn install(
) -> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError>
{
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    describe();
    Ok(handle)
}

/// Describes every metric. Idempotent; call once at start.
pub fn describe() {
    describe_gauge!(
        GC_COMPLETED_SANDBOXES,
        "Ended tasks' directories kept under completed/ and ended custom executor runs, waiting for removal"
    );
    describe_counter!(
        GC_REMOVED_TOTAL,
        "Ended tasks' directories removed by the sandbox collector"
    );
    describe_gauge!(
        CONTAINERS,
        "Container tasks this agent process knows, by latest state (finished ones until forgotten)"
    );
    describe_histogram!(
        CONTAINER_START_SECONDS,
        "From a container task's RunTask to its container running (image lookup or pull, create, start)"
    );
    describe_counter!(
        IMAGE_PULL_FAILURES_TOTAL,
        "Container tasks failed because their image could not be pulled"
    );
    describe_counter!(
        GC_CONTAINERS_REMOVED_TOTAL,
        "Ended tasks' Docker containers removed with their directories by the sandbox collector"
    );
    describe_gauge!(
        GC_DISK_USAGE_RATIO,
        "Used fraction of the file system holding the work directory, as the collector last read it"
    );
    describe_gauge!(
        TASKS,
        "Tasks this agent process knows, by latest state (finished ones until forgotten)"
    );
    describe_counter!(
        STATUS_UPDATES_TOTAL,
        "Status updates sent to the master (first attempts), retried, acknowledged or dropped, by outcome"
    );
    describe_gauge!(
        REGISTERED,
        "Agents of this process registered with the leading master (0 or 1; up to N when simulating)"
    );
    describe_gauge!(SIMULATED, "1 if this process runs simulated agents, else 0");
    describe_gauge!(
        EXECUTOR_CONNECTIONS,
        "Executors connected to this agent's socket"
    );
    describe_counter!(
        EXECUTOR_NEWS_DROPPED_TOTAL,
        "Custom executors' messages and ends for their frameworks dropped (queue full, master unreachable)"
    );
    describe_counter!(
        RECOVERED_TASKS_TOTAL,
        "Tasks of an earlier life of the agent found at start, by outcome (reattached, ended, executor_gone, cleaned, corrupt)"
    );
}

/// Moves one task between state gauges (`from` None: a new task; `to` None: forgotten).
pub fn task_state_changed(from: Option<TaskState>, to: Option<TaskState>) {
    state_gauges_moved(TASKS, from, to);
}

/// Moves one task between the `state` gauges of `name`.
fn state_gauges_moved(name: &'static str, from: Option<TaskState>, to: Option<TaskState>) {
    if from == to {
        return;
    }
    if let Some(f) = from {
        metrics::gauge!(name, "state" => f.label()).decrement(1.0);
    }
    if let Some(t) = to {
        metrics::gauge!(name, "state" => t.label()).increment(1.0);
    }
}

/// Moves one container task between state gauges, as [`task_state_changed`].
pub fn container_state_changed(from: Option<TaskState>, to: Option<TaskState>) {
    state_gauges_moved(CONTAINERS, from, to);
}

/// A container task this agent started is running, `took` after its RunTask.
pub fn container_started(took: std::time::Duration) {
    metrics::histogram!(CONTAINER_START_SECONDS).record(took.as_secs_f64());
}

/// A container task failed for its image.
pub fn image_pull_failed() {
    metrics::counter!(IMAGE_PULL_FAILURES_TOTAL).increment(1);
}

pub fn status_update(outcome: &'static str) {
    metrics::counter!(STATUS_UPDATES_TOTAL, "outcome" => outcome).increment(1);
}

/// A custom executor's message or end was dropped on its way to the master.
pub fn executor_news_dropped() {
    metrics::counter!(EXECUTOR_NEWS_DROPPED_TOTAL).increment(1);
}
