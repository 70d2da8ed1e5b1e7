//! The leader's outstanding offers: which framework holds each and when it expires, and which
//! have a removal in flight (expiry, rescind, DECLINE), so that each removal is proposed once.
//!
//! Follows committed outcomes only: an offer is inserted when its CreateOffers commits (or
//! found in the registry by a new leader), forgotten when an ACCEPT consumes it or the registry
//! removes it. Time is passed in (wall-clock milliseconds, as the registry records expiry).

use std::collections::{BTreeMap, HashSet};

use crate::ids::{FrameworkId, OfferId};
use crate::registry::cluster::OfferRecord;

struct Outstanding {
    framework: FrameworkId,
    expires_at_ms: u64,
}

#[derive(Default)]
pub struct Offers {
    outstanding: BTreeMap<OfferId, Outstanding>,
    /// Offers with a removal proposed and not yet settled.
    removing: HashSet<OfferId>,
}

impl Offers {
    /// An offer the registry holds (just committed, or found by a new leader).
    pub fn insert(&mut self, o: &OfferRecord) {
        self.outstanding.insert(
            o.id.clone(),
            Outstanding {
                framework: o.framework.clone(),
                expires_at_ms: o.expires_at_ms,
            },
        );
    }

    /// An offer the registry no longer holds (consumed by an ACCEPT, or removed): forgotten,
    /// with any removal of it settled.
    pub fn forget(&mut self, id: &OfferId) {
        self.outstanding.remove(id);
        self.removing.remove(id);
    }

    /// Whether a removal of `id` is in flight.
    pub fn is_removing(&self, id: &OfferId) -> bool {
        self.removing.contains(id)
    }

    /// A removal of `ids` is proposed: none of them is listed for removal again until it
    /// settles.
    pub fn begin_removal(&mut self, ids: &[OfferId]) {
        self.removing.extend(ids.iter().cloned());
    }

    /// A removal's outcome is known: ids the registry no longer holds (consumed meanwhile, so
    /// the removal found nothing) are not in flight any more.
    pub fn settle_removals(&mut self, still_offered: impl Fn(&OfferId) -> bool) {
        self.removing.retain(|id| still_offered(id));
    }

    /// `framework`'s outstanding offers with no removal in flight (to rescind when it leaves).
    pub fn of_framework(&self, framework: &FrameworkId) -> Vec<OfferId> {
        self.outstanding
            .iter()
            .filter(|(id, o)| &o.framework == framework && !self.removing.contains(*id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Of `ids`, those `framework` may decline: its own outstanding offers with no removal in
    /// flight (other frameworks' ids are ignored, as Mesos does).
    pub fn declinable(&self, framework: &FrameworkId, ids: Vec<OfferId>) -> Vec<OfferId> {
        ids.into_iter()
            .filter(|id| {
                self.outstanding
                    .get(id)
                    .is_some_and(|o| &o.framework == framework)
                    && !self.removing.contains(id)
            })
            .collect()
    }

    /// Offers past their expiry at `now_ms` with no removal in flight.
    pub fn expired(&self, now_ms: u64) -> Vec<OfferId> {
        self.outstanding
            .iter()
            .filter(|(id, o)| o.expires_at_ms <= now_ms && !self.removing.contains(*id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Outstanding offers.
    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;

    fn offer(id: &str, framework: &str, expires_at_ms: u64) -> OfferRecord {
        OfferRecord {
            id: OfferId::new(id).unwrap(),
            framework: FrameworkId::new(framework).unwrap(),
            agent: AgentId::new("a1").unwrap(),
            resources: "cpus:1".parse().unwrap(),
            created_at_ms: 0,
            expires_at_ms,
        }
    }

    fn ids(names: &[&str]) -> Vec<OfferId> {
        names.iter().map(|n| OfferId::new(n).unwrap()).collect()
    }

    #[test]
    fn an_expired_offer_is_listed_until_its_removal_is_proposed_and_gone_once_removed() {
        let mut offers = Offers::default();
        offers.insert(&offer("o1", "f1", 100));
        offers.insert(&offer("o2", "f1", 200));
        assert!(offers.expired(99).is_empty());
        assert_eq!(offers.expired(100), ids(&["o1"]));
        offers.begin_removal(&ids(&["o1"]));
        assert!(
            offers.expired(150).is_empty(),
            "listed again while in flight"
        );
        assert_eq!(offers.expired(200), ids(&["o2"]));
        offers.forget(&ids(&["o1"])[0]);
        assert!(!offers.is_removing(&ids(&["o1"])[0]));
        assert_eq!(offers.len(), 1);
    }

    #[test]
    fn a_framework_declines_only_its_own_offers_not_already_being_removed() {
        let mut offers = Offers::default();
        offers.insert(&offer("o1", "f1", 100));
        offers.insert(&offer("o2", "f2", 100));
        offers.insert(&offer("o3", "f1", 100));
        offers.begin_removal(&ids(&["o3"]));
        let f1 = FrameworkId::new("f1").unwrap();
        assert_eq!(
            offers.declinable(&f1, ids(&["o1", "o2", "o3", "unknown"])),
            ids(&["o1"])
        );
        assert_eq!(offers.of_framework(&f1), ids(&["o1"]));
    }

    #[test]
    fn a_removal_that_found_nothing_is_settled_and_others_stay_in_flight() {
        let mut offers = Offers::default();
        offers.insert(&offer("o1", "f1", 100));
        offers.insert(&offer("o2", "f1", 100));
        offers.begin_removal(&ids(&["o1", "o2"]));
        // o1 was consumed by an ACCEPT meanwhile; o2's removal is still to come.
        offers.forget(&ids(&["o1"])[0]);
        offers.settle_removals(|id| id.to_string() == "o2");
        assert!(!offers.is_removing(&ids(&["o1"])[0]));
        assert!(offers.is_removing(&ids(&["o2"])[0]));
        assert!(offers.expired(1_000).is_empty());
    }
}
