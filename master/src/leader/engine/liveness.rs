//! Agents' liveness on the leader: when each agent that is up was last heard from, and which
//! agents have a state change proposed by the leader in flight (so that it is proposed once).
//!
//! Time is passed in (the monotonic clock: a timeout, not a date).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::ids::AgentId;

#[derive(Default)]
pub struct Liveness {
    /// Agents that are up (ACTIVE or DRAINING), with when they were last heard from.
    last_heard: HashMap<AgentId, Instant>,
    /// Agents the leader is marking UNREACHABLE or GONE (proposed, outcome not known yet).
    marking: HashSet<AgentId>,
}

impl Liveness {
    /// `agent` is up and was heard from at `at` (registered, heartbeat, or found up by a new
    /// leader).
    pub fn heard(&mut self, agent: &AgentId, at: Instant) {
        self.last_heard.insert(agent.clone(), at);
    }

    /// `agent` is down (UNREACHABLE or GONE): not watched any more.
    pub fn forget(&mut self, agent: &AgentId) {
        self.last_heard.remove(agent);
    }

    /// The leader proposes a state change for `agent`.
    pub fn begin_marking(&mut self, agent: &AgentId) {
        self.marking.insert(agent.clone());
    }

    /// The leader's state change for `agent` is settled (committed, refused or failed), or
    /// the agent registered meanwhile.
    pub fn marked(&mut self, agent: &AgentId) {
        self.marking.remove(agent);
    }

    /// Whether the leader's state change for `agent` is in flight.
    pub fn is_marking(&self, agent: &AgentId) -> bool {
        self.marking.contains(agent)
    }

    /// Agents not heard from for more than `timeout` at `now` and not being marked already.
    pub fn silent(&self, now: Instant, timeout: Duration) -> Vec<AgentId> {
        self.last_heard
            .iter()
            .filter(|(id, heard)| {
                now.duration_since(**heard) > timeout && !self.marking.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Agents watched (up).
    pub fn len(&self) -> usize {
        self.last_heard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_heard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: &str) -> AgentId {
        AgentId::new(n).unwrap()
    }

    #[test]
    fn an_agent_is_silent_past_its_timeout_and_listed_once_while_marked() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut live = Liveness::default();
        live.heard(&a("a1"), t0);
        live.heard(&a("a2"), t0);
        assert!(
            live.silent(t0 + timeout, timeout).is_empty(),
            "at the timeout"
        );
        live.heard(&a("a2"), t0 + Duration::from_secs(20));
        assert_eq!(
            live.silent(t0 + timeout + Duration::from_millis(1), timeout),
            [a("a1")]
        );
        live.begin_marking(&a("a1"));
        assert!(live.silent(t0 + 2 * timeout, timeout) == [a("a2")]);
        // Committed UNREACHABLE: not watched; registered again: watched, not being marked.
        live.forget(&a("a1"));
        live.marked(&a("a1"));
        assert_eq!(live.len(), 1);
        live.heard(&a("a1"), t0 + 2 * timeout);
        assert!(!live.is_marking(&a("a1")));
        assert_eq!(live.silent(t0 + 2 * timeout, timeout), [a("a2")]);
    }
}
