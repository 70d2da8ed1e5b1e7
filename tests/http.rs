//! The HTTP endpoints every master serves next to gRPC, and their use by Prometheus: the
//! metrics pass `promtool check metrics`, and a real Prometheus server configured by
//! `deploy/prometheus.yml` scrapes all three masters.

mod common;

use std::time::Duration;

use common::{http_get, metric, start, wait_until, LEADER_TIMEOUT};

const REQUIRED_METRICS: &[&str] = &[
    "drover_master_raft_is_leader",
    "drover_master_raft_term",
    "drover_master_raft_leader_id",
    "drover_master_raft_last_log_index",
    "drover_master_raft_commit_index",
    "drover_master_raft_applied_index",
    "drover_master_raft_append_seconds_bucket",
    "drover_master_raft_commit_seconds_bucket",
    "drover_master_raft_snapshots_total",
    "drover_master_raft_snapshot_seconds_bucket",
    "drover_master_store_operations_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_leader_and_metrics_on_every_master() {
    let c = start(3, &["--snapshot-every", "20"]).await;
    let client = c.client();
    for i in 0..30 {
        client.put("t", &format!("k{i}"), vec![1]).await.unwrap();
    }
    client.get("t", "k1").await.unwrap();
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    for m in c.masters() {
        let (code, body) = http_get(&m.addr, "/health").await;
        assert_eq!(code, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok");
        let (code, body) = http_get(&m.addr, "/v1/leader").await;
        assert_eq!(code, 200, "{body}");
        let l: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            l["leader_id"], leader.node_id,
            "master {} disagrees: {body}",
            m.id
        );
        assert_eq!(l["leader_addr"], leader.leader_addr.as_str());
        assert_eq!(l["term"], leader.term);
        // Mesos's plain endpoints: the API version as clients parse it, and the redirect.
        let (code, body) = http_get(&m.addr, "/version").await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let parts: Vec<u32> = v["version"]
            .as_str()
            .unwrap()
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 3, "{body}");
        for path in ["/master/redirect", "/redirect"] {
            let resp = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(format!("http://{}{path}", m.addr))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 307);
            assert_eq!(
                resp.headers()["location"],
                format!("//{}", leader.leader_addr).as_str()
            );
        }
    }
    let leader_addr = leader.leader_addr.clone();
    wait_until("a snapshot was built", Duration::from_secs(20), || {
        let a = leader_addr.clone();
        async move {
            match metric(&a, "drover_master_raft_snapshots_total").await {
                Some(n) if n >= 1.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();
    let (_, body) = http_get(&leader_addr, "/metrics").await;
    for name in REQUIRED_METRICS {
        assert!(body.contains(name), "missing {name}");
    }
    assert_eq!(
        metric(&leader_addr, "drover_master_raft_is_leader").await,
        Some(1.0)
    );
    assert!(body.contains("drover_master_store_operations_total{op=\"put\",outcome=\"ok\"} 30"));

    // promtool (Debian's prometheus package) accepts the exposition of every master.
    for m in c.masters() {
        let (_, body) = http_get(&m.addr, "/metrics").await;
        let mut child = tokio::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("promtool is installed by scripts/setup.sh");
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool on master {}: {}{}",
            m.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs the real Prometheus server with the repository's `deploy/prometheus.yml` (its targets
/// pointed at this test's ports, its certificate files at this cluster's, as `drover up`
/// makes them) and waits until it reports all three masters up, scraped over mutual TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_all_three_masters() {
    let c = common::start_tls(3, 0, &[]).await;
    let certs = c.certs().expect("certificates");
    let operator = certs
        .files(drover_tls::Role::Client, drover_chaos::up::OPERATOR, &[])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus.yml"
    ))
    .unwrap();
    let defaults = ["127.0.0.1:5050", "127.0.0.1:5052", "127.0.0.1:5054"];
    let mut config = sample.clone();
    for (d, a) in defaults.iter().zip(c.addrs()) {
        assert!(config.contains(d), "deploy/prometheus.yml lists {d}");
        config = config.replace(d, &a);
    }
    for (file, path) in [
        ("../.drover/tls/ca.pem", &operator.ca),
        ("../.drover/tls/client-operator.pem", &operator.cert),
        ("../.drover/tls/client-operator.key", &operator.key),
    ] {
        assert!(config.contains(file), "deploy/prometheus.yml names {file}");
        config = config.replace(file, &path.display().to_string());
    }
    // Scrape fast so the test is short; the sample keeps the operator's interval.
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s");
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = drover_chaos::cluster::free_port().unwrap();
    let mut prom = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus is installed by scripts/setup.sh");
    let prom_addr = format!("127.0.0.1:{port}");
    let up = wait_until(
        "prometheus reports three masters up",
        Duration::from_secs(60),
        || {
            let a = prom_addr.clone();
            async move {
                let resp = reqwest::get(format!("http://{a}/api/v1/targets"))
                    .await
                    .map_err(|e| e.to_string())?;
                let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
                let targets = v["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let up: Vec<String> = targets
                    .iter()
                    .filter(|t| t["health"] == "up" && t["labels"]["job"] == "drover-masters")
                    .map(|t| t["labels"]["instance"].as_str().unwrap_or("").to_string())
                    .collect();
                if up.len() == 3 {
                    Ok(up)
                } else {
                    Err(format!("up: {up:?}"))
                }
            }
        },
    )
    .await;
    let _ = prom.kill().await;
    let mut up = up.unwrap();
    up.sort();
    let mut want = c.addrs();
    want.sort();
    assert_eq!(up, want);
}
