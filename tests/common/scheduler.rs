//! `drover scheduler` processes for the end-to-end tests, and a small HTTP client for `/v2`.

use std::path::Path;
use std::time::Duration;

use drover_chaos::cluster::marathon::MarathonScheduler;
use drover_chaos::http::Http;
use serde_json::Value;

/// A scheduler process; killed on drop, its log printed if the test failed.
pub struct Scheduler {
    pub addr: String,
    process: MarathonScheduler,
    /// How the test reaches its `/v2` (HTTPS with an operator's certificate for a scheduler
    /// with TLS on).
    http: Http,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let what = format!("scheduler {}", self.addr);
            eprint!("{}", super::log_tail(&what, &self.process.log, 60));
        }
    }
}

impl Scheduler {
    /// Starts `drover scheduler` on a free loopback port (log in `dir/<name>.log`) and waits
    /// until it answers `/ping`.
    pub async fn start(masters: &[String], dir: &Path, name: &str, extra: &[&str]) -> Scheduler {
        Self::start_with(masters, dir, name, extra, Http::plain()).await
    }

    /// [`start`](Self::start), reaching it through `http` (a scheduler given TLS flags in
    /// `extra` is reached over HTTPS).
    pub async fn start_with(
        masters: &[String],
        dir: &Path,
        name: &str,
        extra: &[&str],
        http: Http,
    ) -> Scheduler {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let process = MarathonScheduler::start_on_free_port(
            &super::binary(),
            &masters.join(","),
            dir.join(format!("{name}.log")),
            &extra,
        )
        .expect("start drover scheduler");
        let scheduler = Scheduler {
            addr: process.addr.clone(),
            process,
            http,
        };
        scheduler
            .process
            .wait_ready_with(&scheduler.http, Duration::from_secs(30))
            .await
            .expect("scheduler up");
        scheduler
    }

    /// SIGKILLs the process and waits for it.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Waits until this scheduler is the active one (its `/v2/leader` names itself).
    pub async fn wait_active(&self, timeout: Duration) {
        let addr = self.addr.clone();
        super::wait_until("the scheduler to be active", timeout, || {
            let (addr, http) = (addr.clone(), self.http.clone());
            async move {
                let (status, body) = http
                    .request_json(
                        reqwest::Method::GET,
                        &addr,
                        "/v2/leader",
                        None,
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap_or_else(|e| (0, Value::String(e)));
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
    Http::plain()
        .request_json(method, addr, path, body.as_ref(), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| (0, Value::String(e)))
}
