//! Replication and failover with real processes: acknowledged writes survive the loss of a
//! leader, of a minority, and of every master at once; a minority cannot commit.

mod common;

use std::time::Duration;

use common::{start, LEADER_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_acknowledged_write_survives_leader_kill() {
    let mut c = start(3, &[]).await;
    let client = c.client();
    let version = client
        .put("t", "k", b"v1".to_vec())
        .await
        .expect("write acknowledged");
    assert!(version > 0);
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    c.kill(leader.node_id).await.unwrap();
    let new_leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    assert_ne!(new_leader.node_id, leader.node_id);
    assert!(new_leader.term > leader.term);
    let got = client.get("t", "k").await.expect("read from new leader");
    assert_eq!(got.map(|v| v.value), Some(b"v1".to_vec()));
    // And the new leader keeps accepting writes with the dead one gone.
    client
        .put("t", "k2", b"v2".to_vec())
        .await
        .expect("write after failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_masters_survive_losing_two() {
    let mut c = start(5, &[]).await;
    let client = c.client();
    for i in 0..20 {
        client
            .put("t", &format!("k{i}"), vec![i as u8])
            .await
            .expect("write");
    }
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let other = c
        .masters()
        .map(|m| m.id)
        .find(|id| *id != leader.node_id)
        .unwrap();
    c.kill(leader.node_id).await.unwrap();
    c.kill(other).await.unwrap();
    c.wait_for_leader(LEADER_TIMEOUT)
        .await
        .expect("three of five elect a leader");
    for i in 0..20 {
        let got = client.get("t", &format!("k{i}")).await.expect("read");
        assert_eq!(got.map(|v| v.value), Some(vec![i as u8]), "key k{i}");
    }
    client
        .put("t", "after", b"x".to_vec())
        .await
        .expect("three of five commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_masters_killed_and_restarted_keep_every_acknowledged_write() {
    let mut c = start(3, &[]).await;
    let client = c.client();
    // Concurrent writers; every write that was acknowledged is recorded.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let client = client.clone();
        writers.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let key = format!("w{w}-{i}");
                if client
                    .put("t", &key, key.clone().into_bytes())
                    .await
                    .is_ok()
                {
                    acked.push(key);
                }
            }
            acked
        });
    }
    let mut acked = Vec::new();
    while let Some(r) = writers.join_next().await {
        acked.extend(r.unwrap());
    }
    assert_eq!(
        acked.len(),
        200,
        "no failures expected on a healthy cluster"
    );
    let ids: Vec<u64> = c.masters().map(|m| m.id).collect();
    for id in &ids {
        c.kill(*id).await.unwrap();
    }
    for id in &ids {
        c.start_master(*id).unwrap();
    }
    c.wait_for_leader(LEADER_TIMEOUT)
        .await
        .expect("leader after full restart");
    for key in &acked {
        let got = client.get("t", key).await.expect("read after restart");
        assert_eq!(
            got.map(|v| v.value),
            Some(key.clone().into_bytes()),
            "{key} lost"
        );
    }
    client
        .put("t", "after-restart", b"ok".to_vec())
        .await
        .expect("serves writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_survivor_cannot_commit_until_a_majority_is_back() {
    let mut c = start(3, &["--write-timeout-ms", "1500"]).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    c.client().put("t", "before", b"1".to_vec()).await.unwrap();
    let others: Vec<u64> = c
        .masters()
        .map(|m| m.id)
        .filter(|id| *id != leader.node_id)
        .collect();
    for id in &others {
        c.kill(*id).await.unwrap();
    }
    // Only the old leader is left. It must not acknowledge anything.
    let survivor = c.master(leader.node_id).unwrap().addr.clone();
    let lone = drover_client::MasterClient::with_policy(
        &[survivor],
        drover_client::RetryPolicy {
            deadline: Duration::from_secs(4),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..3 {
        let r = lone.put("t", &format!("minority-{i}"), b"x".to_vec()).await;
        assert!(r.is_err(), "a lone master acknowledged a write: {r:?}");
    }
    // A majority again: one peer back.
    c.start_master(others[0]).unwrap();
    c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    c.client()
        .put("t", "after", b"2".to_vec())
        .await
        .expect("majority commits");
    let got = c.client().get("t", "before").await.unwrap();
    assert_eq!(got.map(|v| v.value), Some(b"1".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_same_flags_rejoins() {
    let mut c = start(3, &[]).await;
    c.client().put("t", "k", b"v".to_vec()).await.unwrap();
    let follower = {
        let l = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
        c.masters()
            .map(|m| m.id)
            .find(|id| *id != l.node_id)
            .unwrap()
    };
    c.stop(follower, Duration::from_secs(10)).await.unwrap();
    c.client().put("t", "k2", b"v2".to_vec()).await.unwrap();
    c.start_master(follower).unwrap();
    let leader_commit = c
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .unwrap()
        .committed_index;
    c.wait_for_status(
        follower,
        "restarted follower caught up",
        Duration::from_secs(20),
        |s| {
            if s.applied_index >= leader_commit && s.role == "follower" {
                Ok(())
            } else {
                Err(format!("{} applied {}", s.role, s.applied_index))
            }
        },
    )
    .await
    .unwrap();
}
