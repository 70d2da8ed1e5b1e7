//! Offers: allocation turns the allocator's decisions into offers, committed before they are
//! sent; offers expire, are rescinded (agent gone, framework gone) or removed by DECLINE, and
//! their resources go back to the allocator once the removal is committed.

use std::collections::{BTreeMap, HashSet};

use drover_proto::v1;

use super::{chunks_of, ms, Engine, Pending, MAX_OFFERS_PER_COMMAND, MAX_OFFERS_PER_EVENT};
use crate::ids::{FrameworkId, OfferId};
use crate::leader::convert;
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, ClusterOutcome, OfferRecord};

impl Engine {
    pub(super) fn allocate(&mut self) {
        let now = self.now.wall_ms;
        let allocations = self.allocator.allocate(now);
        if allocations.is_empty() {
            return;
        }
        let expires = now + ms(self.config.offer_timeout);
        let offers: Vec<OfferRecord> = allocations
            .into_iter()
            .filter_map(|a| {
                Some(OfferRecord {
                    id: OfferId::new(&(self.fresh_id)()).ok()?,
                    framework: a.framework,
                    agent: a.agent,
                    resources: a.resources,
                    created_at_ms: now,
                    expires_at_ms: expires,
                })
            })
            .collect();
        // In commands of bounded size, each its own entry at most: a cycle over a large
        // cluster makes thousands of offers, and an entry must replicate within openraft's
        // per-request deadline (see `raft::network`).
        for chunk in chunks_of(offers, MAX_OFFERS_PER_COMMAND) {
            self.propose(
                ClusterOp::CreateOffers(chunk.clone()),
                Pending::OffersCreated(chunk),
            );
        }
    }

    pub(super) fn offers_created(&mut self, mut offers: Vec<OfferRecord>, outcome: ClusterOutcome) {
        if let ClusterOutcome::OffersCreated { refused } = &outcome {
            for (id, e) in refused {
                tracing::warn!(offer = %id, error = %e, "offer refused by the registry; resources return to the allocator");
                if let Some(o) = offers.iter().find(|o| &o.id == id) {
                    let _ = self
                        .allocator
                        .recover(&o.framework, &o.agent, &o.resources, None);
                }
            }
            let refused: HashSet<&OfferId> = refused.iter().map(|(id, _)| id).collect();
            offers.retain(|o| !refused.contains(&o.id));
        }
        let state = self.state();
        let mut by_framework: BTreeMap<FrameworkId, Vec<v1::Offer>> = BTreeMap::new();
        for o in &offers {
            self.offers.insert(o);
            by_framework
                .entry(o.framework.clone())
                .or_default()
                .push(convert::offer_to_proto(o, &state));
        }
        metrics::counter!(m::OFFERS_TOTAL).increment(offers.len() as u64);
        let mut orphans = Vec::new();
        for (framework, list) in by_framework {
            // A framework that went away while the offers were being committed gets none:
            // they are rescinded at once rather than left to expire.
            orphans.extend(self.send_offers(&framework, list));
        }
        orphans.retain(|id| !self.offers.is_removing(id));
        self.remove_offers(orphans, Pending::Rescinded);
    }

    /// Sends `offers` to the framework in OFFERS events of at most [`MAX_OFFERS_PER_EVENT`]
    /// (a lone framework on a large cluster is offered every agent at once); returns the ids
    /// of those it could not deliver (the stream is gone or full).
    pub(super) fn send_offers(
        &mut self,
        framework: &FrameworkId,
        offers: Vec<v1::Offer>,
    ) -> Vec<OfferId> {
        let mut undelivered = Vec::new();
        for chunk in chunks_of(offers, MAX_OFFERS_PER_EVENT) {
            let ids = chunk.iter().filter_map(|o| OfferId::new(&o.id).ok());
            let ids: Vec<OfferId> = ids.collect();
            if !self.send(
                framework,
                v1::event::Event::Offers(v1::Offers { offers: chunk }),
            ) {
                undelivered.extend(ids);
            }
        }
        undelivered
    }

    /// Offers the registry removed: their resources go back (with the framework's filter for
    /// a DECLINE); the framework is told of the others (RESCIND).
    pub(super) fn offers_removed(
        &mut self,
        outcome: &ClusterOutcome,
        refuse: Option<(u64, u64)>,
        declined_by: Option<&FrameworkId>,
    ) {
        let ClusterOutcome::Removed(removed) = outcome else {
            return;
        };
        for o in removed {
            self.offers.forget(&o.id);
            if let Err(e) = self
                .allocator
                .recover(&o.framework, &o.agent, &o.resources, refuse)
            {
                tracing::error!(error = %e, "allocator");
            }
            if declined_by != Some(&o.framework) {
                self.send(
                    &o.framework.clone(),
                    v1::event::Event::Rescind(v1::Rescind {
                        offer_id: o.id.to_string(),
                    }),
                );
            }
        }
        // Ids whose removal found nothing (consumed meanwhile) are no longer in flight.
        let state = self.state();
        self.offers.settle_removals(|id| state.offer(id).is_some());
        // No early allocation here: the periodic cycle offers these again. Triggering one
        // would let a framework that declines with no filter spin offers through the log.
    }

    pub(super) fn remove_offers(&mut self, ids: Vec<OfferId>, pending: Pending) {
        if ids.is_empty() {
            if let Pending::Declined { reply, .. } = pending {
                self.answer(reply, Ok(()));
            }
            return;
        }
        self.offers.begin_removal(&ids);
        self.propose(ClusterOp::RemoveOffers(ids), pending);
    }

    /// Rescinds offers past their expiry.
    pub(super) fn expire_offers(&mut self) {
        let now = self.now.wall_ms;
        let expired = self.offers.expired(now);
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "rescinding expired offers");
            self.remove_offers(expired, Pending::Rescinded);
        }
    }

    /// Rescinds removed offers (see [`Engine::offers_removed`]).
    pub(super) fn rescind(
        &mut self,
        removed: &[OfferRecord],
        refuse: Option<(u64, u64)>,
        declined_by: Option<&FrameworkId>,
    ) {
        self.offers_removed(
            &ClusterOutcome::Removed(removed.to_vec()),
            refuse,
            declined_by,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::leader::engine::sim::*;
    use crate::replicated::ReplicaError;

    #[test]
    fn an_offer_is_sent_only_after_it_is_committed() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let made = sim.allocate();
        assert_eq!(made.len(), 1, "{:?}", sim.proposed_ops());
        assert!(
            Stream::offers(&stream.events()).is_empty(),
            "offer before commit"
        );
        sim.commit();
        let sent = Stream::offers(&stream.events());
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].id, made[0].id.to_string());
        assert_eq!(sent[0].agent_id, "a1");
    }

    #[test]
    fn an_offer_whose_creation_is_lost_is_never_sent_and_its_resources_are_offered_again() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let lost = sim.allocate();
        assert_eq!(lost.len(), 1);
        sim.lose(ReplicaError::Lost("truncated".into()));
        assert!(Stream::offers(&stream.events()).is_empty());
        let again = sim.allocate();
        assert_eq!(again.len(), 1, "{:?}", sim.proposed_ops());
        assert_eq!(again[0].resources, lost[0].resources);
        assert_ne!(again[0].id, lost[0].id);
    }

    #[test]
    fn an_expired_offer_is_rescinded_once() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.allocate();
        sim.commit();
        let offer = Stream::offers(&stream.events()).remove(0);
        let timeout = sim.c.config.offer_timeout;
        sim.advance(timeout);
        let removals = |sim: &Sim| {
            sim.proposed_ops()
                .into_iter()
                .filter(|op| matches!(op, ClusterOp::RemoveOffers(ids) if ids.iter().any(|i| i.to_string() == offer.id)))
                .count()
        };
        assert_eq!(removals(&sim), 1, "{:?}", sim.proposed_ops());
        // While the removal is in flight, later ticks do not propose it again.
        sim.advance(Duration::from_secs(1));
        assert_eq!(removals(&sim), 1, "{:?}", sim.proposed_ops());
        sim.settle();
        let rescinded: Vec<String> = stream
            .events()
            .into_iter()
            .filter_map(|e| match e {
                v1::event::Event::Rescind(r) => Some(r.offer_id),
                _ => None,
            })
            .collect();
        assert_eq!(rescinded, vec![offer.id]);
    }
}
