//! Plain HTTP against a master's, agent's or scheduler's HTTP endpoints (`/metrics`,
//! `/v1/state`, `/v2`), for the benchmarks, the workloads and the harness.

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

/// A request with an optional JSON body, through `client`, bounded by `timeout`: the status
/// and the JSON answer (`Null` when the body is not JSON). A request that got no answer (a
/// broken connection, the timeout) is an error.
pub async fn request_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    addr: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), String> {
    let mut req = client
        .request(method, format!("http://{addr}{path}"))
        .timeout(timeout);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

/// The value of a metric line `name_and_labels VALUE` in a Prometheus exposition.
pub fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name_and_labels).then(|| v.parse().ok()).flatten()
    })
}

/// The sum of every series of metric `name` whose labels contain `filter` (all of them when it
/// is empty) in a Prometheus exposition; `None` when there is no such series.
pub fn metric_sum(body: &str, name: &str, filter: &str) -> Option<f64> {
    let mut sum = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if series.split('{').next() == Some(name) && series.contains(filter) {
            *sum.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_the_series_of_one_metric_matching_a_filter() {
        let body = "# HELP drover_master_tasks Tasks\n\
drover_master_tasks{state=\"TASK_RUNNING\"} 3\n\
drover_master_tasks{state=\"TASK_FINISHED\"} 4\n\
drover_master_tasks_launched_total 99\n";
        assert_eq!(metric_sum(body, "drover_master_tasks", ""), Some(7.0));
        assert_eq!(
            metric_sum(body, "drover_master_tasks", "\"TASK_FINISHED\""),
            Some(4.0)
        );
        assert_eq!(metric_sum(body, "drover_master_offers", ""), None);
    }
}
