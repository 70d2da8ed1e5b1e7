//! The health checker: runs the HTTP and TCP health checks of running instances from the
//! scheduler, each at its `intervalSeconds` with its `timeoutSeconds`, and reports every
//! result to the service (which keeps the results and decides about kills, in the engine).
//!
//! Owns only when each check is next due. A failure within the check's
//! `gracePeriodSeconds` of the task's start is not reported (Marathon ignores them); an HTTP
//! check passes on a status from 200 to 399 (and on 1xx with `ignoreHttp1xx`).
//! COMMAND checks are not run here: they belong beside the task on the agent.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::app::{HealthCheck, HealthProtocol};
use super::engine::{Engine, HealthReport};
use super::instance::{Condition, InstanceId};
use super::service::{Call, Handle};

/// How often the checker looks for checks that are due.
const ROUND: Duration = Duration::from_secs(1);
/// Most bytes of an HTTP answer read (the status line is all that matters).
const MAX_HTTP_READ: usize = 1024;

/// One check of one running instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub instance: InstanceId,
    pub check: usize,
    pub spec: HealthCheck,
    pub host: String,
    pub port: Option<u16>,
    pub started_at_ms: u64,
}

/// Every check the scheduler runs, of every running instance.
pub fn targets(engine: &Engine) -> Vec<Target> {
    let mut out = Vec::new();
    for record in engine.apps() {
        let checks = &record.app.health_checks;
        if checks.is_empty() {
            continue;
        }
        for i in engine.instances_of(&record.app.id) {
            let (Condition::Running, Some(placed), Some(started)) =
                (i.condition, &i.placed, i.started_at)
            else {
                continue;
            };
            for (n, spec) in checks.iter().enumerate() {
                if !matches!(spec.protocol, HealthProtocol::Http | HealthProtocol::Tcp) {
                    continue;
                }
                let port = match (spec.port, spec.port_index) {
                    (Some(p), _) => Some(p),
                    (None, index) => placed
                        .ports
                        .get(index.unwrap_or(0) as usize)
                        .and_then(|p| u32::try_from(*p).ok()),
                };
                out.push(Target {
                    instance: i.id.clone(),
                    check: n,
                    spec: spec.clone(),
                    host: placed.hostname.clone(),
                    port: port.and_then(|p| u16::try_from(p).ok()),
                    started_at_ms: started.0,
                });
            }
        }
    }
    out
}

/// Starts the checker; it stops when the service does.
pub fn spawn(handle: Handle, reports: mpsc::Sender<HealthReport>) {
    tokio::spawn(async move {
        let mut due: HashMap<(InstanceId, usize), u64> = HashMap::new();
        let mut round = tokio::time::interval(ROUND);
        loop {
            round.tick().await;
            let (tx, rx) = oneshot::channel();
            if handle.call(Call::HealthTargets(tx)).await.is_err() {
                return;
            }
            let Ok(targets) = rx.await else { return };
            let now = drover_model::unix_ms();
            let live: std::collections::HashSet<(InstanceId, usize)> = targets
                .iter()
                .map(|t| (t.instance.clone(), t.check))
                .collect();
            due.retain(|k, _| live.contains(k));
            for t in targets {
                let key = (t.instance.clone(), t.check);
                let next = *due.entry(key.clone()).or_insert(now);
                if next > now {
                    continue;
                }
                due.insert(key, now + u64::from(t.spec.interval_seconds.max(1)) * 1000);
                let reports = reports.clone();
                tokio::spawn(async move {
                    let result = probe(&t).await;
                    let in_grace =
                        now < t.started_at_ms + u64::from(t.spec.grace_period_seconds) * 1000;
                    if result.is_err() && in_grace {
                        return;
                    }
                    let _ = reports
                        .send(HealthReport {
                            instance: t.instance,
                            check: t.check,
                            healthy: result.is_ok(),
                            cause: result.err(),
                        })
                        .await;
                });
            }
        }
    });
}

/// Runs one check: Ok if healthy, else why not.
pub async fn probe(t: &Target) -> Result<(), String> {
    let port = t.port.ok_or("the check names no port the task has")?;
    let timeout = Duration::from_secs(u64::from(t.spec.timeout_seconds.max(1)));
    let attempt = async {
        let mut stream = TcpStream::connect((t.host.as_str(), port))
            .await
            .map_err(|e| format!("connect to {}:{port}: {e}", t.host))?;
        if t.spec.protocol != HealthProtocol::Http {
            return Ok(());
        }
        let path = t.spec.path.as_deref().unwrap_or("/");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}:{port}\r\nUser-Agent: drover-health\r\nConnection: close\r\n\r\n",
            t.host
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = vec![0u8; MAX_HTTP_READ];
        let mut read = 0;
        while read < buf.len() && !buf[..read].contains(&b'\n') {
            let n = stream
                .read(&mut buf[read..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&buf[..read]);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP answer: {:?}",
                    line.lines().next().unwrap_or("")
                )
            })?;
        let healthy =
            (200..400).contains(&code) || (t.spec.ignore_http1xx && (100..200).contains(&code));
        if healthy {
            Ok(())
        } else {
            Err(format!("HTTP {code}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::app::parse_app;
    use tokio::net::TcpListener;

    fn target(protocol: &str, port: u16, path: &str) -> Target {
        let app = parse_app(
            format!(
                r#"{{"id": "/a", "cmd": "x", "healthChecks": [{{"protocol": "{protocol}",
                     "path": "{path}", "timeoutSeconds": 2}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        Target {
            instance: InstanceId::new(&app.id),
            check: 0,
            spec: app.health_checks[0].clone(),
            host: "127.0.0.1".into(),
            port: Some(port),
            started_at_ms: 0,
        }
    }

    /// Answers every connection with `status`.
    async fn server(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_checks_pass_on_2xx_and_3xx_and_fail_otherwise() {
        let ok = server("200 OK").await;
        let moved = server("302 Found").await;
        let bad = server("503 Service Unavailable").await;
        assert_eq!(probe(&target("HTTP", ok, "/health")).await, Ok(()));
        assert_eq!(probe(&target("HTTP", moved, "/")).await, Ok(()));
        assert_eq!(
            probe(&target("HTTP", bad, "/")).await,
            Err("HTTP 503".into())
        );
    }

    #[tokio::test]
    async fn tcp_checks_pass_when_the_port_accepts() {
        let open = server("200 OK").await;
        assert_eq!(probe(&target("TCP", open, "/")).await, Ok(()));
        // A port nobody listens on (bound, then closed).
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(probe(&target("TCP", closed, "/")).await.is_err());
    }
}
