//! What the Mesos views count per agent and per framework, from the applied registry: the
//! resources of live tasks and of outstanding offers; and which frameworks have a live
//! stream to the leader (the engine's soft state, asked once per answer).

use std::collections::{HashMap, HashSet};

use drover_resources::Resources;

use crate::registry::cluster::ClusterState;

#[derive(Default)]
pub struct Usage {
    pub used_on: HashMap<String, Resources>,
    pub offered_on: HashMap<String, Resources>,
    pub used_by: HashMap<String, Resources>,
    pub offered_by: HashMap<String, Resources>,
    /// Frameworks with a live stream to the leader, by id.
    pub connected: HashSet<String>,
}

fn add(to: &mut HashMap<String, Resources>, key: String, r: &Resources) {
    let entry = to.entry(key).or_insert_with(Resources::empty);
    // The registry never holds more than an agent has, so the sum cannot overflow.
    if let Ok(sum) = entry.checked_add(r) {
        *entry = sum;
    }
}

impl Usage {
    pub fn of(c: &ClusterState, connected: HashSet<String>) -> Self {
        let mut u = Usage {
            connected,
            ..Usage::default()
        };
        for t in c.tasks().filter(|t| !t.state.is_terminal()) {
            add(&mut u.used_on, t.agent.to_string(), &t.spec.resources);
            add(&mut u.used_by, t.framework.to_string(), &t.spec.resources);
        }
        for o in c.offers() {
            add(&mut u.offered_on, o.agent.to_string(), &o.resources);
            add(&mut u.offered_by, o.framework.to_string(), &o.resources);
        }
        u
    }

    /// `m[key]`, or no resources.
    pub fn of_key<'a>(
        m: &'a HashMap<String, Resources>,
        key: &str,
    ) -> std::borrow::Cow<'a, Resources> {
        match m.get(key) {
            Some(r) => std::borrow::Cow::Borrowed(r),
            None => std::borrow::Cow::Owned(Resources::empty()),
        }
    }

    pub fn is_connected(&self, framework: &str) -> bool {
        self.connected.contains(framework)
    }
}
