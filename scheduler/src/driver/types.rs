//! The driver's vocabulary: id newtypes, the events it hands to the framework, and the offer as
//! the framework sees it (resources already parsed and checked).
//!
//! Everything here is plain data; nothing does I/O.

use std::fmt;

use drover_proto::v1::{self, TaskState, TaskStatus};
use drover_resources::{Attributes, ResourceError, Resources};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_newtype!(
    /// The id the master gave the framework in its first SUBSCRIBED.
    FrameworkId
);
id_newtype!(
    /// An offer's id; an offer is consumed (accepted or declined) at most once.
    OfferId
);
id_newtype!(
    /// A task's id, chosen by the framework; unique within the framework.
    TaskId
);
id_newtype!(
    /// An agent's id, as the master names it.
    AgentId
);
id_newtype!(
    /// A custom executor's id, chosen by the framework; unique within the framework.
    ExecutorId
);

/// What the framework tells the master about itself when it subscribes.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameworkInfo {
    pub name: String,
    /// The allocation role; `*` when empty.
    pub role: String,
    pub principal: String,
    /// How long the master keeps the framework's tasks after its connection breaks, seconds.
    pub failover_timeout_seconds: f64,
    /// Set to fail over an existing framework (e.g. after the scheduler process restarted);
    /// `None` for a new framework. The driver fills it in itself after the first SUBSCRIBED.
    pub id: Option<FrameworkId>,
    /// Mesos's PARTITION_AWARE: the tasks of an unreachable agent are reported
    /// TASK_UNREACHABLE and come back RUNNING if it returns (else TASK_LOST, and killed if it
    /// returns).
    pub partition_aware: bool,
}

impl FrameworkInfo {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: "*".into(),
            principal: String::new(),
            failover_timeout_seconds: 0.0,
            id: None,
            partition_aware: false,
        }
    }

    pub(crate) fn to_proto(&self) -> v1::FrameworkInfo {
        v1::FrameworkInfo {
            id: self
                .id
                .as_ref()
                .map(|i| i.as_str().to_string())
                .unwrap_or_default(),
            name: self.name.clone(),
            role: self.role.clone(),
            principal: self.principal.clone(),
            failover_timeout_seconds: self.failover_timeout_seconds,
            capabilities: if self.partition_aware {
                vec![v1::FrameworkCapability::PartitionAware as i32]
            } else {
                Vec::new()
            },
        }
    }
}

/// An offer of one agent's resources to this framework.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub id: OfferId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: Attributes,
    /// The master rescinds the offer at this time, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The agent's address (host:port), where its `/files` are read.
    pub agent_addr: String,
    /// The framework's custom executors running on the agent.
    pub executor_ids: Vec<ExecutorId>,
}

impl Offer {
    /// Reads an offer sent by the master, checking its resources and attributes.
    pub fn from_proto(o: &v1::Offer) -> Result<Offer, ResourceError> {
        Ok(Offer {
            id: OfferId::new(o.id.clone()),
            agent_id: AgentId::new(o.agent_id.clone()),
            hostname: o.hostname.clone(),
            resources: Resources::from_proto(&o.resources)?,
            attributes: Attributes::from_proto(&o.attributes)?,
            expires_at_ms: o.expires_at_ms,
            agent_addr: o.agent_addr.clone(),
            executor_ids: o.executor_ids.iter().map(ExecutorId::new).collect(),
        })
    }
}

/// What the driver tells the framework, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent {
    /// The driver is subscribed (again, when `resubscribed`): calls can be made from now on.
    Subscribed {
        framework_id: FrameworkId,
        master_id: u64,
        /// The address of the master the stream is open to (`host:port`).
        master_addr: String,
        /// Whether this follows an earlier subscription of this driver (a failover or a
        /// reconnection): the master re-sends every update not yet acknowledged.
        resubscribed: bool,
    },
    /// New offers. Offers whose resources the driver could not read are declined by the
    /// driver and not reported.
    Offers(Vec<Offer>),
    /// The offer is gone: do not accept it.
    Rescind(OfferId),
    /// A task's status changed (or, with an empty uuid, an answer to RECONCILE). Updates with
    /// a uuid must be acknowledged ([`super::Driver::acknowledge`]) or they are redelivered.
    Update(TaskStatus),
    /// The master's ERROR event (e.g. the framework was removed). The driver has stopped.
    Error(String),
    /// The stream to the master broke or went silent, or a subscription attempt failed (no
    /// leader reachable yet); the driver is (re-)subscribing, with backoff. Calls made meanwhile
    /// wait (bounded) for the new subscription.
    Disconnected { reason: String },
}

/// Whether a task in `state` will never change state again (the model's rule; UNKNOWN, an
/// answer about a task the master has no record of, is not a state a task is in).
pub fn is_terminal(state: TaskState) -> bool {
    drover_model::TaskState::from_proto(state).is_some_and(drover_model::TaskState::is_terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states() {
        assert!(is_terminal(TaskState::TaskFailed));
        assert!(is_terminal(TaskState::TaskGoneByOperator));
        assert!(!is_terminal(TaskState::TaskRunning));
        assert!(!is_terminal(TaskState::TaskUnreachable));
        assert!(!is_terminal(TaskState::Unspecified));
    }

    #[test]
    fn offer_with_bad_resources_is_refused() {
        let o = v1::Offer {
            id: "o1".into(),
            resources: vec![v1::Resource {
                name: "cpus".into(),
                value: Some(v1::resource::Value::Scalar(-1.0)),
            }],
            ..Default::default()
        };
        assert!(Offer::from_proto(&o).is_err());
        let ok = v1::Offer {
            id: "o2".into(),
            resources: "cpus:1;mem:64".parse::<Resources>().unwrap().to_proto(),
            ..Default::default()
        };
        assert_eq!(
            Offer::from_proto(&ok).unwrap().resources.cpus().milli(),
            1000
        );
    }
}
