//! The allocator benchmark (`drover bench allocator`): the time of one allocation cycle at
//! Mesos's allocator-benchmark sizes (1 000 agents × 100 frameworks, 10 000 × 1 000).
//!
//! Owns only the scenarios and their timing; the allocator itself is untouched. Two cycles are
//! measured, each repeated on a fresh copy of the same allocator so every sample does the same
//! work:
//! - **full**: every agent is free, every framework wants offers: the cycle offers every agent,
//!   each to the framework DRF picks (the cost of a cluster-wide allocation after failover or
//!   at start);
//! - **declined**: as after `rounds` cycles in which every framework declined everything it was
//!   offered with a long filter (Mesos's `DeclineOffers` benchmark): every agent now carries
//!   filters from several frameworks, which the cycle must look past.
//!
//! The clock is read here, around [`Allocator::allocate`], never inside it.

use std::time::{Duration, Instant};

use drover_resources::Resources;

use super::{Allocator, AllocatorConfig};
use crate::ids::{AgentId, FrameworkId, Role};

/// One scenario's size.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub agents: usize,
    pub frameworks: usize,
    /// Roles the frameworks are spread over (weights 1, 2, 3, … in turn).
    pub roles: usize,
    /// Timed cycles.
    pub samples: usize,
    /// Decline rounds before the "declined" cycle.
    pub decline_rounds: usize,
}

/// The figures of one measured cycle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CycleFigures {
    pub name: &'static str,
    pub agents: usize,
    pub frameworks: usize,
    /// Offers the cycle made (the same in every sample).
    pub offers: usize,
    pub samples: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Agent resources of the scenarios (Mesos's benchmarks use agents of this size).
const AGENT: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
/// Refuse long enough that no filter expires during a run.
const REFUSE_MS: u64 = 3_600_000;
const NOW_MS: u64 = 1_000_000;

/// An allocator with `s.agents` free agents and `s.frameworks` frameworks over `s.roles`.
pub fn build(s: &Scenario) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default());
    let total: Resources = AGENT.parse().expect("constant resources");
    for r in 0..s.roles.max(1) {
        a.set_weight(role(r), (r + 1) as f64)
            .expect("positive weight");
    }
    for f in 0..s.frameworks {
        a.add_framework(framework(f), role(f % s.roles.max(1)))
            .expect("fresh framework");
    }
    for i in 0..s.agents {
        a.add_agent(agent(i), total.clone(), [])
            .expect("fresh agent");
    }
    a
}

fn agent(i: usize) -> AgentId {
    AgentId::new(&format!("agent-{i:06}")).expect("valid id")
}
fn framework(i: usize) -> FrameworkId {
    FrameworkId::new(&format!("framework-{i:05}")).expect("valid id")
}
fn role(i: usize) -> Role {
    Role::new(&format!("role-{i}")).expect("valid role")
}

/// Every framework declines everything it was offered, with a long filter.
fn decline_all(a: &mut Allocator, now_ms: u64) -> usize {
    let offers = a.allocate(now_ms);
    let n = offers.len();
    for o in offers {
        a.recover(
            &o.framework,
            &o.agent,
            &o.resources,
            Some((now_ms, REFUSE_MS)),
        )
        .expect("recovering what was just allocated");
    }
    n
}

/// Times `allocate` on `samples` copies of `base`.
fn time_cycles(name: &'static str, s: &Scenario, base: &Allocator) -> CycleFigures {
    let mut times = Vec::with_capacity(s.samples);
    let mut offers = 0;
    for _ in 0..s.samples.max(1) {
        let mut a = base.clone();
        let started = Instant::now();
        let made = a.allocate(NOW_MS + 1);
        times.push(started.elapsed());
        offers = made.len();
        drop(a);
    }
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| ms(times[((times.len() - 1) as f64 * p).round() as usize]);
    CycleFigures {
        name,
        agents: s.agents,
        frameworks: s.frameworks,
        offers,
        samples: times.len(),
        median_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: ms(*times.last().expect("at least one sample")),
    }
}

/// Runs both cycles of scenario `s`; `progress` is told of each before it starts.
pub fn run(s: &Scenario, mut progress: impl FnMut(&str)) -> Vec<CycleFigures> {
    progress("building the allocator");
    let base = build(s);
    progress("timing the full cycle");
    let full = time_cycles("full", s, &base);
    progress("declining");
    let mut declined = base;
    for round in 0..s.decline_rounds {
        decline_all(&mut declined, NOW_MS - (s.decline_rounds - round) as u64);
    }
    progress("timing the cycle after declines");
    let after = time_cycles("declined", s, &declined);
    vec![full, after]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_cycle_offers_every_agent_and_declines_move_offers_on() {
        let s = Scenario {
            agents: 50,
            frameworks: 10,
            roles: 2,
            samples: 3,
            decline_rounds: 3,
        };
        let figures = run(&s, |_| {});
        assert_eq!(figures[0].offers, 50);
        // After three rounds each agent has been refused by three frameworks, and the cycle
        // still offers every agent (to one of the seven left); the loop below shows the
        // refusals add up until none is left.
        assert_eq!(figures[1].offers, 50);
        let mut a = build(&s);
        for round in 0..10 {
            assert_eq!(decline_all(&mut a, NOW_MS + round), 50, "round {round}");
        }
        // Every framework has refused every agent: nothing is left to offer.
        assert_eq!(a.allocate(NOW_MS + 20).len(), 0);
    }
}
