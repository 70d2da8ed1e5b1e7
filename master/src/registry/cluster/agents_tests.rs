//! Agent lifecycle in the registry: unreachable, gone, draining, and the reconciliation of a
//! re-registering agent's task report (see `agents`).

use proptest::prelude::*;

use super::agents::reason;
use super::tests::{
    accept, agent, agent_record, fw, offer, recount, res, status, task, task_id,
    with_agent_and_framework,
};
use super::*;

/// `with_agent_and_framework`, with framework `f` partition-aware (`g` is not).
fn cluster() -> ClusterState {
    let mut s = with_agent_and_framework();
    let mut f = s.framework(&fw("f")).unwrap().clone();
    f.partition_aware = true;
    assert_eq!(
        s.apply(&ClusterOp::SubscribeFramework(f)),
        ClusterOutcome::Done
    );
    s
}

/// Launches `id` for `framework` on a1 (from a fresh offer `n`) and moves it to `state`.
fn launch(s: &mut ClusterState, n: usize, framework: &str, id: &str, state: TaskState) {
    s.apply(&ClusterOp::CreateOffers(vec![offer(
        n, framework, "cpus:0.5",
    )]));
    assert!(matches!(
        s.apply(&accept(framework, &[n], vec![task(id, "cpus:0.5")])),
        ClusterOutcome::Accepted { .. }
    ));
    if state != TaskState::Staging {
        let op = ClusterOp::StatusUpdate {
            agent: agent("a1"),
            framework: fw(framework),
            task: task_id(id),
            update: status(state, n as u128 + 1000),
        };
        assert!(matches!(s.apply(&op), ClusterOutcome::StatusApplied { .. }));
    }
}

fn state_of(s: &ClusterState, framework: &str, id: &str) -> TaskState {
    s.task(&fw(framework), &task_id(id)).unwrap().state
}

fn set_state(agent_id: &str, state: AgentState, by_operator: bool) -> ClusterOp {
    ClusterOp::SetAgentState {
        agent: agent(agent_id),
        state,
        by_operator,
        if_state_since_ms: None,
    }
}

fn reported(framework: &str, id: &str, state: TaskState) -> ReportedTask {
    ReportedTask {
        framework: fw(framework),
        task: task_id(id),
        state,
    }
}

fn reregister(tasks: Vec<ReportedTask>) -> ClusterOp {
    ClusterOp::RegisterAgent {
        agent: agent_record("a1", "cpus:4;mem:4096;ports:[31000-31009]"),
        tasks: Some(tasks),
        truncated: false,
    }
}

/// The live index agrees with a scan of every task.
fn check_live_index(s: &ClusterState) {
    for a in s.agents() {
        let mut indexed: Vec<_> = s.live_tasks_on(&a.id).map(|t| t.spec.id.clone()).collect();
        let mut scanned: Vec<_> = s
            .tasks()
            .filter(|t| t.agent == a.id && !t.state.is_terminal())
            .map(|t| t.spec.id.clone())
            .collect();
        indexed.sort();
        scanned.sort();
        assert_eq!(indexed, scanned, "live index of {}", a.id);
    }
}

#[test]
fn an_unreachable_agents_tasks_become_unreachable_or_lost_by_capability() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "aware", TaskState::Running);
    launch(&mut s, 2, "g", "plain", TaskState::Running);
    s.apply(&ClusterOp::CreateOffers(vec![offer(3, "g", "cpus:1")]));
    let op = set_state("a1", AgentState::Unreachable, false);
    // Every replica applying the same entry makes the same updates (uuids included).
    let stamp = Stamp {
        index: 77,
        position: 2,
        now_ms: 5_000,
    };
    let mut replica = s.clone();
    let outcome = s.apply_at(&op, &stamp);
    assert_eq!(replica.apply_at(&op, &stamp), outcome);
    assert_eq!(replica, s);
    let ClusterOutcome::AgentStateSet { removed, updates } = outcome else {
        panic!("unexpected {outcome:?}")
    };
    assert_eq!(removed.len(), 1, "its offer is removed");
    assert_eq!(updates.len(), 2);
    for u in &updates {
        assert_eq!(u.update.source, StatusSource::Master);
        assert_eq!(u.update.reason, reason::AGENT_UNREACHABLE);
        assert_eq!(u.update.at_ms, 5_000);
    }
    assert_ne!(updates[0].update.uuid, updates[1].update.uuid);
    assert_eq!(state_of(&s, "f", "aware"), TaskState::Unreachable);
    assert_eq!(state_of(&s, "g", "plain"), TaskState::Lost);
    // The UNREACHABLE task may still run: its resources stay held; the LOST one's do not.
    assert_eq!(s.committed_on(&agent("a1")), res("cpus:0.5"));
    assert_eq!(s.committed_on(&agent("a1")), recount(&s, &agent("a1")));
    let lost = updates.iter().find(|u| u.task == task_id("plain")).unwrap();
    assert_eq!(lost.released, Some(res("cpus:0.5")));
    check_live_index(&s);
    // No offers and no ACCEPT on it while unreachable; marking it again changes nothing.
    assert_eq!(
        s.apply(&set_state("a1", AgentState::Unreachable, false)),
        ClusterOutcome::AgentStateSet {
            removed: vec![],
            updates: vec![]
        }
    );
}

#[test]
fn re_registration_reconciles_the_agents_report() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "staging", TaskState::Staging);
    launch(&mut s, 2, "f", "forgotten", TaskState::Running);
    launch(&mut s, 3, "g", "forgotten-plain", TaskState::Running);
    launch(&mut s, 4, "f", "fine", TaskState::Running);
    launch(&mut s, 7, "f", "ended-meanwhile", TaskState::Running);
    // A re-registration after a leader change (the agent never left).
    let outcome = s.apply(&reregister(vec![
        reported("f", "fine", TaskState::Running),
        reported("f", "never-launched", TaskState::Running),
        reported("f", "ended-meanwhile", TaskState::Finished),
        reported("g", "finished-long-ago", TaskState::Finished),
    ]));
    let ClusterOutcome::AgentRegistered {
        removed,
        updates,
        relaunch,
        kill,
    } = outcome
    else {
        panic!("unexpected {outcome:?}")
    };
    assert!(removed.is_empty());
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Active);
    // STAGING and not on the agent: its launch is sent again, the task left alone.
    assert_eq!(relaunch.len(), 1);
    assert_eq!(relaunch[0].1.id, task_id("staging"));
    assert_eq!(state_of(&s, "f", "staging"), TaskState::Staging);
    // Running and not on the agent: DROPPED (partition-aware) or LOST.
    assert_eq!(state_of(&s, "f", "forgotten"), TaskState::Dropped);
    assert_eq!(state_of(&s, "g", "forgotten-plain"), TaskState::Lost);
    assert_eq!(state_of(&s, "f", "fine"), TaskState::Running);
    // The agent's own terminal update is on its way: the registry waits for it.
    assert_eq!(state_of(&s, "f", "ended-meanwhile"), TaskState::Running);
    let mut made: Vec<(String, TaskState)> = updates
        .iter()
        .map(|u| (u.task.to_string(), u.update.state))
        .collect();
    made.sort();
    assert_eq!(
        made,
        vec![
            ("forgotten".into(), TaskState::Dropped),
            ("forgotten-plain".into(), TaskState::Lost),
        ]
    );
    assert!(updates
        .iter()
        .all(|u| u.update.reason == reason::TASK_UNKNOWN_TO_AGENT));
    // What runs there and must not: the task the registry never had (a terminal one is
    // left alone).
    let kill: Vec<String> = kill.iter().map(|(_, t)| t.to_string()).collect();
    assert_eq!(kill, ["never-launched"]);
    assert_eq!(s.committed_on(&agent("a1")), recount(&s, &agent("a1")));
    check_live_index(&s);
}

#[test]
fn an_agent_back_from_a_partition_resumes_aware_tasks_and_kills_lost_ones() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "partitioned", TaskState::Running);
    launch(&mut s, 2, "g", "lost-while-away", TaskState::Running);
    launch(&mut s, 3, "f", "died-while-away", TaskState::Running);
    s.apply(&set_state("a1", AgentState::Unreachable, false));
    assert_eq!(state_of(&s, "f", "partitioned"), TaskState::Unreachable);
    assert_eq!(state_of(&s, "g", "lost-while-away"), TaskState::Lost);
    let outcome = s.apply(&reregister(vec![
        reported("f", "partitioned", TaskState::Running),
        reported("g", "lost-while-away", TaskState::Running),
    ]));
    let ClusterOutcome::AgentRegistered { updates, kill, .. } = outcome else {
        panic!("unexpected {outcome:?}")
    };
    assert_eq!(state_of(&s, "f", "partitioned"), TaskState::Running);
    assert_eq!(state_of(&s, "f", "died-while-away"), TaskState::Dropped);
    let back = updates
        .iter()
        .find(|u| u.task == task_id("partitioned"))
        .unwrap();
    assert_eq!(back.update.reason, reason::AGENT_REREGISTERED);
    assert_eq!(back.released, None);
    let kill: Vec<String> = kill.iter().map(|(_, t)| t.to_string()).collect();
    assert_eq!(kill, ["lost-while-away"]);
    assert_eq!(s.committed_on(&agent("a1")), recount(&s, &agent("a1")));
    check_live_index(&s);
}

#[test]
fn a_gone_agent_ends_its_tasks_and_never_comes_back() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "aware", TaskState::Running);
    launch(&mut s, 2, "g", "plain", TaskState::Starting);
    let ClusterOutcome::AgentStateSet { updates, .. } =
        s.apply(&set_state("a1", AgentState::Gone, true))
    else {
        panic!("not set")
    };
    assert_eq!(updates.len(), 2);
    assert_eq!(state_of(&s, "f", "aware"), TaskState::GoneByOperator);
    assert_eq!(state_of(&s, "g", "plain"), TaskState::Lost);
    assert!(updates
        .iter()
        .all(|u| u.update.reason == reason::AGENT_REMOVED_BY_OPERATOR));
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
    let before = s.clone();
    assert_eq!(
        s.apply(&reregister(vec![])),
        ClusterOutcome::Refused(ClusterError::AgentGone(agent("a1")))
    );
    assert_eq!(
        s.apply(&set_state("a1", AgentState::Active, true)),
        ClusterOutcome::Refused(ClusterError::AgentGone(agent("a1")))
    );
    assert_eq!(s, before);
    check_live_index(&s);
}

#[test]
fn an_unreachable_agent_removed_by_timeout_ends_its_unreachable_tasks() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "aware", TaskState::Running);
    s.apply(&set_state("a1", AgentState::Unreachable, false));
    assert_eq!(state_of(&s, "f", "aware"), TaskState::Unreachable);
    s.apply(&set_state("a1", AgentState::Gone, false));
    assert_eq!(state_of(&s, "f", "aware"), TaskState::Gone);
    let t = s.task(&fw("f"), &task_id("aware")).unwrap();
    assert_eq!(
        t.updates.last().unwrap().update.reason,
        reason::AGENT_REMOVED
    );
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
}

#[test]
fn agent_state_changes_follow_the_maintenance_rules() {
    let mut s = cluster();
    s.apply(&ClusterOp::CreateOffers(vec![offer(1, "f", "cpus:1")]));
    // Draining: no offers, no new ones; its state survives a re-registration.
    let ClusterOutcome::AgentStateSet { removed, .. } =
        s.apply(&set_state("a1", AgentState::Draining, true))
    else {
        panic!("not set")
    };
    assert_eq!(removed.len(), 1);
    assert!(matches!(
        s.apply(&ClusterOp::CreateOffers(vec![offer(2, "f", "cpus:1")])),
        ClusterOutcome::OffersCreated { refused } if refused.len() == 1
    ));
    s.apply(&reregister(vec![]));
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Draining);
    // Undrain.
    s.apply(&set_state("a1", AgentState::Active, true));
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Active);
    // An unreachable agent becomes active only by registering.
    s.apply(&set_state("a1", AgentState::Unreachable, false));
    for to in [AgentState::Active, AgentState::Draining] {
        assert!(matches!(
            s.apply(&set_state("a1", to, true)),
            ClusterOutcome::Refused(ClusterError::AgentTransition { .. })
        ));
    }
    s.apply(&reregister(vec![]));
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Active);
    assert_eq!(
        s.apply(&set_state("nobody", AgentState::Draining, true)),
        ClusterOutcome::Refused(ClusterError::UnknownAgent(agent("nobody")))
    );
}

/// a1 registers again, reporting its task running: it comes back deactivated.
fn reregistered_still_deactivated(s: &mut ClusterState) {
    s.apply(&reregister(vec![reported(
        "f",
        "aware",
        TaskState::Running,
    )]));
    assert_eq!(
        s.agent(&agent("a1")).unwrap().state,
        AgentState::Deactivated
    );
}

#[test]
fn a_deactivated_agent_gets_no_offers_keeps_its_tasks_and_stays_deactivated_until_reactivated() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "aware", TaskState::Running);
    s.apply(&ClusterOp::CreateOffers(vec![offer(2, "f", "cpus:1")]));
    let ClusterOutcome::AgentStateSet { removed, updates } =
        s.apply(&set_state("a1", AgentState::Deactivated, true))
    else {
        panic!("not set")
    };
    assert_eq!(
        (removed.len(), updates.len()),
        (1, 0),
        "offers go, tasks stay"
    );
    assert_eq!(state_of(&s, "f", "aware"), TaskState::Running);
    assert!(matches!(
        s.apply(&ClusterOp::CreateOffers(vec![offer(3, "f", "cpus:1")])),
        ClusterOutcome::OffersCreated { refused } if refused.len() == 1
    ));
    // Kept across a re-registration, an UNREACHABLE spell and a snapshot.
    reregistered_still_deactivated(&mut s);
    s.apply(&set_state("a1", AgentState::Unreachable, false));
    let registry = crate::registry::Registry {
        cluster: s.clone(),
        ..Default::default()
    };
    let s2 = crate::registry::records::reloaded(&registry).cluster;
    assert_eq!(s2, s, "the deactivation is in the snapshot's records");
    s = s2;
    reregistered_still_deactivated(&mut s);
    // Deactivating a draining agent changes nothing; draining a deactivated one drains it.
    s.apply(&set_state("a1", AgentState::Draining, true));
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Draining);
    s.apply(&set_state("a1", AgentState::Deactivated, true));
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Draining);
    // Reactivated: offers again, and a later re-registration leaves it active.
    s.apply(&set_state("a1", AgentState::Active, true));
    s.apply(&set_state("a1", AgentState::Deactivated, true));
    s.apply(&set_state("a1", AgentState::Active, true));
    s.apply(&reregister(vec![reported(
        "f",
        "aware",
        TaskState::Running,
    )]));
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Active);
    assert!(matches!(
        s.apply(&ClusterOp::CreateOffers(vec![offer(4, "f", "cpus:1")])),
        ClusterOutcome::OffersCreated { refused } if refused.is_empty()
    ));
    assert_eq!(state_of(&s, "f", "aware"), TaskState::Running);
}

#[test]
fn a_timeout_decided_before_a_registration_is_superseded_by_it() {
    let mut s = cluster();
    launch(&mut s, 1, "g", "plain", TaskState::Running);
    // The leader saw the agent in its state since `since` and decided it timed out; the
    // agent's registration commits first.
    let since = s.agent(&agent("a1")).unwrap().state_since_ms;
    s.apply(&reregister(vec![reported(
        "g",
        "plain",
        TaskState::Running,
    )]));
    let before = s.clone();
    let stale = ClusterOp::SetAgentState {
        agent: agent("a1"),
        state: AgentState::Unreachable,
        by_operator: false,
        if_state_since_ms: Some(since),
    };
    assert!(matches!(
        s.apply(&stale),
        ClusterOutcome::Refused(ClusterError::Superseded(_))
    ));
    assert_eq!(s, before, "the healthy agent's task is not lost");
    // Decided on the current state, it applies.
    let now = s.agent(&agent("a1")).unwrap().state_since_ms;
    let current = ClusterOp::SetAgentState {
        agent: agent("a1"),
        state: AgentState::Unreachable,
        by_operator: false,
        if_state_since_ms: Some(now),
    };
    assert!(matches!(
        s.apply(&current),
        ClusterOutcome::AgentStateSet { .. }
    ));
    assert_eq!(state_of(&s, "g", "plain"), TaskState::Lost);
}

#[test]
fn a_failover_teardown_does_not_undo_a_newer_subscription() {
    let mut s = cluster();
    let mut f = s.framework(&fw("g")).unwrap().clone();
    let seen = f.subscribed_at_ms;
    f.subscribed_at_ms = seen + 10;
    s.apply(&ClusterOp::SubscribeFramework(f));
    let op = ClusterOp::TeardownFramework {
        framework: fw("g"),
        if_subscribed_at_ms: Some(seen),
    };
    assert!(matches!(
        s.apply(&op),
        ClusterOutcome::Refused(ClusterError::Superseded(_))
    ));
    assert!(!s.framework(&fw("g")).unwrap().torn_down);
}

#[test]
fn a_drained_agent_stays_draining_across_a_partition_and_gets_nothing_relaunched() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "never-started", TaskState::Staging);
    s.apply(&set_state("a1", AgentState::Draining, true));
    s.apply(&set_state("a1", AgentState::Unreachable, false));
    // The STAGING task became UNREACHABLE (partition-aware); back without it, it is dropped.
    let ClusterOutcome::AgentRegistered { relaunch, .. } = s.apply(&reregister(vec![])) else {
        panic!("not registered")
    };
    assert_eq!(s.agent(&agent("a1")).unwrap().state, AgentState::Draining);
    assert!(relaunch.is_empty());
    assert_eq!(state_of(&s, "f", "never-started"), TaskState::Dropped);
    s.apply(&set_state("a1", AgentState::Active, true));
    assert!(!s.agent(&agent("a1")).unwrap().draining);
}

#[test]
fn a_truncated_report_takes_no_missing_task_for_lost() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "reported", TaskState::Running);
    launch(&mut s, 2, "f", "cut-from-the-report", TaskState::Running);
    let op = ClusterOp::RegisterAgent {
        agent: agent_record("a1", "cpus:4;mem:4096;ports:[31000-31009]"),
        tasks: Some(vec![reported("f", "reported", TaskState::Running)]),
        truncated: true,
    };
    let ClusterOutcome::AgentRegistered { updates, .. } = s.apply(&op) else {
        panic!("not registered")
    };
    assert!(updates.is_empty());
    assert_eq!(state_of(&s, "f", "cut-from-the-report"), TaskState::Running);
}

#[test]
fn a_flapping_agent_does_not_grow_a_task_without_bound() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "flaps", TaskState::Running);
    for _ in 0..(3 * MAX_UPDATES_PER_TASK) {
        s.apply(&set_state("a1", AgentState::Unreachable, false));
        s.apply(&reregister(vec![reported(
            "f",
            "flaps",
            TaskState::Running,
        )]));
    }
    let t = s.task(&fw("f"), &task_id("flaps")).unwrap();
    assert_eq!(t.state, TaskState::Running);
    assert!(
        t.updates.len() <= MAX_UPDATES_PER_TASK,
        "{} updates kept",
        t.updates.len()
    );
    // The agent's own updates, never acknowledged, are all still there.
    assert!(t
        .updates
        .iter()
        .any(|u| u.update.source == StatusSource::Executor));
}

#[test]
fn a_stored_state_loads_with_its_live_index() {
    let mut s = cluster();
    launch(&mut s, 1, "f", "a", TaskState::Running);
    launch(&mut s, 2, "g", "b", TaskState::Running);
    launch(&mut s, 3, "g", "c", TaskState::Finished);
    let bytes = postcard::to_stdvec(&s).unwrap();
    let loaded: ClusterState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(loaded, s, "the live index is rebuilt to the same");
    assert_eq!(loaded.live_tasks_on(&agent("a1")).count(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens to agents and tasks, the indexes match a recount, resources stay
    /// within the agent, a refused operation changes nothing, and no update leaves a
    /// terminal state.
    #[test]
    fn agent_lifecycle_keeps_every_rule(ops in prop::collection::vec(
        (0..7u8, 0..6usize, 0..3u8), 1..60)
    ) {
        let mut s = cluster();
        let total = s.agent(&agent("a1")).unwrap().total.clone();
        let mut next_task = 0;
        for (kind, n, which) in ops {
            let framework = if which == 0 { "f" } else { "g" };
            let op = match kind {
                0 => ClusterOp::CreateOffers(vec![offer(n, framework, "cpus:0.5")]),
                1 => {
                    next_task += 1;
                    accept(framework, &[n], vec![task(&format!("t{next_task}"), "cpus:0.5")])
                }
                2 => ClusterOp::StatusUpdate {
                    agent: agent("a1"),
                    framework: fw(framework),
                    task: task_id(&format!("t{}", n + 1)),
                    update: status(
                        [TaskState::Running, TaskState::Finished, TaskState::Killing][which as usize],
                        (n as u128) << 8 | next_task as u128,
                    ),
                },
                3 => set_state("a1", AgentState::Unreachable, false),
                4 => set_state("a1", [AgentState::Draining, AgentState::Active, AgentState::Gone][which as usize], true),
                5 => reregister(
                    (0..n).map(|i| reported(framework, &format!("t{}", i + 1), TaskState::Running)).collect(),
                ),
                _ => ClusterOp::RemoveOffers(vec![super::tests::offer_id(n)]),
            };
            let before = s.clone();
            let terminal_before: Vec<_> = s.tasks().filter(|t| t.state.is_terminal()).map(|t| (t.framework.clone(), t.spec.id.clone(), t.state)).collect();
            if let ClusterOutcome::Refused(_) = s.apply(&op) {
                prop_assert_eq!(&s, &before);
            }
            for (f, id, state) in terminal_before {
                prop_assert_eq!(s.task(&f, &id).unwrap().state, state, "a terminal task moved");
            }
            prop_assert_eq!(s.committed_on(&agent("a1")), recount(&s, &agent("a1")));
            prop_assert!(total.contains(&s.committed_on(&agent("a1"))));
            check_live_index(&s);
        }
    }
}
