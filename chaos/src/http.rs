//! HTTP, plain or mutual TLS, against a master's, agent's or scheduler's HTTP endpoints (`/metrics`,
//! `/v1/state`, `/v2`), for the benchmarks, the workloads and the harness.

use std::time::Duration;

/// An HTTP client of the cluster's endpoints: plain, or mutual TLS with a certificate of the
/// cluster's CA (then `https`, and the servers must hold certificates of the roles given).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    scheme: &'static str,
}

impl Http {
    /// Plain HTTP.
    pub fn plain() -> Self {
        Http {
            client: reqwest::Client::new(),
            scheme: "http",
        }
    }

    /// HTTPS with `tls` (HTTP/1.1: reqwest speaks no HTTP/2 here).
    pub fn tls(tls: &drover_tls::ClientTls) -> Result<Self, String> {
        let config = tls.http1_config().map_err(|e| e.to_string())?;
        // Never plain HTTP with a certificate in hand: an `http://` URL or a redirect to one
        // is an error, not a request sent in the clear.
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .https_only(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Http {
            client,
            scheme: "https",
        })
    }

    /// `addr` (host:port) and `path` as a URL of this client's scheme.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// The client, for requests this type has no helper for.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GET `addr` `path`; the body as text (bounded at 10 s).
    pub async fn get(&self, addr: &str, path: &str) -> Result<String, String> {
        let resp = self
            .client
            .get(self.url(addr, path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    }

    /// A request with an optional JSON body, bounded by `timeout`: the status and the JSON
    /// answer (`Null` when the body is not JSON). A request that got no answer (a broken
    /// connection, the timeout) is an error.
    pub async fn request_json(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, serde_json::Value), String> {
        let mut req = self
            .client
            .request(method, self.url(addr, path))
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

    /// GET `addr` `path`, parsed as JSON.
    pub async fn get_json(&self, addr: &str, path: &str) -> Result<serde_json::Value, String> {
        let body = self.get(addr, path).await?;
        serde_json::from_str(&body).map_err(|e| format!("{addr}{path}: {e}"))
    }
}

/// GET `http://addr/path`; the body as text. Errors are strings (for [`crate::wait_until`]).
pub async fn get(addr: &str, path: &str) -> Result<String, String> {
    Http::plain().get(addr, path).await
}

/// GET `http://addr/path`, parsed as JSON.
pub async fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    Http::plain().get_json(addr, path).await
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
