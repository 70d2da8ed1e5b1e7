//! The corpora's first inputs: valid values of what each target decodes, encoded as the
//! real sender encodes them, so that the fuzzer starts from inputs that reach deep into each
//! decoder. `scripts/fuzz.sh seeds` writes them under `fuzz/corpus/<target>/`.

use drover_master::ids::OfferId;
use drover_master::leader::convert;
use drover_master::raft::codec::encode;
use drover_master::raft::{Entry, LogId, MasterId, SnapshotMeta, StoredMembership, Vote};
use drover_master::registry::cluster::{ClusterOp, OfferRecord};
use drover_master::registry::{
    Expectation, FrameworkName, Op, Proposal, Registry, StoreKey, StoreOp,
};
use drover_proto::master as store;
use drover_proto::v1;
use drover_resources::Resources;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("raft_rpc", raft_rpc()),
        ("raft_log", raft_log()),
        ("snapshot_file", snapshot_file()),
        ("registry_apply", registry_apply()),
        ("store_request", store_request()),
        ("framework_api", framework_api()),
        ("mesos_scheduler_call", mesos_scheduler_call()),
        ("mesos_executor_call", mesos_executor_call()),
        ("mesos_recordio", mesos_recordio()),
        ("agent_checkpoint", agent_checkpoint()),
        ("executor_frame", executor_frame()),
        ("resource_text", resource_text()),
        ("acl_file", acl_file()),
        ("marathon_app", marathon_app()),
    ]
}

/// `selector` followed by `body`.
fn tagged(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(body);
    out
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn resources(text: &str) -> Resources {
    text.parse().expect("seed resources")
}

fn task_info(id: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.into(),
        name: format!("{id}-name"),
        resources: resources("cpus:0.5;mem:64;ports:[31000-31000]").to_proto(),
        command: Some(v1::CommandInfo {
            shell: "echo hello; sleep 1".into(),
            environment: [("GREETING".to_string(), "hi".to_string())].into(),
            ..Default::default()
        }),
        kill_grace_seconds: 3.0,
        ..Default::default()
    }
}

fn framework_info() -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        id: "fw-1".into(),
        name: "seed".into(),
        role: "web".into(),
        principal: "seeder".into(),
        failover_timeout_seconds: 60.0,
        capabilities: vec![v1::FrameworkCapability::PartitionAware as i32],
    }
}

fn register_request() -> v1::RegisterRequest {
    v1::RegisterRequest {
        agent: Some(v1::AgentInfo {
            id: "agent-1".into(),
            hostname: "host-1".into(),
            addr: "127.0.0.1:5051".into(),
            resources: resources("cpus:4;mem:4096;disk:10000;ports:[31000-32000]").to_proto(),
            attributes: "rack:r1;zone:a"
                .parse::<drover_resources::Attributes>()
                .expect("seed attributes")
                .to_proto(),
        }),
        tasks: Vec::new(),
        tasks_truncated: false,
    }
}

fn status(task: &str, state: v1::TaskState, uuid: &str) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task.into(),
        agent_id: "agent-1".into(),
        state: state as i32,
        uuid: uuid.into(),
        source: v1::StatusSource::SourceExecutor as i32,
        message: "seed".into(),
        ..Default::default()
    }
}

/// A cluster's life in operations: an agent registers, a framework subscribes, is offered the
/// agent, launches two tasks, one runs and finishes and is acknowledged, weights and agent
/// states change, completed tasks are pruned, the framework is torn down; and store writes.
fn lifecycle() -> Vec<(u64, Vec<Op>)> {
    let (agent, tasks, truncated) =
        convert::registration_from_proto(&register_request(), 1_000).expect("seed agent");
    let framework = convert::framework_from_proto(&framework_info(), 1_000).expect("seed fw");
    let offer = OfferRecord {
        id: OfferId::new("offer-1").expect("seed offer id"),
        framework: framework.id.clone(),
        agent: agent.id.clone(),
        resources: resources("cpus:4;mem:4096;disk:10000;ports:[31000-32000]"),
        created_at_ms: 2_000,
        expires_at_ms: 62_000,
    };
    let (offers, specs) = convert::accept_from_proto(
        &["offer-1".to_string()],
        &[task_info("task-1"), task_info("task-2")],
    )
    .expect("seed accept");
    let uuid = "5f0e3c52-7a4b-4c1e-9a57-2d8c4c1b0e11";
    let (task, running) =
        convert::status_from_proto(&status("task-1", v1::TaskState::TaskRunning, uuid))
            .expect("seed status");
    let finished_uuid = "6a1f4d63-8b5c-4d2f-8b68-3e9d5d2c1f22";
    let (_, finished) = convert::status_from_proto(&status(
        "task-1",
        v1::TaskState::TaskFinished,
        finished_uuid,
    ))
    .expect("seed status");
    let ns = FrameworkName::new("marathon").expect("seed namespace");
    let key = StoreKey::new("apps/web").expect("seed key");
    let cluster = |op| Op::Cluster(op);
    vec![
        (
            1_000,
            vec![
                cluster(ClusterOp::RegisterAgent {
                    agent: agent.clone(),
                    tasks,
                    truncated,
                }),
                cluster(ClusterOp::SubscribeFramework(framework.clone())),
                Op::Store(StoreOp::Put {
                    framework: ns.clone(),
                    key: key.clone(),
                    value: b"{\"id\":\"/web\"}".to_vec().into(),
                }),
            ],
        ),
        (2_000, vec![cluster(ClusterOp::CreateOffers(vec![offer]))]),
        (
            3_000,
            vec![cluster(ClusterOp::Accept {
                framework: framework.id.clone(),
                offers,
                tasks: specs,
            })],
        ),
        (
            4_000,
            vec![
                cluster(ClusterOp::StatusUpdate {
                    agent: agent.id.clone(),
                    framework: framework.id.clone(),
                    task: task.clone(),
                    update: running,
                }),
                cluster(ClusterOp::Acknowledge {
                    framework: framework.id.clone(),
                    task: task.clone(),
                    uuid: uuid.parse().expect("seed uuid"),
                }),
                cluster(ClusterOp::StatusUpdate {
                    agent: agent.id.clone(),
                    framework: framework.id.clone(),
                    task: task.clone(),
                    update: finished,
                }),
                Op::Store(StoreOp::CompareAndSet {
                    framework: ns.clone(),
                    key: key.clone(),
                    expected: Expectation::Version(1),
                    new_value: b"{\"id\":\"/web\",\"instances\":2}".to_vec().into(),
                }),
            ],
        ),
        (
            5_000,
            vec![
                cluster(ClusterOp::SetRoleWeight {
                    role: framework.role.clone(),
                    weight: 2.5,
                }),
                cluster(ClusterOp::SetAgentState {
                    agent: agent.id.clone(),
                    state: drover_master::registry::cluster::AgentState::Draining,
                    by_operator: true,
                    if_state_since_ms: None,
                }),
                cluster(ClusterOp::PruneCompleted {
                    keep_tasks_per_framework: 1,
                    keep_completed_frameworks: 1,
                }),
                cluster(ClusterOp::TeardownFramework {
                    framework: framework.id.clone(),
                    if_subscribed_at_ms: None,
                }),
                Op::Store(StoreOp::Delete { framework: ns, key }),
            ],
        ),
    ]
}

fn proposals() -> Vec<Proposal> {
    lifecycle()
        .into_iter()
        .map(|(at, ops)| Proposal::new(at, ops).expect("seed proposal"))
        .collect()
}

fn entries() -> Vec<Entry> {
    proposals()
        .into_iter()
        .enumerate()
        .map(|(i, p)| Entry {
            log_id: log_id(2, i as u64 + 1),
            payload: EntryPayload::Normal(p),
        })
        .collect()
}

fn registry() -> Registry {
    let mut r = Registry::default();
    for (i, p) in proposals().iter().take(4).enumerate() {
        r.apply(i as u64 + 1, p);
    }
    r
}

fn meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 4)),
        last_membership: StoredMembership::default(),
        snapshot_id: "2-4-seed".into(),
    }
}

fn vote() -> Vote {
    Vote::new_committed(2, 1)
}

fn raft_rpc() -> Vec<Vec<u8>> {
    let append = AppendEntriesRequest::<drover_master::raft::TypeConfig> {
        vote: vote(),
        prev_log_id: None,
        entries: entries(),
        leader_commit: Some(log_id(2, 3)),
    };
    let ok: Result<AppendEntriesResponse<MasterId>, openraft::error::RaftError<MasterId>> =
        Ok(AppendEntriesResponse::Success);
    let granted: Result<VoteResponse<MasterId>, openraft::error::RaftError<MasterId>> =
        Ok(VoteResponse::new(vote(), Some(log_id(2, 4)), true));
    vec![
        tagged(0, &encode("seed", &append).expect("encode")),
        tagged(
            1,
            &encode("seed", &VoteRequest::new(vote(), Some(log_id(2, 4)))).expect("encode"),
        ),
        tagged(2, &encode("seed", &(vote(), meta())).expect("encode")),
        tagged(3, &encode("seed", &ok).expect("encode")),
        tagged(4, &encode("seed", &granted).expect("encode")),
    ]
}

fn raft_log() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = entries()
        .iter()
        .map(|e| tagged(0, &encode("seed", e).expect("encode")))
        .collect();
    out.push(tagged(1, &encode("seed", &vote()).expect("encode")));
    out.push(tagged(
        2,
        &encode("seed", &Some(log_id(2, 4))).expect("encode"),
    ));
    out
}

/// A snapshot file of the lifecycle's registry without its checksum (the target adds it).
fn snapshot_file() -> Vec<Vec<u8>> {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("drover-fuzz-seeds-{}-{call}", std::process::id()));
    let snapshots = drover_master::raft::snapshot::SnapshotDir::open(&dir).expect("seed dir");
    let current = snapshots
        .write(&meta(), &registry())
        .expect("seed snapshot");
    let bytes = std::fs::read(&current.path).expect("read the seed snapshot");
    let _ = std::fs::remove_dir_all(&dir);
    vec![bytes[..bytes.len() - 4].to_vec()]
}

fn registry_apply() -> Vec<Vec<u8>> {
    let all = lifecycle();
    vec![
        postcard::to_stdvec(&all).expect("encode"),
        postcard::to_stdvec(&all[..3].to_vec()).expect("encode"),
    ]
}

/// One request of the store target's sequence: selector, length, protobuf.
fn store_item(selector: u8, m: &impl Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut out = vec![selector, body.len().min(255) as u8];
    out.extend_from_slice(&body[..body.len().min(255)]);
    out
}

fn store_request() -> Vec<Vec<u8>> {
    let put = store::PutRequest {
        framework: "marathon".into(),
        key: "apps/web".into(),
        value: b"{\"id\":\"/web\"}".to_vec(),
    };
    let cas = store::CompareAndSetRequest {
        framework: "marathon".into(),
        key: "apps/web".into(),
        new_value: b"v2".to_vec(),
        expected: Some(store::compare_and_set_request::Expected::ExpectedVersion(1)),
    };
    let list = store::ListRequest {
        framework: "marathon".into(),
        start_after: String::new(),
        limit: 10,
    };
    let get = store::GetRequest {
        framework: "marathon".into(),
        key: "apps/web".into(),
    };
    let delete = store::DeleteRequest {
        framework: "marathon".into(),
        key: "apps/web".into(),
    };
    let mut sequence = Vec::new();
    for item in [
        store_item(0, &put),
        store_item(2, &cas),
        store_item(3, &list),
        store_item(4, &get),
        store_item(1, &delete),
    ] {
        sequence.extend(item);
    }
    vec![sequence, store_item(0, &put)]
}

fn framework_api() -> Vec<Vec<u8>> {
    let accept = v1::AcceptRequest {
        offer_ids: vec!["offer-1".into()],
        launch: vec![task_info("task-1"), task_info("task-2")],
        refuse_seconds: Some(5.0),
        ..Default::default()
    };
    let subscribe = v1::SubscribeRequest {
        framework: Some(framework_info()),
    };
    let updates = v1::StatusUpdateRequest {
        updates: vec![v1::AgentStatusUpdate {
            agent_id: "agent-1".into(),
            framework_id: "fw-1".into(),
            status: Some(status(
                "task-1",
                v1::TaskState::TaskRunning,
                "5f0e3c52-7a4b-4c1e-9a57-2d8c4c1b0e11",
            )),
        }],
    };
    vec![
        tagged(0, &accept.encode_to_vec()),
        tagged(1, &subscribe.encode_to_vec()),
        tagged(2, &register_request().encode_to_vec()),
        tagged(3, &updates.encode_to_vec()),
    ]
}

fn mesos_scheduler_call() -> Vec<Vec<u8>> {
    let subscribe = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"seed","roles":["web"],"capabilities":[{"type":"MULTI_ROLE"},{"type":"PARTITION_AWARE"}],"failover_timeout":60}}}"#;
    let accept = r#"{"framework_id":{"value":"fw-1"},"type":"ACCEPT","accept":{"offer_ids":[{"value":"offer-1"}],"operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"task-1"},"agent_id":{"value":"agent-1"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}},{"name":"mem","type":"SCALAR","scalar":{"value":64}},{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31001}]}}],"command":{"value":"echo hi","environment":{"variables":[{"name":"A","value":"b"}]}},"health_check":{"type":"COMMAND","command":{"value":"true"},"interval_seconds":5}}]}}],"filters":{"refuse_seconds":5}}}"#;
    let ack = r#"{"framework_id":{"value":"fw-1"},"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":"agent-1"},"task_id":{"value":"task-1"},"uuid":"Xw48Unp7TB6aVy2MTBsOEQ=="}}"#;
    let kill =
        r#"{"framework_id":{"value":"fw-1"},"type":"KILL","kill":{"task_id":{"value":"task-1"}}}"#;
    let operator = r#"{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"agent-1"}}}"#;
    let mut out: Vec<Vec<u8>> = [subscribe, accept, ack, kill, operator]
        .iter()
        .map(|j| tagged(0, j.as_bytes()))
        .collect();
    if let Ok(call) =
        drover_mesos::json::from_json::<drover_mesos::v1::scheduler::Call>(accept.as_bytes())
    {
        out.push(tagged(1, &call.encode_to_vec()));
    }
    out
}

fn mesos_executor_call() -> Vec<Vec<u8>> {
    let subscribe = r#"{"type":"SUBSCRIBE","framework_id":{"value":"fw-1"},"executor_id":{"value":"exec-1"},"subscribe":{"unacknowledged_tasks":[],"unacknowledged_updates":[]}}"#;
    let update = r#"{"type":"UPDATE","framework_id":{"value":"fw-1"},"executor_id":{"value":"exec-1"},"update":{"status":{"task_id":{"value":"task-1"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR","uuid":"Xw48Unp7TB6aVy2MTBsOEQ==","message":"up"}}}"#;
    let message = r#"{"type":"MESSAGE","framework_id":{"value":"fw-1"},"executor_id":{"value":"exec-1"},"message":{"data":"aGVsbG8="}}"#;
    [subscribe, update, message]
        .iter()
        .map(|j| tagged(0, j.as_bytes()))
        .collect()
}

fn mesos_recordio() -> Vec<Vec<u8>> {
    let mut stream = Vec::new();
    for record in [&br#"{"type":"HEARTBEAT"}"#[..], br#"{"type":"SUBSCRIBED"}"#] {
        stream.extend(drover_mesos::recordio::encode(record));
    }
    vec![tagged(1, &stream), tagged(7, &stream)]
}

fn agent_checkpoint() -> Vec<Vec<u8>> {
    use drover_agent::checkpoint::encode_record;
    let path = std::path::Path::new("updates.log");
    let update = r#"{"record":"acked","uuid":"5f0e3c52-7a4b-4c1e-9a57-2d8c4c1b0e11"}"#;
    let acked: drover_agent::status_updates::Record =
        serde_json::from_str(update).expect("seed record");
    let mut log = encode_record(path, &acked).expect("encode");
    log.extend(encode_record(path, &acked).expect("encode"));
    vec![tagged(0, &log)]
}

fn executor_frame() -> Vec<Vec<u8>> {
    use drover_agent::ids::{FrameworkId, TaskId};
    use drover_agent::protocol::{FromExecutor, ToExecutor};
    let line = |json: String| format!("{json}\n").into_bytes();
    let hello = FromExecutor::Hello {
        framework_id: FrameworkId::new("fw-1").expect("seed id"),
        task_id: TaskId::new("task-1").expect("seed id"),
        pid: 4242,
    };
    let mut to = line(serde_json::to_string(&ToExecutor::Kill { grace_ms: 3000 }).expect("json"));
    to.extend(line(
        serde_json::to_string(&ToExecutor::Ack {
            uuid: "5f0e3c52-7a4b-4c1e-9a57-2d8c4c1b0e11"
                .parse()
                .expect("seed uuid"),
        })
        .expect("json"),
    ));
    vec![
        tagged(0, &line(serde_json::to_string(&hello).expect("json"))),
        tagged(1, &to),
    ]
}

fn resource_text() -> Vec<Vec<u8>> {
    vec![
        tagged(
            0,
            b"cpus:4;mem:4096;disk:10000;ports:[31000-32000,33000-33010]",
        ),
        tagged(1, b"[1-5,10-20]"),
        tagged(2, b"rack:r1;zone:a;cores:8"),
    ]
}

fn acl_file() -> Vec<Vec<u8>> {
    vec![br#"{
  "permissive": false,
  "register_frameworks": [{"principals": {"values": ["marathon"]}, "roles": {"values": ["*", "web"]}}],
  "run_tasks": [{"principals": {"values": ["marathon"]}, "users": {"values": ["nobody", ""]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
  "teardown_frameworks": [{"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}}],
  "kill_tasks": [{"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}}],
  "operator": [{"principals": {"values": ["ops"]}, "calls": {"values": ["drain_agent"]}}],
  "read_state": [{"principals": {"type": "ANY"}}],
  "read_metrics": [{"principals": {"type": "ANY"}}],
  "store": [{"principals": {"values": ["marathon"]}, "namespaces": {"values": ["marathon"]}, "access": "read_write"}]
}"#
    .to_vec()]
}

fn marathon_app() -> Vec<Vec<u8>> {
    vec![
        br#"{"id":"/web","cmd":"python3 -m http.server $PORT0","cpus":0.5,"mem":64,"instances":2,"portDefinitions":[{"port":0,"name":"http"}],"healthChecks":[{"protocol":"HTTP","path":"/","portIndex":0,"gracePeriodSeconds":10,"intervalSeconds":5,"maxConsecutiveFailures":3}],"env":{"GREETING":"hi"},"labels":{"team":"a"},"constraints":[["hostname","UNIQUE"]],"upgradeStrategy":{"minimumHealthCapacity":0.5,"maximumOverCapacity":0.5}}"#.to_vec(),
        br#"{"id":"/db/one","container":{"type":"DOCKER","docker":{"image":"drover-test:latest","network":"BRIDGE","portMappings":[{"containerPort":80,"hostPort":0}]}},"cpus":1,"mem":128,"args":["sleep","100"]}"#.to_vec(),
    ]
}
