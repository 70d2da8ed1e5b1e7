//! SUPPRESS and REVIVE: a framework asks for no offers, or for offers again (at once).

use super::Engine;
use crate::ids::FrameworkId;
use crate::leader::answer::Reply;

impl Engine {
    pub(super) fn suppress(&mut self, framework: FrameworkId, reply: Reply<()>) {
        self.frameworks.set_self_suppressed(&framework, true);
        self.update_suppression(&framework);
        self.answer(reply, Ok(()));
    }

    pub(super) fn revive(&mut self, framework: FrameworkId, reply: Reply<()>) {
        self.frameworks.set_self_suppressed(&framework, false);
        self.update_suppression(&framework);
        self.allocate_soon();
        self.answer(reply, Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;
    use crate::registry::cluster::ClusterOp;

    fn offers_proposed(sim: &Sim) -> usize {
        sim.proposed_ops()
            .into_iter()
            .filter(|op| matches!(op, ClusterOp::CreateOffers(_)))
            .count()
    }

    #[test]
    fn a_suppressed_framework_is_offered_nothing_until_it_revives_which_brings_allocation_early() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let call = sim.call(&stream, Call::Suppress);
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        for cycle in 0..5 {
            let made = sim.allocate();
            assert!(
                made.is_empty(),
                "cycle {cycle} offered a suppressed framework {made:?}"
            );
        }
        assert!(Stream::offers(&stream.events()).is_empty());
        // REVIVE right after a periodic cycle: the next one is a whole interval away, and
        // allocation comes within `allocation_batch` instead.
        let call = sim.call(&stream, Call::Revive);
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let batch = sim.c.config.allocation_batch;
        assert!(batch < sim.c.config.allocation_interval);
        sim.advance(batch);
        assert_eq!(
            offers_proposed(&sim),
            1,
            "no allocation within {batch:?} of REVIVE: {:?}",
            sim.proposed_ops()
        );
        sim.settle();
        let offers = Stream::offers(&stream.events());
        assert_eq!(offers.len(), 1, "{offers:?}");
        assert_eq!(offers[0].agent_id, "a1");
        // SUPPRESS again: nothing more once the offer is declined without a filter.
        let call = sim.call(&stream, Call::Suppress);
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let call = sim.call(
            &stream,
            Call::Decline {
                offers: vec![crate::ids::OfferId::new(&offers[0].id).unwrap()],
                refuse_ms: Some(0),
            },
        );
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        sim.advance(Duration::from_secs(3));
        assert_eq!(offers_proposed(&sim), 0, "{:?}", sim.proposed_ops());
    }
}
