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
