//! Drover's agent: registers with the leading master, advertises its resources, runs tasks
//! through `drover executor` processes and reports their status reliably (DESIGN.md, steps 7
//! to 10).
//!
//! The two entry points the `drover` binary calls:
//!
//! - [`run`] (`drover agent`, flags in [`AgentArgs`]): the agent process, until its shutdown
//!   future resolves. With `--simulate N` it runs N simulated agents instead ([`simulate`]).
//! - [`run_executor`] (`drover executor`, flags in [`ExecutorArgs`]): the per-task executor
//!   the agent starts; its `Ok` value is the process exit status.
//!
//! How the parts fit (one owner per piece of state, each reached through a bounded channel):
//!
//! ```text
//!  master ──RunTask/KillTask──▶ service ──▶ launcher (task table) ──spawn──▶ drover executor
//!                                                ▲                               │ /bin/sh -c
//!                                                │ kill        executor_socket ◀─┘ updates (JSON lines)
//!                                                └──────────────────┤
//!  master ◀──UpdateStatus── status_updates (checkpoint, per-task order, retry) ◀┘
//!  master ◀──Register/Heartbeat── register (one loop per agent)
//! ```
//!
//! A task with a custom executor of its framework's own (Mesos's ExecutorInfo) is run by that
//! executor instead: the launcher starts one run of it per (framework, executor) through a
//! supervisor (`drover executor --executor-dir`), and the executor speaks the Mesos v1
//! executor HTTP API on the agent's port ([`executor_api`]), its updates taking the same
//! checkpointed path.
//!
//! A task with a Docker container runs through the same `drover executor`, which creates,
//! starts, watches and stops the container through the local engine
//! ([`executor::container`]); the agent advertises `containerizers: docker,command` only when
//! the engine answered at start ([`docker`]).
//!
//! On-disk layout: see [`layout`]. Executor protocol: see [`protocol`]. Durable formats: see
//! [`checkpoint`].

pub mod cgroups;
pub mod checkpoint;
pub mod config;
pub mod docker;
pub mod executor;
pub mod executor_api;
pub mod executor_socket;
pub mod files;
pub mod format;
pub mod gc;
pub mod http;
pub mod ids;
pub mod launcher;
pub mod layout;
pub mod metrics;
pub mod protocol;
pub mod recovery;
pub mod recovery_bench;
pub mod register;
pub mod relay;
pub mod server;
pub mod service;
pub mod simulate;
pub mod state;
pub mod status_updates;
pub mod task;
pub mod update;
pub mod users;

/// Test support: a fake master's agent registry. Used by this crate's tests and available to
/// end-to-end tests elsewhere; not part of the agent.
#[doc(hidden)]
pub mod testing;

pub use config::{AgentArgs, AgentConfig, ConfigError};
pub use executor::{run_executor, ExecutorArgs, ExecutorError};
pub use server::{run, run_with_config, AgentError, Stop};
