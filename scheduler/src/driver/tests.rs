//! The driver against the in-process fake master.

use std::time::Duration;

use drover_proto::v1::{self, event};
use tonic::Status;

use super::*;
use crate::fake_master::{self, FakeConfig, FakeMaster, FRAMEWORK_ID, TEST_DEADLINE};

fn fast_options() -> DriverOptions {
    DriverOptions {
        call_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(2),
        subscribe_timeout: Duration::from_secs(5),
        resubscribe_backoff_start: Duration::from_millis(20),
        resubscribe_backoff_max: Duration::from_millis(200),
        ..DriverOptions::default()
    }
}

async fn next(events: &mut EventStream) -> Option<DriverEvent> {
    tokio::time::timeout(TEST_DEADLINE, events.next_event())
        .await
        .expect("timed out waiting for a driver event")
}

async fn subscribed(events: &mut EventStream) -> (FrameworkId, bool) {
    match next(events).await {
        Some(DriverEvent::Subscribed {
            framework_id,
            resubscribed,
            ..
        }) => (framework_id, resubscribed),
        other => panic!("expected Subscribed, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_before_subscribed_fail_with_not_subscribed() {
    // Nothing listens on port 1: the driver keeps trying to subscribe.
    let (driver, _events) = Driver::start(
        &["127.0.0.1:1".to_string()],
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .expect("start");
    let r = driver
        .accept(&[OfferId::from("o1")], vec![], None)
        .await
        .unwrap_err();
    assert!(matches!(r, DriverError::NotSubscribed), "{r:?}");
    assert!(matches!(
        driver.suppress().await,
        Err(DriverError::NotSubscribed)
    ));
    assert_eq!(driver.framework_id(), None);
    assert!(matches!(
        driver.teardown().await,
        Err(DriverError::NotSubscribed)
    ));
    driver.stop().await;
}

/// The master's bounds on an ACCEPT are the driver's: refused before anything is sent.
#[tokio::test]
async fn an_accept_over_the_master_s_bounds_is_refused_before_it_is_sent() {
    let (driver, _events) = Driver::start(
        &["127.0.0.1:1".to_string()],
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .expect("start");
    let offers: Vec<OfferId> = (0..=drover_model::limits::MAX_OFFERS_PER_ACCEPT)
        .map(|i| OfferId::from(format!("o{i}").as_str()))
        .collect();
    let r = driver.accept(&offers, vec![], None).await.unwrap_err();
    assert!(
        matches!(
            r,
            DriverError::InvalidArgument {
                field: "offer_ids",
                ..
            }
        ),
        "{r:?}"
    );
    let tasks = vec![TaskInfo::default(); drover_model::limits::MAX_TASKS_PER_ACCEPT + 1];
    let r = driver
        .accept(&[OfferId::from("o1")], tasks, None)
        .await
        .unwrap_err();
    assert!(
        matches!(r, DriverError::InvalidArgument { field: "tasks", .. }),
        "{r:?}"
    );
    driver.stop().await;
}

#[tokio::test]
async fn subscribes_stamps_calls_and_forwards_events() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let (driver, mut events) = Driver::start(
        std::slice::from_ref(&fake.addr),
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    let (id, again) = subscribed(&mut events).await;
    assert_eq!(id.as_str(), FRAMEWORK_ID);
    assert!(!again);
    assert_eq!(driver.framework_id(), Some(id));

    fake.push(fake_master::offers(vec![
        fake_master::offer("o1", "cpus:1;mem:128;ports:[31000-31009]"),
        // Unreadable resources: declined by the driver itself, not forwarded.
        v1::Offer {
            id: "bad".into(),
            resources: vec![v1::Resource {
                name: "cpus".into(),
                value: Some(v1::resource::Value::Scalar(-1.0)),
            }],
            ..Default::default()
        },
    ]))
    .await;
    match next(&mut events).await {
        Some(DriverEvent::Offers(o)) => {
            assert_eq!(o.len(), 1);
            assert_eq!(o[0].id.as_str(), "o1");
            assert_eq!(o[0].resources.ports().count(), 10);
        }
        other => panic!("expected offers, got {other:?}"),
    }
    fake.wait_for("the bad offer declined", |c| {
        c.declines.iter().any(|d| d.offer_ids == ["bad"])
    })
    .await;

    fake.push(event::Event::Heartbeat(v1::Heartbeat {})).await;
    fake.push(event::Event::Rescind(v1::Rescind {
        offer_id: "o1".into(),
    }))
    .await;
    assert_eq!(
        next(&mut events).await,
        Some(DriverEvent::Rescind(OfferId::from("o1")))
    );

    driver
        .decline(&[OfferId::from("o1")], Some(5.0))
        .await
        .unwrap();
    driver
        .kill(&TaskId::from("t1"), Some(Duration::from_secs(2)))
        .await
        .unwrap();
    let status = v1::TaskStatus {
        task_id: "t1".into(),
        uuid: "u1".into(),
        ..Default::default()
    };
    driver.acknowledge(&status).await.unwrap();
    // No uuid: nothing to acknowledge, no call.
    driver
        .acknowledge(&v1::TaskStatus {
            task_id: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    driver.reconcile(&[]).await.unwrap();
    driver.revive().await.unwrap();
    let calls = fake.calls();
    let d = calls
        .declines
        .iter()
        .find(|d| d.offer_ids == ["o1"])
        .unwrap();
    assert_eq!(d.refuse_seconds, Some(5.0));
    assert_eq!(
        d.caller.as_ref().map(|c| c.stream_id.as_str()),
        Some("stream-1")
    );
    assert_eq!(calls.kills[0].grace_seconds, Some(2.0));
    assert_eq!(calls.ack_uuids(), ["u1"]);
    assert_eq!(calls.reconciles.len(), 1);
    assert_eq!(calls.revives.len(), 1);

    driver.teardown().await.unwrap();
    assert_eq!(fake.calls().teardowns.len(), 1);
    assert_eq!(
        next(&mut events).await,
        None,
        "the driver stops after teardown"
    );
    assert!(matches!(driver.revive().await, Err(DriverError::Stopped)));
}

#[tokio::test]
async fn silent_stream_is_given_up_and_resubscribed_with_the_framework_id() {
    let fake = FakeMaster::start(FakeConfig {
        heartbeat_seconds: 0.1,
        ..FakeConfig::default()
    })
    .await;
    let (driver, mut events) = Driver::start(
        std::slice::from_ref(&fake.addr),
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    subscribed(&mut events).await;
    // The fake sends no heartbeat: after 3 intervals the driver gives up on the stream.
    match next(&mut events).await {
        Some(DriverEvent::Disconnected { reason }) => {
            assert!(reason.contains("heartbeat"), "{reason}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    let (id, again) = subscribed(&mut events).await;
    assert!(again);
    assert_eq!(id.as_str(), FRAMEWORK_ID);
    let calls = fake.calls();
    assert_eq!(calls.subscribes.len(), 2);
    let first = calls.subscribes[0].framework.as_ref().unwrap();
    let second = calls.subscribes[1].framework.as_ref().unwrap();
    assert_eq!(first.id, "");
    assert_eq!(second.id, FRAMEWORK_ID);
    assert_eq!(second.name, "t");
    // Calls now name the new stream.
    driver.suppress().await.unwrap();
    assert_eq!(
        fake.calls().suppresses[0]
            .caller
            .as_ref()
            .unwrap()
            .stream_id,
        "stream-2"
    );
    driver.stop().await;
}

#[tokio::test]
async fn ambiguous_accept_is_surfaced_and_never_repeated() {
    let fake = FakeMaster::start(FakeConfig {
        accept_error: Some(Status::internal("raft proposal dropped")),
        ..FakeConfig::default()
    })
    .await;
    let (driver, mut events) = Driver::start(
        std::slice::from_ref(&fake.addr),
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    subscribed(&mut events).await;
    let r = driver
        .accept(&[OfferId::from("o1")], vec![v1::TaskInfo::default()], None)
        .await;
    assert!(matches!(r, Err(DriverError::Ambiguous(_))), "{r:?}");
    assert_eq!(fake.calls().accepts.len(), 1);
    driver.stop().await;
}

#[tokio::test]
async fn calls_during_resubscription_wait_for_the_new_stream() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let (driver, mut events) = Driver::start(
        std::slice::from_ref(&fake.addr),
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    subscribed(&mut events).await;
    fake.close_stream();
    assert!(matches!(
        next(&mut events).await,
        Some(DriverEvent::Disconnected { .. })
    ));
    // The driver is re-subscribing: the call waits for the new stream and lands once, on it.
    driver
        .accept(&[OfferId::from("o1")], vec![v1::TaskInfo::default()], None)
        .await
        .unwrap();
    let calls = fake.calls();
    assert_eq!(calls.accepts.len(), 1);
    assert_eq!(
        calls.accepts[0].caller.as_ref().unwrap().stream_id,
        "stream-2"
    );
    driver.stop().await;
}

#[tokio::test]
async fn error_event_stops_the_driver() {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let (driver, mut events) = Driver::start(
        std::slice::from_ref(&fake.addr),
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    subscribed(&mut events).await;
    fake.push(event::Event::Error(v1::Error {
        message: "framework removed".into(),
    }))
    .await;
    assert_eq!(
        next(&mut events).await,
        Some(DriverEvent::Error("framework removed".into()))
    );
    assert_eq!(next(&mut events).await, None);
    assert!(matches!(driver.suppress().await, Err(DriverError::Stopped)));
    assert_eq!(
        fake.calls().subscribes.len(),
        1,
        "no re-subscription after ERROR"
    );
}

#[tokio::test]
async fn follows_a_followers_redirect_to_the_leader() {
    let leader = FakeMaster::start(FakeConfig {
        master_id: 2,
        ..FakeConfig::default()
    })
    .await;
    let follower = FakeMaster::start(FakeConfig {
        redirect_to: Some(leader.addr.clone()),
        ..FakeConfig::default()
    })
    .await;
    let (driver, mut events) = Driver::start(
        std::slice::from_ref(&follower.addr),
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    match next(&mut events).await {
        Some(DriverEvent::Subscribed {
            master_id,
            master_addr,
            ..
        }) => {
            assert_eq!(master_id, 2);
            assert_eq!(master_addr, leader.addr);
        }
        other => panic!("expected Subscribed, got {other:?}"),
    }
    driver.revive().await.unwrap();
    assert_eq!(leader.calls().revives.len(), 1);
    driver.stop().await;
}

#[tokio::test]
async fn a_call_refused_by_a_new_leader_that_never_saw_the_stream_resubscribes_and_lands() {
    let a = FakeMaster::start(FakeConfig {
        master_id: 1,
        ..FakeConfig::default()
    })
    .await;
    let b = FakeMaster::start(FakeConfig {
        master_id: 2,
        redirect_to: Some(a.addr.clone()),
        ..FakeConfig::default()
    })
    .await;
    let (driver, mut events) = Driver::start(
        &[a.addr.clone(), b.addr.clone()],
        FrameworkInfo::new("t"),
        fast_options(),
    )
    .unwrap();
    subscribed(&mut events).await;
    // Leadership moves to b; a is cut off and keeps the stream open (heartbeats far away).
    a.set_leader(Some(b.addr.clone()));
    b.set_leader(None);
    let revived = tokio::time::timeout(TEST_DEADLINE, driver.revive()).await;
    assert!(matches!(revived, Ok(Ok(()))), "{revived:?}");
    let calls = b.calls();
    assert_eq!(calls.revives.len(), 1);
    assert_eq!(calls.subscribes.len(), 1);
    assert_eq!(
        calls.subscribes[0].framework.as_ref().unwrap().id,
        FRAMEWORK_ID
    );
    match next(&mut events).await {
        Some(DriverEvent::Disconnected { reason }) => {
            assert!(reason.contains("leadership moved"), "{reason}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    match next(&mut events).await {
        Some(DriverEvent::Subscribed {
            master_id,
            resubscribed,
            ..
        }) => assert_eq!((master_id, resubscribed), (2, true)),
        other => panic!("expected Subscribed, got {other:?}"),
    }
    driver.stop().await;
}
