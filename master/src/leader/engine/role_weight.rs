//! Role weights: an operator sets a role's DRF weight; committed, the allocator uses it.

use super::{Engine, Pending};
use crate::ids::Role;
use crate::leader::answer::{Refusal, Reply};
use crate::registry::cluster::ClusterOp;

impl Engine {
    pub(super) fn set_role_weight(&mut self, role: Role, weight: f64, reply: Reply<()>) {
        let op = ClusterOp::SetRoleWeight {
            role: role.clone(),
            weight,
        };
        self.propose(
            op,
            Pending::WeightSet {
                role,
                weight,
                reply,
            },
        );
    }

    pub(super) fn weight_set(&mut self, role: Role, weight: f64, reply: Reply<()>) {
        let r = self
            .allocator
            .set_weight(role, weight)
            .map_err(|e| Refusal::InvalidArgument(e.to_string()));
        self.answer(reply, r);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::answer::{self, Answer};
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Command;
    use crate::registry::cluster::ClusterError;

    fn role(name: &str) -> Role {
        Role::new(name).unwrap()
    }

    /// Sets `role`'s weight; returns the call its answer is for.
    fn set_weight(sim: &mut Sim, role: Role, weight: f64) -> crate::leader::answer::CallId {
        let reply = sim.reply();
        let call = reply.id();
        sim.command(Command::SetRoleWeight {
            role,
            weight,
            reply,
        });
        call
    }

    /// Four agents of one cpu; frameworks f1 in role r1 and f2 in role r2.
    fn two_roles(sim: &mut Sim) -> (Stream, Stream) {
        for a in ["a1", "a2", "a3", "a4"] {
            sim.register_agent(a, "cpus:1;mem:128");
        }
        (
            sim.subscribe_as("f1", role("r1"), 0, false),
            sim.subscribe_as("f2", role("r2"), 0, false),
        )
    }

    /// How many of the offers in flight each framework gets.
    fn offers_per_framework(sim: &mut Sim) -> BTreeMap<String, usize> {
        let mut n = BTreeMap::new();
        for o in sim.allocate() {
            *n.entry(o.framework.to_string()).or_default() += 1;
        }
        n
    }

    #[test]
    fn a_role_weight_once_committed_gives_its_role_that_many_times_the_others_share() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        let call = set_weight(&mut sim, role("r1"), 3.0);
        assert_eq!(sim.answer(call), None, "answered before commit");
        assert!(matches!(sim.commit(), ClusterOp::SetRoleWeight { weight, .. } if weight == 3.0));
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let (_s1, _s2) = two_roles(&mut sim);
        // DRF by weighted share: r1 at 3 takes three agents for r2's one (equal weights
        // would split them two and two).
        let got = offers_per_framework(&mut sim);
        assert_eq!(
            got,
            BTreeMap::from([("f1".to_string(), 3), ("f2".to_string(), 1)]),
            "offers per framework"
        );
    }

    #[test]
    fn an_invalid_role_weight_is_refused_invalid_argument_and_changes_nothing() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        for weight in [-1.0, 0.0, f64::NAN, f64::INFINITY] {
            let call = set_weight(&mut sim, role("r1"), weight);
            sim.settle();
            match sim.answer(call) {
                Some(Err(refused)) => {
                    assert!(
                        matches!(&refused, Refusal::Cluster(ClusterError::BadWeight { .. })),
                        "weight {weight}: {refused:?}"
                    );
                    let status = answer::to_status(refused);
                    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
                }
                other => panic!("weight {weight} answered {other:?}"),
            }
        }
        assert_eq!(
            sim.registry.role_weights().count(),
            0,
            "the registry holds no weight"
        );
        let (_s1, _s2) = two_roles(&mut sim);
        assert_eq!(
            offers_per_framework(&mut sim),
            BTreeMap::from([("f1".to_string(), 2), ("f2".to_string(), 2)]),
            "equal weights split the agents evenly"
        );
    }
}
