//! Drover's wire types: the protobuf definitions in `proto/drover/` and the tonic/prost code
//! generated from them. Nothing else lives here, so every other crate can depend on it.

/// Master-to-master Raft transport (internal).
pub mod raft {
    tonic::include_proto!("drover.raft.v1");
}

/// The masters' public API: the framework store and cluster administration.
pub mod master {
    tonic::include_proto!("drover.master.v1");
}

/// The offer cycle's APIs: the framework API (`Scheduler`, served by the leading master), the
/// agent registry (served by the leading master for agents) and the `Agent` service (served by
/// each agent), with the types they share.
pub mod v1 {
    tonic::include_proto!("drover.v1");
}

/// gRPC metadata keys a follower sets on its UNAVAILABLE answer to point at the leader.
pub mod metadata {
    /// The leader's node id, decimal.
    pub const LEADER_ID: &str = "drover-leader-id";
    /// The leader's `host:port`.
    pub const LEADER_ADDR: &str = "drover-leader-addr";
    /// Set (to "1") on every refusal by a replica that is not the leader. The request was not
    /// proposed, so a client may send it to another master without risk of applying it twice.
    pub const NOT_LEADER: &str = "drover-not-leader";
    /// Set on a framework call refused because its caller is not the framework's live stream
    /// on this leader (FAILED_PRECONDITION; nothing was applied): `replaced` when a newer
    /// subscription took over, `not-subscribed` when this leader has no stream for the
    /// framework (e.g. it was elected since). The framework re-subscribes and sends it again.
    pub const STALE_CALLER: &str = "drover-stale-caller";
    pub const STALE_CALLER_REPLACED: &str = "replaced";
    pub const STALE_CALLER_NOT_SUBSCRIBED: &str = "not-subscribed";
    /// Set (to "1") on a registration refused because the agent was removed (GONE): it must
    /// not register under that id again.
    pub const AGENT_GONE: &str = "drover-agent-gone";
}

/// The agent API's limits and refusal rules, which the master (serving) and the agent
/// (calling) must agree on.
pub mod agent_api {
    /// Most status updates in one `AgentRegistry.UpdateStatus`.
    pub const MAX_UPDATES_PER_CALL: usize = 1000;
    /// Most tasks in one `Agent.RunTask`.
    pub const MAX_TASKS_PER_RUN: usize = 1000;
    /// Most tasks one registration may report.
    pub const MAX_REPORTED_TASKS: usize = 10_000;

    /// Whether a status update refused with `code` is refused for good (an illegal
    /// transition, an unknown task, a malformed update: the agent drops it) rather than
    /// undecided (the agent sends it again).
    pub fn is_final_refusal(code: tonic::Code) -> bool {
        matches!(
            code,
            tonic::Code::FailedPrecondition | tonic::Code::NotFound | tonic::Code::InvalidArgument
        )
    }
}
