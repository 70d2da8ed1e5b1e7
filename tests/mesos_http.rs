//! Mesos's v1 scheduler HTTP API on real masters (issue 19): the wire checked byte for byte
//! (status, headers, one RecordIO record per HTTP chunk, the event JSON against fixtures in
//! Mesos's documented shapes), the protobuf content type, redirects from followers, the
//! answers to bad input, and real Mesos clients from PyPI, unchanged (pymesos 0.3.15 with a
//! leader failover, mesoshttp 0.4.2), run by `tests/mesos_clients.py`.

mod common;

use std::time::Duration;

use common::mesos::{accept, post_call, subscribe_call, task, Events, RawResponse};
use drover_mesos::v1 as mesos;
use prost::Message as _;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The leader's address and a follower's that knows it (so that it redirects).
async fn leader_and_follower(c: &common::TestCluster) -> (String, String) {
    let leader = c.wait_for_leader(WAIT).await.expect("leader");
    let follower = c
        .masters()
        .find(|m| m.id != leader.leader_id)
        .expect("a follower")
        .addr
        .clone();
    let want = leader.leader_addr.clone();
    common::wait_until("the follower to know the leader", WAIT, || {
        let (follower, want) = (follower.clone(), want.clone());
        async move {
            let (_, body) = common::try_http_get(&follower, "/v1/leader")
                .await
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            if v["leader_addr"] == want.as_str() {
                Ok(())
            } else {
                Err(body)
            }
        }
    })
    .await
    .expect("the follower knows the leader");
    (leader.leader_addr, follower)
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_streams_recordio_chunks_in_mesos_json() {
    let c = common::start_with_agents(3, &[], 1, &[], 1).await;
    let (leader, follower) = leader_and_follower(&c).await;

    // A follower redirects SUBSCRIBE and every other call to the same path on the leader.
    let body = serde_json::to_vec(&subscribe_call("wire", true)).unwrap();
    let (code, location) = post_call(&follower, None, &body, "application/json").await;
    assert_eq!(
        (code, location.as_str()),
        (307, format!("//{leader}/api/v1/scheduler").as_str())
    );
    let (code, location) = post_call(
        &follower,
        Some("x"),
        br#"{"type":"REVIVE","framework_id":{"value":"f"}}"#,
        "application/json",
    )
    .await;
    assert_eq!(
        (code, location.as_str()),
        (307, format!("//{leader}/api/v1/scheduler").as_str())
    );

    // Before the body is even read: a follower redirects what the leader would refuse.
    let (code, _) = post_call(&follower, None, b"{not json", "text/plain").await;
    assert_eq!(code, 307);

    // SUBSCRIBE as pymesos sends it (Connection: close), a non-ASCII name.
    let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
        "user": "root", "name": "dróver-wire", "failover_timeout": 60,
        "capabilities": [{"type": "GPU_RESOURCES"}, {"type": "PARTITION_AWARE"}]}}});
    let mut raw = RawResponse::post(
        &leader,
        "/api/v1/scheduler",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Connection", "close"),
        ],
        &serde_json::to_vec(&call).unwrap(),
    )
    .await
    .expect("SUBSCRIBE");
    assert_eq!(raw.status, 200);
    assert!(raw.is_chunked(), "{:?}", raw.headers);
    assert!(raw.header("content-length").is_none());
    assert_eq!(raw.header("content-type"), Some("application/json"));
    let stream_id = raw
        .header("mesos-stream-id")
        .expect("Mesos-Stream-Id")
        .to_string();
    assert!(!stream_id.is_empty() && stream_id.len() <= 128);

    // First chunk: exactly one record, SUBSCRIBED, in Mesos's JSON.
    let chunk = raw.next_chunk(WAIT).await.unwrap().expect("a chunk");
    let (len, record) = split_record(&chunk);
    assert_eq!(len, record.len(), "the chunk is one whole record");
    let subscribed: serde_json::Value = serde_json::from_slice(record).unwrap();
    let framework_id = subscribed["subscribed"]["framework_id"]["value"]
        .as_str()
        .unwrap();
    let me = c.wait_for_leader(WAIT).await.unwrap().leader_id;
    let (host, port) = leader.rsplit_once(':').unwrap();
    let fixture = format!(
        concat!(
            r#"{{"type":"SUBSCRIBED","subscribed":{{"framework_id":{{"value":"{fid}"}},"#,
            r#""heartbeat_interval_seconds":5.0,"master_info":{{"id":"{me}","ip":16777343,"#,
            r#""port":{port},"pid":"master@{host}:{port}","hostname":"{host}","version":"1.11.0","#,
            r#""address":{{"hostname":"{host}","ip":"{host}","port":{port}}}}}}}}}"#
        ),
        fid = framework_id,
        me = me,
        host = host,
        port = port,
    );
    assert_eq!(std::str::from_utf8(record).unwrap(), fixture);
    // Second chunk: a HEARTBEAT at once, as Mesos's heartbeater sends (docs/scheduler-http-api.md:
    // `20\n{"type":"HEARTBEAT"}`).
    let chunk = raw.next_chunk(WAIT).await.unwrap().expect("a chunk");
    assert_eq!(chunk, b"20\n{\"type\":\"HEARTBEAT\"}");

    // Then OFFERS, each record its own chunk, resources in Mesos's shapes.
    let offer = loop {
        let chunk = raw.next_chunk(WAIT).await.unwrap().expect("a chunk");
        let (len, record) = split_record(&chunk);
        assert_eq!(len, record.len());
        assert!(record.is_ascii());
        let e: serde_json::Value = serde_json::from_slice(record).unwrap();
        if e["type"] == "OFFERS" {
            break e["offers"]["offers"][0].clone();
        }
        assert_eq!(e["type"], "HEARTBEAT", "{e}");
    };
    assert_eq!(offer["framework_id"]["value"], framework_id);
    assert!(offer["id"]["value"].is_string() && offer["agent_id"]["value"].is_string());
    assert_eq!(offer["url"]["scheme"], "http");
    let cpus = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cpus")
        .expect("cpus offered");
    assert_eq!(cpus["type"], "SCALAR");
    assert!(cpus["scalar"]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(cpus["role"], "*");
    assert_eq!(cpus["allocation_info"]["role"], "*");
    let ports = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ports")
        .expect("ports offered");
    assert_eq!(ports["type"], "RANGES");
    assert_eq!(ports["ranges"]["range"][0]["begin"], 31000, "{ports}");

    // A task runs: its reliable updates carry uuid (16 bytes, base64) and agent_id.
    let call = |c: serde_json::Value| {
        let mut c = c;
        c["framework_id"] = json!({ "value": framework_id });
        serde_json::to_vec(&c).unwrap()
    };
    let t = task("wire-1", &offer["agent_id"], "sleep 30");
    let (code, body) = post_call(
        &leader,
        Some(&stream_id),
        &call(accept(&offer, vec![t])),
        "application/json",
    )
    .await;
    assert_eq!((code, body.as_str()), (202, ""));
    // A call's answer keeps its connection (pymesos sends the next call on it; idle
    // connections are never cut); an error answer closes it.
    let r = reqwest::Client::new()
        .post(format!("http://{leader}/api/v1/scheduler"))
        .header("Content-Type", "application/json")
        .header("Mesos-Stream-Id", &stream_id)
        .body(call(json!({"type": "REVIVE"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
    let r = reqwest::Client::new()
        .post(format!("http://{leader}/api/v1/scheduler"))
        .header("Content-Type", "application/json")
        .header("Mesos-Stream-Id", "not-the-stream")
        .body(call(json!({"type": "REVIVE"})))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(r.headers()["connection"], "close");
    let mut events = Events::from_raw(raw, &stream_id, framework_id);
    let running = events.wait_update("wire-1", "TASK_RUNNING").await;
    assert_eq!(running["agent_id"], offer["agent_id"]);
    assert_eq!(running["source"], "SOURCE_EXECUTOR");
    let uuid = running["uuid"].as_str().expect("uuid");
    use base64::Engine as _;
    let raw_uuid = base64::engine::general_purpose::STANDARD
        .decode(uuid)
        .unwrap();
    assert_eq!(raw_uuid.len(), 16);
    assert!(running["timestamp"].as_f64().unwrap() > 1.7e9);
    let ack = json!({"type": "ACKNOWLEDGE", "acknowledge": {
        "agent_id": running["agent_id"], "task_id": running["task_id"], "uuid": uuid}});
    assert_eq!(events.call(&leader, ack.clone()).await.0, 202);
    // Acknowledging again is no error to Mesos clients (pymesos stops on any other answer).
    assert_eq!(events.call(&leader, ack).await.0, 202);

    // The offer is used: an ACCEPT on it answers 202 and drops the task (partition-aware),
    // with a master-made update that has no uuid.
    let again = task("wire-2", &offer["agent_id"], "true");
    assert_eq!(
        events.call(&leader, accept(&offer, vec![again])).await.0,
        202
    );
    let dropped = events.wait_update("wire-2", "TASK_DROPPED").await;
    assert!(dropped.get("uuid").is_none(), "{dropped}");
    assert_eq!(dropped["reason"], "REASON_INVALID_OFFERS");
    assert_eq!(dropped["source"], "SOURCE_MASTER");

    // Reconciliation answers carry no uuid and say REASON_RECONCILIATION.
    let reconcile =
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "wire-1"}}]}});
    assert_eq!(events.call(&leader, reconcile).await.0, 202);
    let r = events
        .wait_for("a reconciliation answer", WAIT, |e| {
            e["type"] == "UPDATE" && e["update"]["status"]["reason"] == "REASON_RECONCILIATION"
        })
        .await;
    assert_eq!(r["update"]["status"]["state"], "TASK_RUNNING");
    assert!(r["update"]["status"].get("uuid").is_none());

    // KILL without agent_id (as pymesos sends it), then TEARDOWN ends the stream.
    let kill = json!({"type": "KILL", "kill": {"task_id": {"value": "wire-1"}}});
    assert_eq!(events.call(&leader, kill).await.0, 202);
    events.wait_update("wire-1", "TASK_KILLED").await;
    assert_eq!(
        events.call(&leader, json!({"type": "TEARDOWN"})).await.0,
        202
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while events
        .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
        .is_some()
    {}
    assert!(
        tokio::time::Instant::now() < deadline,
        "the stream did not end after TEARDOWN"
    );
}

/// `<len>\n<record>` split; panics if the length is not decimal.
fn split_record(chunk: &[u8]) -> (usize, &[u8]) {
    let nl = chunk
        .iter()
        .position(|b| *b == b'\n')
        .expect("a length line");
    let len = std::str::from_utf8(&chunk[..nl])
        .unwrap()
        .parse()
        .expect("decimal length");
    (len, &chunk[nl + 1..])
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_calls_and_events_round_trip() {
    let c = common::start_with_agents(1, &[], 1, &[], 1).await;
    let leader = c.wait_for_leader(WAIT).await.unwrap().leader_addr;
    let call = mesos::scheduler::Call {
        r#type: Some(mesos::scheduler::call::Type::Subscribe as i32),
        subscribe: Some(mesos::scheduler::call::Subscribe {
            framework_info: mesos::FrameworkInfo {
                user: "test".into(),
                name: "protobuf".into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut raw = RawResponse::post(
        &leader,
        "/api/v1/scheduler",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Accept", "application/x-protobuf"),
        ],
        &call.encode_to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("application/x-protobuf"));
    let stream_id = raw.header("mesos-stream-id").unwrap().to_string();
    let mut decoder = drover_mesos::recordio::Decoder::new(1 << 20);
    let subscribed = next_event(&mut raw, &mut decoder).await;
    assert_eq!(
        subscribed.r#type,
        Some(mesos::scheduler::event::Type::Subscribed as i32)
    );
    let framework_id = subscribed.subscribed.unwrap().framework_id;
    let offers = loop {
        let e = next_event(&mut raw, &mut decoder).await;
        if let Some(o) = e.offers {
            break o.offers;
        }
    };
    // DECLINE in protobuf.
    let decline = mesos::scheduler::Call {
        framework_id: Some(framework_id.clone()),
        r#type: Some(mesos::scheduler::call::Type::Decline as i32),
        decline: Some(mesos::scheduler::call::Decline {
            offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
            filters: Some(mesos::Filters {
                refuse_seconds: Some(0.5),
            }),
        }),
        ..Default::default()
    };
    let (code, body) = post_call(
        &leader,
        Some(&stream_id),
        &decline.encode_to_vec(),
        "application/x-protobuf",
    )
    .await;
    assert_eq!((code, body.as_str()), (202, ""));
    // The same offer's resources come back once the filter lapses.
    let back = loop {
        let e = next_event(&mut raw, &mut decoder).await;
        if let Some(o) = e.offers {
            break o.offers;
        }
    };
    assert_eq!(back[0].agent_id, offers[0].agent_id);
    assert_ne!(back[0].id, offers[0].id);
}

/// The next protobuf event of a stream.
async fn next_event(
    raw: &mut RawResponse,
    decoder: &mut drover_mesos::recordio::Decoder,
) -> mesos::scheduler::Event {
    loop {
        if let Some(r) = decoder.next_record().unwrap() {
            return mesos::scheduler::Event::decode(r.as_slice()).expect("a protobuf event");
        }
        decoder.push(&raw.next_chunk(WAIT).await.unwrap().expect("a chunk"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_calls_get_the_documented_codes_and_change_nothing() {
    let c = common::start_with_agents(1, &[], 1, &[], 1).await;
    let leader = c.wait_for_leader(WAIT).await.unwrap().leader_addr;
    let mut a = Events::subscribe(&leader, &subscribe_call("owner", true)).await;
    let offer =
        a.wait_for("offers", WAIT, |e| e["type"] == "OFFERS").await["offers"]["offers"][0].clone();
    let stream_id = a.stream_id.clone();
    let json_call = |body: String| {
        let (leader, stream_id) = (leader.clone(), stream_id.clone());
        async move {
            post_call(
                &leader,
                Some(&stream_id),
                body.as_bytes(),
                "application/json",
            )
            .await
        }
    };

    // Malformed JSON, an unknown type, a missing member, a bad uuid: 400 with the reason.
    let (code, body) = json_call("{not json".into()).await;
    assert_eq!(code, 400, "{body}");
    let fid = &a.framework_id;
    let (code, body) = json_call(format!(
        r#"{{"type":"FROB","framework_id":{{"value":"{fid}"}}}}"#
    ))
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("type") && body.contains("FROB"), "{body}");
    let (code, body) = json_call(format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fid}"}}}}"#
    ))
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("'accept'"), "{body}");
    let (code, body) = json_call(format!(
        r#"{{"type":"ACKNOWLEDGE","framework_id":{{"value":"{fid}"}},"acknowledge":{{"agent_id":{{"value":"a"}},"task_id":{{"value":"t"}},"uuid":"AAAA"}}}}"#
    ))
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("acknowledge.uuid"), "{body}");
    let (code, body) = json_call(r#"{"type":"REVIVE"}"#.into()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("framework_id"), "{body}");

    // The stream id: missing (400), another one (400), a framework not subscribed here (403).
    let revive = json!({"type": "REVIVE", "framework_id": {"value": fid}}).to_string();
    let (code, body) = post_call(&leader, None, revive.as_bytes(), "application/json").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Mesos-Stream-Id"), "{body}");
    let (code, body) = post_call(
        &leader,
        Some("not-the-stream"),
        revive.as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let stranger =
        json!({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}}).to_string();
    let (code, body) = post_call(
        &leader,
        Some(&a.stream_id),
        stranger.as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Framework cannot be found"), "{body}");

    // Required members, bounds, and call types Drover does not serve.
    let (code, body) = json_call(format!(
        r#"{{"type":"KILL","framework_id":{{"value":"{fid}"}},"kill":{{}}}}"#
    ))
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("kill.task_id.value"), "{body}");
    let many: Vec<serde_json::Value> = (0..101)
        .map(|i| json!({"value": format!("o{i}")}))
        .collect();
    let (code, body) = json_call(
        json!({"type": "ACCEPT", "framework_id": {"value": fid},
               "accept": {"offer_ids": many, "operations": []}})
        .to_string(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("accept.offer_ids"), "{body}");
    let (code, body) = json_call(format!(
        r#"{{"type":"UNKNOWN","framework_id":{{"value":"{fid}"}}}}"#
    ))
    .await;
    assert_eq!(code, 501, "{body}");
    let nameless = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u"}}});
    let (code, body) = post_call(
        &leader,
        None,
        nameless.to_string().as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("subscribe.framework_info.name"), "{body}");

    // Content types: none (400), another (415); GET (405); an oversized body (413).
    let client = reqwest::Client::new();
    let url = format!("http://{leader}/api/v1/scheduler");
    let r = client.post(&url).body(revive.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client
        .post(&url)
        .header("Content-Type", "text/plain")
        .body(revive.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let huge = vec![b' '; 17 * 1024 * 1024];
    let r = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(huge)
        .timeout(WAIT)
        .send()
        .await;
    // 413, or the connection cut while the body was still being sent (the server answers
    // before reading it all); a hang until the timeout is neither.
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 413, "an oversized call was taken"),
        Err(e) => assert!(!e.is_timeout(), "an oversized call hung: {e}"),
    }
    // SUBSCRIBE with a stream id, or with ids that differ: 400.
    let mut sub = subscribe_call("x", false);
    let (code, _) = post_call(
        &leader,
        Some("s"),
        sub.to_string().as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400);
    sub["framework_id"] = json!({"value": "other"});
    let (code, body) = post_call(
        &leader,
        None,
        sub.to_string().as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("differs"), "{body}");

    // Another framework's offer: its ACCEPT answers 202 and its task is dropped; the offer
    // stays the owner's, who then launches on it.
    let mut b = Events::subscribe(&leader, &subscribe_call("thief", false)).await;
    let stolen = task("stolen", &offer["agent_id"], "true");
    assert_eq!(b.call(&leader, accept(&offer, vec![stolen])).await.0, 202);
    let lost = b.wait_update("stolen", "TASK_LOST").await; // not partition-aware: LOST
    assert_eq!(lost["reason"], "REASON_INVALID_OFFERS");
    // A task Drover cannot run (fetcher URIs) comes back TASK_ERROR naming the field.
    let mut bad = task("uris", &offer["agent_id"], "true");
    bad["command"]["uris"] = json!([{"value": "http://example.invalid/x"}]);
    let ok = task("owned", &offer["agent_id"], "true");
    assert_eq!(a.call(&leader, accept(&offer, vec![bad, ok])).await.0, 202);
    let seen = a
        .wait_updates(&[("uris", "TASK_ERROR"), ("owned", "TASK_FINISHED")])
        .await;
    let error = &seen[0];
    assert_eq!(error["reason"], "REASON_TASK_INVALID");
    assert!(
        error["message"].as_str().unwrap().contains("command.uris"),
        "{error}"
    );
    let state = common::leader_state(&c).await.unwrap();
    let tasks: Vec<&str> = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        tasks.contains(&"owned") && !tasks.contains(&"stolen") && !tasks.contains(&"uris"),
        "{tasks:?}"
    );

    // The framework fails over to a new subscription: the old stream hears ERROR and ends,
    // and its stream id no longer works.
    let mut again = subscribe_call("owner", true);
    again["framework_id"] = json!({ "value": a.framework_id });
    again["subscribe"]["framework_info"]["id"] = json!({ "value": a.framework_id });
    let a2 = Events::subscribe(&leader, &again).await;
    assert_eq!(a2.framework_id, a.framework_id);
    let told = a.wait_for("ERROR", WAIT, |e| e["type"] == "ERROR").await;
    assert!(told["error"]["message"].is_string(), "{told}");
    assert!(a.next(WAIT).await.is_none(), "the replaced stream ended");
    let (code, body) = post_call(
        &leader,
        Some(&a.stream_id),
        revive.as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(a2.call(&leader, json!({"type": "REVIVE"})).await.0, 202);
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mesos_clients.py");
/// How long a client script that runs to its end may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn pymesos_scheduler_runs_tasks_and_fails_over_with_the_leader() {
    let Some(python) = common::test_python() else {
        return;
    };
    let mut c = common::start_with_agents(3, &[], 2, &[], 2).await;
    let (leader, follower) = leader_and_follower(&c).await;
    // The follower first (subscribing goes through its redirect), the leader last.
    let mut masters: Vec<String> = c
        .addrs()
        .into_iter()
        .filter(|a| *a != leader && *a != follower)
        .collect();
    masters.insert(0, follower);
    masters.push(leader);
    let masters = masters.join(",");
    let mut script = common::Conversation::start(&python, SCRIPT, &["pymesos", &masters]);
    let talk = async {
        while let Some(line) = script.next_line().await {
            if line == "kill-leader" {
                let (old, new) = c.kill_leader(WAIT).await.expect("a new leader");
                eprintln!(
                    "killed master {}; master {} leads",
                    old.leader_id, new.leader_id
                );
                script.say("killed").await;
            }
        }
    };
    let talked = tokio::time::timeout(Duration::from_secs(300), talk)
        .await
        .ok();
    let out = script.finish(talked).await;
    eprintln!("{}", out.trim());
}

const EXECUTOR_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mesos_executor.py");

/// A pymesos scheduler runs tasks through a pymesos custom executor on one agent: launches,
/// updates and framework messages both ways over the agents' executor API; the agent is
/// SIGKILLed and started again under the executor, which subscribes again and runs the next
/// task; its end (shut down once idle) is reported to the scheduler.
#[tokio::test(flavor = "multi_thread")]
async fn pymesos_executor_runs_updates_and_messages_across_an_agent_restart() {
    let Some(python) = common::test_python() else {
        return;
    };
    // The executor runs as the user running the tests (see the script), root in CI.
    let mut c = common::start_with_agents(3, &[], 1, &["--allow-root-tasks"], 1).await;
    let (_leader, follower) = leader_and_follower(&c).await;
    let mut script = common::Conversation::start(
        &python,
        SCRIPT,
        &["pymesos-executor", &follower, EXECUTOR_SCRIPT],
    );
    let talk = async {
        while let Some(line) = script.next_line().await {
            if line == "restart-agent" {
                c.kill_agent(0).await.expect("kill the agent");
                c.start_agent(0).expect("start the agent again");
                script.say("restarted").await;
            }
        }
    };
    let talked = tokio::time::timeout(SCRIPT_TIMEOUT, talk).await.ok();
    let out = script.finish(talked).await;
    eprintln!("{}", out.trim());
}

#[tokio::test(flavor = "multi_thread")]
async fn mesoshttp_scheduler_launches_a_task_and_tears_down() {
    let Some(python) = common::test_python() else {
        return;
    };
    let c = common::start_with_agents(3, &[], 1, &[], 1).await;
    let (leader, follower) = leader_and_follower(&c).await;
    common::run_python_ok(&python, SCRIPT, &["mesoshttp", &follower], SCRIPT_TIMEOUT).await;
    // The teardown reached the leader: the framework is gone.
    let state = common::state_at(&leader).await.unwrap();
    let torn: Vec<bool> = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "mesoshttp-on-drover")
        .map(|f| f["torn_down"].as_bool().unwrap())
        .collect();
    assert_eq!(torn, vec![true], "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_endpoints_answer_in_mesos_shapes_on_the_leader() {
    let c = common::start_with_agents(3, &[], 1, &[], 1).await;
    let (leader, follower) = leader_and_follower(&c).await;
    let mut f = Events::subscribe(&leader, &subscribe_call("stateful", true)).await;
    let offer =
        f.wait_for("offers", WAIT, |e| e["type"] == "OFFERS").await["offers"]["offers"][0].clone();
    let tasks = vec![
        task("st-done", &offer["agent_id"], "true"),
        task("st-live", &offer["agent_id"], "sleep 60"),
    ];
    assert_eq!(f.call(&leader, accept(&offer, tasks)).await.0, 202);
    f.wait_updates(&[("st-done", "TASK_FINISHED"), ("st-live", "TASK_RUNNING")])
        .await;

    // Followers redirect to the same path on the leader.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/master/state", "/state", "/master/tasks"] {
        let r = client
            .get(format!("http://{follower}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 307, "{path}");
        assert_eq!(
            r.headers()["location"],
            format!("//{leader}{path}").as_str()
        );
    }

    let get = |path: &str| {
        let url = format!("http://{leader}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            let code = r.status().as_u16();
            (code, r.text().await.unwrap())
        }
    };
    for path in [
        "/master/state",
        "/state",
        "/state.json",
        "/master/state.json",
    ] {
        let (code, body) = get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(s["version"], "1.11.0");
        assert_eq!(s["activated_slaves"], 1);
        assert_eq!(
            s["leader_info"]["port"].as_u64(),
            Some(leader.rsplit_once(':').unwrap().1.parse().unwrap())
        );
        let slave = &s["slaves"][0];
        assert_eq!(slave["id"], offer["agent_id"]["value"]);
        assert!(
            slave["resources"]["cpus"].as_f64().unwrap() > 0.0,
            "{slave}"
        );
        assert_eq!(slave["resources"]["ports"], "[31000-32000]", "{slave}");
        assert!(
            (slave["used_resources"]["cpus"].as_f64().unwrap() - 0.1).abs() < 1e-9,
            "{slave}"
        );
        let fw = s["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|fw| fw["name"] == "stateful")
            .expect("the framework");
        assert_eq!(fw["id"], f.framework_id.as_str());
        assert_eq!(fw["capabilities"], json!(["PARTITION_AWARE"]));
        assert_eq!(
            (&fw["connected"], &fw["active"]),
            (&json!(true), &json!(true))
        );
        let live: Vec<&str> = fw["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        let done: Vec<&str> = fw["completed_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!((live, done), (vec!["st-live"], vec!["st-done"]));
        let t = &fw["tasks"][0];
        assert_eq!(t["state"], "TASK_RUNNING");
        assert_eq!(t["slave_id"], offer["agent_id"]["value"]);
        assert_eq!(t["resources"]["mem"], 16.0);
        assert_eq!(
            t["statuses"].as_array().unwrap().last().unwrap()["state"],
            "TASK_RUNNING"
        );
    }
    let (_, body) = get("/master/frameworks").await;
    let fws: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fws["frameworks"].as_array().unwrap().len(), 1);
    let (_, body) = get("/master/slaves").await;
    let slaves: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(slaves["slaves"].as_array().unwrap().len(), 1);

    // The agent's own /state, in Mesos's agent shape: each task under its command executor,
    // whose directory is the task's sandbox.
    let agent_addr = format!(
        "{}:{}",
        offer["url"]["address"]["hostname"].as_str().unwrap(),
        offer["url"]["address"]["port"]
    );
    for path in ["/state", "/state.json", "/slave(1)/state"] {
        let (code, body) = common::http_get(&agent_addr, path).await;
        assert_eq!(code, 200, "{path}: {body}");
        let a: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(a["id"], offer["agent_id"]["value"]);
        assert_eq!(a["version"], "1.11.0");
        assert_eq!(a["resources"]["ports"], "[31000-32000]");
        let fw = a["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|fw| fw["id"] == f.framework_id.as_str())
            .expect("the framework on the agent");
        let executors = fw["executors"].as_array().unwrap();
        let live = executors
            .iter()
            .find(|e| e["id"] == "st-live")
            .expect("st-live's executor");
        assert_eq!(live["tasks"][0]["state"], "TASK_RUNNING", "{live}");
        assert_eq!(live["tasks"][0]["resources"]["mem"], 16.0);
        assert!(
            live["directory"].as_str().unwrap().ends_with("/sandbox"),
            "{live}"
        );
        let (code, _) = common::http_get(
            &agent_addr,
            &format!(
                "/files/read?path={}/stdout&offset=-1",
                live["directory"].as_str().unwrap()
            ),
        )
        .await;
        assert_eq!(code, 200);
    }

    // Tasks: newest first by default, a page, a filter, and bad parameters named.
    let ids = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let asc = ids(&get("/master/tasks?order=asc").await.1);
    let mut desc = ids(&get("/master/tasks").await.1);
    assert_eq!(asc.len(), 2);
    assert_eq!(
        ids(&get("/master/tasks?order=asc&limit=1").await.1),
        asc[..1]
    );
    assert_eq!(ids(&get("/master/tasks?offset=1").await.1), desc[1..]);
    desc.reverse();
    assert_eq!(desc, asc);
    assert_eq!(ids(&get("/tasks?task_id=st-live").await.1), vec!["st-live"]);
    assert_eq!(
        ids(&get("/master/tasks?framework_id=nope").await.1),
        Vec::<String>::new()
    );
    // Connection is the leader's knowledge: once the framework's stream is gone, it shows
    // disconnected (and inactive) while it keeps its tasks for its failover timeout.
    let fid = f.framework_id.clone();
    drop(f);
    common::wait_until("the framework shown disconnected", WAIT, || {
        let (leader, fid) = (leader.clone(), fid.clone());
        async move {
            let (_, body) = common::try_http_get(&leader, "/master/frameworks")
                .await
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let fw = v["frameworks"]
                .as_array()
                .and_then(|a| a.iter().find(|f| f["id"] == fid.as_str()).cloned())
                .ok_or_else(|| body.clone())?;
            if fw["connected"] == false
                && fw["active"] == false
                && !fw["tasks"].as_array().unwrap().is_empty()
            {
                Ok(())
            } else {
                Err(body)
            }
        }
    })
    .await
    .expect("disconnected");

    for bad in ["limit=-1", "offset=x", "order=up"] {
        let (code, body) = get(&format!("/master/tasks?{bad}")).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(
            body.contains(bad.split('=').next().unwrap()),
            "{bad}: {body}"
        );
    }
}

/// POSTs an operator call (JSON) to `/api/v1/operator` at `addr`.
async fn operator(addr: &str, call: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{addr}/api/v1/operator"))
        .header("Content-Type", "application/json")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let body = match location {
        Some(l) => json!({ "location": l }),
        None => serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    };
    (code, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_api_reads_changes_and_streams_events() {
    let c = common::start_with_agents(3, &[], 1, &[], 1).await;
    let (leader, follower) = leader_and_follower(&c).await;
    let (code, body) = operator(&follower, json!({"type": "GET_HEALTH"})).await;
    assert_eq!(code, 307);
    assert_eq!(body["location"], format!("//{leader}/api/v1/operator"));

    // The operator event stream, before anything runs.
    let mut events = {
        let raw = RawResponse::post(
            &leader,
            "/api/v1",
            &[("Content-Type", "application/json")],
            br#"{"type":"SUBSCRIBE"}"#,
        )
        .await
        .unwrap();
        assert_eq!(raw.status, 200);
        assert!(raw.is_chunked());
        Events::from_raw(raw, "", "")
    };
    let first = events.next(WAIT).await.unwrap();
    assert_eq!(first["type"], "SUBSCRIBED", "{first}");
    let agent_id = first["subscribed"]["get_state"]["get_agents"]["agents"][0]["agent_info"]["id"]
        ["value"]
        .as_str()
        .expect("the agent in the state")
        .to_string();

    let mut f = Events::subscribe(&leader, &subscribe_call("operated", true)).await;
    let added = events
        .wait_for("FRAMEWORK_ADDED", WAIT, |e| e["type"] == "FRAMEWORK_ADDED")
        .await;
    assert_eq!(
        added["framework_added"]["framework"]["framework_info"]["name"],
        "operated"
    );
    let offer =
        f.wait_for("offers", WAIT, |e| e["type"] == "OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(
        f.call(
            &leader,
            accept(&offer, vec![task("op-1", &offer["agent_id"], "sleep 60")])
        )
        .await
        .0,
        202
    );
    f.wait_update("op-1", "TASK_RUNNING").await;
    let e = events
        .wait_for("TASK_ADDED", WAIT, |e| e["type"] == "TASK_ADDED")
        .await;
    assert_eq!(e["task_added"]["task"]["task_id"]["value"], "op-1");
    events
        .wait_for("TASK_UPDATED to RUNNING", WAIT, |e| {
            e["type"] == "TASK_UPDATED" && e["task_updated"]["state"] == "TASK_RUNNING"
        })
        .await;

    // Reads.
    let (code, r) = operator(&leader, json!({"type": "GET_HEALTH"})).await;
    assert_eq!((code, &r["get_health"]["healthy"]), (200, &json!(true)));
    let (_, r) = operator(&leader, json!({"type": "GET_VERSION"})).await;
    assert_eq!(r["get_version"]["version_info"]["version"], "1.11.0");
    let (_, r) = operator(&leader, json!({"type": "GET_TASKS"})).await;
    assert_eq!(r["type"], "GET_TASKS");
    assert_eq!(r["get_tasks"]["tasks"][0]["task_id"]["value"], "op-1");
    assert_eq!(r["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING");
    let (_, r) = operator(&leader, json!({"type": "GET_STATE"})).await;
    assert_eq!(
        r["get_state"]["get_frameworks"]["frameworks"][0]["framework_info"]["name"],
        "operated"
    );
    let (_, r) = operator(&leader, json!({"type": "GET_AGENTS"})).await;
    let agent = &r["get_agents"]["agents"][0];
    assert_eq!(agent["active"], true);
    assert!(agent["allocated_resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "cpus"));
    let (_, r) = operator(&leader, json!({"type": "GET_FRAMEWORKS"})).await;
    assert_eq!(r["get_frameworks"]["frameworks"][0]["active"], true);
    let (_, r) = operator(&leader, json!({"type": "GET_ROLES"})).await;
    assert_eq!(r["get_roles"]["roles"][0]["name"], "*");
    let (_, r) = operator(&leader, json!({"type": "GET_MASTER"})).await;
    assert_eq!(r["get_master"]["master_info"]["version"], "1.11.0");
    let (code, r) = operator(&leader, json!({"type": "GET_FLAGS"})).await;
    assert_eq!(code, 501, "{r}");
    let (code, r) = operator(&leader, json!({"type": "DRAIN_AGENT"})).await;
    assert_eq!(code, 400, "{r}");
    let (code, r) = operator(&leader, json!({"type": "DEACTIVATE_AGENT"})).await;
    assert!(
        code == 400 && r.to_string().contains("deactivate_agent"),
        "{code} {r}"
    );

    // Deactivate: its offers rescinded and no new ones, its task left running, it shows
    // deactivated; reactivated, it is offered again.
    let offered = |want: bool| {
        let leader = leader.clone();
        common::wait_until("the agent's offered resources", WAIT, move || {
            let leader = leader.clone();
            async move {
                let (_, r) = operator(&leader, json!({"type": "GET_AGENTS"})).await;
                let offered = r["get_agents"]["agents"][0]
                    .get("offered_resources")
                    .and_then(|o| o.as_array())
                    .is_some_and(|o| !o.is_empty());
                (offered == want).then_some(()).ok_or(format!("{r}"))
            }
        })
    };
    offered(true).await.unwrap();
    let (code, r) = operator(
        &leader,
        json!({"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let (_, r) = operator(&leader, json!({"type": "GET_AGENTS"})).await;
    let agent = &r["get_agents"]["agents"][0];
    assert_eq!(
        (&agent["active"], &agent["deactivated"]),
        (&json!(false), &json!(true)),
        "{r}"
    );
    assert!(
        agent
            .get("offered_resources")
            .is_none_or(|o| o.as_array().is_some_and(|o| o.is_empty())),
        "a deactivated agent's offers are rescinded: {r}"
    );
    f.wait_for("the offer rescinded", WAIT, |e| e["type"] == "RESCIND")
        .await;
    let (_, r) = operator(&leader, json!({"type": "GET_TASKS"})).await;
    assert_eq!(r["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING", "{r}");
    let (code, r) = operator(
        &leader,
        json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    offered(true).await.unwrap();

    // Drain: the agent's task is killed and it shows as draining; then reactivated.
    let (code, r) = operator(
        &leader,
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    f.wait_update("op-1", "TASK_KILLED").await;
    let (_, r) = operator(&leader, json!({"type": "GET_MAINTENANCE_STATUS"})).await;
    assert_eq!(
        r["get_maintenance_status"]["status"]["draining_machines"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{r}"
    );
    let (code, r) = operator(
        &leader,
        json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent_id}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let (_, r) = operator(&leader, json!({"type": "GET_MAINTENANCE_STATUS"})).await;
    assert!(
        r["get_maintenance_status"]["status"]
            .get("draining_machines")
            .is_none(),
        "{r}"
    );

    // An operator's TEARDOWN ends the framework; MARK_AGENT_GONE removes the agent.
    let fid = f.framework_id.clone();
    let (code, r) = operator(
        &leader,
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": fid}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let e = events
        .wait_for("FRAMEWORK_REMOVED", WAIT, |e| {
            e["type"] == "FRAMEWORK_REMOVED"
        })
        .await;
    assert_eq!(
        e["framework_removed"]["framework_info"]["id"]["value"],
        fid.as_str()
    );
    let (code, _) = operator(
        &leader,
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nope"}}}),
    )
    .await;
    assert_eq!(code, 404);
    let (code, r) = operator(
        &leader,
        json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let e = events
        .wait_for("AGENT_REMOVED", WAIT, |e| e["type"] == "AGENT_REMOVED")
        .await;
    assert_eq!(e["agent_removed"]["agent_id"]["value"], agent_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn pymesos_operator_driver_reads_and_follows_the_cluster() {
    let Some(python) = common::test_python() else {
        return;
    };
    let c = common::start_with_agents(3, &[], 1, &[], 1).await;
    let (_, follower) = leader_and_follower(&c).await;
    let stdout =
        common::run_python_ok(&python, SCRIPT, &["operator", &follower], SCRIPT_TIMEOUT).await;
    eprintln!("{}", stdout.trim());
}
