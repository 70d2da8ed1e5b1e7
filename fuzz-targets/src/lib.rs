//! The bodies of Drover's fuzz targets: for each decoder that takes bytes from a network, a
//! disk or a peer, a function that feeds it arbitrary input and checks what must hold of any
//! input (no panic, no unbounded allocation, and where there is one, a round trip or a
//! state-machine property).
//!
//! `../fuzz` (cargo-fuzz, libFuzzer) runs each as a fuzz target; [`TARGETS`] names them, and
//! this crate's test replays every committed corpus input (`../fuzz/corpus/<target>/`) through
//! its target, so a crash once found stays a regression test in the ordinary test run.
//! [`seeds`] makes the corpora's first inputs from valid values.

pub mod agent;
pub mod framework_api;
pub mod mesos;
pub mod raft;
pub mod registry;
pub mod seeds;
pub mod store;
pub mod text;

/// A fuzz target: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("raft_rpc", raft::rpc),
    ("raft_log", raft::log),
    ("snapshot_file", raft::snapshot_file),
    ("registry_apply", registry::apply),
    ("store_request", store::request),
    ("framework_api", framework_api::message),
    ("mesos_scheduler_call", mesos::scheduler_call),
    ("mesos_executor_call", mesos::executor_call),
    ("mesos_recordio", mesos::recordio),
    ("agent_checkpoint", agent::checkpoint),
    ("executor_frame", agent::executor_frame),
    ("resource_text", text::resources),
    ("acl_file", text::acls),
    ("marathon_app", text::marathon_app),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Splits a selector byte off the input (0 for an empty one).
fn select(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

#[cfg(test)]
mod tests;
