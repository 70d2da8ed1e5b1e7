//! The names of things the master tracks: agents, frameworks, offers, tasks, custom executors
//! and roles, the
//! model's (`drover_model::ids`: validated newtypes, one rule for every part of Drover).

pub use drover_model::ids::{
    AgentId, ExecutorId, FrameworkId, InvalidId, OfferId, Role, TaskId, MAX_ID_BYTES,
};
