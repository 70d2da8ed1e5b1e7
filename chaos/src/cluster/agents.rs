//! The agents of a local cluster: `drover agent` processes, each with its own work directory,
//! listen port and log file under the cluster's base directory.
//!
//! Owns the agent child processes (killed when the cluster is dropped, like the masters).
//! Executors are started by the agents in their own sessions, on purpose (they outlive an
//! agent restart), so the cluster also kills every process working under an agent's work
//! directory (executors, tasks) and removes every Docker container labelled with one of its
//! agents when it stops or is dropped: a test never leaks a task.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{io, ClusterError, LocalCluster};

/// One agent slot: address, work directory, log, and the process if it runs.
pub struct AgentProcess {
    pub index: usize,
    pub addr: String,
    pub work_dir: PathBuf,
    pub log_path: PathBuf,
    pub(super) child: Option<Child>,
}

impl AgentProcess {
    pub(super) fn slot(base_dir: &Path, host: &str, index: usize, port: u16) -> Self {
        Self {
            index,
            addr: format!("{host}:{port}"),
            work_dir: base_dir.join(format!("agent-{index}")),
            log_path: base_dir.join(format!("agent-{index}.log")),
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

/// Processes working in a directory under `dir` (executors work in their task directory,
/// tasks in their sandbox), found by their working directory in `/proc`. Pid files are not
/// enough: a task whose executor had not yet written its pid would escape, and a pid file left
/// by a process long gone may name a pid the kernel has given to an unrelated process since.
fn working_under(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid > 1)
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// SIGKILLs the process groups of every executor and task working under `work_dir`.
pub fn kill_executors(work_dir: &Path) {
    let dir = fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    for pid in working_under(&dir) {
        // Executors and tasks lead their own process groups.
        let _ = signal::kill(Pid::from_raw(-pid), Signal::SIGKILL);
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Agent `index`'s own hostname under [`ClusterSpec::distinct_agent_hostnames`](super::ClusterSpec):
/// a loopback address of its own (`127.0.1.1` for the first, 250 per third octet).
pub fn agent_hostname(index: usize) -> String {
    format!("127.0.{}.{}", 1 + index / 250, 1 + index % 250)
}

impl LocalCluster {
    pub fn agents(&self) -> impl Iterator<Item = &AgentProcess> {
        self.agents.iter()
    }

    pub fn agent(&self, index: usize) -> Result<&AgentProcess, ClusterError> {
        self.agents
            .get(index)
            .ok_or(ClusterError::UnknownAgent(index))
    }

    /// Starts agent `index` (again), registered with every master of the cluster. In a proxied
    /// cluster it reaches the masters through their proxies, from its own address
    /// ([`crate::net::agent_ip`]), so that the fault layer can cut it off.
    pub fn start_agent(&mut self, index: usize) -> Result<(), ClusterError> {
        let (masters, bind) = match &self.net {
            Some(_) if index > crate::net::MAX_PROXIED_AGENT => {
                return Err(ClusterError::Io {
                    what: format!("putting agent {index} behind the fault layer"),
                    source: std::io::Error::other(format!(
                        "agent indexes 0..={} only: each maps to 127.0.1.(1+index)",
                        crate::net::MAX_PROXIED_AGENT
                    )),
                })
            }
            Some(net) => (
                net.fronts
                    .values()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(crate::net::agent_ip(index)),
            ),
            None => (self.addrs().join(","), None),
        };
        let spec = self.spec.clone();
        let a = self
            .agents
            .get_mut(index)
            .ok_or(ClusterError::UnknownAgent(index))?;
        if a.child.is_some() {
            return Err(ClusterError::AgentRunning(index));
        }
        let tls_flags = match &self.certs {
            None => Vec::new(),
            Some(c) => {
                let hosts = [
                    super::certs::host_of(&a.addr),
                    agent_hostname(index),
                    "localhost".to_string(),
                ];
                super::certs::flags(&c.files(
                    drover_tls::Role::Agent,
                    &format!("a{index}"),
                    &hosts,
                )?)
            }
        };
        fs::create_dir_all(&a.work_dir)
            .map_err(io(format!("creating {}", a.work_dir.display())))?;
        let mut cmd = Command::new(&spec.binary);
        super::owned(&mut cmd)
            .arg("agent")
            .arg("--masters")
            .arg(&masters)
            .arg("--work-dir")
            .arg(&a.work_dir)
            .arg("--listen")
            .arg(&a.addr)
            .args(&tls_flags)
            .args(&spec.agent_args)
            .args(
                spec.distinct_agent_hostnames
                    .then(|| ["--hostname".to_string(), agent_hostname(index)])
                    .into_iter()
                    .flatten(),
            )
            .args(
                bind.iter()
                    .flat_map(|ip| ["--master-bind-ip".to_string(), ip.to_string()]),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if spec.log_to_files {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&a.log_path)
                .map_err(io(format!("opening {}", a.log_path.display())))?;
            let log2 = log.try_clone().map_err(io("cloning log handle"))?;
            cmd.stdout(log).stderr(log2);
        }
        let child = cmd.spawn().map_err(io(format!(
            "starting {} agent {index}",
            spec.binary.display()
        )))?;
        a.child = Some(child);
        self.containers_to_remove = true;
        Ok(())
    }

    /// Agents that were running and have exited since (their slots are marked stopped).
    pub fn exited_agents(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for a in &mut self.agents {
            if let Some(child) = a.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    a.child = None;
                    out.push(a.index);
                }
            }
        }
        out
    }

    /// SIGKILLs agent `index` (its executors keep running, as they would on a real host).
    pub async fn kill_agent(&mut self, index: usize) -> Result<(), ClusterError> {
        let a = self
            .agents
            .get_mut(index)
            .ok_or(ClusterError::UnknownAgent(index))?;
        let mut child = a.child.take().ok_or(ClusterError::AgentNotRunning(index))?;
        let _ = child.start_kill();
        child
            .wait()
            .await
            .map_err(io(format!("reaping agent {index}")))?;
        Ok(())
    }

    /// SIGSTOP agent `index`: to the masters, a frozen agent is a partitioned one (its
    /// heartbeats stop; its executors and tasks run on).
    pub fn pause_agent(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_agent(index, Signal::SIGSTOP)
    }

    /// SIGCONT after [`pause_agent`](Self::pause_agent).
    pub fn resume_agent(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_agent(index, Signal::SIGCONT)
    }

    fn signal_agent(&self, index: usize, sig: Signal) -> Result<(), ClusterError> {
        let pid = self
            .agent(index)?
            .pid()
            .ok_or(ClusterError::AgentNotRunning(index))?;
        signal::kill(Pid::from_raw(pid as i32), sig)
            .map_err(|e| io(format!("signalling agent {index}"))(std::io::Error::from(e)))
    }

    /// The ids the cluster's agents were given (those that registered).
    pub fn agent_ids(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter_map(|a| crate::containers::agent_id(&a.work_dir))
            .collect()
    }

    /// SIGTERMs every running agent, waits up to `grace`, then SIGKILLs; then kills every
    /// executor the agents started and removes every container they started.
    pub(super) async fn stop_agents(&mut self, grace: Duration) -> Result<(), ClusterError> {
        for a in &self.agents {
            if let Some(pid) = a.pid() {
                let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for a in &mut self.agents {
            if let Some(mut child) = a.child.take() {
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            kill_executors(&a.work_dir);
        }
        match crate::containers::remove_of_agents(&self.agent_ids()).await {
            Ok(_) => self.containers_to_remove = false,
            Err(e) => tracing::debug!("removing the cluster's containers: {e}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    fn alive(child: &mut std::process::Child) -> bool {
        matches!(child.try_wait(), Ok(None))
    }

    /// Regression: a pid file left by a task long gone named a pid the kernel had given to
    /// another process since (pids wrap at 32 768 here, and a chaos run starts thousands of
    /// tasks); stopping a cluster SIGKILLed that process and its group.
    #[test]
    fn only_processes_working_in_the_sandbox_are_killed() {
        let work = tempfile::tempdir().expect("tempdir");
        let sandbox = work.path().join("frameworks/f/tasks/t1");
        fs::create_dir_all(&sandbox).expect("sandbox");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(elsewhere.path())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let mut task = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&sandbox)
            .process_group(0)
            .spawn()
            .expect("spawn");
        // Started, but its pid not yet written (the executor writes it after the spawn).
        let mut unrecorded = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&sandbox)
            .process_group(0)
            .spawn()
            .expect("spawn");
        fs::write(sandbox.join("stale.pid"), stranger.id().to_string()).expect("pid file");
        fs::write(sandbox.join("executor.pid"), task.id().to_string()).expect("pid file");

        kill_executors(work.path());

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (alive(&mut task) || alive(&mut unrecorded)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(&mut task), "the task in its sandbox was killed");
        assert!(
            !alive(&mut unrecorded),
            "the task whose pid was not yet written was killed"
        );
        assert!(
            alive(&mut stranger),
            "the process a stale pid file names was left alone"
        );
        let _ = stranger.kill();
        let _ = stranger.wait();
    }
}
