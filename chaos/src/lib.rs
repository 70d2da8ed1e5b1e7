//! Drover's harness for real clusters: start, stop, kill and pause real `drover` processes on
//! loopback ([`cluster`]), wait for conditions with deadlines ([`wait`]), check recorded
//! histories for linearizability ([`linearizability`]) and measure ([`bench`]).
//!
//! `drover up`, the benchmarks and the end-to-end tests all drive clusters through this crate,
//! so there is one way to start a cluster and one way to wait for it. The Jepsen-style chaos
//! runner (nemeses, workloads, full checkers, reports) grows here too.

pub mod bench;
pub mod cluster;
pub mod http;
pub mod linearizability;
pub mod net;
pub mod up;
pub mod wait;

pub use cluster::{ClusterError, ClusterSpec, LocalCluster};
pub use wait::{wait_until, WaitError};
