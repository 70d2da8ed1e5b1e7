//! `drover scheduler` processes for the end-to-end tests, and a small HTTP client for `/v2`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

/// A scheduler process; killed on drop, its log printed if the test failed.
pub struct Scheduler {
    pub addr: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- scheduler {} log (last {} lines) ----",
                self.addr,
                tail.len()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Scheduler {
    /// Starts `drover scheduler` on a free loopback port (log in `dir/<name>.log`) and waits
    /// until it answers `/ping`.
    pub async fn start(masters: &[String], dir: &Path, name: &str, extra: &[&str]) -> Scheduler {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(super::binary())
            .args([
                "scheduler",
                "--masters",
                &masters.join(","),
                "--listen",
                &addr,
            ])
            .args(extra)
            .stdout(Stdio::from(out.try_clone().expect("log file")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .expect("start drover scheduler");
        let s = Scheduler {
            addr,
            child: Some(child),
            log,
        };
        super::wait_until(
            "the scheduler to answer /ping",
            Duration::from_secs(30),
            || {
                let addr = s.addr.clone();
                async move {
                    match super::try_http_get(&addr, "/ping").await {
                        Ok((200, _)) => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await
        .expect("scheduler up");
        s
    }

    /// SIGKILLs the process and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Waits until this scheduler is the active one (its `/v2/leader` names itself).
    pub async fn wait_active(&self, timeout: Duration) {
        let addr = self.addr.clone();
        super::wait_until("the scheduler to be active", timeout, || {
            let addr = addr.clone();
            async move {
                let (status, body) = send(reqwest::Method::GET, &addr, "/v2/leader", None).await;
                if status == 200 && body["leader"] == addr.as_str() {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            }
        })
        .await
        .expect("active");
    }
}

/// One `/v2` request (redirects followed, as Marathon clients do); the status and the JSON
/// body (`Null` if there is none).
pub async fn send(
    method: reqwest::Method,
    addr: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10));
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}
