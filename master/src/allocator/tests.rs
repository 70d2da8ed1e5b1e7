//! The allocator against the DRF paper's examples, weighted roles, filters and suppression, and
//! property tests over random event sequences.

use std::collections::BTreeMap;

use drover_resources::Resources;
use proptest::prelude::*;

use super::*;

fn res(text: &str) -> Resources {
    text.parse().unwrap()
}
fn agent(n: usize) -> AgentId {
    AgentId::new(&format!("a{n:03}")).unwrap()
}
fn fw(name: &str) -> FrameworkId {
    FrameworkId::new(name).unwrap()
}
fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

/// An allocator with agent a000 of `total` and framework "f" in the default role.
fn one_agent_one_framework(total: &str) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent(agent(0), res(total), []).unwrap();
    a.add_framework(fw("f"), Role::default_role()).unwrap();
    a
}

/// A framework in a simulation: launches tasks of one shape from each offer, as many as it
/// wants, and declines the rest for `refuse_ms`.
struct SimFramework {
    id: FrameworkId,
    task: Resources,
    /// Tasks launched, by agent.
    tasks: BTreeMap<AgentId, u32>,
}

/// Runs cycles at one instant until no offer is made, each framework taking one task per offer
/// (the classic DRF progressive filling). Returns the tasks each framework launched.
fn progressive_fill(a: &mut Allocator, frameworks: &mut [SimFramework]) {
    let now = 1_000;
    for _ in 0..10_000 {
        let offers = a.allocate(now);
        if offers.is_empty() {
            return;
        }
        for o in offers {
            let f = frameworks.iter_mut().find(|f| f.id == o.framework).unwrap();
            if o.resources.contains(&f.task) {
                *f.tasks.entry(o.agent.clone()).or_default() += 1;
                let rest = o.resources.checked_sub(&f.task).unwrap();
                // Leftovers go back unfiltered, so the next share decides who gets them.
                a.recover(&o.framework, &o.agent, &rest, None).unwrap();
            } else {
                // Cannot use it: refuse it long enough to let the others have it.
                a.recover(&o.framework, &o.agent, &o.resources, Some((now, 60_000)))
                    .unwrap();
            }
        }
    }
    panic!("allocation did not settle");
}

fn sim(name: &str, task: Resources) -> SimFramework {
    SimFramework {
        id: fw(name),
        task,
        tasks: BTreeMap::new(),
    }
}

/// The DRF paper's users: A runs <1 CPU, 4 GB> tasks, B <3 CPUs, 1 GB>.
fn drf_paper_users() -> Vec<SimFramework> {
    vec![
        sim("a", res("cpus:1;mem:4096")),
        sim("b", res("cpus:3;mem:1024")),
    ]
}

fn count(f: &SimFramework) -> u32 {
    f.tasks.values().sum()
}

/// The DRF paper (Ghodsi et al., NSDI 2011), section 4: 9 CPUs and 18 GB; user A runs
/// tasks of <1 CPU, 4 GB>, user B <3 CPUs, 1 GB>. DRF gives A three tasks and B two, both at a
/// dominant share of 2/3.
#[test]
fn drf_paper_two_user_example() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent(agent(0), res("cpus:9;mem:18432"), []).unwrap();
    for name in ["a", "b"] {
        a.add_framework(fw(name), Role::default_role()).unwrap();
    }
    let mut sims = drf_paper_users();
    progressive_fill(&mut a, &mut sims);
    assert_eq!(count(&sims[0]), 3, "user A's tasks");
    assert_eq!(count(&sims[1]), 2, "user B's tasks");
    let share_a = a.framework_share(&fw("a")).unwrap().dominant_share;
    let share_b = a.framework_share(&fw("b")).unwrap().dominant_share;
    assert!((share_a - 2.0 / 3.0).abs() < 1e-9, "{share_a}");
    assert!((share_b - 2.0 / 3.0).abs() < 1e-9, "{share_b}");
}

/// The same two users spread over many agents still converge to the same split.
#[test]
fn drf_paper_example_over_many_agents() {
    let mut a = Allocator::new(AllocatorConfig::default());
    // 9 agents of <1 CPU, 2 GB> cannot host B's 3-CPU tasks at all; use 3 of <3, 6 GB>.
    for i in 0..3 {
        a.add_agent(agent(i), res("cpus:3;mem:6144"), []).unwrap();
    }
    for name in ["a", "b"] {
        a.add_framework(fw(name), Role::default_role()).unwrap();
    }
    let mut sims = drf_paper_users();
    progressive_fill(&mut a, &mut sims);
    // Packing per agent bounds what DRF can reach: A's 4 GB tasks fit once per 6 GB agent,
    // B's take a whole agent's CPUs. Both end with equal dominant shares within one task.
    let share_a = a.framework_share(&fw("a")).unwrap().dominant_share;
    let share_b = a.framework_share(&fw("b")).unwrap().dominant_share;
    assert!(count(&sims[0]) >= 1 && count(&sims[1]) >= 1);
    assert!(
        (share_a - share_b).abs() <= 1.0 / 3.0 + 1e-9,
        "{share_a} vs {share_b}"
    );
}

/// Two roles with weights 1 and 3 and identical demand: the weight-3 role ends with three
/// times the dominant share (to within one task).
#[test]
fn weighted_roles_converge_to_weighted_shares() {
    let mut a = Allocator::new(AllocatorConfig::default());
    for i in 0..40 {
        a.add_agent(agent(i), res("cpus:4;mem:4096"), []).unwrap();
    }
    a.set_weight(role("light"), 1.0).unwrap();
    a.set_weight(role("heavy"), 3.0).unwrap();
    a.add_framework(fw("l"), role("light")).unwrap();
    a.add_framework(fw("h"), role("heavy")).unwrap();
    let task = res("cpus:1;mem:256");
    let mut sims = vec![
        sim("l", task.clone()),
        SimFramework {
            id: fw("h"),
            task,
            tasks: BTreeMap::new(),
        },
    ];
    progressive_fill(&mut a, &mut sims);
    let (l, h) = (count(&sims[0]), count(&sims[1]));
    assert_eq!(l + h, 160, "every CPU is used");
    assert!((h as i64 - 3 * l as i64).abs() <= 3, "light {l}, heavy {h}");
    let ls = a.role_share(&role("light")).unwrap().dominant_share;
    let hs = a.role_share(&role("heavy")).unwrap().dominant_share;
    assert!(
        (hs / 3.0 - ls).abs() < 0.02,
        "weighted shares {ls} vs {hs}/3"
    );
}

/// Within a role, frameworks share by DRF; roles share by weighted DRF first.
#[test]
fn roles_first_then_frameworks() {
    let mut a = Allocator::new(AllocatorConfig::default());
    for i in 0..4 {
        a.add_agent(agent(i), res("cpus:1;mem:1024"), []).unwrap();
    }
    a.add_framework(fw("x1"), role("x")).unwrap();
    a.add_framework(fw("x2"), role("x")).unwrap();
    a.add_framework(fw("y1"), role("y")).unwrap();
    let offers = a.allocate(0);
    let mut by_fw: BTreeMap<FrameworkId, usize> = BTreeMap::new();
    for o in &offers {
        *by_fw.entry(o.framework.clone()).or_default() += 1;
    }
    // Role x and role y get two agents each; x's two go one to each of its frameworks.
    assert_eq!(by_fw.get(&fw("y1")), Some(&2), "{offers:?}");
    assert_eq!(by_fw.get(&fw("x1")), Some(&1), "{offers:?}");
    assert_eq!(by_fw.get(&fw("x2")), Some(&1), "{offers:?}");
}

#[test]
fn suppress_stops_offers_and_revive_brings_them_back() {
    let mut a = one_agent_one_framework("cpus:2;mem:2048");
    a.suppress(&fw("f")).unwrap();
    assert!(a.allocate(0).is_empty());
    a.revive(&fw("f")).unwrap();
    let offers = a.allocate(1);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, res("cpus:2;mem:2048"));
}

#[test]
fn a_declined_agent_comes_back_after_the_filter_or_on_revive() {
    let mut a = one_agent_one_framework("cpus:2;mem:2048");
    let o = a.allocate(0).pop().unwrap();
    a.recover(&o.framework, &o.agent, &o.resources, Some((0, 5_000)))
        .unwrap();
    assert!(a.allocate(1).is_empty());
    assert!(a.allocate(4_999).is_empty());
    assert_eq!(a.allocate(5_000).len(), 1, "the filter expired");
    let o = a.allocate(5_000);
    assert!(o.is_empty(), "already offered");

    let mut a = one_agent_one_framework("cpus:2;mem:2048");
    let o = a.allocate(0).pop().unwrap();
    a.recover(&o.framework, &o.agent, &o.resources, Some((0, 60_000)))
        .unwrap();
    assert!(a.allocate(1).is_empty());
    a.revive(&fw("f")).unwrap();
    assert_eq!(a.allocate(2).len(), 1, "revive clears filters");
}

/// A filter covers what was refused: if more becomes free on that agent, it is offered again
/// (Mesos semantics: the framework refused those resources, not the agent).
#[test]
fn a_filter_does_not_hide_more_resources_than_it_refused() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_framework(fw("f"), Role::default_role()).unwrap();
    a.add_framework(fw("g"), Role::default_role()).unwrap();
    a.add_agent(
        agent(0),
        res("cpus:4;mem:4096"),
        [(fw("g"), res("cpus:2;mem:2048"))],
    )
    .unwrap();
    a.suppress(&fw("g")).unwrap();
    let o = a.allocate(0).pop().unwrap();
    assert_eq!(o.framework, fw("f"));
    a.recover(&o.framework, &o.agent, &o.resources, Some((0, 60_000)))
        .unwrap();
    assert!(a.allocate(1).is_empty());
    // g's task ends: the free bundle grows beyond what f refused.
    a.recover(&fw("g"), &agent(0), &res("cpus:2;mem:2048"), None)
        .unwrap();
    let o = a.allocate(2);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].resources, res("cpus:4;mem:4096"));
}

/// An agent refused at registration (its running tasks name an unknown framework, or use more
/// than it has) leaves no trace: no agent, no total, no allocation.
#[test]
fn a_refused_agent_leaves_no_trace() {
    let mut a = one_agent_one_framework("cpus:1;mem:1024");
    let before_total = a.total().clone();
    let err = a
        .add_agent(
            agent(1),
            res("cpus:4;mem:4096"),
            [(fw("f"), res("cpus:1")), (fw("g"), res("cpus:1"))],
        )
        .unwrap_err();
    assert_eq!(err, AllocatorError::UnknownFramework(fw("g")));
    let err = a
        .add_agent(agent(1), res("cpus:4;mem:4096"), [(fw("f"), res("cpus:5"))])
        .unwrap_err();
    assert!(matches!(err, AllocatorError::Overcommit { .. }), "{err}");
    assert_eq!(a.free(&agent(1)), None);
    assert_eq!(a.total(), &before_total);
    assert_eq!(
        a.framework_share(&fw("f")).unwrap().allocated,
        Resources::empty()
    );
    a.add_agent(agent(1), res("cpus:4;mem:4096"), [(fw("f"), res("cpus:1"))])
        .unwrap();
    assert_eq!(a.free(&agent(1)), Some(res("cpus:3;mem:4096")));
}

#[test]
fn inactive_agents_are_not_offered_and_do_not_count() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent(agent(0), res("cpus:2;mem:2048"), []).unwrap();
    a.add_agent(agent(1), res("cpus:2;mem:2048"), []).unwrap();
    a.add_framework(fw("f"), Role::default_role()).unwrap();
    a.set_agent_active(&agent(1), false).unwrap();
    assert_eq!(a.total(), &res("cpus:2;mem:2048"));
    let offers = a.allocate(0);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent, agent(0));
}

#[test]
fn tiny_leftovers_are_not_offered() {
    let mut a = one_agent_one_framework("cpus:0.005;mem:16;disk:100");
    assert!(a.allocate(0).is_empty());
}

#[test]
fn recovering_what_was_not_allocated_is_refused() {
    let mut a = one_agent_one_framework("cpus:2;mem:2048");
    let err = a
        .recover(&fw("f"), &agent(0), &res("cpus:1"), None)
        .unwrap_err();
    assert!(matches!(err, AllocatorError::NotAllocated { .. }), "{err}");
    assert_eq!(a.free(&agent(0)), Some(res("cpus:2;mem:2048")));
}

/// Events a property test drives the allocator with.
#[derive(Debug, Clone)]
enum Event {
    AddAgent(usize, u64, u64),
    RemoveAgent(usize),
    SetActive(usize, bool),
    AddFramework(usize, usize),
    RemoveFramework(usize),
    Suppress(usize),
    Revive(usize),
    Allocate(u64),
    /// Give back a fraction (numerator of 4) of one allocation, with a filter or not.
    Recover(usize, usize, u8, Option<u64>),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0..6usize, 1..8u64, 1..8u64).prop_map(|(a, c, m)| Event::AddAgent(a, c, m)),
        (0..6usize).prop_map(Event::RemoveAgent),
        (0..6usize, any::<bool>()).prop_map(|(a, b)| Event::SetActive(a, b)),
        (0..4usize, 0..2usize).prop_map(|(f, r)| Event::AddFramework(f, r)),
        (0..4usize).prop_map(Event::RemoveFramework),
        (0..4usize).prop_map(Event::Suppress),
        (0..4usize).prop_map(Event::Revive),
        (0..3u64).prop_map(Event::Allocate),
        (0..4usize, 0..6usize, 1..=4u8, prop::option::of(1..3_000u64))
            .prop_map(|(f, a, q, r)| Event::Recover(f, a, q, r)),
    ]
}

/// Scales a bundle of whole cpus/mem by `q`/4, rounding down (so it stays contained).
fn part(r: &Resources, q: u8) -> Resources {
    if q == 4 {
        return r.clone();
    }
    let scale = |s: Scalar| Scalar::from_milli(s.milli() * q as u64 / 4).unwrap();
    Resources::empty()
        .with_scalar("cpus", scale(r.cpus()))
        .unwrap()
        .with_scalar("mem", scale(r.mem_mib()))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens, no agent is ever allocated more than it has, every offer was free when
    /// made, the allocator's books match an independent tally, suppressed frameworks get
    /// nothing, and a refusal holds until its filter expires while nothing else frees up.
    #[test]
    fn allocation_never_exceeds_what_agents_have(events in prop::collection::vec(event(), 1..80)) {
        let mut a = Allocator::new(AllocatorConfig::default());
        let mut now = 0u64;
        // The model: agents' totals, and allocations by (agent, framework).
        let mut totals: BTreeMap<usize, Resources> = BTreeMap::new();
        let mut held: BTreeMap<(usize, usize), Resources> = BTreeMap::new();
        let mut frameworks: BTreeMap<usize, bool> = BTreeMap::new(); // suppressed?
        // (framework, agent) -> (refused bundle, until)
        let mut refusals: BTreeMap<(usize, usize), (Resources, u64)> = BTreeMap::new();
        let fid = |f: usize| fw(&format!("f{f}"));
        for e in events {
            match e {
                Event::AddAgent(i, c, m) => {
                    let total = res(&format!("cpus:{c};mem:{}", m * 512));
                    let r = a.add_agent(agent(i), total.clone(), []);
                    prop_assert_eq!(r.is_ok(), !totals.contains_key(&i));
                    totals.entry(i).or_insert(total);
                }
                Event::RemoveAgent(i) => {
                    let r = a.remove_agent(&agent(i));
                    prop_assert_eq!(r.is_ok(), totals.remove(&i).is_some());
                    held.retain(|(ag, _), _| *ag != i);
                }
                Event::SetActive(i, b) => {
                    let r = a.set_agent_active(&agent(i), b);
                    prop_assert_eq!(r.is_ok(), totals.contains_key(&i));
                }
                Event::AddFramework(f, r) => {
                    let result = a.add_framework(fid(f), role(if r == 0 { "x" } else { "y" }));
                    prop_assert_eq!(result.is_ok(), !frameworks.contains_key(&f));
                    frameworks.entry(f).or_insert(false);
                }
                Event::RemoveFramework(f) => {
                    let r = a.remove_framework(&fid(f));
                    prop_assert_eq!(r.is_ok(), frameworks.remove(&f).is_some());
                    held.retain(|(_, fr), _| *fr != f);
                    refusals.retain(|(fr, _), _| *fr != f);
                }
                Event::Suppress(f) => {
                    if a.suppress(&fid(f)).is_ok() {
                        frameworks.insert(f, true);
                    }
                }
                Event::Revive(f) => {
                    if a.revive(&fid(f)).is_ok() {
                        frameworks.insert(f, false);
                        refusals.retain(|(fr, _), _| *fr != f);
                    }
                }
                Event::Allocate(dt) => {
                    now += dt * 1_000;
                    for o in a.allocate(now) {
                        let f: usize = o.framework.as_str()[1..].parse().unwrap();
                        let ag: usize = o.agent.as_str()[1..].parse().unwrap();
                        prop_assert!(!frameworks[&f], "suppressed framework offered");
                        let used = held
                            .iter()
                            .filter(|((x, _), _)| *x == ag)
                            .fold(Resources::empty(), |acc, (_, r)| acc.checked_add(r).unwrap());
                        let free = totals[&ag].checked_sub(&used).unwrap();
                        prop_assert!(free.contains(&o.resources), "offered more than free");
                        if let Some((refused, until)) = refusals.get(&(f, ag)) {
                            prop_assert!(
                                *until <= now || !refused.contains(&o.resources),
                                "re-offered within its filter"
                            );
                        }
                        let h = held.entry((ag, f)).or_default();
                        *h = h.checked_add(&o.resources).unwrap();
                    }
                }
                Event::Recover(f, ag, q, refuse) => {
                    let Some(h) = held.get(&(ag, f)).cloned() else {
                        continue;
                    };
                    let back = part(&h, q);
                    if back.is_empty() {
                        continue;
                    }
                    a.recover(&fid(f), &agent(ag), &back, refuse.map(|r| (now, r))).unwrap();
                    let left = h.checked_sub(&back).unwrap();
                    if left.is_empty() {
                        held.remove(&(ag, f));
                    } else {
                        held.insert((ag, f), left);
                    }
                    if let Some(r) = refuse {
                        refusals.insert((f, ag), (back, now + r));
                    }
                }
            }
            // The books agree with the model after every event.
            for (i, total) in &totals {
                let used = held
                    .iter()
                    .filter(|((x, _), _)| x == i)
                    .fold(Resources::empty(), |acc, (_, r)| acc.checked_add(r).unwrap());
                prop_assert!(total.contains(&used), "agent {} over-allocated", i);
                prop_assert_eq!(a.free(&agent(*i)).unwrap(), total.checked_sub(&used).unwrap());
            }
        }
    }
}
