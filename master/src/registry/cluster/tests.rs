//! The cluster state's rules: resource safety, offers consumed once, status updates once per
//! uuid and only forward.

use proptest::prelude::*;

use super::*;

pub(super) fn res(t: &str) -> Resources {
    t.parse().unwrap()
}
pub(super) fn fw(n: &str) -> FrameworkId {
    FrameworkId::new(n).unwrap()
}
pub(super) fn agent(n: &str) -> AgentId {
    AgentId::new(n).unwrap()
}
pub(super) fn offer_id(n: usize) -> OfferId {
    OfferId::new(&format!("o{n}")).unwrap()
}
pub(super) fn task_id(n: &str) -> TaskId {
    TaskId::new(n).unwrap()
}

/// What is committed on `agent`, counted from scratch: the index must always agree.
pub(super) fn recount(s: &ClusterState, agent: &AgentId) -> Resources {
    let offers = s
        .offers()
        .filter(|o| &o.agent == agent)
        .map(|o| &o.resources);
    let tasks = s
        .tasks()
        .filter(|t| &t.agent == agent && !t.state.is_terminal())
        .map(|t| &t.spec.resources);
    offers
        .chain(tasks)
        .fold(Resources::empty(), |acc, r| acc.checked_add(r).unwrap())
}

pub(super) fn agent_record(id: &str, total: &str) -> AgentRecord {
    AgentRecord {
        id: agent(id),
        hostname: "h".into(),
        addr: "127.0.0.1:5051".into(),
        total: res(total),
        attributes: Attributes::default(),
        state: AgentState::Active,
        registered_at_ms: 0,
        state_since_ms: 0,
        draining: false,
    }
}

pub(super) fn with_agent_and_framework() -> ClusterState {
    let mut s = ClusterState::default();
    let ops = [
        ClusterOp::RegisterAgent {
            agent: agent_record("a1", "cpus:4;mem:4096;ports:[31000-31009]"),
            tasks: None,
            truncated: false,
        },
        ClusterOp::SubscribeFramework(FrameworkRecord {
            id: fw("f"),
            name: "f".into(),
            role: Role::default_role(),
            principal: String::new(),
            failover_timeout_ms: 0,
            subscribed_at_ms: 0,
            torn_down: false,
            partition_aware: false,
        }),
        ClusterOp::SubscribeFramework(FrameworkRecord {
            id: fw("g"),
            name: "g".into(),
            role: Role::default_role(),
            principal: String::new(),
            failover_timeout_ms: 0,
            subscribed_at_ms: 0,
            torn_down: false,
            partition_aware: false,
        }),
    ];
    for op in ops {
        assert!(matches!(
            s.apply(&op),
            ClusterOutcome::Done | ClusterOutcome::AgentRegistered { .. }
        ));
    }
    s
}

/// The ids CreateOffers refused.
fn refused(o: ClusterOutcome) -> Vec<OfferId> {
    match o {
        ClusterOutcome::OffersCreated { refused } => {
            refused.into_iter().map(|(id, _)| id).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn offer(n: usize, framework: &str, resources: &str) -> OfferRecord {
    OfferRecord {
        id: offer_id(n),
        framework: fw(framework),
        agent: agent("a1"),
        resources: res(resources),
        created_at_ms: 0,
        expires_at_ms: 60_000,
    }
}

pub(super) fn task(id: &str, resources: &str) -> TaskSpec {
    TaskSpec {
        id: task_id(id),
        name: id.into(),
        resources: res(resources),
        command: "true".into(),
        environment: Default::default(),
        kill_grace_ms: 0,
        extensions: None,
    }
}

pub(super) fn status(state: TaskState, uuid: u128) -> TaskStatus {
    TaskStatus {
        uuid: uuid::Uuid::from_u128(uuid),
        state,
        source: StatusSource::Executor,
        reason: String::new(),
        message: String::new(),
        exit_code: None,
        signal: None,
        at_ms: 1,
    }
}

pub(super) fn accept(framework: &str, offers: &[usize], tasks: Vec<TaskSpec>) -> ClusterOp {
    ClusterOp::Accept {
        framework: fw(framework),
        offers: offers.iter().map(|n| offer_id(*n)).collect(),
        tasks,
    }
}

#[test]
fn offers_never_exceed_the_agent() {
    let mut s = with_agent_and_framework();
    let op = ClusterOp::CreateOffers(vec![offer(1, "f", "cpus:3;mem:1024")]);
    assert!(refused(s.apply(&op)).is_empty());
    // 3 + 1 fits; one more cpu does not: that offer alone is refused.
    let op = ClusterOp::CreateOffers(vec![
        offer(2, "g", "cpus:1"),
        offer(3, "g", "cpus:1;mem:10"),
    ]);
    match s.apply(&op) {
        ClusterOutcome::OffersCreated { refused } => {
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].0, offer_id(3));
            assert!(matches!(refused[0].1, ClusterError::Overcommit { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(s.offer(&offer_id(2)).is_some());
    assert_eq!(s.committed_on(&agent("a1")), res("cpus:4;mem:1024"));
}

#[test]
fn accept_consumes_offers_once_and_creates_staging_tasks() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![offer(
        1,
        "f",
        "cpus:4;mem:4096;ports:[31000-31009]",
    )]));
    let op = accept(
        "f",
        &[1],
        vec![
            task("t1", "cpus:1;mem:128;ports:[31000-31000]"),
            task("t2", "cpus:1;mem:128"),
        ],
    );
    assert_eq!(
        s.apply(&op),
        ClusterOutcome::Accepted {
            agent: agent("a1"),
            unused: res("cpus:2;mem:3840;ports:[31001-31009]")
        }
    );
    assert_eq!(
        s.task(&fw("f"), &task_id("t1")).unwrap().state,
        TaskState::Staging
    );
    // The same offer again: not outstanding. Nothing changes.
    let before = s.clone();
    let again = accept("f", &[1], vec![task("t3", "cpus:1")]);
    assert_eq!(
        s.apply(&again),
        ClusterOutcome::Refused(ClusterError::OfferNotOutstanding(offer_id(1)))
    );
    assert_eq!(s, before);
    // The tasks hold their resources: an offer for more than is left is refused.
    let op = ClusterOp::CreateOffers(vec![offer(2, "g", "cpus:3")]);
    assert_eq!(refused(s.apply(&op)), vec![offer_id(2)]);
}

#[test]
fn accept_validates_everything_before_changing_anything() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![
        offer(1, "f", "cpus:1;mem:128"),
        offer(2, "g", "cpus:1;mem:128"),
    ]));
    let before = s.clone();
    for (op, want) in [
        (
            accept("f", &[2], vec![task("t", "cpus:1")]),
            ClusterError::OfferOfAnotherFramework { offer: offer_id(2) },
        ),
        (
            accept("f", &[1], vec![task("t", "cpus:2")]),
            ClusterError::DoesNotFit {
                need: "cpus:2".into(),
                offered: "cpus:1;mem:128".into(),
            },
        ),
        (
            accept(
                "f",
                &[1],
                vec![task("t", "cpus:0.5"), task("t", "cpus:0.5")],
            ),
            ClusterError::DuplicateTask(task_id("t")),
        ),
        (
            accept("f", &[1, 1], vec![]),
            ClusterError::OfferNotOutstanding(offer_id(1)),
        ),
        (accept("f", &[], vec![]), ClusterError::OfferCount),
        (
            accept("nobody", &[1], vec![]),
            ClusterError::UnknownFramework(fw("nobody")),
        ),
    ] {
        assert_eq!(s.apply(&op), ClusterOutcome::Refused(want));
        assert_eq!(s, before, "a refused ACCEPT changed the state");
    }
}

#[test]
fn status_updates_apply_once_per_uuid_and_only_forward() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![offer(1, "f", "cpus:1")]));
    s.apply(&accept("f", &[1], vec![task("t", "cpus:1")]));
    let update = |state, uuid: u128| ClusterOp::StatusUpdate {
        agent: agent("a1"),
        framework: fw("f"),
        task: task_id("t"),
        update: status(state, uuid),
    };
    let applied = |released: Option<&str>| ClusterOutcome::StatusApplied {
        agent: agent("a1"),
        released: released.map(res),
    };
    assert_eq!(s.apply(&update(TaskState::Running, 1)), applied(None));
    assert_eq!(
        s.apply(&update(TaskState::Running, 1)),
        ClusterOutcome::Duplicate {
            acknowledged: false
        }
    );
    assert_eq!(s.task(&fw("f"), &task_id("t")).unwrap().updates.len(), 1);
    assert_eq!(
        s.apply(&update(TaskState::Finished, 2)),
        applied(Some("cpus:1"))
    );
    assert_eq!(
        s.apply(&update(TaskState::Running, 3)),
        ClusterOutcome::Refused(ClusterError::Illegal(IllegalTransition {
            from: TaskState::Finished,
            to: TaskState::Running
        }))
    );
    // A finished task no longer holds its resources.
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
    s.apply(&ClusterOp::Acknowledge {
        framework: fw("f"),
        task: task_id("t"),
        uuid: uuid::Uuid::from_u128(2),
    });
    let t = s.task(&fw("f"), &task_id("t")).unwrap();
    assert!(t.updates.iter().any(|u| u.acknowledged));
    assert_eq!(
        s.apply(&update(TaskState::Finished, 2)),
        ClusterOutcome::Duplicate { acknowledged: true }
    );
}

/// A framework that never acknowledges cannot make the master forget an update it has not
/// seen: past the bound, new updates are refused (the agent retries them) instead.
#[test]
fn unacknowledged_updates_are_never_dropped() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![offer(1, "f", "cpus:1")]));
    s.apply(&accept("f", &[1], vec![task("t", "cpus:1")]));
    let running = |uuid: u128| ClusterOp::StatusUpdate {
        agent: agent("a1"),
        framework: fw("f"),
        task: task_id("t"),
        update: status(TaskState::Running, uuid),
    };
    for n in 0..MAX_UPDATES_PER_TASK as u128 {
        assert!(matches!(
            s.apply(&running(n)),
            ClusterOutcome::StatusApplied { .. }
        ));
    }
    assert_eq!(
        s.apply(&running(1_000)),
        ClusterOutcome::Refused(ClusterError::TooManyUnacknowledged(task_id("t")))
    );
    s.apply(&ClusterOp::Acknowledge {
        framework: fw("f"),
        task: task_id("t"),
        uuid: uuid::Uuid::from_u128(5),
    });
    assert!(matches!(
        s.apply(&running(1_000)),
        ClusterOutcome::StatusApplied { .. }
    ));
    let t = s.task(&fw("f"), &task_id("t")).unwrap();
    assert_eq!(t.updates.len(), MAX_UPDATES_PER_TASK);
    assert!(
        t.updates.iter().all(|u| !u.acknowledged),
        "only the acknowledged update was dropped"
    );
}

proptest! {
    /// Invariant 3 over random offer, accept, update and remove sequences: what is committed on
    /// the agent never exceeds its total, and a refused operation changes nothing.
    #[test]
    fn resource_safety_holds_in_every_state(ops in prop::collection::vec(
        (0..4u8, 0..6usize, 1..4u64, 0..3u8), 1..60)
    ) {
        let mut s = with_agent_and_framework();
        let total = s.agent(&agent("a1")).unwrap().total.clone();
        let mut task_n = 0;
        for (kind, n, cpus, which) in ops {
            let framework = if which == 0 { "f" } else { "g" };
            let op = match kind {
                0 => ClusterOp::CreateOffers(vec![offer(n, framework, &format!("cpus:{cpus};mem:{}", cpus * 256))]),
                1 => {
                    task_n += 1;
                    accept(framework, &[n], vec![task(&format!("t{task_n}"), &format!("cpus:{}", cpus.min(2)))])
                }
                2 => ClusterOp::StatusUpdate {
                    agent: agent("a1"),
                    framework: fw(framework),
                    task: task_id(&format!("t{}", n + 1)),
                    update: status(
                        [TaskState::Running, TaskState::Finished, TaskState::Failed][which as usize],
                        n as u128 * 7 + cpus as u128,
                    ),
                },
                _ => ClusterOp::RemoveOffers(vec![offer_id(n)]),
            };
            let before = s.clone();
            if let ClusterOutcome::Refused(_) = s.apply(&op) {
                prop_assert_eq!(&s, &before);
            }
            prop_assert_eq!(s.committed_on(&agent("a1")), recount(&s, &agent("a1")));
            prop_assert!(total.contains(&s.committed_on(&agent("a1"))));
        }
    }
}

#[test]
fn removing_offers_reports_only_those_still_outstanding() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![
        offer(1, "f", "cpus:1"),
        offer(2, "f", "cpus:1"),
    ]));
    s.apply(&accept("f", &[1], vec![]));
    match s.apply(&ClusterOp::RemoveOffers(vec![offer_id(1), offer_id(2)])) {
        ClusterOutcome::Removed(removed) => {
            let ids: Vec<_> = removed.iter().map(|o| o.id.clone()).collect();
            assert_eq!(ids, vec![offer_id(2)], "offer 1 was consumed by ACCEPT");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        s.apply(&ClusterOp::RemoveOffers(vec![offer_id(2)])),
        ClusterOutcome::Removed(vec![])
    );
}

#[test]
fn a_torn_down_framework_gets_no_offers_and_cannot_come_back() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![offer(1, "f", "cpus:1")]));
    match s.apply(&ClusterOp::TeardownFramework {
        framework: fw("f"),
        if_subscribed_at_ms: None,
    }) {
        ClusterOutcome::Removed(removed) => assert_eq!(removed.len(), 1),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
    assert_eq!(
        s.apply(&ClusterOp::CreateOffers(vec![offer(2, "f", "cpus:1")])),
        ClusterOutcome::OffersCreated {
            refused: vec![(offer_id(2), ClusterError::FrameworkTornDown(fw("f")))]
        }
    );
    let again = FrameworkRecord {
        id: fw("f"),
        name: "f".into(),
        role: Role::default_role(),
        principal: String::new(),
        failover_timeout_ms: 0,
        subscribed_at_ms: 1,
        torn_down: false,
        partition_aware: false,
    };
    assert_eq!(
        s.apply(&ClusterOp::SubscribeFramework(again)),
        ClusterOutcome::Refused(ClusterError::FrameworkTornDown(fw("f")))
    );
}

#[test]
fn tasks_of_lists_one_framework_only() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![
        offer(1, "f", "cpus:1"),
        offer(2, "g", "cpus:1"),
    ]));
    s.apply(&accept(
        "f",
        &[1],
        vec![task("a", "cpus:0.5"), task("b", "cpus:0.5")],
    ));
    s.apply(&accept("g", &[2], vec![task("a", "cpus:1")]));
    let ids: Vec<_> = s
        .tasks_of(&fw("f"))
        .map(|t| t.spec.id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(s.tasks_of(&fw("g")).count(), 1);
    assert_eq!(s.tasks_of(&fw("nobody")).count(), 0);
}

#[test]
fn updates_from_another_agent_are_refused() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![offer(1, "f", "cpus:1")]));
    s.apply(&accept("f", &[1], vec![task("t", "cpus:1")]));
    let op = ClusterOp::StatusUpdate {
        agent: agent("impostor"),
        framework: fw("f"),
        task: task_id("t"),
        update: status(TaskState::Running, 1),
    };
    assert!(matches!(
        s.apply(&op),
        ClusterOutcome::Refused(ClusterError::WrongAgent { .. })
    ));
}

#[test]
fn an_agent_leaving_active_loses_its_offers_and_takes_no_accept() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![
        offer(1, "f", "cpus:1"),
        offer(2, "f", "cpus:1"),
    ]));
    // An ACCEPT that raced the state change finds the agent unreachable.
    let mut racing = s.clone();
    racing.agents.get_mut(&agent("a1")).unwrap().state = AgentState::Unreachable;
    assert_eq!(
        racing.apply(&accept("f", &[1], vec![task("t", "cpus:1")])),
        ClusterOutcome::Refused(ClusterError::AgentNotActive(agent("a1")))
    );
    match s.apply(&ClusterOp::SetAgentState {
        agent: agent("a1"),
        state: AgentState::Unreachable,
        by_operator: false,
        if_state_since_ms: None,
    }) {
        ClusterOutcome::AgentStateSet { removed, .. } => assert_eq!(removed.len(), 2),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(s.committed_on(&agent("a1")), Resources::empty());
}

#[test]
fn re_registration_drops_offers_and_refuses_shrinking_below_live_tasks() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![
        offer(1, "f", "cpus:2"),
        offer(2, "f", "cpus:2"),
    ]));
    s.apply(&accept("f", &[1], vec![task("t", "cpus:2")]));
    let mut a = s.agent(&agent("a1")).unwrap().clone();
    a.total = res("cpus:1;mem:4096");
    let before = s.clone();
    assert!(matches!(
        s.apply(&ClusterOp::RegisterAgent {
            agent: a.clone(),
            tasks: None,
            truncated: false,
        }),
        ClusterOutcome::Refused(ClusterError::ShrunkBelowTasks { .. })
    ));
    assert_eq!(s, before);
    a.total = res("cpus:8;mem:4096");
    match s.apply(&ClusterOp::RegisterAgent {
        agent: a,
        tasks: None,
        truncated: false,
    }) {
        ClusterOutcome::AgentRegistered { removed, .. } => {
            assert_eq!(removed.len(), 1, "offer 2 dropped")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(s.committed_on(&agent("a1")), res("cpus:2"));
}

#[test]
fn task_extensions_survive_the_log_and_snapshots_and_old_entries_read_as_before() {
    let mut s = with_agent_and_framework();
    s.apply(&ClusterOp::CreateOffers(vec![offer(
        1,
        "f",
        "cpus:4;mem:4096",
    )]));
    let ext = TaskExtensions(vec![1, 2, 3]);
    let op = ClusterOp::AcceptExtended {
        framework: fw("f"),
        offers: vec![offer_id(1)],
        tasks: vec![task("t1", "cpus:1"), task("t2", "cpus:1")],
        extensions: vec![Some(ext.clone()), None],
    };
    // Through the log's encoding: the extensions travel beside the specs.
    let bytes = postcard::to_stdvec(&op).unwrap();
    let decoded: ClusterOp = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, op);
    assert!(matches!(s.apply(&decoded), ClusterOutcome::Accepted { .. }));
    let spec = |t: &str| s.task(&fw("f"), &task_id(t)).unwrap().spec.clone();
    assert_eq!(spec("t1").extensions, Some(ext.clone()));
    assert_eq!(spec("t2").extensions, None);
    // Entries written before extensions keep their encoding: ACCEPT is still variant 7, and a
    // spec encodes without its extensions; the new variant comes last.
    let old = postcard::to_stdvec(&accept("f", &[1], vec![spec("t1")])).unwrap();
    assert_eq!(old[0], 7);
    let plain = postcard::to_stdvec(&accept("f", &[1], vec![task("t1", "cpus:1")])).unwrap();
    assert_eq!(old, plain);
    assert_eq!(bytes[0], 11);
    // Snapshots: the registry read back from its records holds the extensions.
    let registry = crate::registry::Registry {
        store: Default::default(),
        cluster: s.clone(),
    };
    let back = crate::registry::records::reloaded(&registry);
    assert_eq!(back, registry);
    assert_eq!(
        back.cluster
            .task(&fw("f"), &task_id("t1"))
            .unwrap()
            .spec
            .extensions,
        Some(ext)
    );
}

#[test]
fn changes_between_versions_are_what_the_operations_touched() {
    let before = with_agent_and_framework();
    let mut after = before.clone();
    after.apply(&ClusterOp::RegisterAgent {
        agent: agent_record("a2", "cpus:1;mem:64"),
        tasks: None,
        truncated: false,
    });
    let added: Vec<_> = before.agent_changes(&after).collect();
    assert!(
        matches!(added.as_slice(), [Change::Added(a)] if a.id == agent("a2")),
        "{added:?}"
    );
    assert_eq!(before.framework_changes(&after).count(), 0);
    assert_eq!(before.task_changes(&after).count(), 0);
    let removed: Vec<_> = after.agent_changes(&before).collect();
    assert!(
        matches!(removed.as_slice(), [Change::Removed(a)] if a.id == agent("a2")),
        "{removed:?}"
    );
    assert_eq!(before.agent_changes(&before.clone()).count(), 0);
}
