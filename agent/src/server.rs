//! One agent process: wires the parts together, serves gRPC and HTTP on one port, and shuts
//! down in order.
//!
//! A real agent: cgroup detection (logged once), the status update manager (checkpointing to
//! disk, resending what an earlier life left unacknowledged), the task table
//! ([`Launcher`]), the executor socket, one registration loop, and the Agent service. With
//! `--simulate N`: the status update manager in memory, the [`Simulator`], N registration loops.
//!
//! Owns every task it spawns (a `JoinSet` plus the actors' handles), all stopped on the way out.
//! Shutdown order: stop accepting requests, stop registering and heartbeating, close the
//! executor socket, stop the task table and the status update manager. Executors are left
//! running (they outlive the agent by design and reconnect to its next life); everything
//! acknowledged to anyone is already on disk, so there is nothing to flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use drover_client::{ClientError, MasterClient};
use drover_proto::v1::agent_server::AgentServer;
use drover_tls::Role;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tonic::service::Routes;

use crate::cgroups::{self, CgroupMode};
use crate::config::{AgentArgs, AgentConfig, ConfigError};
use crate::docker::DockerEngine;
use crate::executor_socket::{self, SocketError};
use crate::launcher::{Launcher, LauncherConfig};
use crate::layout::{Layout, MAX_SOCKET_PATH_BYTES};
use crate::metrics as m;
use crate::register::{self, IdFileError, Identity, Registered, Registrar};
use crate::service::{AgentService, Backend, MAX_REQUEST_BYTES};
use crate::simulate::Simulator;
use crate::status_updates::{self, Checkpointing, StatusUpdates};
use crate::{http, ids::AgentId};

/// Most concurrent requests per connection.
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Most registrations in flight at once (matters with many simulated agents).
const MAX_CONCURRENT_REGISTRATIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--masters: {0}")]
    Masters(ClientError),
    #[error("--listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    IdFile(#[from] IdFileError),
    #[error("--work-dir: the executor socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes; use a shorter work directory")]
    SocketPath { path: String },
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("the master removed agent {0} (GONE): its tasks were killed and it cannot register under this id again; remove its meta/agent_id to start it as a new agent")]
    Gone(AgentId),
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    #[error("{0}")]
    Internal(String),
}

/// How long a stopping agent lets open connections finish.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// How an agent stops when its `shutdown` future resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, Ctrl-C: the agent goes, its executors keep running and the next agent on this
    /// work directory recovers them (as a Mesos agent's checkpointed executors do).
    KeepTasks,
    /// The process that owns this agent's local cluster (`drover up`, a test or benchmark
    /// harness) is gone: nothing will start this agent again, so nothing of it may keep
    /// running. Every executor and task under the work directory is killed.
    KillTasks,
}

/// Runs an agent (or `--simulate N` simulated agents) until `shutdown` resolves.
pub async fn run(
    args: AgentArgs,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = Stop> + Send + 'static,
) -> Result<(), AgentError> {
    let config = tokio::task::spawn_blocking(move || AgentConfig::from_args(args))
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))??;
    run_with_config(config, prometheus, shutdown).await
}

/// [`run`] with checked settings: checks the work directory's format, binds, starts the
/// agents (real or simulated) and serves until `shutdown` or the masters' removal, then stops
/// everything it started.
pub async fn run_with_config(
    mut config: AgentConfig,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = Stop> + Send + 'static,
) -> Result<(), AgentError> {
    m::describe();
    let simulated = config.simulate > 0;
    let docker = if simulated {
        None
    } else {
        let (engine, attributes) = containerizers(&config).await?;
        config.attributes = attributes;
        engine
    };
    metrics::gauge!(m::SIMULATED).set(if simulated { 1.0 } else { 0.0 });
    let layout = Layout::new(&config.work_dir);
    let format_layout = layout.clone();
    tokio::task::spawn_blocking(move || crate::format::check(&format_layout))
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))??;
    let listen_error = |source| AgentError::Listen {
        addr: config.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let tls = match &config.tls {
        None => None,
        Some(files) => Some(
            drover_tls::LiveTls::watch(files.clone(), Role::Agent)
                .map_err(|e| AgentError::Internal(format!("TLS: {e}")))?,
        ),
    };
    if let Some(tls) = &tls {
        tracing::info!(identity = %tls.identity(), "mutual TLS on every connection");
    }
    let client = MasterClient::with_dialer(
        &config.masters,
        drover_client::RetryPolicy::default(),
        drover_client::channel::Dialer {
            bind_ip: config.master_bind_ip,
            tls: tls.as_ref().map(|t| t.client(&[Role::Master])),
        },
    )
    .map_err(AgentError::Masters)?;
    let (mut wiring, registrations) = Wiring::new(client, config.advertised(bound));
    let (backend, manager, executor_api) = if simulated {
        start_simulated(&config, &layout, bound, &mut wiring, registrations).await?
    } else {
        start_real(&config, &layout, bound, &mut wiring, registrations, docker).await?
    };
    let Wiring {
        registered,
        mut tasks,
        actors,
        gone_rx,
        reg_tx,
        gone_tx,
        ..
    } = wiring;
    // Only the registrars hold senders now: the channels close when they end.
    drop((reg_tx, gone_tx));
    {
        let prometheus = prometheus.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prometheus.run_upkeep();
            }
        });
    }
    let routes = Routes::from(http::router(http::HttpState {
        prometheus,
        agents: config.simulate.max(1),
        simulated,
        registered,
        layout: layout.clone(),
        me: crate::state::AgentSelf {
            hostname: config.hostname.clone(),
            addr: config.advertised(bound),
            resources: config.resources.clone(),
            attributes: config.attributes.clone(),
        },
        executor_api,
    }))
    .add_service(
        AgentServer::new(AgentService::new(backend))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES),
    );
    let serve_config = drover_serve::ServeConfig {
        max_concurrent_streams: MAX_CONCURRENT_STREAMS,
        tls: tls
            .as_ref()
            .map(|t| t.server(&[Role::Master, Role::Client, Role::Framework])),
        roles: role_rules(),
        ..drover_serve::ServeConfig::default()
    };
    let outcome = serve(
        listener,
        routes,
        serve_config,
        shutdown,
        gone_rx,
        &layout,
        simulated,
    )
    .await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    for a in actors {
        a.abort();
        let _ = a.await;
    }
    manager.stop().await;
    if !simulated {
        let _ = std::fs::remove_file(layout.socket());
    }
    tracing::info!(simulated, "agent stopped");
    outcome
}

/// What every registrar of this process shares, and the tasks and actors started for them.
struct Wiring {
    client: MasterClient,
    advertise: String,
    /// How many agents of this process are registered (for `/health`).
    registered: Arc<AtomicUsize>,
    limiter: Arc<Semaphore>,
    /// Registrars announce each (re-)registration here, and a removal (GONE) on `gone_tx`.
    reg_tx: mpsc::Sender<Registered>,
    gone_tx: mpsc::Sender<Registered>,
    gone_rx: mpsc::Receiver<Registered>,
    /// Stopped by aborting when the agent stops.
    tasks: JoinSet<()>,
    /// Stopped after `tasks`, in order.
    actors: Vec<JoinHandle<()>>,
}

impl Wiring {
    /// The wiring, and the receiving end of registrations (for whoever starts the backend).
    fn new(client: MasterClient, advertise: String) -> (Self, mpsc::Receiver<Registered>) {
        let (reg_tx, reg_rx) = mpsc::channel::<Registered>(1024);
        let (gone_tx, gone_rx) = mpsc::channel::<Registered>(16);
        let wiring = Self {
            client,
            advertise,
            registered: Arc::new(AtomicUsize::new(0)),
            limiter: Arc::new(Semaphore::new(MAX_CONCURRENT_REGISTRATIONS)),
            reg_tx,
            gone_tx,
            gone_rx,
            tasks: JoinSet::new(),
            actors: Vec::new(),
        };
        (wiring, reg_rx)
    }

    /// Starts the registrar of one agent: it registers, heartbeats and re-registers for as
    /// long as the agent runs.
    fn spawn_registrar(
        &mut self,
        config: &AgentConfig,
        identity: Identity,
        stored_id: Option<AgentId>,
        stagger: Duration,
        quiet: bool,
        reporter: register::Reporter,
    ) {
        let r = Registrar {
            identity,
            stored_id,
            client: self.client.clone(),
            default_interval: config.heartbeat_interval,
            stagger,
            limiter: self.limiter.clone(),
            on_registered: self.reg_tx.clone(),
            registered: self.registered.clone(),
            quiet,
            reporter,
            on_gone: self.gone_tx.clone(),
        };
        self.tasks.spawn(r.run());
    }
}

/// `--simulate N`: N agents in this process whose tasks are timers, sharing one status update
/// manager that checkpoints in memory.
async fn start_simulated(
    config: &AgentConfig,
    layout: &Layout,
    bound: SocketAddr,
    wiring: &mut Wiring,
    registrations: mpsc::Receiver<Registered>,
) -> Result<Started, AgentError> {
    let n = config.simulate;
    tracing::info!(
        agents = n,
        listen = %bound,
        advertise = %wiring.advertise,
        resources = %config.resources,
        work_dir = %config.work_dir.display(),
        "SIMULATED agents starting: {n} simulated agents in this process; tasks are timers, not processes; status updates are checkpointed in memory only"
    );
    let (updates, manager) = StatusUpdates::start(
        wiring.client.clone(),
        status_updates::Config::new(Checkpointing::Memory),
    );
    let (sim, actor) = Simulator::start(n, updates);
    wiring.actors.push(actor);
    let attributes = if config.attributes.get("simulated").is_some() {
        config.attributes.clone()
    } else {
        format!("{};simulated:true", config.attributes)
            .parse()
            .map_err(|e| AgentError::Internal(format!("attributes: {e}")))?
    };
    let id_layout = layout.clone();
    let stored = tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|i| register::load_agent_id(&id_layout.sim_agent_id_file(i)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| AgentError::Internal(e.to_string()))??;
    for (i, stored_id) in stored.into_iter().enumerate() {
        let s = sim.clone();
        let reporter: register::Reporter = Arc::new(move |id| {
            let s = s.clone();
            Box::pin(async move { reported(s.report(id).await) })
        });
        let identity = Identity {
            index: i,
            simulated: true,
            id_file: layout.sim_agent_id_file(i),
            hostname: format!("sim-{i}"),
            addr: wiring.advertise.clone(),
            resources: config.resources.clone(),
            attributes: attributes.clone(),
        };
        let stagger = config.heartbeat_interval.mul_f64(i as f64 / n as f64);
        wiring.spawn_registrar(config, identity, stored_id, stagger, n > 10, reporter);
    }
    wiring
        .tasks
        .spawn(forward_simulated(registrations, sim.clone(), n));
    Ok((Backend::Simulated(sim), manager, None))
}

/// Whether this agent runs containers: with `docker` among its containerizers, when the
/// engine answers now (else it logs why not). Returns the engine and the agent's attributes
/// with `containerizers` set (`docker,command` or `command`).
async fn containerizers(
    config: &AgentConfig,
) -> Result<(Option<DockerEngine>, drover_resources::Attributes), AgentError> {
    let socket = &config.docker.socket;
    let engine = if config.docker.wanted {
        match crate::docker::probe(socket).await {
            Ok(version) => {
                tracing::info!(socket = %socket.display(), %version, "Docker engine answers: container tasks run here");
                Some(DockerEngine {
                    socket: socket.clone(),
                    policy: config.docker.policy.clone(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "container tasks will not run here: the Docker engine does not answer");
                None
            }
        }
    } else {
        None
    };
    let value = if engine.is_some() {
        "docker,command"
    } else {
        "command"
    };
    let attributes = config
        .attributes
        .clone()
        .with_text(drover_model::container::CONTAINERIZERS_ATTRIBUTE, value)
        .map_err(|e| AgentError::Internal(format!("attributes: {e}")))?;
    Ok((engine, attributes))
}

/// One real agent: its status update manager (checkpointing to disk), launcher, recovery of
/// what an earlier life started, sandbox collector, executor socket and registrar.
async fn start_real(
    config: &AgentConfig,
    layout: &Layout,
    bound: SocketAddr,
    wiring: &mut Wiring,
    mut registrations: mpsc::Receiver<Registered>,
    docker: Option<DockerEngine>,
) -> Result<Started, AgentError> {
    let socket = layout.socket();
    if socket.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
        return Err(AgentError::SocketPath {
            path: socket.display().to_string(),
        });
    }
    let mode = tokio::task::spawn_blocking(cgroups::detect)
        .await
        .unwrap_or_else(|e| CgroupMode::none(format!("detection failed: {e}")));
    match &mode {
        CgroupMode::None { .. } => tracing::warn!("{}", mode.describe()),
        _ => tracing::info!("{}", mode.describe()),
    }
    let id_file = layout.agent_id_file();
    let stored_id = register::load_agent_id(&id_file)?;
    tracing::info!(
        listen = %bound,
        advertise = %wiring.advertise,
        hostname = %config.hostname,
        resources = %config.resources,
        attributes = %config.attributes,
        work_dir = %config.work_dir.display(),
        agent_id = ?stored_id.as_ref().map(AgentId::as_str),
        "agent starting"
    );
    // Ended tasks the master acknowledged go to the sandbox collector, which starts once
    // recovery has read every task directory (it moves them).
    let (ended_tx, ended_rx) = mpsc::channel(crate::gc::QUEUE_DEPTH);
    let (updates, manager) = StatusUpdates::start(
        wiring.client.clone(),
        status_updates::Config {
            ended: Some(ended_tx),
            ..status_updates::Config::new(Checkpointing::Disk(layout.clone()))
        },
    );
    let (relay, relay_task) = crate::relay::Relay::start(wiring.client.clone());
    wiring.actors.push(relay_task);
    let docker_socket = docker.as_ref().map(|d| d.socket.clone());
    let (launcher, actor) = Launcher::start(
        LauncherConfig {
            layout: layout.clone(),
            executor_command: config.executor_command.clone(),
            default_kill_grace: config.executor_grace,
            cgroups: mode,
            executor_endpoint: executor_endpoint(bound),
            executor_registration_timeout: config.executor_registration_timeout,
            executor_reregistration_timeout: config.executor_reregistration_timeout,
            executor_idle_timeout: config.executor_idle_timeout,
            executor_shutdown_grace: config.executor_shutdown_grace,
            docker,
            users: config.users.clone(),
        },
        updates.clone(),
        relay.clone(),
    );
    wiring.actors.push(actor);
    // Before registering: take back what an earlier life of the agent started, so that the
    // first registration reports it.
    recover_earlier_life(config, layout, &launcher, stored_id.clone()).await?;
    wiring.actors.push(tokio::spawn(crate::gc::run(
        crate::gc::GcConfig {
            layout: layout.clone(),
            gc_delay: config.gc_delay,
            disk_headroom: config.gc_disk_headroom,
            disk_watch_interval: config.disk_watch_interval,
            disk_usage: crate::gc::DiskUsage::Measured,
            docker_socket: docker_socket.clone(),
        },
        ended_rx,
    )));
    let unix = executor_socket::bind(&socket)?;
    let executor_api = crate::executor_api::ExecutorApi {
        launcher: launcher.clone(),
        updates: updates.clone(),
        relay,
        hostname: config.hostname.clone(),
        port: bound.port(),
    };
    wiring
        .tasks
        .spawn(executor_socket::serve(unix, launcher.clone(), updates));
    let identity = Identity {
        index: 0,
        simulated: false,
        id_file,
        hostname: config.hostname.clone(),
        addr: wiring.advertise.clone(),
        resources: config.resources.clone(),
        attributes: config.attributes.clone(),
    };
    let reporter: register::Reporter = {
        let l = launcher.clone();
        Arc::new(move |id| {
            let l = l.clone();
            Box::pin(async move { reported(l.report(id).await) })
        })
    };
    wiring.spawn_registrar(config, identity, stored_id, Duration::ZERO, false, reporter);
    let l = launcher.clone();
    wiring.tasks.spawn(async move {
        while let Some((_, id)) = registrations.recv().await {
            l.registered(id).await;
        }
    });
    Ok((Backend::Real(launcher), manager, Some(executor_api)))
}

/// What starting the agents gives: the backend of the Agent service, the status update
/// manager, and the executor API (real agents only).
type Started = (
    Backend,
    status_updates::Manager,
    Option<crate::executor_api::ExecutorApi>,
);

/// Where custom executors on this host reach the agent: the bound address, loopback for an
/// unspecified one. An IPv6 address is given as `localhost` (clients split `host:port` at
/// the first colon, pymesos among them).
fn executor_endpoint(bound: SocketAddr) -> String {
    match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", bound.port()),
        std::net::IpAddr::V4(_) => bound.to_string(),
        std::net::IpAddr::V6(_) => format!("localhost:{}", bound.port()),
    }
}

/// Takes back the tasks an earlier life of this agent left in its work directory (re-attaches
/// live executors, reports what ended meanwhile), counting and logging what it found.
async fn recover_earlier_life(
    config: &AgentConfig,
    layout: &Layout,
    launcher: &Launcher,
    stored_id: Option<AgentId>,
) -> Result<(), AgentError> {
    let scan_layout = layout.clone();
    let (found, runs) =
        tokio::task::spawn_blocking(move || crate::recovery::scan_all(&scan_layout))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?;
    if found.is_empty() && runs.is_empty() {
        return Ok(());
    }
    let n = found.len();
    let summary = launcher
        .recover(found, runs, config.recover, stored_id)
        .await;
    for (outcome, count) in [
        ("reattached", summary.reattached),
        ("ended", summary.ended),
        ("executor_gone", summary.executor_gone),
        ("cleaned", summary.cleaned),
        ("corrupt", summary.corrupt),
    ] {
        metrics::counter!(m::RECOVERED_TASKS_TOTAL, "outcome" => outcome).increment(count as u64);
    }
    tracing::info!(
        task_dirs = n,
        reattached = summary.reattached,
        ended = summary.ended,
        executor_gone = summary.executor_gone,
        cleaned = summary.cleaned,
        corrupt = summary.corrupt,
        executor_runs = summary.executor_runs,
        mode = ?config.recover,
        "recovered the tasks of an earlier life of this agent"
    );
    Ok(())
}

/// Serves the agent API until `shutdown` resolves (then the tasks stay or
/// are killed as it says) or the masters remove a real agent (then its tasks are killed).
/// Which roles may call what on an agent with TLS on (its handshake takes masters,
/// operators and frameworks). The agent API (launch, kill) is the masters'; the operator API
/// is operators' and masters'; the sandbox files are read by all three. Custom executors
/// (`/api/v1/executor`) hold no certificate and cannot reach an agent with TLS on yet; the
/// built-in executors talk to the agent over its Unix socket, which only root can open.
pub fn role_rules() -> drover_serve::RoleRules {
    use Role::*;
    drover_serve::RoleRules::new([
        ("/drover.v1.Agent/", &[Master][..]),
        ("/api/v1/executor", &[][..]),
        ("/api/v1", &[Client, Master][..]),
    ])
}

async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    config: drover_serve::ServeConfig,
    shutdown: impl Future<Output = Stop> + Send + 'static,
    mut gone_rx: mpsc::Receiver<Registered>,
    layout: &Layout,
    simulated: bool,
) -> Result<(), AgentError> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = drover_serve::serve(listener, routes, config, async move {
        let _ = stop_rx.await;
    });
    let mut server = std::pin::pin!(server);
    let mut shutdown = std::pin::pin!(shutdown);
    // A real agent the master removed stops; a removed simulated agent stops alone.
    let removed = async {
        loop {
            match gone_rx.recv().await {
                Some((_, id)) if !simulated => return id,
                Some((i, id)) => {
                    tracing::error!(index = i, agent_id = %id, "simulated agent removed by the master (GONE); it stays stopped")
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        () = &mut server => Ok(()),
        stop = &mut shutdown => {
            let _ = stop_tx.send(());
            // A graceful stop waits for every connection to close: bounded, then cut.
            let served = match tokio::time::timeout(SHUTDOWN_DRAIN, &mut server).await {
                Ok(()) => Ok(()),
                Err(_) => {
                    tracing::warn!(drain = ?SHUTDOWN_DRAIN, "connections still open; closing them");
                    Ok(())
                }
            };
            match stop {
                Stop::KeepTasks => {
                    tracing::info!(simulated, "agent shutting down; executors keep running");
                }
                Stop::KillTasks if simulated => {
                    tracing::info!("agent shutting down with its owner; simulated tasks end with it");
                }
                Stop::KillTasks => {
                    let killed = kill_every_task(layout).await;
                    tracing::info!(killed, "agent shutting down with its owner: killed every task");
                }
            }
            served
        }
        id = removed => {
            let _ = stop_tx.send(());
            // Bounded: executors' event streams end only once their tasks are killed below.
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, &mut server).await;
            // Its tasks are over for the masters (TASK_GONE): nothing may keep running.
            let killed = kill_every_task(layout).await;
            tracing::error!(agent_id = %id, killed, "removed by the masters: killed every task of this agent");
            Err(AgentError::Gone(id))
        }
    }
}

/// Kills every executor and task under the work directory (on a blocking thread); returns how
/// many tasks had something to kill.
async fn kill_every_task(layout: &Layout) -> usize {
    let layout = layout.clone();
    tokio::task::spawn_blocking(move || crate::recovery::kill_everything(&layout))
        .await
        .unwrap_or(0)
}

/// A task report in the agent API's form.
fn reported(
    tasks: Vec<(
        crate::ids::FrameworkId,
        crate::ids::TaskId,
        crate::update::TaskState,
    )>,
) -> Vec<drover_proto::v1::ReportedTask> {
    tasks
        .into_iter()
        .map(|(f, t, s)| drover_proto::v1::ReportedTask {
            framework_id: f.to_string(),
            task_id: t.to_string(),
            state: s.to_proto() as i32,
        })
        .collect()
}

/// Tells the simulator which id each simulated agent has, and logs registration progress.
async fn forward_simulated(mut rx: mpsc::Receiver<Registered>, sim: Simulator, n: usize) {
    let mut seen = vec![false; n];
    let mut count = 0usize;
    let step = (n / 10).max(1);
    while let Some((i, id)) = rx.recv().await {
        sim.registered(i, id).await;
        if let Some(s) = seen.get_mut(i) {
            if !*s {
                *s = true;
                count += 1;
                if count.is_multiple_of(step) || count == n {
                    tracing::info!(
                        registered = count,
                        agents = n,
                        "simulated agents registered: {count}/{n}"
                    );
                }
            }
        }
    }
}
