//! The bounds of a task's definition that every part checks alike: the master refuses a task
//! beyond them (naming the field), and schedulers refuse it before it gets there.

/// Longest shell command, bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most environment variables per task.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment variable name or value, bytes.
pub const MAX_ENV_BYTES: usize = 16 * 1024;
/// Longest opaque `data` of a task or a custom executor, bytes.
pub const MAX_EXECUTOR_DATA_BYTES: usize = 64 * 1024;
/// Longest message between a framework and one of its custom executors, bytes.
pub const MAX_EXECUTOR_MESSAGE_BYTES: usize = 256 * 1024;

/// Whether `name` may name an environment variable of a task: letters, digits and `_`, not
/// starting with a digit (a shell can then read it).
pub fn is_env_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Longest task group name (Mesos's LAUNCH_GROUP names its group after its first task, so a
/// name is as long as a task id may be).
pub const MAX_TASK_GROUP_BYTES: usize = crate::ids::MAX_ID_BYTES;

#[cfg(test)]
mod tests {
    #[test]
    fn env_names_are_shell_names() {
        for good in ["PATH", "_x", "a1_B"] {
            assert!(super::is_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A=B", "é"] {
            assert!(!super::is_env_name(bad), "{bad}");
        }
    }
}
