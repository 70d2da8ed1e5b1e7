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
