//! Bad input from the network gets a clear error naming the field, never a panic, a hang or a
//! state change: oversized and malformed store requests, Raft requests for another cluster,
//! another incarnation or with garbage payloads, bad administration requests, bad HTTP.

mod common;

use std::time::Duration;

use common::{http_get, start, LEADER_TIMEOUT};
use drover_proto::master::cluster_client::ClusterClient;
use drover_proto::master::framework_store_client::FrameworkStoreClient;
use drover_proto::master::{AddMasterRequest, CompareAndSetRequest, PutRequest};
use drover_proto::raft::raft_service_client::RaftServiceClient;
use drover_proto::raft::{HelloRequest, RaftHeader, RaftRequest, SnapshotChunk};
use tonic::Code;

async fn channel(addr: &str) -> tonic::transport::Channel {
    drover_client::channel::endpoint(addr)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_clearly_and_change_nothing() {
    let c = start(3, &[]).await;
    let client = c.client();
    client.put("t", "k", b"v".to_vec()).await.unwrap();
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let leader_addr = leader.leader_addr.clone();
    let before = c.status(leader.node_id).await.unwrap();

    let mut store =
        FrameworkStoreClient::new(channel(&leader_addr).await).max_encoding_message_size(64 << 20);
    let put = |framework: &str, key: &str, value: Vec<u8>| PutRequest {
        framework: framework.into(),
        key: key.into(),
        value,
    };
    // A value over the 1 MiB limit, within the message limit: names the field.
    let e = store
        .put(put("t", "big", vec![0; (1 << 20) + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("value:"), "{}", e.message());
    // A message over the service's limit is refused before it is decoded.
    let e = store
        .put(put("t", "huge", vec![0; 8 << 20]))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    let e = store.put(put("bad name!", "k", vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("framework:"), "{}", e.message());
    let e = store.put(put("t", "", vec![])).await.unwrap_err();
    assert!(e.message().starts_with("key:"), "{}", e.message());
    let e = store
        .put(put("t", &"k".repeat(2000), vec![]))
        .await
        .unwrap_err();
    assert!(e.message().starts_with("key:"), "{}", e.message());
    let e = store
        .compare_and_set(CompareAndSetRequest {
            framework: "t".into(),
            key: "k".into(),
            expected: None,
            new_value: vec![],
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("expected:"), "{}", e.message());

    // Raft transport: garbage, other clusters, other incarnations, missing headers.
    let follower = c.masters().find(|m| m.id != leader.node_id).unwrap();
    let mut raft = RaftServiceClient::new(channel(&follower.addr).await);
    let hello = raft
        .hello(HelloRequest {
            cluster_id: String::new(),
            from_node: 99,
            protocol_version: drover_master::raft::PROTOCOL_VERSION,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hello.protocol_version,
        drover_master::raft::PROTOCOL_VERSION
    );
    // A master of a build before protocol versions (which sends none) is refused, by name.
    let e = raft
        .hello(HelloRequest {
            cluster_id: String::new(),
            from_node: 99,
            protocol_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("master 99 speaks Raft protocol 0"),
        "{}",
        e.message()
    );
    let header = |cluster: &str, to: u64, incarnation: &str| RaftHeader {
        cluster_id: cluster.into(),
        from_node: leader.node_id,
        to_node: to,
        to_incarnation: incarnation.into(),
        protocol_version: drover_master::raft::PROTOCOL_VERSION,
    };
    for old in [0, drover_master::raft::PROTOCOL_VERSION + 1] {
        let e = raft
            .append_entries(RaftRequest {
                header: Some(RaftHeader {
                    protocol_version: old,
                    ..header(&hello.cluster_id, follower.id, &hello.incarnation)
                }),
                payload: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(
            e.message().contains(&format!("speaks Raft protocol {old}"))
                && e.message().contains("Upgrades"),
            "{}",
            e.message()
        );
    }
    let req = |h: Option<RaftHeader>, payload: Vec<u8>| RaftRequest { header: h, payload };
    let e = raft
        .append_entries(req(
            Some(header(&hello.cluster_id, follower.id, &hello.incarnation)),
            b"garbage".to_vec(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("payload:"), "{}", e.message());
    let e = raft
        .vote(req(
            Some(header("another-cluster", follower.id, &hello.incarnation)),
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("cluster id mismatch"),
        "{}",
        e.message()
    );
    let e = raft
        .append_entries(req(
            Some(header(&hello.cluster_id, follower.id, "someone-else")),
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("data directory was recreated"),
        "{}",
        e.message()
    );
    let e = raft
        .append_entries(req(
            Some(header(&hello.cluster_id, 42, &hello.incarnation)),
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = raft.vote(req(None, vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = raft
        .install_snapshot(tokio_stream::iter(Vec::<SnapshotChunk>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = raft
        .install_snapshot(tokio_stream::iter(vec![SnapshotChunk {
            header: Some(header(&hello.cluster_id, follower.id, &hello.incarnation)),
            meta: b"not a snapshot header".to_vec(),
            data: vec![1, 2, 3],
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Administration.
    let mut admin = ClusterClient::new(channel(&leader_addr).await);
    let e = admin
        .add_master(AddMasterRequest {
            id: 9,
            addr: "no-port".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("addr:"), "{}", e.message());
    let e = admin
        .add_master(AddMasterRequest {
            id: 0,
            addr: "127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("id:"), "{}", e.message());
    let e = admin
        .add_master(AddMasterRequest {
            id: 9,
            addr: "127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // HTTP.
    assert_eq!(http_get(&leader_addr, "/nope").await.0, 404);
    let posted = reqwest::Client::new()
        .post(format!("http://{leader_addr}/metrics"))
        .body("x=1")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 405);

    // Nothing changed: same data, same membership, no new entries but heartbeats' blank ones.
    let got = client.get("t", "k").await.unwrap().unwrap();
    assert_eq!(got.value, b"v");
    assert!(client.get("t", "big").await.unwrap().is_none());
    let after = c.status(leader.node_id).await.unwrap();
    assert_eq!(after.term, before.term, "a bad request caused an election");
    assert_eq!(after.members.len(), 3);
    for m in c.masters() {
        let s = c.status(m.id).await.unwrap();
        assert_eq!(
            s.role == "leader",
            m.id == leader.node_id,
            "master {} changed role",
            m.id
        );
    }
}
