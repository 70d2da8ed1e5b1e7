//! Drover's access control lists: which principals may do what.
//!
//! Owns the ACL file's format ([`Acls::from_json`], every refusal naming the field at fault)
//! and the one decision ([`Acls::decide`], pure: a principal and an [`Action`] in, a
//! [`Decision`] out). Where the principal comes from (a certificate's name, a token) and where
//! the decision is enforced (the masters' and the scheduler's edges) are the callers'.
//!
//! The file is JSON, in the spirit of Mesos's `--acls`:
//!
//! ```json
//! {
//!   "permissive": false,
//!   "register_frameworks": [{"principals": {"values": ["marathon"]}, "roles": {"values": ["*", "web"]}}],
//!   "run_tasks":           [{"principals": {"values": ["marathon"]}, "users": {"values": ["nobody"]}},
//!                           {"principals": {"type": "ANY"},          "users": {"type": "NONE"}}],
//!   "teardown_frameworks": [{"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}}],
//!   "kill_tasks":          [{"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}}],
//!   "operator":            [{"principals": {"values": ["ops"]}, "calls": {"values": ["drain_agent"]}}],
//!   "read_state":          [{"principals": {"type": "ANY"}}],
//!   "read_metrics":        [{"principals": {"type": "ANY"}}],
//!   "store":               [{"principals": {"values": ["marathon"]}, "namespaces": {"values": ["marathon"]},
//!                            "access": "read_write"}]
//! }
//! ```
//!
//! An entity is `{"type": "ANY"}` (everyone or everything), `{"type": "NONE"}` (no one,
//! nothing) or `{"values": [...]}`. For an action, the rules of its kind are read in order;
//! the first whose principals include the caller and whose object includes the action's
//! decides: allowed, unless that object is `NONE` (a rule that says "this principal: none"),
//! then denied. A caller whose rules all miss gets `permissive` (default false: denied). A
//! caller that proved no principal is matched only by `ANY` principals.

use std::collections::BTreeSet;

use serde::Deserialize;

/// Longest ACL file, bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most rules in all.
pub const MAX_RULES: usize = 10_000;
/// Longest name in a rule, bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A set of principals or objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Any,
    None,
    Some(BTreeSet<String>),
}

impl Entity {
    fn includes(&self, name: Option<&str>) -> bool {
        match (self, name) {
            (Entity::Any, _) => true,
            (Entity::None, _) => false,
            (Entity::Some(names), Some(n)) => names.contains(n),
            (Entity::Some(_), None) => false,
        }
    }
}

/// What a caller asks to do, with the object the rules name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Subscribe a framework in `role`.
    RegisterFramework {
        role: &'a str,
    },
    /// Launch a task as `user` (empty: the agent's default task user, named `""` in rules
    /// as `{"values": [""]}` or covered by `ANY`).
    RunTask {
        user: &'a str,
    },
    /// Tear down a framework whose principal is `framework_principal`.
    TeardownFramework {
        framework_principal: &'a str,
    },
    /// Kill a task of a framework whose principal is `framework_principal`.
    KillTask {
        framework_principal: &'a str,
    },
    /// An operator call (`drain_agent`, `remove_agent`, `add_master`, `remove_master`,
    /// `transfer_leadership`, `set_weights`, …).
    Operator {
        call: &'a str,
    },
    ReadState,
    ReadMetrics,
    /// Read (or, when `write`, write) the framework store's `namespace`.
    Store {
        namespace: &'a str,
        write: bool,
    },
}

impl Action<'_> {
    /// The rule kind that decides it (the file's key), as metrics and messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::RegisterFramework { .. } => "register_frameworks",
            Action::RunTask { .. } => "run_tasks",
            Action::TeardownFramework { .. } => "teardown_frameworks",
            Action::KillTask { .. } => "kill_tasks",
            Action::Operator { .. } => "operator",
            Action::ReadState => "read_state",
            Action::ReadMetrics => "read_metrics",
            Action::Store { .. } => "store",
        }
    }
}

impl std::fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::RegisterFramework { role } => {
                write!(f, "register a framework in role {role:?}")
            }
            Action::RunTask { user: "" } => {
                write!(f, "run a task as the agent's default user")
            }
            Action::RunTask { user } => write!(f, "run a task as user {user:?}"),
            Action::TeardownFramework {
                framework_principal,
            } => write!(
                f,
                "tear down a framework of principal {framework_principal:?}"
            ),
            Action::KillTask {
                framework_principal,
            } => write!(
                f,
                "kill a task of principal {framework_principal:?}'s framework"
            ),
            Action::Operator { call } => write!(f, "call {call}"),
            Action::ReadState => write!(f, "read the cluster's state"),
            Action::ReadMetrics => write!(f, "read metrics"),
            Action::Store {
                namespace,
                write: true,
            } => write!(f, "write the store's namespace {namespace:?}"),
            Action::Store {
                namespace,
                write: false,
            } => write!(f, "read the store's namespace {namespace:?}"),
        }
    }
}

/// What [`Acls::decide`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rule `rule` (0-based, of the action's kind) allowed it; `None`: permissive.
    Allowed { rule: Option<usize> },
    /// Rule `rule` denied it; `None`: no rule matched and the ACLs are not permissive.
    Denied { rule: Option<usize> },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The refusal's message, naming the action and the caller: `None` when allowed.
    pub fn refusal(&self, principal: Option<&str>, action: &Action<'_>) -> Option<String> {
        let who = match principal {
            Some(p) => format!("principal {p:?}"),
            None => "a caller with no principal".to_string(),
        };
        match self {
            Decision::Allowed { .. } => None,
            Decision::Denied { rule: Some(i) } => Some(format!(
                "{who} may not {action}: denied by {}[{i}] of the ACLs",
                action.kind()
            )),
            Decision::Denied { rule: None } => Some(format!(
                "{who} may not {action}: no rule of {} in the ACLs grants it",
                action.kind()
            )),
        }
    }
}

/// One rule: principals and, for kinds that have one, the object they may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    principals: Entity,
    object: Entity,
    /// For `store`: whether the rule grants writes (reads are granted by any store rule).
    write: bool,
}

/// A parsed ACL file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acls {
    permissive: bool,
    register_frameworks: Vec<Rule>,
    run_tasks: Vec<Rule>,
    teardown_frameworks: Vec<Rule>,
    kill_tasks: Vec<Rule>,
    operator: Vec<Rule>,
    read_state: Vec<Rule>,
    read_metrics: Vec<Rule>,
    store: Vec<Rule>,
}

/// Why an ACL file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("the ACL file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> AclError {
    AclError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    principals: RawEntity,
    #[serde(default)]
    roles: Option<RawEntity>,
    #[serde(default)]
    users: Option<RawEntity>,
    #[serde(default)]
    framework_principals: Option<RawEntity>,
    #[serde(default)]
    calls: Option<RawEntity>,
    #[serde(default)]
    namespaces: Option<RawEntity>,
    #[serde(default)]
    access: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcls {
    #[serde(default)]
    permissive: bool,
    #[serde(default)]
    register_frameworks: Vec<RawRule>,
    #[serde(default)]
    run_tasks: Vec<RawRule>,
    #[serde(default)]
    teardown_frameworks: Vec<RawRule>,
    #[serde(default)]
    kill_tasks: Vec<RawRule>,
    #[serde(default)]
    operator: Vec<RawRule>,
    #[serde(default)]
    read_state: Vec<RawRule>,
    #[serde(default)]
    read_metrics: Vec<RawRule>,
    #[serde(default)]
    store: Vec<RawRule>,
}

fn entity(raw: &RawEntity, field: &str) -> Result<Entity, AclError> {
    match (raw.kind.as_deref(), &raw.values) {
        (Some("ANY"), None) => Ok(Entity::Any),
        (Some("NONE"), None) => Ok(Entity::None),
        (None, Some(values)) => {
            if values.is_empty() {
                return Err(invalid(
                    format!("{field}.values"),
                    "empty: give names, or {\"type\": \"NONE\"}",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.len() > MAX_NAME_BYTES || v.chars().any(char::is_control) {
                    return Err(invalid(
                        format!("{field}.values[{i}]"),
                        format!("at most {MAX_NAME_BYTES} bytes, no control characters"),
                    ));
                }
            }
            Ok(Entity::Some(values.iter().cloned().collect()))
        }
        (Some(other), None) => Err(invalid(
            format!("{field}.type"),
            format!("{other:?}: ANY or NONE (or give values instead)"),
        )),
        (Some(_), Some(_)) => Err(invalid(field, "give either type or values, not both")),
        (None, None) => Err(invalid(
            field,
            "give {\"type\": \"ANY\"|\"NONE\"} or {\"values\": [...]}",
        )),
    }
}

/// The object member each kind takes (`None`: the kind has no object).
fn object_member(kind: &str) -> Option<&'static str> {
    match kind {
        "register_frameworks" => Some("roles"),
        "run_tasks" => Some("users"),
        "teardown_frameworks" | "kill_tasks" => Some("framework_principals"),
        "operator" => Some("calls"),
        "store" => Some("namespaces"),
        _ => None,
    }
}

fn rules(kind: &str, raw: &[RawRule]) -> Result<Vec<Rule>, AclError> {
    let want = object_member(kind);
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{kind}[{i}]");
            let given = [
                ("roles", &r.roles),
                ("users", &r.users),
                ("framework_principals", &r.framework_principals),
                ("calls", &r.calls),
                ("namespaces", &r.namespaces),
            ];
            let mut object = Entity::Any;
            for (name, value) in given {
                match (value, Some(name) == want) {
                    (Some(v), true) => object = entity(v, &format!("{at}.{name}"))?,
                    (None, true) => {
                        return Err(invalid(format!("{at}.{name}"), "missing"));
                    }
                    (Some(_), false) => {
                        return Err(invalid(
                            format!("{at}.{name}"),
                            format!("{kind} rules take no {name}"),
                        ));
                    }
                    (None, false) => {}
                }
            }
            let write = match (kind, r.access.as_deref()) {
                ("store", Some("read")) => false,
                ("store", Some("read_write")) => true,
                ("store", other) => {
                    return Err(invalid(
                        format!("{at}.access"),
                        format!("{other:?}: \"read\" or \"read_write\""),
                    ))
                }
                (_, Some(_)) => {
                    return Err(invalid(
                        format!("{at}.access"),
                        format!("{kind} rules take no access"),
                    ))
                }
                (_, None) => false,
            };
            Ok(Rule {
                principals: entity(&r.principals, &format!("{at}.principals"))?,
                object,
                write,
            })
        })
        .collect()
}

impl Acls {
    /// Every action allowed: what a cluster without an ACL file does.
    pub fn permissive() -> Self {
        Acls {
            permissive: true,
            ..Acls::default()
        }
    }

    /// Parses an ACL file, refusing (with the field at fault) anything it does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AclError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(AclError::TooLarge);
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawAcls = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            invalid(
                if path == "." {
                    "acls".to_string()
                } else {
                    path
                },
                e.inner().to_string(),
            )
        })?;
        let acls = Acls {
            permissive: raw.permissive,
            register_frameworks: rules("register_frameworks", &raw.register_frameworks)?,
            run_tasks: rules("run_tasks", &raw.run_tasks)?,
            teardown_frameworks: rules("teardown_frameworks", &raw.teardown_frameworks)?,
            kill_tasks: rules("kill_tasks", &raw.kill_tasks)?,
            operator: rules("operator", &raw.operator)?,
            read_state: rules("read_state", &raw.read_state)?,
            read_metrics: rules("read_metrics", &raw.read_metrics)?,
            store: rules("store", &raw.store)?,
        };
        if acls.rule_count() > MAX_RULES {
            return Err(invalid("acls", format!("more than {MAX_RULES} rules")));
        }
        Ok(acls)
    }

    fn rule_count(&self) -> usize {
        self.register_frameworks.len()
            + self.run_tasks.len()
            + self.teardown_frameworks.len()
            + self.kill_tasks.len()
            + self.operator.len()
            + self.read_state.len()
            + self.read_metrics.len()
            + self.store.len()
    }

    /// Whether `principal` (`None`: the caller proved none) may do `action`.
    pub fn decide(&self, principal: Option<&str>, action: &Action<'_>) -> Decision {
        let (rules, object, write) = match action {
            Action::RegisterFramework { role } => (&self.register_frameworks, Some(*role), false),
            Action::RunTask { user } => (&self.run_tasks, Some(*user), false),
            Action::TeardownFramework {
                framework_principal,
            } => (&self.teardown_frameworks, Some(*framework_principal), false),
            Action::KillTask {
                framework_principal,
            } => (&self.kill_tasks, Some(*framework_principal), false),
            Action::Operator { call } => (&self.operator, Some(*call), false),
            Action::ReadState => (&self.read_state, None, false),
            Action::ReadMetrics => (&self.read_metrics, None, false),
            Action::Store { namespace, write } => (&self.store, Some(*namespace), *write),
        };
        for (i, rule) in rules.iter().enumerate() {
            if !rule.principals.includes(principal) {
                continue;
            }
            if rule.object == Entity::None {
                return Decision::Denied { rule: Some(i) };
            }
            let object_matches = object.is_none_or(|o| rule.object.includes(Some(o)));
            if object_matches && (!write || rule.write) {
                return Decision::Allowed { rule: Some(i) };
            }
        }
        if self.permissive {
            Decision::Allowed { rule: None }
        } else {
            Decision::Denied { rule: None }
        }
    }
}

#[cfg(test)]
mod tests;
