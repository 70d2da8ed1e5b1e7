//! The names the agent handles: agent, framework and task ids.
//!
//! Each is a validated newtype, checked where it enters (a gRPC request, a file, the executor
//! socket) and trusted after. The rule is the master's (1 to [`MAX_ID_BYTES`] bytes of ASCII
//! letters, digits and `. _ : -`), minus the names `.` and `..`: framework and task ids name
//! directories under the work directory, so an id must never be able to step out of it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted, bytes (the master's limit).
pub const MAX_ID_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {shown:?} is not a valid id: 1 to {MAX_ID_BYTES} bytes of ASCII letters, digits and . _ : - (not . or ..)")]
pub struct InvalidId {
    pub kind: &'static str,
    pub shown: String,
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: &str) -> Result<Self, InvalidId> {
                if valid(s) {
                    Ok(Self(s.into()))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        shown: s.chars().take(64).collect(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

id_type!(
    /// An agent's id, assigned by the master at first registration.
    AgentId,
    "agent id"
);
id_type!(
    /// A framework's id, assigned by the master.
    FrameworkId,
    "framework id"
);
id_type!(
    /// A task's id, chosen by its framework; unique within the framework.
    TaskId,
    "task id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_work_dir_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(TaskId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TaskId::new(&"x".repeat(MAX_ID_BYTES + 1)).is_err());
        for good in ["a", "web.1234-abcd", "fw:0001", "...", "a..b"] {
            assert!(TaskId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn serde_checks_the_rule() {
        assert!(serde_json::from_str::<FrameworkId>("\"../etc\"").is_err());
        let id: FrameworkId = serde_json::from_str("\"fw-1\"").expect("valid id");
        assert_eq!(id.as_str(), "fw-1");
    }
}
