//! Plain HTTP GETs against a master's or agent's HTTP endpoints (`/metrics`, `/v1/state`),
//! for the benchmarks and the harness.

use std::time::Duration;

/// GET `http://addr/path`; the body as text. Errors are strings (for [`crate::wait_until`]).
pub async fn get(addr: &str, path: &str) -> Result<String, String> {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}

/// GET `http://addr/path`, parsed as JSON.
pub async fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let body = get(addr, path).await?;
    serde_json::from_str(&body).map_err(|e| format!("{addr}{path}: {e}"))
}

/// The value of a metric line `name_and_labels VALUE` in a Prometheus exposition.
pub fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name_and_labels).then(|| v.parse().ok()).flatten()
    })
}
