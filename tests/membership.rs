//! Replacing masters: a dead replica is replaced by a new one (learner, then voter) while
//! writes go on; a replica whose data directory was wiped never rejoins under its old id.

mod common;

use std::time::Duration;

use common::{cli, metric, start, wait_until, LEADER_TIMEOUT};

async fn add_master(masters: &str, id: u64, addr: &str) -> common::CliOutput {
    let id = id.to_string();
    cli(&[
        "cluster",
        "--masters",
        masters,
        "add-master",
        "--id",
        &id,
        "--addr",
        addr,
    ])
    .await
}

async fn remove_master(masters: &str, id: u64) -> common::CliOutput {
    let id = id.to_string();
    cli(&[
        "cluster",
        "--masters",
        masters,
        "remove-master",
        "--id",
        &id,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_master_is_replaced_without_downtime() {
    let mut c = start(3, &[]).await;
    let client = c.client();
    for i in 0..50 {
        client.put("t", &format!("k{i}"), vec![1]).await.unwrap();
    }
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let dead = c
        .masters()
        .map(|m| m.id)
        .find(|id| *id != leader.node_id)
        .unwrap();
    c.kill(dead).await.unwrap();

    // Writes keep flowing during the whole replacement; every one must be acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .put("t", &format!("during-{n}"), vec![2])
                    .await
                    .expect("write during replacement");
                n += 1;
            }
            n
        })
    };

    let new_addr = c.add_master_slot(4).unwrap().addr.clone();
    c.start_master(4).unwrap();
    c.wait_until_serving(4, LEADER_TIMEOUT).await.unwrap();
    let masters = c.addrs().join(",");
    let add = add_master(&masters, 4, &new_addr).await;
    assert_eq!(add.code, 0, "add-master: {}{}", add.stdout, add.stderr);
    let remove = remove_master(&masters, dead).await;
    assert_eq!(
        remove.code, 0,
        "remove-master: {}{}",
        remove.stdout, remove.stderr
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = writer.await.expect("writer never failed");
    assert!(during > 0);

    let status = client.leader_status().await.unwrap();
    let mut voters: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    voters.sort();
    let mut expected: Vec<u64> = vec![1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != dead)
        .collect();
    expected.sort();
    assert_eq!(voters, expected);

    // Master 4 is a real voter: with the leader gone, the other two elect and commit.
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    c.kill(leader.node_id).await.unwrap();
    c.wait_for_leader(LEADER_TIMEOUT)
        .await
        .expect("new quorum elects");
    client
        .put("t", "after", vec![3])
        .await
        .expect("new quorum commits");
    let got = client.get("t", "k49").await.unwrap();
    assert_eq!(got.map(|v| v.value), Some(vec![1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_does_not_rejoin_under_its_old_id() {
    let mut c = start(3, &[]).await;
    let client = c.client();
    client.put("t", "k", b"v".to_vec()).await.unwrap();
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    // Not master 1: a wiped founder refuses to start at all (next test).
    let wiped = c
        .masters()
        .map(|m| m.id)
        .find(|id| *id != leader.node_id && *id != 1)
        .unwrap();
    c.stop(wiped, Duration::from_secs(10)).await.unwrap();
    c.wipe(wiped).unwrap();
    c.start_master(wiped).unwrap();
    let addr = c.master(wiped).unwrap().addr.clone();
    // The leader keeps contacting it; it refuses every request as a different incarnation.
    wait_until(
        "wiped replica refuses the leader",
        Duration::from_secs(20),
        || {
            let addr = addr.clone();
            async move {
                match metric(
                    &addr,
                    "drover_master_raft_rejected_requests_total{reason=\"wrong_incarnation\"}",
                )
                .await
                {
                    Some(n) if n > 0.0 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await
    .unwrap();
    for i in 0..10 {
        client
            .put("t", &format!("after-{i}"), b"x".to_vec())
            .await
            .expect("the other two commit");
    }
    let s = c.status(wiped).await.unwrap();
    assert_eq!(s.cluster_id, "", "the wiped replica adopted the cluster");
    assert_eq!(s.applied_index, 0, "the wiped replica applied entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_founder_refuses_to_bootstrap_again() {
    let mut c = start(3, &[]).await;
    c.client().put("t", "k", b"v".to_vec()).await.unwrap();
    // Master 1 is the founder that bootstrapped the cluster.
    c.stop(1, Duration::from_secs(10)).await.unwrap();
    c.wipe(1).unwrap();
    c.start_master(1).unwrap();
    let status = wait_until("the wiped founder exits", Duration::from_secs(30), || {
        let r = c.exited(1);
        async move {
            match r {
                Ok(Some(s)) => Ok(s),
                Ok(None) => Err("still running".into()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(&c.master(1).unwrap().log_path).unwrap();
    assert!(log.contains("refusing to bootstrap"), "log: {log}");
    c.client()
        .put("t", "k2", b"v2".to_vec())
        .await
        .expect("the other two go on");
}

/// An add-master that gave up before its learner caught up leaves a learner behind. If that
/// replica comes back with a fresh data directory, add-master replaces the learner's record
/// (address and incarnation) rather than keeping the dead incarnation; and a learner can be
/// removed like a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_learner_is_replaced_or_removed() {
    // No catch-up budget: add-master submits the learner and gives up at once, before openraft
    // can even answer (1 ms was seen to be enough for a learner to catch up on loopback).
    let mut c = start(3, &["--catch-up-timeout-ms", "0"]).await;
    let client = c.client();
    for i in 0..20 {
        client.put("t", &format!("k{i}"), vec![1]).await.unwrap();
    }
    let new_addr = c.add_master_slot(4).unwrap().addr.clone();
    let masters = c.addrs().join(",");
    let add = || add_master(&masters, 4, &new_addr);
    let learner_of = |status: &drover_proto::master::StatusReply| {
        status.members.iter().find(|m| m.id == 4).map(|m| m.voter)
    };

    c.start_master(4).unwrap();
    c.wait_until_serving(4, LEADER_TIMEOUT).await.unwrap();
    let first = add().await;
    assert_ne!(
        first.code, 0,
        "a catch-up with no time cannot finish: {}",
        first.stdout
    );
    assert!(
        first.stderr.contains("learner"),
        "the error says the learner stays: {}",
        first.stderr
    );
    wait_until("master 4 is a learner", Duration::from_secs(10), || async {
        let status = client.leader_status().await.map_err(|e| e.to_string())?;
        match learner_of(&status) {
            Some(false) => Ok(()),
            other => Err(format!("master 4: {other:?}")),
        }
    })
    .await
    .unwrap();

    // Master 4 comes back empty: a new incarnation. add-master must replace the record.
    c.stop(4, Duration::from_secs(10)).await.unwrap();
    c.wipe(4).unwrap();
    c.start_master(4).unwrap();
    c.wait_until_serving(4, LEADER_TIMEOUT).await.unwrap();
    let _ = add().await;
    c.wait_for_status(4, "master 4 replicated to", Duration::from_secs(20), |s| {
        if s.applied_index >= 20 && !s.cluster_id.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "applied {} cluster {:?}",
                s.applied_index, s.cluster_id
            ))
        }
    })
    .await
    // Until add-master replaced the record, the leader kept addressing the old incarnation and
    // the new replica refused it all: without the replacement this wait times out.
    .expect("the new incarnation of master 4 is replicated to");
    let remove = remove_master(&masters, 4).await;
    assert_eq!(remove.code, 0, "remove learner: {}", remove.stderr);
    let status = client.leader_status().await.unwrap();
    assert_eq!(learner_of(&status), None, "master 4 is gone");
    client
        .put("t", "after", vec![2])
        .await
        .expect("the cluster commits");
}
