//! The names of things: agents, frameworks, offers, tasks and roles.
//!
//! Each is a validated newtype over a shared string, so a task id cannot be passed where an
//! agent id is expected, and nothing that came from the network, a file or a socket is used as
//! an id before it was checked. One rule for every part of Drover: 1 to [`MAX_ID_BYTES`] bytes
//! of ASCII letters, digits and `. _ : -`, and not `.` or `..` (the agent names directories
//! after framework and task ids, so an id must never be able to step out of its parent).
//! Roles may also hold inner `/` for hierarchy (no segment `.` or `..`), and the default role
//! is `*`, as in Mesos.
//!
//! What a cluster already committed keeps its meaning: the master decodes its own log,
//! snapshots and replication messages inside [`decoding_committed`], where ids the rule of an
//! earlier version allowed (`.` and `..`, which the master accepted before this rule) still
//! decode, so that every replica applies the same entries the same way across an upgrade.
//! Everything else (the network, the agent's files) gets the rule.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted, bytes.
pub const MAX_ID_BYTES: usize = 256;

/// An id that breaks the rule; `kind` names the field (`task_id`, …).
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

/// The rule for every id but roles.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_BYTES && s != "." && s != ".." && s.bytes().all(id_char)
}

/// The rule for roles: `*`, or names (as ids) joined by `/`.
fn valid_role(s: &str) -> bool {
    s == "*" || (s.len() <= MAX_ID_BYTES && s.split('/').all(valid_name))
}

/// What the master accepted before the rule refused `.` and `..`: kept for committed data.
fn legacy_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_BYTES && s.bytes().all(id_char)
}

fn legacy_role(s: &str) -> bool {
    s == "*" || (s.len() <= MAX_ID_BYTES && s.split('/').all(legacy_name))
}

thread_local! {
    static COMMITTED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a synchronous decode of data the cluster already committed) so that ids an
/// earlier version's rule allowed decode as they were committed.
pub fn decoding_committed<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMMITTED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COMMITTED.with(|c| c.replace(true)));
    f()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $valid:expr, $legacy:expr, $rule:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: &str) -> Result<Self, InvalidId> {
                let valid: fn(&str) -> bool = $valid;
                if valid(s) {
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

        /// Decoding: the rule, or inside [`decoding_committed`] the earlier one.
        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                let legacy: fn(&str) -> bool = $legacy;
                if COMMITTED.with(Cell::get) && legacy(&s) {
                    return Ok(Self(s.into()));
                }
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

const RULE: &str = "1 to 256 bytes of letters, digits, '.', '_', ':' and '-', not '.' or '..'";

id_type!(
    /// An agent, named by the master when it first registers.
    AgentId, "agent_id", valid_name, legacy_name, RULE
);
id_type!(
    /// A framework, named by the master when it first subscribes.
    FrameworkId, "framework_id", valid_name, legacy_name, RULE
);
id_type!(
    /// An offer, named by the master when it makes it.
    OfferId, "offer_id", valid_name, legacy_name, RULE
);
id_type!(
    /// A task, named by its framework; unique within that framework.
    TaskId, "task_id", valid_name, legacy_name, RULE
);
id_type!(
    /// A custom executor, named by its framework; unique within that framework on one agent
    /// (it names the executor's directory there).
    ExecutorId, "executor_id", valid_name, legacy_name, RULE
);
id_type!(
    /// A role: the unit of weighted fair sharing. `*` is the default role.
    Role, "role", valid_role, legacy_role,
    "'*' or names of letters, digits, '.', '_', ':' and '-' joined by '/' (no name '.' or '..'), 1 to 256 bytes"
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
        assert!(TaskId::new(&"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(AgentId::new("*").is_err());
        assert!(TaskId::new("-").is_ok());
        assert!(TaskId::lowest() < TaskId::new("--").unwrap());
        assert!(TaskId::lowest() < TaskId::new(".a").unwrap());
        assert!(TaskId::lowest() < TaskId::new("0").unwrap());
        let e = FrameworkId::new("a\nb").unwrap_err();
        assert!(e.to_string().contains("framework_id"), "{e}");
    }

    /// One rule everywhere: what could name a directory outside its parent is refused for
    /// every kind of id (the master once accepted a task id `..` that the agent refused).
    #[test]
    fn ids_that_could_step_out_of_a_directory_are_refused_for_every_kind() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(TaskId::new(bad).is_err(), "task id {bad:?} accepted");
            assert!(
                FrameworkId::new(bad).is_err(),
                "framework id {bad:?} accepted"
            );
            assert!(AgentId::new(bad).is_err(), "agent id {bad:?} accepted");
            assert!(OfferId::new(bad).is_err(), "offer id {bad:?} accepted");
        }
        for good in ["a", "web.1234-abcd", "fw:0001", "...", "a..b", ".a"] {
            assert!(TaskId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn roles_are_star_or_names_joined_by_slashes() {
        for good in ["*", "eng", "eng/web", "a.b/c-d"] {
            assert!(Role::new(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "", "/eng", "eng/", "eng//web", "eng/../x", "./eng", "eng/*", "**",
        ] {
            assert!(Role::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// An id committed under the earlier rule decodes inside `decoding_committed` (and only
    /// there); the rule still refuses it everywhere else.
    #[test]
    fn committed_ids_of_the_earlier_rule_still_decode() {
        let json = "\"..\"";
        assert!(serde_json::from_str::<TaskId>(json).is_err());
        let id = decoding_committed(|| serde_json::from_str::<TaskId>(json)).unwrap();
        assert_eq!(id.as_str(), "..");
        let role = decoding_committed(|| serde_json::from_str::<Role>("\"eng/../web\"")).unwrap();
        assert_eq!(role.as_str(), "eng/../web");
        // Still not anything at all, and the scope ends with the call.
        assert!(decoding_committed(|| serde_json::from_str::<TaskId>("\"a b\"")).is_err());
        assert!(serde_json::from_str::<TaskId>(json).is_err());
        assert!(TaskId::new("..").is_err());
    }

    #[test]
    fn serde_checks_too() {
        assert!(serde_json::from_str::<AgentId>("\"a b\"").is_err());
        assert!(serde_json::from_str::<FrameworkId>("\"..\"").is_err());
        assert_eq!(
            serde_json::from_str::<AgentId>("\"a1\"").unwrap(),
            AgentId::new("a1").unwrap()
        );
    }
}
