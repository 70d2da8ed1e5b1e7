//! The bounds of a task's definition that every part checks alike: the master refuses a task
//! beyond them (naming the field), and schedulers refuse it before it gets there.

/// Most tasks one ACCEPT may launch.
pub const MAX_TASKS_PER_ACCEPT: usize = 1_000;
/// Most offers one ACCEPT may name.
pub const MAX_OFFERS_PER_ACCEPT: usize = 100;

/// Longest shell command, bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most environment variables per task.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment variable name or value, bytes.
pub const MAX_ENV_BYTES: usize = 16 * 1024;
/// Largest environment of a task, its names and values together, bytes (the agent refuses a
/// larger one, so the master and the schedulers do first).
pub const MAX_ENV_TOTAL_BYTES: usize = 64 * 1024;

/// The size of an environment as [`MAX_ENV_TOTAL_BYTES`] counts it.
pub fn env_total_bytes<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    env.into_iter().map(|(k, v)| k.len() + v.len()).sum()
}
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

/// Longest user name a task may run as, bytes (Linux's `LOGIN_NAME_MAX` less the NUL).
pub const MAX_USER_BYTES: usize = 32;

/// Why `name` cannot name the user a task runs as, if it cannot: 1 to [`MAX_USER_BYTES`]
/// bytes of letters, digits, `_`, `.` and `-` (a trailing `$` too, as Samba's machine
/// accounts), not starting with `-` or a digit-only name (those read as numeric ids).
pub fn user_name_error(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_USER_BYTES {
        return Some(format!("{name:?}: 1 to {MAX_USER_BYTES} bytes"));
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.is_empty()
        || name.starts_with('-')
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Some(format!(
            "{name:?}: a user name is letters, digits, '_', '.' and '-', not starting with '-'"
        ));
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("{name:?}: a user name, not a numeric id"));
    }
    None
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

    #[test]
    fn user_names_are_login_names() {
        for good in ["nobody", "www-data", "svc.app", "_apt", "host$", "u1"] {
            assert_eq!(super::user_name_error(good), None, "{good}");
        }
        let long = "a".repeat(33);
        for bad in [
            "",
            "-x",
            "a b",
            "a/b",
            "../x",
            "0",
            "65534",
            "$",
            "é",
            long.as_str(),
        ] {
            assert!(super::user_name_error(bad).is_some(), "{bad}");
        }
    }
}
