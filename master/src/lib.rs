//! Drover's master: a replica of the cluster's state, replicated with Raft (openraft) over
//! RocksDB, serving gRPC and HTTP on one port.
//!
//! Layout (DESIGN.md, "Workspace layout"):
//! - [`registry`]: the pure replicated state machine (no I/O, time passed in).
//! - [`allocator`]: the pure DRF allocator (no I/O, time passed in); [`ids`] the names it uses.
//! - [`raft`]: openraft's storage and network over RocksDB, snapshot files and tonic.
//! - [`replicated`]: proposing operations and linearizable reads, for the services;
//!   [`proposer`] batches concurrent writes into Raft entries; [`replica_error`] what either
//!   can fail with.
//! - [`leader`]: the offer cycle a leader runs (allocation, offers, agent health, status
//!   relay), rebuilt from the registry on every leadership change.
//! - [`api`]: the API edges (the framework API, the agent registry, the framework store,
//!   cluster administration, HTTP), each decoding, validating and calling the core.
//! - [`identity`], [`bootstrap`]: who this replica is and how a cluster forms exactly once;
//!   [`format`]: the version of what its data directory holds.
//! - [`server`]: wires one master process together; [`config`] its settings;
//!   [`metrics`] every metric it exports; [`clock`] the one place clocks are read.

pub mod acl;
pub mod allocator;
pub mod api;
pub mod bootstrap;
pub mod clock;
pub mod config;
#[cfg(feature = "durable")]
pub mod db;
#[cfg(feature = "durable")]
pub mod format;
pub mod identity;
pub mod ids;
pub mod leader;
pub mod metrics;
pub mod proposer;
pub mod raft;
pub mod registry;
pub mod replica_error;
pub mod replicated;
#[cfg(feature = "durable")]
pub mod server;

pub use config::{parse_peers, MasterConfig};
#[cfg(feature = "durable")]
pub use server::{run, MasterError};
