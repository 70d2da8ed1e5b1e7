//! The allocator's two indexes that keep a cycle from being frameworks × agents: a framework's
//! offer filters by agent, and the DRF order of one cycle.
//!
//! - [`Filters`]: one framework's DECLINE filters, looked up by agent (a cycle asks "does this
//!   framework refuse this agent's free bundle?" for every candidate), bounded, the oldest
//!   replaced first.
//! - [`Order`]: built at the start of a cycle from the allocator's shares, the roles sorted by
//!   weighted dominant share and, in each, its frameworks by dominant share (ties by name, as
//!   DRF's rule in the module docs says: the cycle numbers frameworks and roles in name order). Picking walks it in order and stops at the first
//!   framework that does not filter the agent; after each allocation only the chosen
//!   framework's and its role's keys move. A cycle costs O(agents × log frameworks) plus
//!   the filtered candidates it must step over.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use drover_resources::Resources;

use crate::ids::AgentId;

/// "Do not offer me these resources on this agent again before `until_ms`."
#[derive(Debug, Clone)]
struct Filter {
    resources: Resources,
    until_ms: u64,
    /// Insertion number: the smallest is the oldest.
    seq: u64,
}

/// One framework's filters.
#[derive(Debug, Clone, Default)]
pub(super) struct Filters {
    /// Looked up for every candidate of every agent in a cycle; never iterated for output,
    /// so the hash order does not show.
    by_agent: HashMap<AgentId, Vec<Filter>>,
    /// Insertion order, for replacing the oldest at the bound.
    order: BTreeMap<u64, AgentId>,
    next_seq: u64,
    /// No filter runs out before this (so most cycles skip expiry).
    earliest_until_ms: u64,
}

impl Filters {
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Adds a filter; at `max` filters the oldest goes first.
    pub(super) fn add(&mut self, agent: AgentId, resources: Resources, until_ms: u64, max: usize) {
        while self.len() >= max.max(1) {
            let Some((seq, agent)) = self.order.pop_first() else {
                break;
            };
            self.remove_one(&agent, seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.earliest_until_ms = if self.order.is_empty() {
            until_ms
        } else {
            self.earliest_until_ms.min(until_ms)
        };
        self.order.insert(seq, agent.clone());
        self.by_agent.entry(agent).or_default().push(Filter {
            resources,
            until_ms,
            seq,
        });
    }

    fn remove_one(&mut self, agent: &AgentId, seq: u64) {
        if let Some(list) = self.by_agent.get_mut(agent) {
            list.retain(|f| f.seq != seq);
            if list.is_empty() {
                self.by_agent.remove(agent);
            }
        }
    }

    /// Whether a filter on `agent` still holds at `now_ms` and covers `free`.
    pub(super) fn refuses(&self, agent: &AgentId, free: &Resources, now_ms: u64) -> bool {
        self.by_agent.get(agent).is_some_and(|list| {
            list.iter()
                .any(|f| f.until_ms > now_ms && f.resources.contains(free))
        })
    }

    /// Drops the filters that ran out by `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64) {
        if self.order.is_empty() || now_ms < self.earliest_until_ms {
            return;
        }
        let order = &mut self.order;
        let mut earliest = u64::MAX;
        self.by_agent.retain(|_, list| {
            list.retain(|f| {
                let keep = f.until_ms > now_ms;
                if keep {
                    earliest = earliest.min(f.until_ms);
                } else {
                    order.remove(&f.seq);
                }
                keep
            });
            !list.is_empty()
        });
        self.earliest_until_ms = earliest;
    }

    pub(super) fn clear(&mut self) {
        self.by_agent.clear();
        self.order.clear();
    }
}

/// A share as a sort key (total order; shares are finite).
#[derive(Debug, Clone, Copy)]
pub(super) struct Key(pub(super) f64);

/// Equality as the order has it (`total_cmp`), so that `==` and `cmp` agree.
impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The DRF order of one cycle over the frameworks that take offers, which the cycle numbers
/// (and their roles) in name order: ties between equal keys go to the smaller number.
#[derive(Debug, Default)]
pub(super) struct Order {
    roles: BTreeSet<(Key, usize)>,
    role_key: Vec<Option<Key>>,
    /// Per role, its frameworks.
    frameworks: Vec<BTreeSet<(Key, usize)>>,
    framework_key: Vec<Option<Key>>,
}

impl Order {
    pub(super) fn new(roles: usize) -> Self {
        Self {
            roles: BTreeSet::new(),
            role_key: vec![None; roles],
            frameworks: vec![BTreeSet::new(); roles],
            framework_key: Vec::new(),
        }
    }

    /// Sets (or moves) framework `f` of role `role` to `key`.
    pub(super) fn set_framework(&mut self, f: usize, role: usize, key: Key) {
        if self.framework_key.len() <= f {
            self.framework_key.resize(f + 1, None);
        }
        let set = &mut self.frameworks[role];
        if let Some(old) = self.framework_key[f].replace(key) {
            set.remove(&(old, f));
        }
        set.insert((key, f));
    }

    /// Sets (or moves) role `role` to `key`.
    pub(super) fn set_role(&mut self, role: usize, key: Key) {
        if let Some(old) = self.role_key[role].replace(key) {
            self.roles.remove(&(old, role));
        }
        self.roles.insert((key, role));
    }

    /// The first framework, in DRF order, that `eligible` accepts.
    pub(super) fn first(&self, mut eligible: impl FnMut(usize) -> bool) -> Option<usize> {
        self.roles.iter().find_map(|&(_, role)| {
            self.frameworks[role]
                .iter()
                .map(|&(_, f)| f)
                .find(|&f| eligible(f))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(n: u32) -> AgentId {
        AgentId::new(&format!("a{n}")).unwrap()
    }

    #[test]
    fn filters_replace_the_oldest_at_their_bound_and_expire() {
        let r: Resources = "cpus:1".parse().unwrap();
        let mut f = Filters::default();
        f.add(agent(1), r.clone(), 100, 2);
        f.add(agent(2), r.clone(), 200, 2);
        f.add(agent(3), r.clone(), 300, 2);
        assert_eq!(f.len(), 2);
        assert!(!f.refuses(&agent(1), &r, 0), "the oldest was replaced");
        assert!(f.refuses(&agent(2), &r, 0));
        assert!(f.refuses(&agent(3), &r, 0));
        assert!(
            !f.refuses(&agent(3), &"cpus:2".parse().unwrap(), 0),
            "covers less"
        );
        f.expire(200);
        assert_eq!(f.len(), 1);
        assert!(!f.refuses(&agent(2), &r, 0));
        assert!(f.refuses(&agent(3), &r, 299));
        assert!(!f.refuses(&agent(3), &r, 300), "ran out");
    }

    #[test]
    fn order_walks_roles_then_frameworks_by_key_then_number() {
        let mut o = Order::new(2);
        o.set_role(0, Key(0.5));
        o.set_role(1, Key(0.1));
        o.set_framework(0, 0, Key(0.0));
        o.set_framework(1, 1, Key(0.3));
        o.set_framework(2, 1, Key(0.3));
        assert_eq!(o.first(|_| true), Some(1));
        assert_eq!(o.first(|f| f != 1), Some(2));
        assert_eq!(o.first(|f| f == 0), Some(0));
        assert_eq!(o.first(|_| false), None);
        o.set_role(1, Key(0.9));
        assert_eq!(o.first(|_| true), Some(0));
        o.set_framework(2, 1, Key(0.0));
        assert_eq!(o.first(|f| f != 0), Some(2));
    }
}
