//! Drover's harness for real clusters: start, stop, kill and pause real `drover` processes on
//! loopback ([`cluster`]) and remove the containers their agents started ([`containers`]),
//! wait for conditions with deadlines ([`wait`]), check recorded histories for
//! linearizability ([`linearizability`]) and measure ([`bench`]); and the Jepsen-style chaos
//! runner ([`run`]): workloads that record a history ([`workload`], [`history`]), faults on a
//! seeded schedule ([`nemesis`], [`net`]), a monitor of the masters ([`monitor`]) the checkers
//! that judge the history ([`checker`]) and the report ([`report`]).
//!
//! `drover up`, the benchmarks and the end-to-end tests all drive clusters through this crate,
//! so there is one way to start a cluster and one way to wait for it.

pub mod bench;
pub mod checker;
pub mod cli;
pub mod cluster;
pub mod containers;
pub mod history;
pub mod http;
pub mod linearizability;
pub mod monitor;
pub mod nemesis;
pub mod net;
pub mod ports;
pub mod report;
pub mod run;
pub mod up;
pub mod wait;
pub mod workload;

pub use cluster::{ClusterError, ClusterSpec, LocalCluster};
pub use wait::{wait_until, WaitError};
