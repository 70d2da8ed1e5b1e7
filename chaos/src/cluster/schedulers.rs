//! The cluster's scheduler processes (`drover chaos scheduler`, the chaos tasks workload's
//! frameworks): started, SIGKILLed, paused and restarted like masters and agents. Each
//! connects to the masters through the fault layer's fronts from its own address
//! ([`crate::net::client_ip`]), so it can be cut off; each start is a new incarnation, told so
//! on its command line.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{io, ClusterError, LocalCluster};

/// One scheduler slot.
pub struct SchedulerProcess {
    pub index: usize,
    pub log_path: PathBuf,
    /// Starts so far (the next start is incarnation `starts`).
    pub starts: u64,
    pub(super) child: Option<Child>,
}

impl SchedulerProcess {
    pub(super) fn slot(base_dir: &Path, index: usize) -> Self {
        Self {
            index,
            log_path: base_dir.join(format!("scheduler-{index}.log")),
            starts: 0,
            child: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

impl LocalCluster {
    pub fn schedulers(&self) -> impl Iterator<Item = &SchedulerProcess> {
        self.schedulers.iter()
    }

    fn scheduler_slot(&mut self, index: usize) -> Result<&mut SchedulerProcess, ClusterError> {
        self.schedulers
            .get_mut(index)
            .ok_or(ClusterError::UnknownScheduler(index))
    }

    /// Starts scheduler `index` as its next incarnation.
    pub fn start_scheduler(&mut self, index: usize) -> Result<(), ClusterError> {
        let masters = match &self.net {
            Some(net) => net.fronts.values().map(|a| a.to_string()).collect(),
            None => self.addrs(),
        }
        .join(",");
        let bind = self
            .net
            .as_ref()
            .map(|_| crate::net::client_ip(index).to_string());
        let spec = self.spec.clone();
        let s = self.scheduler_slot(index)?;
        if s.child.is_some() {
            return Err(ClusterError::SchedulerRunning(index));
        }
        let mut cmd = Command::new(&spec.binary);
        super::owned(&mut cmd)
            .args(["chaos", "scheduler", "--masters", &masters])
            .args(["--index", &index.to_string()])
            .args(["--incarnation", &s.starts.to_string()])
            .args(
                bind.iter()
                    .flat_map(|ip| ["--bind-ip".to_string(), ip.clone()]),
            )
            .args(&spec.scheduler_args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log_path)
            .map_err(io(format!("opening {}", s.log_path.display())))?;
        let log2 = log.try_clone().map_err(io("cloning log handle"))?;
        cmd.stdout(log).stderr(log2);
        let child = cmd.spawn().map_err(io(format!(
            "starting {} chaos scheduler {index}",
            spec.binary.display()
        )))?;
        s.starts += 1;
        s.child = Some(child);
        Ok(())
    }

    /// SIGKILLs scheduler `index`.
    pub async fn kill_scheduler(&mut self, index: usize) -> Result<(), ClusterError> {
        let s = self.scheduler_slot(index)?;
        let mut child = s
            .child
            .take()
            .ok_or(ClusterError::SchedulerNotRunning(index))?;
        let _ = child.start_kill();
        child
            .wait()
            .await
            .map_err(io(format!("reaping scheduler {index}")))?;
        Ok(())
    }

    /// SIGSTOP scheduler `index`.
    pub fn pause_scheduler(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_scheduler(index, Signal::SIGSTOP)
    }

    /// SIGCONT after [`pause_scheduler`](Self::pause_scheduler).
    pub fn resume_scheduler(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_scheduler(index, Signal::SIGCONT)
    }

    fn signal_scheduler(&self, index: usize, sig: Signal) -> Result<(), ClusterError> {
        let pid = self
            .schedulers
            .get(index)
            .ok_or(ClusterError::UnknownScheduler(index))?
            .pid()
            .ok_or(ClusterError::SchedulerNotRunning(index))?;
        signal::kill(Pid::from_raw(pid as i32), sig)
            .map_err(|e| io(format!("signalling scheduler {index}"))(std::io::Error::from(e)))
    }

    /// Asks every running scheduler to finish (SIGCONT, SIGTERM: it drains and exits) and
    /// waits up to `grace`, then SIGKILLs what is left. Returns the schedulers that had to be
    /// killed.
    pub async fn stop_schedulers(&mut self, grace: Duration) -> Vec<usize> {
        for s in &self.schedulers {
            if let Some(pid) = s.pid() {
                let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let mut killed = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        for s in &mut self.schedulers {
            if let Some(mut child) = s.child.take() {
                if tokio::time::timeout_at(deadline, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    killed.push(s.index);
                }
            }
        }
        killed
    }
}
