//! SUBSCRIBE: a framework registers (or fails over to a new stream). Proposed first; once
//! committed, the stream is attached, the old one (if any) told and closed, every
//! unacknowledged update redelivered and the framework's outstanding offers sent again.
//! Also the HEARTBEAT events connected frameworks get.

use std::time::Duration;

use drover_proto::v1;

use super::{event, Action, Engine, Pending, StreamKey};
use crate::ids::FrameworkId;
use crate::leader::answer::{Refusal, Reply};
use crate::leader::convert;
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, FrameworkRecord};

impl Engine {
    pub(super) fn subscribe(
        &mut self,
        framework: FrameworkRecord,
        resubscribe: bool,
        stream: StreamKey,
        reply: Reply<()>,
    ) {
        if self.frameworks.is_torn_down(&framework.id) {
            self.answer(
                reply,
                Err(Refusal::FailedPrecondition(format!(
                    "framework.id: framework {} was torn down",
                    framework.id
                ))),
            );
            return;
        }
        // A framework is its principal's: another may not take it over (one registered
        // without a principal, before principals were authenticated, goes to the first).
        let owner = self
            .state()
            .framework(&framework.id)
            .map(|known| known.principal.clone())
            .filter(|p| !p.is_empty());
        if let Some(owner) = owner.filter(|p| *p != framework.principal) {
            tracing::warn!(framework = %framework.id, owner = %owner, principal = %framework.principal, "refused a subscription: another principal's framework");
            self.answer(
                reply,
                Err(Refusal::PermissionDenied(format!(
                    "framework.id: framework {} is principal {owner:?}'s, not {:?}'s",
                    framework.id, framework.principal
                ))),
            );
            return;
        }
        self.propose(
            ClusterOp::SubscribeFramework(framework.clone()),
            Pending::Subscribed {
                framework,
                resubscribe,
                stream,
                reply,
            },
        );
    }

    pub(super) fn subscribed(
        &mut self,
        framework: FrameworkRecord,
        resubscribe: bool,
        stream: StreamKey,
        reply: Reply<()>,
    ) {
        let id = framework.id.clone();
        if self.allocator.framework_share(&id).is_none() {
            if let Err(e) = self
                .allocator
                .add_framework(id.clone(), framework.role.clone())
            {
                self.answer(reply, Err(Refusal::Internal(e.to_string())));
                return;
            }
        }
        let stream_id = (self.fresh_id)();
        self.out.push(Action::Attach { stream });
        if let Some(old) = self.frameworks.connect(&id, stream_id.clone(), stream) {
            let told = v1::event::Event::Error(v1::Error {
                message: "framework failed over to a new subscription".into(),
            });
            self.out.push(Action::Send {
                stream: old,
                event: event(told),
            });
            self.out.push(Action::Detach { stream: old });
        }
        self.update_suppression(&id);
        self.framework_connected(&id, resubscribe);
        tracing::info!(framework = %id, name = %framework.name, role = %framework.role, resubscribe, "framework subscribed");
        let subscribed = v1::event::Event::Subscribed(v1::Subscribed {
            framework_id: id.to_string(),
            stream_id,
            heartbeat_interval_seconds: self.config.framework_heartbeat_interval.as_secs_f64(),
            master_id: self.me,
        });
        self.send(&id, subscribed);
        // Every update the framework has not acknowledged, in order, as far as the stream
        // has room (the rest wait in its backlog); then its offers.
        let state = self.state();
        for t in state.tasks_of(&id) {
            for u in t.updates.iter().filter(|u| !u.acknowledged) {
                self.enqueue(&id, convert::status_to_proto(t, &u.update));
            }
        }
        let offers: Vec<v1::Offer> = state
            .offers()
            .filter(|o| o.framework == id && !self.offers.is_removing(&o.id))
            .map(|o| convert::offer_to_proto(o, &state))
            .collect();
        // Offers this send cannot deliver stay outstanding until they expire, as before a
        // re-subscription.
        let _ = self.send_offers(&id, offers);
        self.allocate_soon();
        self.answer(reply, Ok(()));
    }

    /// Sends connected frameworks a HEARTBEAT every `framework_heartbeat_interval`.
    pub(super) fn heartbeat_frameworks(&mut self) {
        if self.now.mono.duration_since(self.last_framework_heartbeat)
            >= self.config.framework_heartbeat_interval
        {
            self.last_framework_heartbeat = self.now.mono;
            for f in self.frameworks.connected() {
                self.send(&f, v1::event::Event::Heartbeat(v1::Heartbeat {}));
            }
        }
    }

    /// A framework subscribed (again): its failover timer stops.
    pub(super) fn framework_connected(&mut self, framework: &FrameworkId, resubscribe: bool) {
        self.recovery.disconnected.remove(framework);
        metrics::counter!(m::FRAMEWORK_SUBSCRIPTIONS_TOTAL, "kind" => if resubscribe { "failover" } else { "new" })
            .increment(1);
    }

    /// A framework lost its stream: its failover timer starts.
    pub(super) fn framework_disconnected(&mut self, framework: &FrameworkId) {
        let timeout = self
            .state()
            .framework(framework)
            .map(|f| Duration::from_millis(f.failover_timeout_ms))
            .unwrap_or_default();
        self.recovery
            .disconnected
            .insert(framework.clone(), self.now.mono + timeout);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::ids::OfferId;
    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::{Call, Command};

    #[test]
    fn a_new_subscription_closes_the_old_stream_after_telling_it_why() {
        let (mut sim, mut old) = one_agent_one_framework();
        let old_caller = old.caller();
        let mut new = sim.subscribe_with("f1", 0, true);
        let told: Vec<v1::event::Event> = old.events();
        assert!(
            matches!(told.last(), Some(v1::event::Event::Error(e)) if e.message.contains("failed over")),
            "{told:?}"
        );
        assert!(old.ended());
        let call = sim.call(&old, Call::Suppress);
        assert!(
            matches!(
                sim.answer(call),
                Some(Err(Refusal::StaleCaller { replaced: true, .. }))
            ),
            "a call on the replaced stream"
        );
        assert_ne!(new.caller().stream_id, old_caller.stream_id);
        let call = sim.call(&new, Call::Suppress);
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        assert!(!new.ended());
        new.events();
    }

    #[test]
    fn a_subscription_refused_closes_the_stream_it_brought() {
        let (mut sim, stream) = one_agent_one_framework();
        let call = sim.call(&stream, Call::Teardown);
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        assert!(stream.ended());
        let reply = sim.reply();
        let call = reply.id();
        let pipe = Rc::new(RefCell::new(Pipe::default()));
        sim.offered.insert(StreamKey(call), pipe.clone());
        let mut record = sim.registry.framework(&stream.framework).unwrap().clone();
        record.torn_down = false;
        sim.command(Command::Subscribe {
            framework: record,
            resubscribe: true,
            stream: StreamKey(call),
            reply,
        });
        assert!(matches!(
            sim.answer(call),
            Some(Err(Refusal::FailedPrecondition(_)))
        ));
        assert!(
            pipe.borrow().ended,
            "the refused subscription's stream is closed"
        );
        assert!(sim.streams.is_empty());
    }

    #[test]
    fn another_principal_may_not_take_a_framework_over() {
        let (mut sim, stream) = one_agent_one_framework();
        let mut subscribe_as = |principal: &str| {
            let reply = sim.reply();
            let call = reply.id();
            let pipe = Rc::new(RefCell::new(Pipe::default()));
            sim.offered.insert(StreamKey(call), pipe.clone());
            let mut record = sim.registry.framework(&stream.framework).unwrap().clone();
            record.principal = principal.into();
            sim.command(Command::Subscribe {
                framework: record,
                resubscribe: true,
                stream: StreamKey(call),
                reply,
            });
            sim.settle();
            (sim.answer(call), pipe)
        };
        // Registered without a principal (as before principals were authenticated): the
        // first to subscribe with one takes it, and it is theirs from then on.
        let (first, _) = subscribe_as("a");
        assert_eq!(first, Some(Ok(Answer::Done)));
        let (other, pipe) = subscribe_as("b");
        assert!(
            matches!(&other, Some(Err(Refusal::PermissionDenied(m))) if m.contains("\"a\"'s, not \"b\"'s")),
            "{other:?}"
        );
        assert!(
            pipe.borrow().ended,
            "the refused subscription's stream is closed"
        );
        let (again, _) = subscribe_as("a");
        assert_eq!(again, Some(Ok(Answer::Done)));
    }

    #[test]
    fn a_framework_that_went_away_has_its_offers_rescinded_at_the_next_tick() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.allocate();
        sim.settle();
        let offer = Stream::offers(&stream.events()).remove(0);
        drop(stream);
        sim.advance(Duration::from_millis(10));
        assert!(
            sim.proposed_ops().iter().any(|op| matches!(op, ClusterOp::RemoveOffers(ids) if ids.iter().any(|i| i.to_string() == offer.id))),
            "{:?}",
            sim.proposed_ops()
        );
        sim.settle();
        assert!(sim
            .registry
            .offer(&OfferId::new(&offer.id).unwrap())
            .is_none());
        check_allocator_books(&sim);
    }
}
