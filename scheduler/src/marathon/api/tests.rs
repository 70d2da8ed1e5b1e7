use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::marathon::state::MemoryStore;

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

fn api() -> Router {
    router(Apps::new(MemoryStore::default()))
}

#[tokio::test]
async fn an_app_is_created_listed_and_shown() {
    let api = api();
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
    }
    assert_eq!(call(&api, "GET", "/ping", "").await.0, StatusCode::OK);
}

#[tokio::test]
async fn errors_have_marathons_codes_and_json_shapes() {
    let api = api();
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
    ];
    for (method, uri, body, want) in cases {
        let (status, content_type, json) = call(&api, method, uri, body).await;
        assert_eq!(status, *want, "{method} {uri} {body}: {json}");
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
    let (_, _, duplicate) = call(&api, "POST", "/v2/apps", body).await;
    assert_eq!(
        duplicate["message"],
        "An app with id [/web] already exists."
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let api = api();
    let big = format!(
        r#"{{"id": "/x", "cmd": "{}"}}"#,
        "x".repeat(MAX_BODY_BYTES + 1)
    );
    let (status, _, _) = call(&api, "POST", "/v2/apps", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
