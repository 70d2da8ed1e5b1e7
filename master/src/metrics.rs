//! The master's metrics: every name, its description and the histogram buckets, in one place.
//!
//! Names are in base units (`_seconds`, `_bytes`, `_total`). Histograms have explicit buckets so
//! that they render as Prometheus histograms, which can be aggregated across replicas (summaries
//! cannot). The gauges that mirror openraft's own metrics (leader, term, last log, applied,
//! snapshot and purged index, members) are set only by [`crate::server`]'s metrics watcher;
//! the commit index, which openraft does not publish, by the log store when it is saved; the
//! rest are recorded where the event happens.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

pub const RAFT_IS_LEADER: &str = "drover_master_raft_is_leader";
pub const RAFT_TERM: &str = "drover_master_raft_term";
pub const RAFT_LEADER_ID: &str = "drover_master_raft_leader_id";
pub const RAFT_LAST_LOG_INDEX: &str = "drover_master_raft_last_log_index";
pub const RAFT_COMMIT_INDEX: &str = "drover_master_raft_commit_index";
pub const RAFT_APPLIED_INDEX: &str = "drover_master_raft_applied_index";
pub const RAFT_SNAPSHOT_INDEX: &str = "drover_master_raft_snapshot_index";
pub const RAFT_PURGED_INDEX: &str = "drover_master_raft_purged_index";
pub const RAFT_MEMBERS: &str = "drover_master_raft_members";
pub const RAFT_APPEND_SECONDS: &str = "drover_master_raft_append_seconds";
pub const RAFT_APPENDED_ENTRIES_TOTAL: &str = "drover_master_raft_appended_entries_total";
pub const RAFT_LOG_READS_TOTAL: &str = "drover_master_raft_log_reads_total";
pub const RAFT_APPEND_SPLITS_TOTAL: &str = "drover_master_raft_append_splits_total";
pub const RAFT_FSYNC_SECONDS: &str = "drover_master_raft_fsync_seconds";
pub const RAFT_COMMIT_SECONDS: &str = "drover_master_raft_commit_seconds";
pub const RAFT_APPLIED_ENTRIES_TOTAL: &str = "drover_master_raft_applied_entries_total";
pub const RAFT_SNAPSHOTS_TOTAL: &str = "drover_master_raft_snapshots_total";
pub const RAFT_SNAPSHOT_SECONDS: &str = "drover_master_raft_snapshot_seconds";
pub const RAFT_SNAPSHOT_BYTES: &str = "drover_master_raft_snapshot_bytes";
pub const RAFT_SNAPSHOT_INSTALLS_TOTAL: &str = "drover_master_raft_snapshot_installs_total";
pub const RAFT_RPC_SECONDS: &str = "drover_master_raft_rpc_seconds";
pub const RAFT_RPC_FAILURES_TOTAL: &str = "drover_master_raft_rpc_failures_total";
pub const RAFT_REJECTED_REQUESTS_TOTAL: &str = "drover_master_raft_rejected_requests_total";
pub const STORE_OPERATIONS_TOTAL: &str = "drover_master_store_operations_total";
pub const STORE_KEYS: &str = "drover_master_store_keys";
pub const AGENTS: &str = "drover_master_agents";
pub const FRAMEWORKS: &str = "drover_master_frameworks";
pub const FRAMEWORKS_CONNECTED: &str = "drover_master_frameworks_connected";
pub const TASKS: &str = "drover_master_tasks";
pub const OFFERS_OUTSTANDING: &str = "drover_master_offers_outstanding";
pub const OFFERS_TOTAL: &str = "drover_master_offers_total";
pub const TASKS_LAUNCHED_TOTAL: &str = "drover_master_tasks_launched_total";
pub const EXECUTOR_MESSAGES_DROPPED_TOTAL: &str = "drover_master_executor_messages_dropped_total";
pub const PRUNED_TOTAL: &str = "drover_master_pruned_total";
pub const STORE_BYTES: &str = "drover_master_store_bytes";
pub const ALLOCATION_SECONDS: &str = "drover_master_allocation_seconds";
pub const STATUS_UPDATES_TOTAL: &str = "drover_master_status_updates_total";
pub const STATUS_UPDATE_COMMIT_SECONDS: &str = "drover_master_status_update_commit_seconds";
pub const AGENT_REGISTRATIONS_TOTAL: &str = "drover_master_agent_registrations_total";
pub const AGENTS_AWAITING_REREGISTRATION: &str = "drover_master_agents_awaiting_reregistration";
pub const AGENT_RECONCILIATION_SECONDS: &str = "drover_master_agent_reconciliation_seconds";
pub const AGENT_STATE_CHANGES_TOTAL: &str = "drover_master_agent_state_changes_total";
pub const MASTER_TASK_UPDATES_TOTAL: &str = "drover_master_task_updates_by_master_total";
pub const ORPHAN_KILLS_TOTAL: &str = "drover_master_orphan_task_kills_total";
pub const TASK_RELAUNCHES_TOTAL: &str = "drover_master_task_relaunches_total";
pub const FRAMEWORK_SUBSCRIPTIONS_TOTAL: &str = "drover_master_framework_subscriptions_total";
pub const FRAMEWORK_FAILOVER_TIMEOUTS_TOTAL: &str =
    "drover_master_framework_failover_timeouts_total";
pub const RECONCILE_REQUESTS_TOTAL: &str = "drover_master_reconcile_requests_total";

/// Latency buckets, seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder and describes every metric. Call once.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Describes every metric, by the part of the master that records it.
fn describe() {
    describe_raft();
    describe_registry();
    describe_leader();
}

/// Raft: this replica's log, commit and apply, snapshots and RPCs to peers.
fn describe_raft() {
    describe_gauge!(
        RAFT_IS_LEADER,
        "1 if this replica is the Raft leader, else 0"
    );
    describe_gauge!(RAFT_TERM, "Current Raft term of this replica");
    describe_gauge!(
        RAFT_LEADER_ID,
        "Id of the leader this replica knows of, 0 if none"
    );
    describe_gauge!(
        RAFT_LAST_LOG_INDEX,
        "Index of the last entry in this replica's log"
    );
    describe_gauge!(
        RAFT_COMMIT_INDEX,
        "Highest log index this replica knows is committed"
    );
    describe_gauge!(
        RAFT_APPLIED_INDEX,
        "Highest log index applied to this replica's registry"
    );
    describe_gauge!(
        RAFT_SNAPSHOT_INDEX,
        "Last log index covered by this replica's snapshot"
    );
    describe_gauge!(
        RAFT_PURGED_INDEX,
        "Highest log index purged from this replica's log"
    );
    describe_gauge!(
        RAFT_MEMBERS,
        "Voters in the current membership, as this replica sees it"
    );
    describe_histogram!(
        RAFT_APPEND_SECONDS,
        Unit::Seconds,
        "Time from a log append until it is fsynced and reported durable"
    );
    describe_counter!(RAFT_APPENDED_ENTRIES_TOTAL, "Log entries appended");
    describe_counter!(
        RAFT_APPEND_SPLITS_TOTAL,
        "AppendEntries requests sent back to openraft to be resent with fewer entries"
    );
    describe_counter!(
        RAFT_LOG_READS_TOTAL,
        "Log reads (replication, apply), by where they were served from (memory, disk)"
    );
    describe_histogram!(
        RAFT_FSYNC_SECONDS,
        Unit::Seconds,
        "Duration of one WAL fsync (one fsync covers every append queued behind it)"
    );
    describe_histogram!(
        RAFT_COMMIT_SECONDS,
        Unit::Seconds,
        "Time from proposing a command on the leader until it is committed and applied"
    );
    describe_counter!(
        RAFT_APPLIED_ENTRIES_TOTAL,
        "Log entries applied to the registry"
    );
    describe_counter!(RAFT_SNAPSHOTS_TOTAL, "Snapshots built by this replica");
    describe_histogram!(
        RAFT_SNAPSHOT_SECONDS,
        Unit::Seconds,
        "Time to build one snapshot (encode, write, fsync, rename)"
    );
    describe_gauge!(
        RAFT_SNAPSHOT_BYTES,
        Unit::Bytes,
        "Size of the current snapshot file"
    );
    describe_counter!(
        RAFT_SNAPSHOT_INSTALLS_TOTAL,
        "Snapshots received from a leader and installed"
    );
    describe_histogram!(
        RAFT_RPC_SECONDS,
        Unit::Seconds,
        "Duration of Raft RPCs sent to peers, by rpc"
    );
    describe_counter!(
        RAFT_RPC_FAILURES_TOTAL,
        "Raft RPCs to peers that failed, by rpc and kind"
    );
    describe_counter!(
        RAFT_REJECTED_REQUESTS_TOTAL,
        "Raft requests this replica refused (wrong cluster, wrong incarnation, bad payload), by reason"
    );
}

/// The replicated registry and framework store, as every replica applied them.
fn describe_registry() {
    describe_counter!(
        STORE_OPERATIONS_TOTAL,
        "Framework store operations served, by op and outcome"
    );
    describe_gauge!(STORE_KEYS, "Keys in the framework store, all frameworks");
    describe_gauge!(AGENTS, "Agents in the registry, by state");
    describe_gauge!(FRAMEWORKS, "Frameworks in the registry, by state");
    describe_gauge!(TASKS, "Tasks in the registry, by state");
    describe_gauge!(
        STORE_BYTES,
        Unit::Bytes,
        "Bytes of keys and values in the framework store, every framework"
    );
}

/// The leader's offer cycle: offers, launches, status updates, agents and frameworks.
fn describe_leader() {
    describe_gauge!(
        FRAMEWORKS_CONNECTED,
        "Frameworks with an open event stream to this leader"
    );
    describe_gauge!(
        OFFERS_OUTSTANDING,
        "Offers committed and neither used, declined nor rescinded"
    );
    describe_counter!(OFFERS_TOTAL, "Offers committed and sent by this leader");
    describe_counter!(
        TASKS_LAUNCHED_TOTAL,
        "Tasks committed by ACCEPT on this leader"
    );
    describe_counter!(
        EXECUTOR_MESSAGES_DROPPED_TOTAL,
        "Best-effort messages between frameworks and custom executors this leader dropped (agent unreachable, stream backed up), by direction"
    );
    describe_counter!(
        PRUNED_TOTAL,
        "Completed tasks and frameworks forgotten by prunes this leader committed, by what"
    );
    describe_histogram!(
        ALLOCATION_SECONDS,
        Unit::Seconds,
        "Duration of one DRF allocation cycle"
    );
    describe_counter!(
        STATUS_UPDATES_TOTAL,
        "Status updates from agents, by stage (received, acked after commit, forwarded to the framework)"
    );
    describe_histogram!(
        STATUS_UPDATE_COMMIT_SECONDS,
        Unit::Seconds,
        "Time from an agent's status update reaching the leader until it is committed"
    );
    describe_counter!(
        AGENT_REGISTRATIONS_TOTAL,
        "Agent registrations committed by this leader, by kind (new, or reregistered with its task report)"
    );
    describe_gauge!(
        AGENTS_AWAITING_REREGISTRATION,
        "Agents this leader (elected since they last registered) still waits for"
    );
    describe_histogram!(
        AGENT_RECONCILIATION_SECONDS,
        Unit::Seconds,
        "Time from this replica becoming leader until every agent re-registered or was marked unreachable"
    );
    describe_counter!(
        AGENT_STATE_CHANGES_TOTAL,
        "Agent state changes committed by this leader, by new state and cause"
    );
    describe_counter!(
        MASTER_TASK_UPDATES_TOTAL,
        "Task status updates the master made itself (lost, unreachable, gone, back to running), by state and reason"
    );
    describe_counter!(
        ORPHAN_KILLS_TOTAL,
        "Tasks an agent reported running that the registry had ended or never had, killed"
    );
    describe_counter!(
        TASK_RELAUNCHES_TOTAL,
        "STAGING tasks whose launch was sent again (after a leader change or an agent re-registering without them)"
    );
    describe_counter!(
        FRAMEWORK_SUBSCRIPTIONS_TOTAL,
        "Framework subscriptions on this leader, by kind (new, or failover: a re-subscription with its id)"
    );
    describe_counter!(
        FRAMEWORK_FAILOVER_TIMEOUTS_TOTAL,
        "Frameworks torn down because they did not subscribe again within their failover timeout"
    );
    describe_counter!(
        RECONCILE_REQUESTS_TOTAL,
        "RECONCILE calls, by kind (explicit, implicit) and outcome (answered, throttled)"
    );
}

/// Sets the registry-derived gauges (agents, frameworks and tasks by state) from `registry`.
/// Every replica runs it, so a follower's numbers can be compared with the leader's.
pub fn set_registry_gauges(registry: &crate::registry::Registry) {
    use std::collections::BTreeMap;
    let cluster = registry.cluster();
    let mut agents: BTreeMap<String, u64> = BTreeMap::new();
    for a in cluster.agents() {
        *agents
            .entry(format!("{:?}", a.state).to_lowercase())
            .or_default() += 1;
    }
    for state in ["active", "unreachable", "draining", "gone"] {
        let n = agents.get(state).copied().unwrap_or(0);
        metrics::gauge!(AGENTS, "state" => state).set(n as f64);
    }
    let (mut active, mut torn_down) = (0u64, 0u64);
    for f in cluster.frameworks() {
        if f.torn_down {
            torn_down += 1;
        } else {
            active += 1;
        }
    }
    metrics::gauge!(FRAMEWORKS, "state" => "active").set(active as f64);
    metrics::gauge!(FRAMEWORKS, "state" => "torn_down").set(torn_down as f64);
    let mut tasks: BTreeMap<crate::registry::TaskState, u64> = BTreeMap::new();
    for t in cluster.tasks() {
        *tasks.entry(t.state).or_default() += 1;
    }
    let store = registry.store();
    metrics::gauge!(STORE_BYTES).set(store.total_bytes() as f64);
    for state in crate::registry::TaskState::ALL {
        let n = tasks.get(&state).copied().unwrap_or(0);
        let name = state.to_proto().as_str_name();
        metrics::gauge!(TASKS, "state" => name).set(n as f64);
    }
}
