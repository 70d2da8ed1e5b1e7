//! The master's API edges, served on one port: four gRPC services and the HTTP endpoints.
//!
//! Each edge only decodes a request, validates it (naming the field at fault), calls the core
//! (the leader's engine through [`crate::leader::LeaderHandle`], or the replicated state
//! through [`crate::replicated::Replicated`]) and encodes the answer. None keeps state but
//! the Mesos edge, which holds a weak handle on each of its live event streams.
//!
//! - [`scheduler`]: the framework API (`drover.v1.Scheduler`): SUBSCRIBE's event stream and
//!   the calls frameworks make.
//! - [`agent`]: the agent registry (`drover.v1.AgentRegistry`): registration, heartbeats and
//!   batched status updates.
//! - [`store`]: the framework store (`drover.master.v1.FrameworkStore`), a replicated
//!   key-value store with compare-and-set for schedulers' own state.
//! - [`cluster`]: administration (`drover.master.v1.Cluster`): status, adding and removing
//!   masters, leadership transfer, role weights, agents' maintenance.
//! - [`http`]: `/health`, `/v1/leader`, `/v1/state`, `/v1/raft` and `/metrics`.
//! - [`mesos`]: Mesos's v1 HTTP APIs (the scheduler API, `POST /api/v1/scheduler`).

pub mod agent;
pub mod cluster;
pub mod http;
pub mod mesos;
pub mod scheduler;
pub mod store;
