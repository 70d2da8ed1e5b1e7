//! The names of things the master tracks: agents, frameworks, offers, tasks and roles.
//!
//! Each is a validated newtype over a shared string, so a task id cannot be passed where an
//! agent id is expected, and nothing that came from the network is used as an id before it was
//! checked: 1 to [`MAX_ID_BYTES`] bytes of ASCII letters, digits and `. _ : -` (roles may also
//! hold `/` for hierarchy, and the default role is `*`, as in Mesos).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted, bytes.
pub const MAX_ID_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {shown:?} is not a valid id ({rule})")]
pub struct InvalidId {
    pub kind: &'static str,
    pub shown: String,
    pub rule: &'static str,
}

fn id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $extra:expr, $rule:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: &str) -> Result<Self, InvalidId> {
                let extra: fn(&str) -> bool = $extra;
                let ok = !s.is_empty()
                    && s.len() <= MAX_ID_BYTES
                    && (s.bytes().all(id_char) || extra(s));
                if ok {
                    Ok(Self(s.into()))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        shown: s.chars().take(64).collect(),
                        rule: $rule,
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

const RULE: &str = "1 to 256 bytes of letters, digits, '.', '_', ':' and '-'";

id_type!(
    /// An agent, named by the master when it first registers.
    AgentId, "agent_id", |_| false, RULE
);
id_type!(
    /// A framework, named by the master when it first subscribes.
    FrameworkId, "framework_id", |_| false, RULE
);
id_type!(
    /// An offer, named by the master when it makes it.
    OfferId, "offer_id", |_| false, RULE
);
id_type!(
    /// A task, named by its framework; unique within that framework.
    TaskId, "task_id", |_| false, RULE
);
id_type!(
    /// A role: the unit of weighted fair sharing. `*` is the default role.
    Role, "role", |s| s == "*" || (s.bytes().all(|b| id_char(b) || b == b'/') && !s.starts_with('/') && !s.ends_with('/') && !s.contains("//")),
    "'*' or 1 to 256 bytes of letters, digits, '.', '_', ':', '-' and inner '/'"
);

impl TaskId {
    /// The smallest valid task id in sort order (`-`): a range start for "every task of…".
    pub fn lowest() -> Self {
        Self("-".into())
    }
}

impl Role {
    /// The default role, `*`.
    pub fn default_role() -> Self {
        Self("*".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(TaskId::new("web.1-a:b_c").is_ok());
        assert!(TaskId::new("").is_err());
        assert!(TaskId::new("a b").is_err());
        assert!(TaskId::new(&"x".repeat(MAX_ID_BYTES + 1)).is_err());
        assert!(AgentId::new("*").is_err());
        assert!(TaskId::new("-").is_ok());
        assert!(TaskId::lowest() < TaskId::new("--").unwrap());
        assert!(TaskId::lowest() < TaskId::new(".").unwrap());
        assert!(TaskId::lowest() < TaskId::new("0").unwrap());
        assert!(Role::new("*").is_ok());
        assert!(Role::new("eng/web").is_ok());
        assert!(Role::new("/eng").is_err());
        assert!(Role::new("eng//web").is_err());
        let e = FrameworkId::new("a\nb").unwrap_err();
        assert!(e.to_string().contains("framework_id"), "{e}");
    }

    #[test]
    fn serde_checks_too() {
        assert!(serde_json::from_str::<AgentId>("\"a b\"").is_err());
        assert_eq!(
            serde_json::from_str::<AgentId>("\"a1\"").unwrap(),
            AgentId::new("a1").unwrap()
        );
    }
}
