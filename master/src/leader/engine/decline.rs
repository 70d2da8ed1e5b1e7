//! DECLINE: a framework hands offers back, with a filter (`refuse_seconds`) that keeps the
//! resources from it for a while. Only its own outstanding offers are removed.

use super::{ms, Engine, Pending};
use crate::ids::{FrameworkId, OfferId};
use crate::leader::answer::Reply;
use crate::registry::cluster::ClusterOutcome;

impl Engine {
    pub(super) fn decline(
        &mut self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        refuse_ms: Option<u64>,
        reply: Reply<()>,
    ) {
        // Only this framework's outstanding offers; others' ids are ignored, as Mesos.
        let ids = self.offers.declinable(&framework, offers);
        let pending = Pending::Declined {
            framework,
            refuse_ms: refuse_ms.unwrap_or(ms(self.config.default_refuse)),
            reply,
        };
        self.remove_offers(ids, pending);
    }

    pub(super) fn declined(
        &mut self,
        framework: FrameworkId,
        refuse_ms: u64,
        outcome: ClusterOutcome,
        reply: Reply<()>,
    ) {
        let refuse = (refuse_ms > 0).then_some((self.now.wall_ms, refuse_ms));
        self.offers_removed(&outcome, refuse, Some(&framework));
        self.answer(reply, Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drover_proto::v1;

    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;
    use crate::registry::cluster::ClusterOp;

    /// The offers proposed and not yet committed.
    fn offers_proposed(sim: &Sim) -> Vec<String> {
        sim.proposed_ops()
            .into_iter()
            .filter_map(|op| match op {
                ClusterOp::CreateOffers(offers) => Some(offers),
                _ => None,
            })
            .flatten()
            .map(|o| format!("{} on {} to {}", o.resources, o.agent, o.framework))
            .collect()
    }

    #[test]
    fn declined_resources_are_kept_from_the_framework_until_its_filter_passes_then_offered_again() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let first = sim.allocate();
        sim.settle();
        let offer = Stream::offers(&stream.events()).remove(0);
        let call = sim.call(
            &stream,
            Call::Decline {
                offers: vec![OfferId::new(&offer.id).unwrap()],
                refuse_ms: Some(10_000),
            },
        );
        assert_eq!(
            sim.answer(call),
            None,
            "answered before the removal committed"
        );
        assert!(
            matches!(sim.commit(), ClusterOp::RemoveOffers(ids) if ids.len() == 1 && ids[0].to_string() == offer.id),
            "the declined offer is removed"
        );
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let told = stream.events();
        assert!(
            !told
                .iter()
                .any(|e| matches!(e, v1::event::Event::Rescind(_))),
            "the framework that declined is not told of a rescind: {told:?}"
        );
        // Periodic cycles within the filter offer the framework nothing.
        for second in 1..10 {
            sim.advance(Duration::from_secs(1));
            assert!(
                offers_proposed(&sim).is_empty(),
                "offered {second} s after a 10 s filter: {:?}",
                offers_proposed(&sim)
            );
        }
        sim.advance(Duration::from_secs(1));
        assert_eq!(
            offers_proposed(&sim),
            [format!("{} on a1 to f1", first[0].resources)],
            "offered again once the filter passed"
        );
        sim.settle();
        let again = Stream::offers(&stream.events());
        assert_eq!(again.len(), 1, "{again:?}");
        assert_ne!(again[0].id, offer.id);
    }

    #[test]
    fn a_framework_cannot_decline_another_frameworks_offer_which_stays_outstanding() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        sim.register_agent("a1", "cpus:1;mem:128");
        sim.register_agent("a2", "cpus:1;mem:128");
        let mut s1 = sim.subscribe("f1");
        let mut s2 = sim.subscribe("f2");
        sim_allocate_and_commit(&mut sim);
        let o1 = Stream::offers(&s1.events());
        let o2 = Stream::offers(&s2.events());
        assert_eq!(
            (o1.len(), o2.len()),
            (1, 1),
            "one agent each: {o1:?} {o2:?}"
        );
        let call = sim.call(
            &s2,
            Call::Decline {
                offers: vec![OfferId::new(&o1[0].id).unwrap()],
                refuse_ms: None,
            },
        );
        assert_eq!(
            sim.answer(call),
            Some(Ok(Answer::Done)),
            "another framework's offer id is ignored, and the call answered at once"
        );
        assert!(
            sim.proposed.is_empty(),
            "a removal proposed for another framework's offer: {:?}",
            sim.proposed_ops()
        );
        assert!(
            sim.registry
                .offer(&OfferId::new(&o1[0].id).unwrap())
                .is_some(),
            "f1's offer is still outstanding"
        );
        let told = s1.events();
        assert!(told.is_empty(), "f1 was told: {told:?}");
        // Its holder can still use it.
        let call = sim.call(&s1, accept_one(&o1[0].id, task("t1", "cpus:1;mem:128")));
        sim.settle();
        assert_eq!(
            sim.answer(call),
            Some(Ok(Answer::Done)),
            "f1 accepts its offer"
        );
    }
}
