use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::driver::{Driver, DriverOptions, FrameworkInfo};
use crate::fake_master::{offer, offers, update, FakeConfig, FakeMaster, TEST_DEADLINE};
use crate::marathon::service::{self, Info};
use crate::marathon::state::{MemoryStore, Records};
use drover_proto::v1::TaskState;

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("answer");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, json)
}

/// A scheduler on a fake master and an in-memory store, and its routes.
struct Harness {
    fake: FakeMaster,
    api: Router,
}

async fn harness() -> Harness {
    let fake = FakeMaster::start(FakeConfig::default()).await;
    let (driver, events) = Driver::start(
        std::slice::from_ref(&fake.addr),
        FrameworkInfo::new("marathon"),
        DriverOptions::default(),
    )
    .unwrap();
    let info = Info {
        name: "drover".into(),
        http_address: "127.0.0.1:8080".into(),
        masters: vec![fake.addr.clone()],
        framework_name: "marathon".into(),
        failover_timeout_seconds: 60.0,
        role: "*".into(),
    };
    let started = service::start(
        Records::new(MemoryStore::default()),
        driver,
        events,
        info,
        None,
    )
    .await
    .unwrap();
    fake.wait_for("SUBSCRIBE", |c| !c.subscribes.is_empty())
        .await;
    Harness {
        fake,
        api: router(started.handle),
    }
}

async fn api() -> Router {
    // The fake master must outlive the routes: leaked for the test's length.
    let h = harness().await;
    let api = h.api.clone();
    std::mem::forget(h.fake);
    api
}

/// Polls `GET uri` until `cond` holds of its JSON.
async fn wait_json(api: &Router, uri: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + TEST_DEADLINE;
    loop {
        let (_, _, json) = call(api, "GET", uri, "").await;
        if cond(&json) {
            return json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {json}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_app_is_created_listed_and_shown() {
    let api = api().await;
    let (status, _, created) = call(
        &api,
        "POST",
        "/v2/apps",
        r#"{"id": "prod/web", "cmd": "sleep 100", "instances": 3}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["id"], "/prod/web");
    assert_eq!(created["instances"], 3);
    assert_eq!(created["tasksRunning"], 0);
    assert!(
        created["version"]
            .as_str()
            .is_some_and(|v| v.ends_with('Z')),
        "{created}"
    );

    let (status, _, listed) = call(&api, "GET", "/v2/apps", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["apps"].as_array().map(Vec::len), Some(1));

    // As marathon-python sends it: the id with its leading slash, after /v2/apps/.
    for uri in [
        "/v2/apps//prod/web",
        "/v2/apps/prod/web",
        "/v2/apps/prod/web/",
    ] {
        let (status, _, shown) = call(&api, "GET", uri, "").await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(shown["app"]["id"], "/prod/web", "{uri}");
        assert_eq!(shown["app"]["tasks"], serde_json::json!([]));
        assert_eq!(
            shown["app"]["deployments"].as_array().map(Vec::len),
            Some(1)
        );
    }
    assert_eq!(call(&api, "GET", "/ping", "").await.0, StatusCode::OK);
}

#[tokio::test]
async fn errors_have_marathons_codes_and_json_shapes() {
    let api = api().await;
    let body = r#"{"id": "/web", "cmd": "x"}"#;
    assert_eq!(
        call(&api, "POST", "/v2/apps", body).await.0,
        StatusCode::CREATED
    );
    let cases: &[(&str, &str, &str, StatusCode)] = &[
        ("POST", "/v2/apps", body, StatusCode::CONFLICT),
        ("POST", "/v2/apps", "{not json", StatusCode::BAD_REQUEST),
        (
            "POST",
            "/v2/apps",
            r#"{"id": "/x", "cmd": "x", "cpus": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("GET", "/v2/apps/nothing-here", "", StatusCode::NOT_FOUND),
        ("GET", "/v2/apps/Bad_Id", "", StatusCode::NOT_FOUND),
        (
            "POST",
            "/v2/apps",
            r#"{"id": "/x", "cmd": "x", "bogus": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v2/apps",
            r#"{"id": "/Bad_Id", "cmd": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v2/apps",
            "[1, 2]",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // Locked by the create's deployment (no offers come from this fake master).
        (
            "PUT",
            "/v2/apps//web?force=False",
            r#"{"instances": 2}"#,
            StatusCode::CONFLICT,
        ),
        ("POST", "/v2/apps/web/restart", "", StatusCode::CONFLICT),
        ("DELETE", "/v2/apps/web", "", StatusCode::CONFLICT),
        ("PUT", "/v2/apps/web", "{not json", StatusCode::BAD_REQUEST),
        (
            "PUT",
            "/v2/apps/web?force=true",
            r#"{"cpus": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "DELETE",
            "/v2/apps/web/tasks?scale=true&wipe=true",
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            "DELETE",
            "/v2/apps/web/tasks/no-such-task",
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v2/tasks/delete",
            r#"{"ids": ["no-such-task"]}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v2/tasks/delete",
            r#"{"ids": 3}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "DELETE",
            "/v2/deployments/no-such-plan",
            "",
            StatusCode::NOT_FOUND,
        ),
        ("DELETE", "/v2/queue//web/delay", "", StatusCode::NO_CONTENT),
        (
            "DELETE",
            "/v2/queue//nothing/delay",
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v2/apps/web/versions/not-a-time",
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            "PATCH",
            "/v2/apps/web/restart",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, uri, body, want) in cases {
        let (status, content_type, json) = call(&api, method, uri, body).await;
        assert_eq!(status, *want, "{method} {uri} {body}: {json}");
        if status == StatusCode::NO_CONTENT {
            continue;
        }
        assert_eq!(content_type, "application/json", "{method} {uri}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
    let (_, _, invalid) = call(
        &api,
        "POST",
        "/v2/apps",
        r#"{"id": "/x", "cmd": "x", "cpus": -1}"#,
    )
    .await;
    assert_eq!(invalid["details"][0]["path"], "/cpus");
    let (_, _, unknown) = call(
        &api,
        "POST",
        "/v2/apps",
        r#"{"id": "/x", "cmd": "x", "bogus": 1}"#,
    )
    .await;
    assert!(
        unknown["details"][0]["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("bogus")),
        "{unknown}"
    );
    let (_, _, locked) = call(&api, "PUT", "/v2/apps/web", r#"{"instances": 2}"#).await;
    assert!(
        locked["message"]
            .as_str()
            .is_some_and(|m| m.contains("locked") && m.contains("/v2/deployments/")),
        "{locked}"
    );
    // Marathon names the locking deployments, the one in the message among them.
    let lock = locked["deployments"][0]["id"]
        .as_str()
        .expect("a deployment id");
    assert!(
        locked["message"].as_str().is_some_and(|m| m.contains(lock)),
        "{locked}"
    );
    // Forced: the change replaces the deployment.
    let (status, _, forced) = call(
        &api,
        "PUT",
        "/v2/apps/web?force=True",
        r#"{"instances": 2}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert!(
        forced["deploymentId"].is_string() && forced["version"].is_string(),
        "{forced}"
    );
    let (_, _, duplicate) = call(&api, "POST", "/v2/apps", body).await;
    assert_eq!(
        duplicate["message"],
        "An app with id [/web] already exists."
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let api = api().await;
    let big = format!(
        r#"{{"id": "/x", "cmd": "{}"}}"#,
        "x".repeat(MAX_BODY_BYTES + 1)
    );
    let (status, _, _) = call(&api, "POST", "/v2/apps", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_app_runs_on_offers_scales_and_is_deleted_with_its_tasks() {
    let h = harness().await;
    let (status, _, created) = call(
        &h.api,
        "POST",
        "/v2/apps",
        r#"{"id": "/web", "cmd": "sleep 100", "instances": 3, "cpus": 0.1, "mem": 16}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    h.fake.wait_for("REVIVE", |c| !c.revives.is_empty()).await;
    h.fake
        .push(offers(vec![offer(
            "o1",
            "cpus:4;mem:1024;ports:[31000-31010]",
        )]))
        .await;
    let calls = h.fake.wait_for("ACCEPT", |c| !c.accepts.is_empty()).await;
    let tasks: Vec<String> = calls.accepts[0]
        .launch
        .iter()
        .map(|t| t.task_id.clone())
        .collect();
    assert_eq!(tasks.len(), 3);
    for (n, t) in tasks.iter().enumerate() {
        h.fake
            .push(update(t, TaskState::TaskRunning, &format!("u{n}")))
            .await;
    }
    let app = wait_json(&h.api, "/v2/apps/web", "3 running", |j| {
        j["app"]["tasksRunning"] == 3
    })
    .await;
    assert_eq!(app["app"]["tasks"].as_array().map(Vec::len), Some(3));
    wait_json(&h.api, "/v2/deployments", "the deployment to finish", |j| {
        j == &serde_json::json!([])
    })
    .await;
    let (_, _, listed) = call(&h.api, "GET", "/v2/tasks?status=Running", "").await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(3));
    h.fake
        .wait_for("acknowledgements", |c| c.ack_uuids().len() == 3)
        .await;

    // As marathon-python scales: PUT the id with its slash, the count alone, force=False.
    let (status, _, result) = call(
        &h.api,
        "PUT",
        "/v2/apps//web?force=False",
        r#"{"instances": 1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert!(
        result["deploymentId"].is_string() && result["version"].is_string(),
        "{result}"
    );
    let calls = h.fake.wait_for("two kills", |c| c.kills.len() == 2).await;
    let killed: Vec<String> = calls.kills.iter().map(|k| k.task_id.clone()).collect();
    // Locked by the scale's deployment while the kills are outstanding.
    let (status, _, locked) = call(&h.api, "PUT", "/v2/apps/web", r#"{"instances": 2}"#).await;
    assert_eq!(status, StatusCode::CONFLICT, "{locked}");
    for (n, t) in killed.iter().enumerate() {
        h.fake
            .push(update(t, TaskState::TaskKilled, &format!("k{n}")))
            .await;
    }
    wait_json(&h.api, "/v2/apps/web", "one left", |j| {
        j["app"]["tasks"].as_array().map(Vec::len) == Some(1)
            && j["app"]["deployments"] == serde_json::json!([])
    })
    .await;

    let (status, _, result) = call(&h.api, "DELETE", "/v2/apps/web", "").await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let calls = h
        .fake
        .wait_for("the last kill", |c| c.kills.len() == 3)
        .await;
    let last = calls.kills[2].task_id.clone();
    assert!(!killed.contains(&last));
    assert_eq!(
        call(&h.api, "GET", "/v2/apps/web", "").await.0,
        StatusCode::NOT_FOUND
    );
    h.fake
        .push(update(&last, TaskState::TaskKilled, "k9"))
        .await;
    wait_json(&h.api, "/v2/deployments", "the stop to finish", |j| {
        j == &serde_json::json!([])
    })
    .await;
}

#[tokio::test]
async fn info_queue_leader_and_unknown_routes_have_marathons_shapes() {
    let api = api().await;
    let info = wait_json(&api, "/v2/info", "the framework id", |j| {
        j["frameworkId"] == crate::fake_master::FRAMEWORK_ID
    })
    .await;
    for key in ["marathon_config", "zookeeper_config", "http_config"] {
        assert!(info[key].is_object(), "{key}: {info}");
    }
    assert_eq!(
        call(&api, "GET", "/v2/leader", "").await.2["leader"],
        "127.0.0.1:8080"
    );
    call(
        &api,
        "POST",
        "/v2/apps",
        r#"{"id": "/q", "cmd": "x", "instances": 2}"#,
    )
    .await;
    let (_, _, queue) = call(&api, "GET", "/v2/queue", "").await;
    assert_eq!(queue["queue"][0]["count"], 2, "{queue}");
    assert!(queue["queue"][0]["app"].is_object() && queue["queue"][0]["delay"].is_object());
    let (status, _, _) = call(&api, "DELETE", "/v2/queue//q/delay", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, missing) = call(&api, "GET", "/v2/nothing", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["message"], "URI not found: /v2/nothing");
    let (_, _, versions) = call(&api, "GET", "/v2/apps/q/versions", "").await;
    let v = versions["versions"][0].as_str().unwrap().to_string();
    let (status, _, old) = call(&api, "GET", &format!("/v2/apps/q/versions/{v}"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(old["id"], "/q");
}

#[test]
fn app_paths_find_the_id_and_the_suffix() {
    let id = |s: &str| PathId::parse(s).unwrap();
    assert_eq!(
        app_path_of("/prod/web").unwrap(),
        AppPath::App(id("/prod/web"))
    );
    assert_eq!(
        app_path_of("/prod/web/restart").unwrap(),
        AppPath::Restart(id("/prod/web"))
    );
    assert_eq!(
        app_path_of("//prod/web/tasks").unwrap(),
        AppPath::Tasks(id("/prod/web"), None)
    );
    assert_eq!(
        app_path_of("prod/web/tasks/prod_web.instance-1._app.1").unwrap(),
        AppPath::Tasks(id("/prod/web"), Some("prod_web.instance-1._app.1".into()))
    );
    assert_eq!(
        app_path_of("/web/versions").unwrap(),
        AppPath::Versions(id("/web"), None)
    );
    assert_eq!(
        app_path_of("/web/versions/2026-12-04T18:00:00.123Z").unwrap(),
        AppPath::Versions(id("/web"), Some("2026-12-04T18:00:00.123Z".into()))
    );
    assert!(app_path_of("/tasks").is_err());
}

#[tokio::test]
async fn ports_asking_for_any_get_distinct_service_ports_that_changes_keep() {
    let api = api().await;
    let (_, _, a) = call(
        &api,
        "POST",
        "/v2/apps",
        r#"{"id": "/a", "cmd": "x", "instances": 0}"#,
    )
    .await;
    let (_, _, b) = call(
        &api,
        "POST",
        "/v2/apps",
        r#"{"id": "/b", "cmd": "x", "instances": 0, "portDefinitions": [{"port": 0}, {"port": 10001}, {"port": 0}]}"#,
    )
    .await;
    assert_eq!(a["portDefinitions"][0]["port"], 10000, "{a}");
    let ports: Vec<u64> = b["portDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, vec![10002, 10001, 10003], "{b}");
    // A change that asks for any port again keeps the one the app has.
    let (status, _, _) = call(
        &api,
        "PUT",
        "/v2/apps/a?force=true",
        r#"{"portDefinitions": [{"port": 0}], "cmd": "y"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, shown) = call(&api, "GET", "/v2/apps/a", "").await;
    assert_eq!(shown["app"]["portDefinitions"][0]["port"], 10000, "{shown}");
}
