//! Local clusters of real `drover master` and `drover agent` processes on loopback.
//!
//! Owns the child processes it starts: each runs with its own data directory and log file
//! under the cluster's base directory, and every child still running is killed when the
//! [`LocalCluster`] is dropped, so a failing test never leaks processes. Faults are real: SIGKILL,
//! SIGTERM, SIGSTOP/SIGCONT, wiping a data directory.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use drover_client::MasterClient;
use drover_proto::master::StatusReply;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

mod agents;
pub mod certs;
pub mod marathon;
mod schedulers;

pub use agents::{agent_hostname, kill_executors, AgentProcess};
pub use schedulers::SchedulerProcess;

use crate::net::{FaultyNetwork, NetError};
use crate::wait::{wait_until, WaitError};

pub use drover_master::raft::MasterId;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("master {0} is not part of this cluster")]
    UnknownMaster(MasterId),
    #[error("master {0} is already running")]
    AlreadyRunning(MasterId),
    #[error("master {0} is not running")]
    NotRunning(MasterId),
    #[error("agent {0} is not part of this cluster")]
    UnknownAgent(usize),
    #[error("agent {0} is already running")]
    AgentRunning(usize),
    #[error("agent {0} is not running")]
    AgentNotRunning(usize),
    #[error("scheduler {0} is not part of this cluster")]
    UnknownScheduler(usize),
    #[error("scheduler {0} is already running")]
    SchedulerRunning(usize),
    #[error("scheduler {0} is not running")]
    SchedulerNotRunning(usize),
    #[error("signal to master {id}: {source}")]
    Signal {
        id: MasterId,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start the cluster: {0}")]
    PortsTaken(String),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error(transparent)]
    Client(#[from] drover_client::ClientError),
}

/// Names the process that owns a cluster's children (this one). A master, agent or scheduler
/// started with it stops when it finds itself orphaned, so that a harness killed with SIGKILL
/// (`drover up`, a benchmark, a test) leaves nothing running; an agent then also kills its
/// tasks (see `drover_agent::Stop`).
pub const OWNER_PID_ENV: &str = "DROVER_OWNER_PID";

/// Marks `cmd` as a child this process owns (see [`OWNER_PID_ENV`]).
pub(crate) fn owned(cmd: &mut Command) -> &mut Command {
    // An operator's certificate in the caller's environment (`. .drover/env`) is not the
    // processes' own: they get theirs as flags, or none.
    for var in ["DROVER_TLS_CERT", "DROVER_TLS_KEY", "DROVER_TLS_CA"] {
        cmd.env_remove(var);
    }
    cmd.env(OWNER_PID_ENV, std::process::id().to_string())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// What cluster to run.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `drover` binary.
    pub binary: PathBuf,
    /// Data directories and logs go under here.
    pub base_dir: PathBuf,
    /// `id -> port`, all on `host`.
    pub ports: BTreeMap<MasterId, u16>,
    pub host: String,
    /// Extra arguments for every `drover master`.
    pub master_args: Vec<String>,
    /// Send the children's output to files (true) or inherit the terminal (false).
    pub log_to_files: bool,
    /// Put a fault-injecting proxy ([`crate::net`]) in front of every master, so that links
    /// between masters can be cut.
    pub proxied: bool,
    /// One agent per entry, listening on that port of `host`.
    pub agent_ports: Vec<u16>,
    /// Extra arguments for every `drover agent` (e.g. `--resources …`).
    pub agent_args: Vec<String>,
    /// Give each agent a hostname of its own, as if each ran on its own machine (agent `i` is
    /// [`agent_hostname`]: a loopback address, so health checks still reach its tasks); by
    /// default they all carry this machine's name.
    pub distinct_agent_hostnames: bool,
    /// Scheduler processes (`drover chaos scheduler`, the chaos tasks workload), and the
    /// arguments every one gets besides its masters, address, index and incarnation.
    pub schedulers: usize,
    pub scheduler_args: Vec<String>,
    /// Mutual TLS on every connection: a CA under `base_dir/tls` issues each master and agent
    /// a certificate, and the harness's client one of an operator ([`certs`]).
    pub tls: bool,
}

impl ClusterSpec {
    /// `masters` masters on free loopback ports.
    pub fn on_free_ports(
        binary: PathBuf,
        base_dir: PathBuf,
        masters: u64,
    ) -> Result<Self, ClusterError> {
        let mut ports = BTreeMap::new();
        for id in 1..=masters {
            ports.insert(id, free_port()?);
        }
        Ok(Self {
            binary,
            base_dir,
            ports,
            host: "127.0.0.1".into(),
            master_args: Vec::new(),
            log_to_files: true,
            proxied: false,
            agent_ports: Vec::new(),
            agent_args: Vec::new(),
            distinct_agent_hostnames: false,
            schedulers: 0,
            scheduler_args: Vec::new(),
            tls: false,
        })
    }

    /// Adds `count` agents on free ports.
    pub fn with_agents(mut self, count: usize) -> Result<Self, ClusterError> {
        for _ in 0..count {
            self.agent_ports.push(free_port()?);
        }
        Ok(self)
    }

    /// `masters` masters on `base_port`, `base_port + 2`, …; `agents` agents on the odd ports
    /// between them, `base_port + 1`, `base_port + 3`, ….
    pub fn on_ports_from(
        binary: PathBuf,
        base_dir: PathBuf,
        masters: u64,
        agents: usize,
        base_port: u16,
    ) -> Self {
        let ports = (1..=masters)
            .map(|id| (id, base_port + 2 * (id as u16 - 1)))
            .collect();
        Self {
            binary,
            base_dir,
            ports,
            host: "127.0.0.1".into(),
            master_args: Vec::new(),
            log_to_files: true,
            proxied: false,
            agent_ports: (0..agents as u16).map(|i| base_port + 1 + 2 * i).collect(),
            agent_args: Vec::new(),
            distinct_agent_hostnames: false,
            schedulers: 0,
            scheduler_args: Vec::new(),
            tls: false,
        }
    }
}

/// Where test and benchmark clusters take their ports: below Linux's default ephemeral range
/// (32768–60999), so that the source port of some outgoing connection cannot take a port
/// between the moment it was found free and the moment a master binds it.
const PORT_RANGE: std::ops::Range<u32> = 20_000..32_000;
/// Ports this process handed out so far (it never hands one out twice).
static PORTS_HANDED_OUT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A port that was free a moment ago on 127.0.0.1 and that this process has not handed out
/// before.
pub fn free_port() -> Result<u16, ClusterError> {
    free_port_block(1, 1)
}

/// The first of `count` ports `stride` apart (`drover up` uses every second port), all free a
/// moment ago on 127.0.0.1 and none handed out by this process before. Each process starts at
/// its own place in the range, so test binaries running side by side rarely probe the same.
pub fn free_port_block(count: u16, stride: u16) -> Result<u16, ClusterError> {
    use std::sync::atomic::Ordering;
    let width = u32::from(count.max(1)) * u32::from(stride.max(1));
    let span = PORT_RANGE.end - PORT_RANGE.start - width;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span / width {
        let n = PORTS_HANDED_OUT.fetch_add(width, Ordering::Relaxed);
        let base = PORT_RANGE.start + (start + n) % span;
        let all_free = (0..u32::from(count)).all(|i| {
            TcpListener::bind(("127.0.0.1", (base + i * u32::from(stride)) as u16)).is_ok()
        });
        if all_free {
            return Ok(base as u16);
        }
    }
    Err(ClusterError::Io {
        what: format!("finding {count} free ports {stride} apart"),
        source: std::io::ErrorKind::AddrInUse.into(),
    })
}

/// SIGKILL (works on a stopped process too) and wait for the exit.
async fn kill_and_reap(id: MasterId, mut child: Child) -> Result<(), ClusterError> {
    child
        .start_kill()
        .map_err(io(format!("killing master {id}")))?;
    child
        .wait()
        .await
        .map_err(io(format!("reaping master {id}")))?;
    Ok(())
}

/// The address peers use for master `id` listening on `addr`: its proxy's in a proxied cluster.
fn advertise(
    net: Option<&mut FaultyNetwork>,
    id: MasterId,
    addr: &str,
) -> Result<String, ClusterError> {
    match net {
        None => Ok(addr.to_string()),
        Some(n) => {
            let backend = addr.parse().map_err(|_| ClusterError::Io {
                what: format!("{addr} is not an IP address and port"),
                source: std::io::ErrorKind::InvalidInput.into(),
            })?;
            Ok(n.add(id, backend)?.to_string())
        }
    }
}

/// One master process slot: its address and directories, and the process if it runs.
pub struct MasterProcess {
    pub id: MasterId,
    /// Where it listens; clients use this address.
    pub addr: String,
    /// Where its peers reach it: `addr`, or its proxy's address in a proxied cluster.
    pub advertised: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// The founding peers string it was started with.
    peers: String,
    child: Option<Child>,
}

impl MasterProcess {
    /// A slot for master `id` listening on `port`, with its directories under the spec's base
    /// directory and, in a proxied cluster, a proxy in front of it; not started.
    fn slot(
        spec: &ClusterSpec,
        net: Option<&mut FaultyNetwork>,
        id: MasterId,
        port: u16,
        peers: String,
    ) -> Result<Self, ClusterError> {
        let addr = format!("{}:{port}", spec.host);
        let advertised = advertise(net, id, &addr)?;
        Ok(Self {
            id,
            addr,
            advertised,
            data_dir: spec.base_dir.join(format!("master-{id}")),
            log_path: spec.base_dir.join(format!("master-{id}.log")),
            peers,
            child: None,
        })
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

/// A running local cluster.
pub struct LocalCluster {
    spec: ClusterSpec,
    masters: BTreeMap<MasterId, MasterProcess>,
    agents: Vec<AgentProcess>,
    schedulers: Vec<SchedulerProcess>,
    client: MasterClient,
    net: Option<FaultyNetwork>,
    /// The CA and certificates of a cluster with TLS on.
    certs: Option<certs::ClusterCerts>,
    /// An agent ran since the cluster last removed its agents' containers: dropping it must
    /// remove them (a cluster stopped in order already did).
    containers_to_remove: bool,
}

impl LocalCluster {
    /// Prepares the directories (and the proxies of a proxied cluster, which needs a tokio
    /// runtime); starts no master.
    pub fn new(spec: ClusterSpec) -> Result<Self, ClusterError> {
        fs::create_dir_all(&spec.base_dir)
            .map_err(io(format!("creating {}", spec.base_dir.display())))?;
        let mut net = spec.proxied.then(FaultyNetwork::new);
        let mut masters = BTreeMap::new();
        for (&id, &port) in &spec.ports {
            // The founders' peer list is known once every slot has its advertised address.
            let m = MasterProcess::slot(&spec, net.as_mut(), id, port, String::new())?;
            masters.insert(id, m);
        }
        let peers = masters
            .values()
            .map(|m| format!("{}={}", m.id, m.advertised))
            .collect::<Vec<_>>()
            .join(",");
        for m in masters.values_mut() {
            m.peers = peers.clone();
        }
        let addrs: Vec<String> = masters.values().map(|m| m.addr.clone()).collect();
        if spec.tls && spec.schedulers > 0 {
            return Err(ClusterError::Io {
                what: "starting schedulers in a cluster with TLS".into(),
                source: std::io::Error::other("not supported yet"),
            });
        }
        let certs = if spec.tls {
            Some(certs::ClusterCerts::open(&spec.base_dir)?)
        } else {
            None
        };
        let dialer = drover_client::channel::Dialer {
            bind_ip: None,
            tls: match &certs {
                Some(c) => Some(c.harness()?.client(&[drover_tls::Role::Master])),
                None => None,
            },
        };
        let client =
            MasterClient::with_dialer(&addrs, drover_client::RetryPolicy::default(), dialer)?;
        let agents = spec
            .agent_ports
            .iter()
            .enumerate()
            .map(|(i, port)| AgentProcess::slot(&spec.base_dir, &spec.host, i, *port))
            .collect();
        let schedulers = (0..spec.schedulers)
            .map(|i| SchedulerProcess::slot(&spec.base_dir, i))
            .collect();
        Ok(Self {
            spec,
            masters,
            agents,
            schedulers,
            client,
            net,
            certs,
            containers_to_remove: false,
        })
    }

    /// The fault layer of a proxied cluster.
    pub fn net(&self) -> Option<&FaultyNetwork> {
        self.net.as_ref()
    }

    /// Prepares and starts every master and agent.
    pub async fn start(spec: ClusterSpec) -> Result<Self, ClusterError> {
        let mut c = Self::new(spec)?;
        let ids: Vec<MasterId> = c.masters.keys().copied().collect();
        for id in ids {
            c.start_master(id)?;
        }
        for i in 0..c.agents.len() {
            c.start_agent(i)?;
        }
        Ok(c)
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn masters(&self) -> impl Iterator<Item = &MasterProcess> {
        self.masters.values()
    }

    pub fn master(&self, id: MasterId) -> Result<&MasterProcess, ClusterError> {
        self.masters.get(&id).ok_or(ClusterError::UnknownMaster(id))
    }

    /// Every master's address, running or not.
    pub fn addrs(&self) -> Vec<String> {
        self.masters.values().map(|m| m.addr.clone()).collect()
    }

    /// A leader-following client for this cluster.
    pub fn client(&self) -> MasterClient {
        self.client.clone()
    }

    /// The CA and certificates of a cluster with TLS on.
    pub fn certs(&self) -> Option<&certs::ClusterCerts> {
        self.certs.as_ref()
    }

    /// Registers a master that is not a founding member (to be added with add-master) on a
    /// free port. Its `--peers` lists the founders so it can report what it sees.
    pub fn add_master_slot(&mut self, id: MasterId) -> Result<&MasterProcess, ClusterError> {
        let port = free_port()?;
        let peers = self
            .masters
            .values()
            .next()
            .map(|m| m.peers.clone())
            .unwrap_or_default();
        let m = MasterProcess::slot(&self.spec, self.net.as_mut(), id, port, peers)?;
        self.masters.insert(id, m);
        self.master(id)
    }

    /// Starts master `id` (again) with the same flags as before.
    pub fn start_master(&mut self, id: MasterId) -> Result<(), ClusterError> {
        let spec = self.spec.clone();
        let m = self
            .masters
            .get_mut(&id)
            .ok_or(ClusterError::UnknownMaster(id))?;
        if m.child.is_some() {
            return Err(ClusterError::AlreadyRunning(id));
        }
        let tls_flags = match &self.certs {
            None => Vec::new(),
            Some(c) => {
                let hosts = [
                    certs::host_of(&m.addr),
                    certs::host_of(&m.advertised),
                    "localhost".to_string(),
                ];
                certs::flags(&c.files(drover_tls::Role::Master, &format!("m{id}"), &hosts)?)
            }
        };
        let mut cmd = Command::new(&spec.binary);
        owned(&mut cmd)
            .arg("master")
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&m.addr)
            .arg("--peers")
            .arg(&m.peers)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(&tls_flags)
            .args(&spec.master_args)
            .args(
                spec.proxied
                    .then(|| {
                        [
                            "--peer-bind-ip".to_string(),
                            crate::net::peer_ip(id).to_string(),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if spec.log_to_files {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&m.log_path)
                .map_err(io(format!("opening {}", m.log_path.display())))?;
            let log2 = log.try_clone().map_err(io("cloning log handle"))?;
            cmd.stdout(log).stderr(log2);
        }
        let child = cmd.spawn().map_err(io(format!(
            "starting {} master {id}",
            spec.binary.display()
        )))?;
        m.child = Some(child);
        Ok(())
    }

    fn signal(&self, id: MasterId, sig: Signal) -> Result<(), ClusterError> {
        let m = self.master(id)?;
        let pid = m.pid().ok_or(ClusterError::NotRunning(id))?;
        signal::kill(Pid::from_raw(pid as i32), sig)
            .map_err(|source| ClusterError::Signal { id, source })
    }

    /// SIGKILL: the process dies at once, with no chance to flush anything.
    pub async fn kill(&mut self, id: MasterId) -> Result<(), ClusterError> {
        let child = self.take_child(id)?;
        kill_and_reap(id, child).await
    }

    /// SIGTERM, then wait up to `grace` for a clean exit, then SIGKILL.
    pub async fn stop(&mut self, id: MasterId, grace: Duration) -> Result<(), ClusterError> {
        self.terminate(id)?;
        self.reap(id, grace).await
    }

    /// Sends SIGCONT (a paused master could not act on what follows) and SIGTERM.
    fn terminate(&self, id: MasterId) -> Result<(), ClusterError> {
        let _ = self.signal(id, Signal::SIGCONT);
        self.signal(id, Signal::SIGTERM)
    }

    fn take_child(&mut self, id: MasterId) -> Result<Child, ClusterError> {
        let m = self
            .masters
            .get_mut(&id)
            .ok_or(ClusterError::UnknownMaster(id))?;
        m.child.take().ok_or(ClusterError::NotRunning(id))
    }

    /// Waits up to `grace` for master `id` to exit, then SIGKILLs it.
    async fn reap(&mut self, id: MasterId, grace: Duration) -> Result<(), ClusterError> {
        let mut child = self.take_child(id)?;
        if let Ok(r) = tokio::time::timeout(grace, child.wait()).await {
            r.map_err(io(format!("reaping master {id}")))?;
            return Ok(());
        }
        tracing::warn!(id, "master did not stop within {grace:?}; killing it");
        kill_and_reap(id, child).await
    }

    /// SIGSTOP: the process freezes (a long GC pause, a stuck VM).
    pub fn pause(&self, id: MasterId) -> Result<(), ClusterError> {
        self.signal(id, Signal::SIGSTOP)
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self, id: MasterId) -> Result<(), ClusterError> {
        self.signal(id, Signal::SIGCONT)
    }

    /// Deletes master `id`'s data directory (it must not be running).
    pub fn wipe(&mut self, id: MasterId) -> Result<(), ClusterError> {
        let m = self.master(id)?;
        if m.is_running() {
            return Err(ClusterError::AlreadyRunning(id));
        }
        if m.data_dir.exists() {
            fs::remove_dir_all(&m.data_dir)
                .map_err(io(format!("wiping {}", m.data_dir.display())))?;
        }
        Ok(())
    }

    /// Whether master `id`'s process has exited on its own; reaps it if so.
    pub fn exited(
        &mut self,
        id: MasterId,
    ) -> Result<Option<std::process::ExitStatus>, ClusterError> {
        let m = self
            .masters
            .get_mut(&id)
            .ok_or(ClusterError::UnknownMaster(id))?;
        let Some(child) = m.child.as_mut() else {
            return Err(ClusterError::NotRunning(id));
        };
        let status = child
            .try_wait()
            .map_err(io(format!("polling master {id}")))?;
        if status.is_some() {
            m.child = None;
        }
        Ok(status)
    }

    /// Status of master `id`, straight from it.
    pub async fn status(&self, id: MasterId) -> Result<StatusReply, ClusterError> {
        let m = self.master(id)?;
        Ok(self
            .client
            .status_of(&m.addr, Duration::from_secs(1))
            .await?)
    }

    /// Waits until master `id`'s own status passes `check` (which says what it saw when it
    /// does not); returns `check`'s value.
    pub async fn wait_for_status<T>(
        &self,
        id: MasterId,
        what: &str,
        timeout: Duration,
        check: impl Fn(&StatusReply) -> Result<T, String>,
    ) -> Result<T, ClusterError> {
        let check = &check;
        Ok(wait_until(what, timeout, || async move {
            let s = self.status(id).await.map_err(|e| e.to_string())?;
            check(&s)
        })
        .await?)
    }

    /// Waits until master `id` answers a status request.
    pub async fn wait_until_serving(
        &self,
        id: MasterId,
        timeout: Duration,
    ) -> Result<StatusReply, ClusterError> {
        Ok(
            wait_until(&format!("master {id} serving"), timeout, || async move {
                self.status(id).await.map_err(|e| e.to_string())
            })
            .await?,
        )
    }

    /// Waits until a running master reports itself leader and has committed an entry of its
    /// term (so it can serve); returns its status.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<StatusReply, ClusterError> {
        let running: Vec<MasterId> = self
            .masters
            .values()
            .filter(|m| m.is_running())
            .map(|m| m.id)
            .collect();
        self.wait_for_leader_among(&running, 0, timeout).await
    }

    /// SIGKILLs the current leader and waits for a surviving master to lead a later term.
    /// Returns the old leader's status (as it was before the kill) and the new one's.
    pub async fn kill_leader(
        &mut self,
        timeout: Duration,
    ) -> Result<(StatusReply, StatusReply), ClusterError> {
        let old = self.wait_for_leader(timeout).await?;
        self.kill(old.leader_id).await?;
        let survivors: Vec<MasterId> = self
            .masters
            .values()
            .filter(|m| m.is_running())
            .map(|m| m.id)
            .collect();
        let new = self
            .wait_for_leader_among(&survivors, old.term, timeout)
            .await?;
        Ok((old, new))
    }

    /// Waits until one of `ids` reports itself leader in a term above `above_term`, has
    /// committed an entry of its term, and no master of `ids` that answers knows a later term
    /// (a master restarted from a leader's state claims its old leadership for a moment, until
    /// it hears of the newer term); returns its status.
    pub async fn wait_for_leader_among(
        &self,
        ids: &[MasterId],
        above_term: u64,
        timeout: Duration,
    ) -> Result<StatusReply, ClusterError> {
        Ok(wait_until("a leader", timeout, || async move {
            let mut seen = Vec::new();
            let mut statuses = Vec::new();
            for id in ids {
                match self.status(*id).await {
                    Ok(s) => {
                        seen.push(format!(
                            "{id}: {} term {} leader {}",
                            s.role, s.term, s.leader_id
                        ));
                        statuses.push(s);
                    }
                    Err(e) => seen.push(format!("{id}: {e}")),
                }
            }
            let latest = statuses.iter().map(|s| s.term).max().unwrap_or(0);
            let leader = statuses.iter().find(|s| {
                s.role == "leader"
                    && s.term > above_term
                    && s.term == latest
                    && s.committed_index >= s.last_log_index
            });
            match leader {
                Some(s) => Ok(s.clone()),
                None => Err(format!("{seen:?}")),
            }
        })
        .await?)
    }

    /// Stops every agent (and the executors they started), then every running master, with
    /// SIGTERM (SIGKILL after `grace`).
    pub async fn stop_all(&mut self, grace: Duration) -> Result<(), ClusterError> {
        self.stop_agents(grace).await?;
        let ids: Vec<MasterId> = self
            .masters
            .values()
            .filter(|m| m.is_running())
            .map(|m| m.id)
            .collect();
        // All at once, so that they shut down in parallel.
        for id in &ids {
            let _ = self.terminate(*id);
        }
        for id in ids {
            self.reap(id, grace).await?;
        }
        Ok(())
    }

    /// The base directory.
    pub fn base_dir(&self) -> &Path {
        &self.spec.base_dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for sch in &mut self.schedulers {
            if let Some(child) = sch.child.as_mut() {
                if let Some(pid) = child.id() {
                    let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                }
                let _ = child.start_kill();
            }
        }
        for a in &mut self.agents {
            if let Some(child) = a.child.as_mut() {
                let _ = child.start_kill();
            }
            kill_executors(&a.work_dir);
        }
        if self.containers_to_remove {
            crate::containers::remove_of_agents_blocking(self.agent_ids());
        }
        for m in self.masters.values_mut() {
            if let Some(child) = m.child.as_mut() {
                if let Some(pid) = child.id() {
                    let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                }
                let _ = child.start_kill();
            }
        }
    }
}
