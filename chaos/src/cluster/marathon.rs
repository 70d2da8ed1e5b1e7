//! A `drover scheduler` process (the Marathon-compatible scheduler), as `drover up`,
//! `drover bench marathon`, the chaos marathon workload and the end-to-end tests run it: on a
//! loopback address, logging to a file, owned by this process (it stops when we do), and
//! stopped by SIGKILL (a crash) or SIGTERM (a clean stop that hands the lease over at once).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{io, ClusterError};

/// How long a started scheduler may take to answer `/ping`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `/ping` of [`MarathonScheduler::wait_ready`] may take (a scheduler that
/// accepts and then says nothing must not hold the wait past its deadline).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// One scheduler process slot: started, killed and started again on the same address.
pub struct MarathonScheduler {
    /// Where it serves `/v2` (`127.0.0.1:PORT`).
    pub addr: String,
    pub log: PathBuf,
    binary: PathBuf,
    /// Its arguments after `scheduler`.
    args: Vec<String>,
    child: Option<Child>,
}

impl MarathonScheduler {
    /// A slot for a scheduler of `masters` on `addr`, with `extra` arguments (not started).
    pub fn new(binary: &Path, masters: &str, addr: String, log: PathBuf, extra: &[String]) -> Self {
        let mut args = vec![
            "--masters".to_string(),
            masters.to_string(),
            "--listen".to_string(),
            addr.clone(),
        ];
        args.extend(extra.iter().cloned());
        Self {
            addr,
            log,
            binary: binary.to_path_buf(),
            args,
            child: None,
        }
    }

    /// [`new`](Self::new) on a free loopback port, started.
    pub fn start_on_free_port(
        binary: &Path,
        masters: &str,
        log: PathBuf,
        extra: &[String],
    ) -> Result<Self, ClusterError> {
        let addr = format!("127.0.0.1:{}", super::free_port()?);
        let mut s = Self::new(binary, masters, addr, log, extra);
        s.start()?;
        Ok(s)
    }

    /// Starts it (appending to its log).
    pub fn start(&mut self) -> Result<(), ClusterError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let err = out.try_clone().map_err(io("cloning a log handle"))?;
        let mut cmd = Command::new(&self.binary);
        super::owned(&mut cmd)
            .arg("scheduler")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().map_err(io("starting drover scheduler"))?);
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until it answers `/ping` (each try bounded by [`PING_TIMEOUT`]).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), crate::wait::WaitError> {
        self.wait_ready_with(&crate::http::Http::plain(), timeout)
            .await
    }

    /// [`wait_ready`](Self::wait_ready) through `http` (HTTPS for a scheduler with TLS on).
    pub async fn wait_ready_with(
        &self,
        http: &crate::http::Http,
        timeout: Duration,
    ) -> Result<(), crate::wait::WaitError> {
        let url = http.url(&self.addr, "/ping");
        crate::wait::wait_until("the scheduler to answer /ping", timeout, || {
            let (url, client) = (url.clone(), http.client().clone());
            async move {
                match client.get(&url).timeout(PING_TIMEOUT).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    /// SIGKILLs it and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Sends SIGTERM (it releases its lease and exits), without waiting.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// SIGTERMs it and waits up to `grace`, then SIGKILLs it.
    pub async fn stop(&mut self, grace: Duration) {
        self.terminate();
        let Some(mut c) = self.child.take() else {
            return;
        };
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            let _ = c.kill().await;
        }
    }
}
