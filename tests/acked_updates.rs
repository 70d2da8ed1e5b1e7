//! Status updates the master acknowledged to an agent survive a SIGKILL of the leader: they are
//! in every replica's registry afterwards (the killed one too, once restarted), and the
//! framework, which had acknowledged none of them, gets every one again from the new leader.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use drover_proto::v1;
use drover_scheduler::driver::{Driver, DriverEvent, DriverOptions, EventStream, FrameworkInfo};
use tokio::time::Instant;

use common::updates::{acked_by_master, wait_holds};
use common::{next, next_offers, shell_task, start_with_agents, wait_until, LEADER_TIMEOUT};

const TASKS: usize = 8;
/// STARTING, RUNNING, FINISHED.
const UPDATES_PER_TASK: usize = 3;

/// The next driver event before `deadline`; panics when none comes in time (`what` says what
/// the test was waiting for), when the driver stopped, or on the driver's ERROR event.
async fn next_before(events: &mut EventStream, deadline: Instant, what: &str) -> DriverEvent {
    let left = deadline.saturating_duration_since(Instant::now());
    match next(events, left).await {
        Some(DriverEvent::Error(e)) => panic!("{what}: driver error: {e}"),
        Some(event) => event,
        None => panic!("{what}: no event in time, or the driver stopped"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_the_master_acknowledged_survive_a_sigkill_of_the_leader() {
    let mut c = start_with_agents(
        3,
        &[],
        1,
        &[
            "--resources",
            "cpus:4;mem:4096;disk:1024;ports:[31000-31099]",
        ],
        1,
    )
    .await;
    let (driver, mut events) = Driver::start(
        &c.addrs(),
        FrameworkInfo::new("durable"),
        DriverOptions::default(),
    )
    .expect("driver");
    let offer = next_offers(&mut events, Duration::from_secs(30))
        .await
        .expect("an offer")
        .remove(0);
    let tasks: Vec<v1::TaskInfo> = (0..TASKS)
        .map(|i| shell_task(&format!("quick-{i}"), "cpus:0.1;mem:32", "exit 0"))
        .collect();
    driver
        .accept(std::slice::from_ref(&offer.id), tasks, Some(600.0))
        .await
        .expect("accept");

    // Every update of every task acknowledged by the master to the agent (after commit).
    let work_dir = c.agent(0).unwrap().work_dir.clone();
    let acked = wait_until(
        "the master acknowledged every update",
        Duration::from_secs(60),
        || {
            let work_dir = work_dir.clone();
            async move {
                let acked = acked_by_master(&work_dir);
                let n: usize = acked.values().map(BTreeSet::len).sum();
                if acked.len() == TASKS && n == TASKS * UPDATES_PER_TASK {
                    Ok(acked)
                } else {
                    Err(format!("{n} of {} acknowledged", TASKS * UPDATES_PER_TASK))
                }
            }
        },
    )
    .await
    .unwrap();
    let want: BTreeSet<String> = acked.values().flatten().cloned().collect();
    assert_eq!(want.len(), TASKS * UPDATES_PER_TASK);

    // The old leader forwards every update to the framework, which acknowledges none. Take
    // those first deliveries off the stream now, so that none of them can pass for a
    // redelivery by the new leader below.
    let mut first: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&first) {
        match next_before(
            &mut events,
            deadline,
            "first deliveries from the old leader",
        )
        .await
        {
            DriverEvent::Update(s) => {
                first.insert(s.uuid);
            }
            DriverEvent::Offers(o) => {
                let ids: Vec<_> = o.iter().map(|o| o.id.clone()).collect();
                driver.decline(&ids, Some(600.0)).await.ok();
            }
            _ => {}
        }
    }

    // At once, SIGKILL the leader.
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let old = leader.leader_id;
    c.kill(old).await.unwrap();
    let survivors: Vec<u64> = c.masters().map(|m| m.id).filter(|&id| id != old).collect();
    let new = c
        .wait_for_leader_among(&survivors, leader.term, LEADER_TIMEOUT)
        .await
        .expect("a new leader");
    assert_ne!(new.leader_id, old);
    for id in &survivors {
        let addr = c.master(*id).unwrap().addr.clone();
        wait_holds(&addr, &acked).await;
    }

    // Whatever the old leader sent before it died (updates sent again, offers) is still
    // buffered: skip it up to the driver's resubscription to a survivor.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let event = next_before(&mut events, deadline, "resubscription to a survivor").await;
        if matches!(
            event,
            DriverEvent::Subscribed {
                resubscribed: true,
                master_id,
                ..
            } if master_id != old
        ) {
            break;
        }
    }

    // The framework acknowledged nothing: the new leader re-sends every update.
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.is_subset(&delivered) {
        match next_before(&mut events, deadline, "redeliveries from the new leader").await {
            DriverEvent::Update(s) => {
                delivered.insert(s.uuid);
            }
            DriverEvent::Offers(o) => {
                let ids: Vec<_> = o.iter().map(|o| o.id.clone()).collect();
                driver.decline(&ids, Some(600.0)).await.ok();
            }
            _ => {}
        }
    }

    // The killed replica, restarted, has them too.
    c.start_master(old).unwrap();
    let addr = c.master(old).unwrap().addr.clone();
    // `wait_holds` retries until the restarted master answers.
    wait_holds(&addr, &acked).await;
    driver.teardown().await.expect("teardown");
}
