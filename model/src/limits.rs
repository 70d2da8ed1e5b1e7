//! The bounds of a task's definition that every part checks alike: the master refuses a task
//! beyond them (naming the field), and schedulers refuse it before it gets there.

/// Longest shell command, bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most environment variables per task.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment variable name or value, bytes.
pub const MAX_ENV_BYTES: usize = 16 * 1024;
