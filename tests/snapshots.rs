//! Log compaction: a follower that was away while the log moved past a snapshot and was purged
//! catches up by snapshot transfer, and the snapshot is larger than the largest gRPC message the
//! masters accept (it goes out in chunks).

mod common;

use std::time::Duration;

use common::{metric, start, LEADER_TIMEOUT};
use drover_master::raft::network::MAX_RAFT_MESSAGE_BYTES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_follower_catches_up_by_snapshot_larger_than_a_message() {
    let mut c = start(3, &["--snapshot-every", "25", "--keep-logs", "5"]).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let lagging = c
        .masters()
        .map(|m| m.id)
        .find(|id| *id != leader.node_id)
        .unwrap();
    c.stop(lagging, Duration::from_secs(10)).await.unwrap();
    let stopped_at = c.status(leader.node_id).await.unwrap().last_log_index;

    // 72 values of 1 MiB: the registry, hence the snapshot, is about 72 MiB, more than the
    // 64 MiB the Raft transport accepts in one message; snapshots go out in 1 MiB chunks. Two
    // frameworks hold them (one may keep 64 MiB).
    let client = c.client();
    let value = vec![7u8; 1024 * 1024];
    for i in 0..72 {
        client
            .put(big_framework(i), &format!("big-{i}"), value.clone())
            .await
            .expect("write");
    }
    // Small writes after them move the log on: masters purge in batches of 64 entries.
    for i in 0..60 {
        client
            .put("t", &format!("small-{i}"), b"x".to_vec())
            .await
            .expect("write");
    }
    let leader_addr = c.master(leader.node_id).unwrap().addr.clone();
    let purged = |s: &drover_proto::master::StatusReply| {
        if s.purged_index > stopped_at && s.snapshot_index > stopped_at {
            Ok(())
        } else {
            Err(format!(
                "purged {} snapshot {}",
                s.purged_index, s.snapshot_index
            ))
        }
    };
    c.wait_for_status(
        leader.node_id,
        "leader purged past the stopped follower",
        Duration::from_secs(30),
        purged,
    )
    .await
    .unwrap();
    let snapshot_bytes = metric(&leader_addr, "drover_master_raft_snapshot_bytes")
        .await
        .unwrap_or(0.0);
    assert!(
        snapshot_bytes > MAX_RAFT_MESSAGE_BYTES as f64,
        "snapshot is only {snapshot_bytes} bytes, not more than one message may carry"
    );

    c.start_master(lagging).unwrap();
    let target = c.status(leader.node_id).await.unwrap().committed_index;
    c.wait_for_status(
        lagging,
        "lagging follower caught up",
        Duration::from_secs(60),
        |s| {
            if s.applied_index >= target {
                Ok(())
            } else {
                Err(format!("applied {} of {target}", s.applied_index))
            }
        },
    )
    .await
    .unwrap();
    let lagging_addr = c.master(lagging).unwrap().addr.clone();
    let installs = metric(&lagging_addr, "drover_master_raft_snapshot_installs_total")
        .await
        .unwrap_or(0.0);
    assert!(
        installs >= 1.0,
        "the follower caught up without installing a snapshot"
    );

    // The caught-up follower holds the data: with the third master stopped, the leader needs it
    // to commit, and reads still see every value.
    let third = c
        .masters()
        .map(|m| m.id)
        .find(|id| *id != leader.node_id && *id != lagging)
        .unwrap();
    c.stop(third, Duration::from_secs(10)).await.unwrap();
    client
        .put("t", "needs-the-follower", b"1".to_vec())
        .await
        .expect("commit with the caught-up follower");
    for i in (0..72).step_by(13) {
        let got = client
            .get(big_framework(i), &format!("big-{i}"))
            .await
            .unwrap();
        assert_eq!(got.map(|v| v.value.len()), Some(1024 * 1024));
    }
}

/// Which framework holds big value `i`.
fn big_framework(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "t"
    } else {
        "u"
    }
}
