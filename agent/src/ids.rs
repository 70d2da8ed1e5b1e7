//! The names the agent handles: agent, framework, task and executor ids, the model's (one rule for
//! master and agent: no id is `.` or `..`, so framework and task ids can name directories
//! under the work directory without stepping out of it).

pub use drover_model::ids::{AgentId, ExecutorId, FrameworkId, InvalidId, TaskId, MAX_ID_BYTES};
