//! The DRF allocator: decides which framework is offered which agent's free resources.
//!
//! Owns the leader's soft allocation state: each agent's total and what is allocated on it to
//! each framework (offered or in use by tasks), role weights, frameworks' suppression and their
//! offer filters. It is rebuilt from the replicated registry when a master becomes leader.
//!
//! Pure: no I/O, no clock (time comes in as `now_ms`), no randomness. The master's allocator
//! task owns one `Allocator`, feeds it events and calls [`Allocator::allocate`] on a short
//! batching interval and after events that free resources; it commits the offers it returns
//! before sending them.
//!
//! Policy, as Mesos's hierarchical DRF allocator:
//! - each cycle visits the active agents (starting one further each cycle, so no agent is
//!   always first) and offers an agent's whole free bundle to one framework;
//! - the framework is chosen in two levels: first the role with the lowest weighted dominant
//!   share (dominant share / weight), then, in it, the framework with the lowest dominant share;
//!   ties go to the smaller name, so a given history always yields the same offers;
//! - shares count everything allocated (offered + used), against the total of active agents;
//! - a framework is skipped while it is suppressed, or for an agent whose free bundle is within
//!   what it refused there (DECLINE with `refuse_seconds`) until that filter expires; REVIVE
//!   clears its filters;
//! - a free bundle smaller than [`AllocatorConfig::min_allocatable`] is not offered.
//!
//! Invariant (checked by property tests): on every agent, the sum of allocations never exceeds
//! its total, so no offer ever carries a resource that is not free.

use std::collections::{BTreeMap, BTreeSet};

use drover_resources::{Resources, Scalar, CPUS, MEM};

use crate::ids::{AgentId, FrameworkId, Role};

pub mod bench;
mod order;
#[cfg(test)]
mod tests;

use order::{Filters, Key, Order};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("unknown framework {0}")]
    UnknownFramework(FrameworkId),
    #[error("agent {0} is already known")]
    DuplicateAgent(AgentId),
    #[error("framework {0} is already known")]
    DuplicateFramework(FrameworkId),
    #[error("role {role}: weight {weight} must be a positive finite number")]
    BadWeight { role: Role, weight: f64 },
    #[error("recovering {resources} for framework {framework} on agent {agent}, which holds only {held}")]
    NotAllocated {
        framework: FrameworkId,
        agent: AgentId,
        /// The bundles, in Mesos syntax (kept small: this error travels in every `Result`).
        resources: String,
        held: String,
    },
    #[error("allocating on agent {agent}: {reason}")]
    Overcommit { agent: AgentId, reason: String },
}

/// Tunables of the allocation policy.
#[derive(Debug, Clone)]
pub struct AllocatorConfig {
    /// A free bundle is offered only if it has at least this much cpus or this much mem
    /// (Mesos's `--min_allocatable_resources` default: `cpus:0.01|mem:32`).
    pub min_allocatable: Vec<Resources>,
    /// Most filters one framework may hold; a DECLINE beyond it replaces the oldest.
    pub max_filters_per_framework: usize,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        let one = |name: &str, amount: f64| {
            Resources::empty()
                .with_scalar(name, Scalar::from_f64(name, amount).expect("constant"))
                .expect("constant")
        };
        Self {
            min_allocatable: vec![one(CPUS, 0.01), one(MEM, 32.0)],
            max_filters_per_framework: 10_000,
        }
    }
}

/// One decision: offer `resources` on `agent` to `framework`. Already counted as allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub resources: Resources,
}

#[derive(Debug, Clone)]
struct AgentSlot {
    total: Resources,
    /// Allocated to each framework (offered or used). Never sums above `total`.
    allocated: BTreeMap<FrameworkId, Resources>,
    /// Sum of `allocated`, kept to avoid re-adding it on every visit.
    allocated_sum: Resources,
    /// Only active agents are offered and count towards the total (not unreachable, draining).
    active: bool,
}

impl AgentSlot {
    fn free(&self) -> Resources {
        self.total.saturating_sub(&self.allocated_sum)
    }
}

#[derive(Debug, Clone)]
struct FrameworkSlot {
    role: Role,
    allocated: Resources,
    suppressed: bool,
    filters: Filters,
}

/// A framework's or role's standing, for metrics and the state endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub allocated: Resources,
    pub dominant_share: f64,
}

/// The allocator. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    config: AllocatorConfig,
    agents: BTreeMap<AgentId, AgentSlot>,
    frameworks: BTreeMap<FrameworkId, FrameworkSlot>,
    weights: BTreeMap<Role, f64>,
    /// Allocated per role (sum over its frameworks).
    role_allocated: BTreeMap<Role, Resources>,
    /// Sum of the totals of active agents: the denominator of every share.
    total: Resources,
    /// Cycles run; rotates where each cycle starts among the agents.
    cycles: u64,
}

impl Allocator {
    pub fn new(config: AllocatorConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Adds an active agent with `total` resources, of which `used` are already allocated to
    /// frameworks (running tasks found in the registry when rebuilding after failover).
    pub fn add_agent(
        &mut self,
        id: AgentId,
        total: Resources,
        used: impl IntoIterator<Item = (FrameworkId, Resources)>,
    ) -> Result<(), AllocatorError> {
        if self.agents.contains_key(&id) {
            return Err(AllocatorError::DuplicateAgent(id));
        }
        // Check everything before changing anything: a refused agent leaves no trace.
        let used: Vec<(FrameworkId, Resources)> = used.into_iter().collect();
        let overcommit = |e: drover_resources::ResourceError| AllocatorError::Overcommit {
            agent: id.clone(),
            reason: e.to_string(),
        };
        let mut used_sum = Resources::empty();
        for (framework, resources) in &used {
            if !self.frameworks.contains_key(framework) {
                return Err(AllocatorError::UnknownFramework(framework.clone()));
            }
            used_sum = used_sum.checked_add(resources).map_err(overcommit)?;
        }
        total.checked_sub(&used_sum).map_err(overcommit)?;
        let new_total = self.total.checked_add(&total).map_err(overcommit)?;

        self.total = new_total;
        self.agents.insert(
            id.clone(),
            AgentSlot {
                total,
                allocated: BTreeMap::new(),
                allocated_sum: Resources::empty(),
                active: true,
            },
        );
        for (framework, resources) in &used {
            self.allocate_on(&id, framework, resources)?;
        }
        Ok(())
    }

    /// Forgets an agent (gone); its allocations go with it.
    pub fn remove_agent(&mut self, id: &AgentId) -> Result<(), AllocatorError> {
        let slot = self
            .agents
            .remove(id)
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))?;
        if slot.active {
            self.total = self.total.saturating_sub(&slot.total);
        }
        for (fw, res) in slot.allocated {
            self.release(&fw, &res);
        }
        Ok(())
    }

    /// Changes an agent's total (it re-registered with other resources), keeping what is
    /// allocated on it; refused if the new total does not cover that.
    pub fn set_total(&mut self, id: &AgentId, total: Resources) -> Result<(), AllocatorError> {
        let slot = self
            .agents
            .get(id)
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))?;
        let overcommit = |e: drover_resources::ResourceError| AllocatorError::Overcommit {
            agent: id.clone(),
            reason: e.to_string(),
        };
        total.checked_sub(&slot.allocated_sum).map_err(overcommit)?;
        if slot.active {
            let without = self.total.saturating_sub(&slot.total);
            self.total = without.checked_add(&total).map_err(overcommit)?;
        }
        if let Some(slot) = self.agents.get_mut(id) {
            slot.total = total;
        }
        Ok(())
    }

    /// Stops (`false`) or resumes (`true`) offering an agent: unreachable or draining agents
    /// are inactive. Their allocations stay until recovered.
    pub fn set_agent_active(&mut self, id: &AgentId, active: bool) -> Result<(), AllocatorError> {
        let slot = self
            .agents
            .get_mut(id)
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))?;
        if slot.active == active {
            return Ok(());
        }
        slot.active = active;
        self.total = if active {
            self.total
                .checked_add(&slot.total)
                .map_err(|e| AllocatorError::Overcommit {
                    agent: id.clone(),
                    reason: e.to_string(),
                })?
        } else {
            self.total.saturating_sub(&slot.total)
        };
        Ok(())
    }

    pub fn add_framework(&mut self, id: FrameworkId, role: Role) -> Result<(), AllocatorError> {
        if self.frameworks.contains_key(&id) {
            return Err(AllocatorError::DuplicateFramework(id));
        }
        self.role_allocated.entry(role.clone()).or_default();
        self.frameworks.insert(
            id,
            FrameworkSlot {
                role,
                allocated: Resources::empty(),
                suppressed: false,
                filters: Filters::default(),
            },
        );
        Ok(())
    }

    /// Forgets a framework (torn down) and frees everything allocated to it.
    pub fn remove_framework(&mut self, id: &FrameworkId) -> Result<(), AllocatorError> {
        if !self.frameworks.contains_key(id) {
            return Err(AllocatorError::UnknownFramework(id.clone()));
        }
        for slot in self.agents.values_mut() {
            if let Some(res) = slot.allocated.remove(id) {
                slot.allocated_sum = slot.allocated_sum.saturating_sub(&res);
            }
        }
        let fw = self.frameworks.remove(id).expect("checked above");
        if let Some(r) = self.role_allocated.get_mut(&fw.role) {
            *r = r.saturating_sub(&fw.allocated);
        }
        if !self.frameworks.values().any(|f| f.role == fw.role) {
            self.role_allocated.remove(&fw.role);
        }
        Ok(())
    }

    /// Sets a role's weight (default 1): a role with weight 3 converges to three times the
    /// dominant share of a role with weight 1.
    pub fn set_weight(&mut self, role: Role, weight: f64) -> Result<(), AllocatorError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(AllocatorError::BadWeight { role, weight });
        }
        self.weights.insert(role, weight);
        Ok(())
    }

    /// SUPPRESS: no offers to this framework until it revives.
    pub fn suppress(&mut self, id: &FrameworkId) -> Result<(), AllocatorError> {
        self.framework_mut(id)?.suppressed = true;
        Ok(())
    }

    /// REVIVE: offers again, and every filter of the framework is dropped (as Mesos).
    pub fn revive(&mut self, id: &FrameworkId) -> Result<(), AllocatorError> {
        let fw = self.framework_mut(id)?;
        fw.suppressed = false;
        fw.filters.clear();
        Ok(())
    }

    fn framework_mut(&mut self, id: &FrameworkId) -> Result<&mut FrameworkSlot, AllocatorError> {
        self.frameworks
            .get_mut(id)
            .ok_or_else(|| AllocatorError::UnknownFramework(id.clone()))
    }

    /// Resources allocated to `framework` on `agent` come back: an offer declined, rescinded or
    /// expired, the unused part of an accepted offer, or a finished task's. With `refuse`
    /// `(now_ms, refuse_ms)`, the framework is not offered them on that agent again before
    /// `now_ms + refuse_ms`.
    pub fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<(u64, u64)>,
    ) -> Result<(), AllocatorError> {
        if !self.frameworks.contains_key(framework) {
            return Err(AllocatorError::UnknownFramework(framework.clone()));
        }
        let slot = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent.clone()))?;
        let held = slot.allocated.get(framework).cloned().unwrap_or_default();
        let left = held
            .checked_sub(resources)
            .map_err(|_| AllocatorError::NotAllocated {
                framework: framework.clone(),
                agent: agent.clone(),
                resources: resources.to_string(),
                held: held.to_string(),
            })?;
        if left.is_empty() {
            slot.allocated.remove(framework);
        } else {
            slot.allocated.insert(framework.clone(), left);
        }
        slot.allocated_sum = slot.allocated_sum.saturating_sub(resources);
        self.release(framework, resources);
        if let Some((now_ms, refuse_ms)) = refuse.filter(|(_, r)| *r > 0) {
            let max = self.config.max_filters_per_framework;
            let fw = self.framework_mut(framework)?;
            fw.filters.add(
                agent.clone(),
                resources.clone(),
                now_ms.saturating_add(refuse_ms),
                max,
            );
        }
        Ok(())
    }

    /// Takes `resources` out of the framework's and its role's allocation.
    fn release(&mut self, framework: &FrameworkId, resources: &Resources) {
        if let Some(fw) = self.frameworks.get_mut(framework) {
            fw.allocated = fw.allocated.saturating_sub(resources);
            if let Some(r) = self.role_allocated.get_mut(&fw.role) {
                *r = r.saturating_sub(resources);
            }
        }
    }

    /// Counts `resources` on `agent` as allocated to `framework`; refuses what is not free.
    fn allocate_on(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let fw = self
            .frameworks
            .get_mut(framework)
            .ok_or_else(|| AllocatorError::UnknownFramework(framework.clone()))?;
        let slot = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent.clone()))?;
        let role = self.role_allocated.entry(fw.role.clone()).or_default();
        charge(agent, slot, framework, fw, role, resources)
    }

    /// Runs one allocation cycle at `now_ms`: drops expired filters, then offers each active
    /// agent's free resources to the framework DRF picks. What it returns is already counted
    /// as allocated; the caller turns each into an offer (or recovers it if it cannot).
    ///
    /// Works on the slots directly (no lookup by name per agent): the frameworks that take
    /// offers and their roles are numbered in name order for the cycle, and the [`Order`]
    /// keeps them sorted by share, so picking is a walk from its front and an allocation
    /// moves two keys.
    pub fn allocate(&mut self, now_ms: u64) -> Vec<Allocation> {
        let Allocator {
            config,
            agents,
            frameworks,
            weights,
            role_allocated,
            total,
            cycles,
        } = self;
        for fw in frameworks.values_mut() {
            fw.filters.expire(now_ms);
        }
        let mut slots: Vec<(&AgentId, &mut AgentSlot)> =
            agents.iter_mut().filter(|(_, a)| a.active).collect();
        if slots.is_empty() {
            return Vec::new();
        }
        let start = (*cycles % slots.len() as u64) as usize;
        *cycles = cycles.wrapping_add(1);
        slots.rotate_left(start);

        // The frameworks that take offers, and their roles, each numbered in name order (so
        // that index order is the tie-break DRF's rule names).
        let mut fws: Vec<(&FrameworkId, &mut FrameworkSlot)> = frameworks
            .iter_mut()
            .filter(|(_, fw)| !fw.suppressed)
            .collect();
        let wanted: BTreeSet<&Role> = fws.iter().map(|(_, fw)| &fw.role).collect();
        let mut roles: Vec<(&Role, &mut Resources)> = role_allocated
            .iter_mut()
            .filter(|(r, _)| wanted.contains(r))
            .collect();
        drop(wanted);
        let role_of: Vec<usize> = fws
            .iter()
            .map(|(_, fw)| {
                roles
                    .binary_search_by(|(r, _)| (*r).cmp(&fw.role))
                    .expect("every framework's role has an entry")
            })
            .collect();
        let weight = |role: &Role| weights.get(role).copied().unwrap_or(1.0);
        let role_weights: Vec<f64> = roles.iter().map(|(r, _)| weight(r)).collect();
        let role_key = |i: usize, allocated: &Resources| {
            Key(allocated.dominant_share(total) / role_weights[i])
        };
        let mut order = Order::new(roles.len());
        for (i, (_, allocated)) in roles.iter().enumerate() {
            order.set_role(i, role_key(i, allocated));
        }
        for (i, (_, fw)) in fws.iter().enumerate() {
            order.set_framework(i, role_of[i], Key(fw.allocated.dominant_share(total)));
        }

        let mut out = Vec::new();
        for (agent, slot) in slots {
            let free = slot.free();
            if !allocatable(config, &free) {
                continue;
            }
            // The lowest weighted role share, then the lowest framework share; ties to the
            // smaller name. Skips frameworks whose filters refuse this bundle here.
            let Some(f) = order.first(|f| !fws[f].1.filters.refuses(agent, &free, now_ms)) else {
                continue;
            };
            let r = role_of[f];
            let (framework, fw) = &mut fws[f];
            // `free` is free by construction; a failure here is a bug, reported not hidden.
            match charge(agent, slot, framework, fw, roles[r].1, &free) {
                Ok(()) => {
                    order.set_framework(f, r, Key(fw.allocated.dominant_share(total)));
                    order.set_role(r, role_key(r, roles[r].1));
                    out.push(Allocation {
                        framework: (*framework).clone(),
                        agent: agent.clone(),
                        resources: free,
                    })
                }
                Err(e) => tracing::error!(error = %e, "allocator bookkeeping is inconsistent"),
            }
        }
        out
    }

    /// What `framework` holds and its dominant share.
    pub fn framework_share(&self, id: &FrameworkId) -> Option<Share> {
        self.frameworks.get(id).map(|fw| Share {
            allocated: fw.allocated.clone(),
            dominant_share: fw.allocated.dominant_share(&self.total),
        })
    }

    /// What `role` holds and its dominant share (not divided by its weight).
    pub fn role_share(&self, role: &Role) -> Option<Share> {
        self.role_allocated.get(role).map(|r| Share {
            allocated: r.clone(),
            dominant_share: r.dominant_share(&self.total),
        })
    }

    /// The total of `agent`, if known.
    pub fn agent_total(&self, agent: &AgentId) -> Option<&Resources> {
        self.agents.get(agent).map(|a| &a.total)
    }

    /// Free resources on `agent`.
    pub fn free(&self, agent: &AgentId) -> Option<Resources> {
        self.agents.get(agent).map(AgentSlot::free)
    }

    /// What is allocated on `agent`, by framework.
    pub fn allocated_on(&self, agent: &AgentId) -> Option<&BTreeMap<FrameworkId, Resources>> {
        self.agents.get(agent).map(|a| &a.allocated)
    }

    /// The total of active agents.
    pub fn total(&self) -> &Resources {
        &self.total
    }
}

/// Whether a free bundle is worth offering (at least one of the minimums).
fn allocatable(config: &AllocatorConfig, free: &Resources) -> bool {
    !free.is_empty()
        && (config.min_allocatable.is_empty()
            || config.min_allocatable.iter().any(|m| free.contains(m)))
}

/// Counts `resources` as allocated to `framework` on the agent, in its framework's and its
/// role's sums; refuses (changing nothing) what is not free on the agent.
fn charge(
    agent: &AgentId,
    slot: &mut AgentSlot,
    framework: &FrameworkId,
    fw: &mut FrameworkSlot,
    role: &mut Resources,
    resources: &Resources,
) -> Result<(), AllocatorError> {
    let overcommit = |e: drover_resources::ResourceError| AllocatorError::Overcommit {
        agent: agent.clone(),
        reason: e.to_string(),
    };
    let sum = slot
        .allocated_sum
        .checked_add(resources)
        .map_err(overcommit)?;
    if !slot.total.contains(&sum) {
        // Name what is short, as a subtraction does.
        let short = slot
            .total
            .checked_sub(&sum)
            .err()
            .map_or_else(|| "exceeds the total".to_string(), |e| e.to_string());
        return Err(AllocatorError::Overcommit {
            agent: agent.clone(),
            reason: short,
        });
    }
    let mine = match slot.allocated.get(framework) {
        Some(held) => held.checked_add(resources).map_err(overcommit)?,
        None => resources.clone(),
    };
    let fw_total = fw.allocated.checked_add(resources).map_err(overcommit)?;
    let role_total = role.checked_add(resources).map_err(overcommit)?;
    slot.allocated_sum = sum;
    slot.allocated.insert(framework.clone(), mine);
    fw.allocated = fw_total;
    *role = role_total;
    Ok(())
}
