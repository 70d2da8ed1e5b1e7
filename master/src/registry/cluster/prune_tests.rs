//! Forgetting completed tasks and frameworks: only what nobody will ask about again, oldest
//! first, and the derived index always equal to one rebuilt from scratch.

use proptest::prelude::*;

use super::tests::{accept, agent, fw, offer, status, task, task_id, with_agent_and_framework};
use super::*;

/// Launches task `id` on a fresh offer `n` for `framework` and ends it FINISHED at `at_ms`;
/// acknowledges the final update when `ack`.
fn run_to_end(s: &mut ClusterState, framework: &str, n: usize, id: &str, at_ms: u64, ack: bool) {
    s.apply(&ClusterOp::CreateOffers(vec![offer(
        n,
        framework,
        "cpus:0.01",
    )]));
    assert!(matches!(
        s.apply(&accept(framework, &[n], vec![task(id, "cpus:0.01")])),
        ClusterOutcome::Accepted { .. }
    ));
    let uuid = 10_000 + n as u128;
    let mut update = status(TaskState::Finished, uuid);
    update.at_ms = at_ms;
    assert!(matches!(
        s.apply(&ClusterOp::StatusUpdate {
            agent: agent("a1"),
            framework: fw(framework),
            task: task_id(id),
            update,
        }),
        ClusterOutcome::StatusApplied { .. }
    ));
    if ack {
        s.apply(&ClusterOp::Acknowledge {
            framework: fw(framework),
            task: task_id(id),
            uuid: uuid::Uuid::from_u128(uuid),
        });
    }
}

fn prune(s: &mut ClusterState, keep_tasks: u32, keep_frameworks: u32) -> (u64, u64) {
    match s.apply(&ClusterOp::PruneCompleted {
        keep_tasks_per_framework: keep_tasks,
        keep_completed_frameworks: keep_frameworks,
    }) {
        ClusterOutcome::Pruned { tasks, frameworks } => (tasks, frameworks.len() as u64),
        other => panic!("unexpected {other:?}"),
    }
}

/// The state as a replica loading a snapshot of it would have it.
fn reloaded(s: &ClusterState) -> ClusterState {
    let registry = crate::registry::Registry {
        store: Default::default(),
        cluster: s.clone(),
    };
    crate::registry::records::reloaded(&registry)
        .cluster()
        .clone()
}

fn ids(s: &ClusterState, framework: &str) -> Vec<String> {
    s.tasks_of(&fw(framework))
        .map(|t| t.spec.id.to_string())
        .collect()
}

#[test]
fn the_oldest_acknowledged_tasks_go_first_and_nothing_else_does() {
    let mut s = with_agent_and_framework();
    // Ended in the order t5, t4, t3, t2, t1 (by the time of their final update).
    for (i, at) in [(1, 50), (2, 40), (3, 30), (4, 20), (5, 10)] {
        run_to_end(&mut s, "f", i, &format!("t{i}"), at, true);
    }
    // Ended but not acknowledged: the framework must still get it.
    run_to_end(&mut s, "f", 6, "unacked", 1, false);
    // Live.
    s.apply(&ClusterOp::CreateOffers(vec![offer(7, "f", "cpus:1")]));
    s.apply(&accept("f", &[7], vec![task("live", "cpus:1")]));
    assert_eq!(s.completed_count(&fw("f")), 5);

    assert_eq!(prune(&mut s, 2, 50), (3, 0));
    assert_eq!(ids(&s, "f"), ["live", "t1", "t2", "unacked"]);
    assert_eq!(s.completed_count(&fw("f")), 2);
    // Nothing more to forget at this bound.
    assert_eq!(prune(&mut s, 2, 50), (0, 0));
    assert_eq!(s.completed, reloaded(&s).completed);
    assert_eq!(s.committed_on(&agent("a1")), res_of("cpus:1"));
}

fn res_of(r: &str) -> Resources {
    r.parse().unwrap()
}

#[test]
fn a_torn_down_frameworks_tasks_complete_without_acknowledgement() {
    let mut s = with_agent_and_framework();
    run_to_end(&mut s, "g", 1, "ended", 5, false);
    s.apply(&ClusterOp::CreateOffers(vec![offer(2, "g", "cpus:1")]));
    s.apply(&accept("g", &[2], vec![task("still-running", "cpus:1")]));
    assert_eq!(s.completed_count(&fw("g")), 0);
    s.apply(&ClusterOp::TeardownFramework {
        framework: fw("g"),
        if_subscribed_at_ms: None,
    });
    assert_eq!(
        s.completed_count(&fw("g")),
        1,
        "nobody will acknowledge it now"
    );
    // A live task keeps its framework.
    assert!(s.completed_frameworks().is_empty());
    assert_eq!(prune(&mut s, 1000, 0), (0, 0));
    assert!(s.framework(&fw("g")).is_some());
    // Its last task ends (killed after the teardown): the framework is completed.
    s.apply(&ClusterOp::StatusUpdate {
        agent: agent("a1"),
        framework: fw("g"),
        task: task_id("still-running"),
        update: status(TaskState::Killed, 77),
    });
    assert_eq!(s.completed_count(&fw("g")), 2);
    assert_eq!(s.completed_frameworks().len(), 1);
    assert_eq!(s.completed, reloaded(&s).completed);
    // Kept while within the bound, forgotten with its tasks beyond it.
    assert_eq!(prune(&mut s, 1000, 1), (0, 0));
    assert_eq!(prune(&mut s, 1000, 0), (2, 1));
    assert!(s.framework(&fw("g")).is_none());
    assert_eq!(s.tasks_of(&fw("g")).count(), 0);
    assert_eq!(s.completed_count(&fw("g")), 0);
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
    // The other framework is untouched.
    assert!(s.framework(&fw("f")).is_some());
}

#[test]
fn a_prune_is_due_only_a_tenth_past_a_bound() {
    let mut s = with_agent_and_framework();
    for i in 0..11 {
        run_to_end(&mut s, "f", i, &format!("t{i}"), i as u64, true);
    }
    assert!(!s.prune_due(10, 50), "11 of 10: within the slack");
    run_to_end(&mut s, "f", 11, "t11", 11, true);
    assert!(s.prune_due(10, 50));
    prune(&mut s, 10, 50);
    assert!(!s.prune_due(10, 50));
    // Frameworks: two torn down, one allowed, slack one.
    for name in ["f", "g"] {
        s.apply(&ClusterOp::TeardownFramework {
            framework: fw(name),
            if_subscribed_at_ms: None,
        });
    }
    assert!(!s.prune_due(1000, 1));
    assert!(s.prune_due(1000, 0));
}

#[test]
fn completed_frameworks_go_oldest_subscription_first() {
    let mut s = with_agent_and_framework();
    for (name, at) in [("old", 1), ("mid", 2), ("new", 3)] {
        s.apply(&ClusterOp::SubscribeFramework(FrameworkRecord {
            id: fw(name),
            name: name.into(),
            role: Role::default_role(),
            principal: String::new(),
            failover_timeout_ms: 0,
            subscribed_at_ms: at,
            torn_down: false,
            partition_aware: false,
        }));
        s.apply(&ClusterOp::TeardownFramework {
            framework: fw(name),
            if_subscribed_at_ms: None,
        });
    }
    assert_eq!(prune(&mut s, 1000, 1), (0, 2));
    assert!(s.framework(&fw("new")).is_some());
    assert!(s.framework(&fw("old")).is_none() && s.framework(&fw("mid")).is_none());
}

#[test]
fn a_steady_churn_stays_bounded() {
    let mut s = with_agent_and_framework();
    let mut prunes = 0;
    for i in 0..5_000usize {
        run_to_end(&mut s, "f", i, &format!("t{i}"), i as u64, true);
        if s.prune_due(100, 50) {
            prune(&mut s, 100, 50);
            prunes += 1;
        }
        assert!(s.tasks().count() <= 110, "{} tasks", s.tasks().count());
    }
    assert!(
        (400..=500).contains(&prunes),
        "{prunes} prunes for 5 000 tasks"
    );
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
}

proptest! {
    /// The completed index equals the one a snapshot load rebuilds, after any sequence of
    /// launches, updates, acknowledgements, teardowns and prunes; a refused operation changes
    /// nothing; pruning never forgets a live or unacknowledged task of a live framework.
    #[test]
    fn the_completed_index_matches_a_rebuild(ops in prop::collection::vec(
        (0..6u8, 0..8usize, 0..2u8, 0..3u8, 0..3u32), 1..80)
    ) {
        let mut s = with_agent_and_framework();
        let mut n = 0usize;
        for (kind, t, on, which, keep) in ops {
            let framework = if on == 0 { "f" } else { "g" };
            let op = match kind {
                0 => {
                    n += 1;
                    s.apply(&ClusterOp::CreateOffers(vec![offer(n, framework, "cpus:0.1")]));
                    accept(framework, &[n], vec![task(&format!("t{t}"), "cpus:0.1")])
                }
                1 => ClusterOp::StatusUpdate {
                    agent: agent("a1"),
                    framework: fw(framework),
                    task: task_id(&format!("t{t}")),
                    update: status(
                        [TaskState::Running, TaskState::Finished, TaskState::Failed][which as usize],
                        t as u128 * 3 + which as u128,
                    ),
                },
                2 => ClusterOp::Acknowledge {
                    framework: fw(framework),
                    task: task_id(&format!("t{t}")),
                    uuid: uuid::Uuid::from_u128(t as u128 * 3 + which as u128),
                },
                3 => ClusterOp::TeardownFramework {
                    framework: fw(framework),
                    if_subscribed_at_ms: None,
                },
                _ => ClusterOp::PruneCompleted {
                    keep_tasks_per_framework: (t % 3) as u32,
                    keep_completed_frameworks: keep,
                },
            };
            let before = s.clone();
            let outcome = s.apply(&op);
            if let ClusterOutcome::Refused(_) = outcome {
                prop_assert_eq!(&s, &before);
            }
            prop_assert_eq!(&s.completed, &reloaded(&s).completed);
            for t in before.tasks() {
                let kept = s.task(&t.framework, &t.spec.id).is_some();
                let forgettable = is_completed(t, before.framework(&t.framework));
                prop_assert!(kept || forgettable, "forgot {:?}", t.spec.id);
            }
        }
    }
}
