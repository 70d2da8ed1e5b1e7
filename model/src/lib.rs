//! Drover's model: the names and states every part of Drover agrees on, below the client, the
//! master, the agent, the scheduler driver and the chaos checkers.
//!
//! - [`ids`]: agent, framework, offer and task ids and roles, each a validated newtype with the
//!   one rule every part checks (a task id the master accepts is one the agent accepts).
//! - [`task_state`]: a task's states (Mesos's), which are terminal, and the one function that
//!   decides which moves between them are legal.
//! - [`status`]: a task status (the core of a status update), its source and wire form.
//! - [`limits`]: the bounds of a task's definition (command, environment) every part checks.
//! - [`health`]: a task's health check (run by its executor), its one validation, and how a
//!   status reports what it found.
//! - [`container`]: a task's Docker container, its one validation, and an agent's policy
//!   for what containers may do.
//! - [`clock`]: [`unix_ms`], the one wall-clock reading.

pub mod clock;
pub mod container;
pub mod health;
pub mod ids;
pub mod limits;
pub mod status;
pub mod task_state;

pub use clock::unix_ms;
pub use ids::{
    decoding_committed, AgentId, FrameworkId, InvalidId, OfferId, Role, TaskId, MAX_ID_BYTES,
};
pub use status::{StatusSource, TaskStatus};
pub use task_state::{IllegalTransition, TaskState};
