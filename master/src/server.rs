//! One master process: opens its storage, starts its Raft node, serves gRPC and HTTP on one
//! port, and shuts all of it down in order.
//!
//! Owns the tasks it spawns (metrics watcher, recorder upkeep, bootstrap) in a `JoinSet` that
//! is aborted on the way out. Shutdown order: stop accepting requests, stop Raft (which drops
//! the log store, whose syncer flushes and fires what is queued), then close RocksDB.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::master::cluster_server::ClusterServer;
use drover_proto::master::framework_store_server::FrameworkStoreServer;
use drover_proto::raft::raft_service_server::RaftServiceServer;
use drover_proto::v1::agent_registry_server::AgentRegistryServer;
use drover_proto::v1::scheduler_server::SchedulerServer;
use drover_tls::Role;
use metrics_exporter_prometheus::PrometheusHandle;
use openraft::ServerState;
use tokio::task::JoinSet;
use tonic::service::Routes;

use crate::api::agent::AgentService;
use crate::api::cluster::ClusterService;
use crate::api::http;
use crate::api::scheduler::SchedulerService;
use crate::api::store::{StoreService, MAX_REQUEST_BYTES};
use crate::config::MasterConfig;
use crate::identity::Identity;
use crate::leader::LeaderHandle;
use crate::metrics as m;
use crate::proposer::Proposer;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerDialer, MAX_RAFT_MESSAGE_BYTES};
use crate::raft::service::RaftTransport;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::StateMachine;
use crate::raft::{MasterId, Raft};
use crate::replicated::Replicated;
use crate::{bootstrap, db};

/// Most concurrent requests per client connection; more wait in HTTP/2 flow control.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] db::OpenError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Snapshot(#[from] crate::raft::snapshot::SnapshotError),
    #[error("raft configuration: {0}")]
    Config(String),
    #[error("starting raft: {0}")]
    Raft(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("raft stopped on a fatal error: {0}; the process exits so that a supervisor restarts it from its data directory")]
    Fatal(String),
}

/// How long a stopping master lets open connections (streams, calls in flight) finish.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// Runs a master until `shutdown` resolves or bootstrap finds it must not go on.
pub async fn run(
    config: MasterConfig,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| MasterError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let db_path = data_dir.join("raft");
    let db = db::open(&db_path)?;
    crate::format::check(&db, &db_path)?;
    let identity = Arc::new(Identity::load_or_create(db.clone(), config.id)?);
    tracing::info!(
        id = config.id,
        incarnation = %identity.incarnation(),
        cluster = ?identity.cluster_id().map(|c| c.to_string()),
        addr = %config.advertised_addr(),
        "starting master"
    );
    let snapshots = Arc::new(SnapshotDir::open(&data_dir.join("snapshots"))?);
    let state_machine = StateMachine::open(snapshots.clone())?;
    let applied = state_machine.subscribe();
    let applied_for_http = applied.clone();
    let tls = match &config.tls {
        None => None,
        Some(files) => Some(
            drover_tls::LiveTls::watch(files.clone(), Role::Master)
                .map_err(|e| MasterError::Tls(e.to_string()))?,
        ),
    };
    if let Some(tls) = &tls {
        tracing::info!(identity = %tls.identity(), "mutual TLS on every connection");
    }
    let dialer = PeerDialer {
        bind_ip: config.peer_bind_ip,
        tls: tls.as_ref().map(|t| t.client(&[Role::Master])),
    };
    let agent_dialer = drover_client::channel::Dialer {
        bind_ip: None,
        tls: tls.as_ref().map(|t| t.client(&[Role::Agent])),
    };
    let raft = open_raft(&config, &identity, &db, dialer.clone(), state_machine).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| MasterError::Listen {
            addr: config.listen,
            source,
        })?;

    let mut tasks = JoinSet::new();
    let (proposer, proposer_loop) = Proposer::new(raft.clone(), config.id);
    tasks.spawn(proposer_loop);
    let replicated = Replicated::new(
        raft.clone(),
        config.id,
        applied,
        proposer,
        config.write_timeout,
    );
    let (leader, leader_watcher) = crate::leader::start(
        config.id,
        replicated.clone(),
        config.offers.clone(),
        config.write_timeout,
        agent_dialer,
    );
    tasks.spawn(leader_watcher);
    tasks.spawn(registry_gauges(applied_for_http.clone()));
    let http = http::HttpState {
        raft: raft.clone(),
        me: config.id,
        prometheus: prometheus.clone(),
        applied: applied_for_http,
    };
    let routes = api_routes(
        &config,
        http,
        &identity,
        snapshots,
        &replicated,
        leader,
        dialer.clone(),
    );

    tasks.spawn(watch_metrics(raft.clone(), config.id));
    tasks.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            prometheus.run_upkeep();
        }
    });
    let (bootstrap_tx, bootstrap_rx) = tokio::sync::oneshot::channel();
    {
        let (raft, identity, peers) = (raft.clone(), identity.clone(), config.peers.clone());
        tasks.spawn(async move {
            let r = bootstrap::run(raft, identity, peers, dialer).await;
            let _ = bootstrap_tx.send(r);
        });
    }

    let serve_config = drover_serve::ServeConfig {
        max_concurrent_streams: MAX_CONCURRENT_STREAMS,
        tls: tls.as_ref().map(|t| t.server(&Role::ALL)),
        roles: role_rules(),
        ..drover_serve::ServeConfig::default()
    };
    let outcome = serve(
        routes,
        listener,
        serve_config,
        shutdown,
        raft.clone(),
        bootstrap_rx,
    )
    .await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    drop(raft);
    drop(replicated);
    tracing::info!("master stopped");
    outcome
}

/// Every API of one port: HTTP, Raft between masters, the framework store, cluster
/// administration, the framework API and the agent registry.
fn api_routes(
    config: &MasterConfig,
    http: http::HttpState,
    identity: &Arc<Identity>,
    snapshots: Arc<SnapshotDir>,
    replicated: &Replicated,
    leader: LeaderHandle,
    dialer: PeerDialer,
) -> Routes {
    let raft = http.raft.clone();
    let acls = match &config.acls {
        Some(file) => crate::acl::LiveAcls::watch(file.clone()),
        None => crate::acl::LiveAcls::permissive(),
    };
    let scheduler = Arc::new(SchedulerService::new(leader.clone(), acls));
    let mesos = crate::api::mesos::MesosState::new(
        raft.clone(),
        config.id,
        scheduler.clone(),
        http.applied.clone(),
        leader.clone(),
    );
    Routes::from(http::router(http).merge(crate::api::mesos::router(mesos)))
        .add_service(
            RaftServiceServer::new(RaftTransport::new(raft, identity.clone(), snapshots))
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
        )
        .add_service(
            FrameworkStoreServer::new(StoreService::new(replicated.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(ClusterServer::new(ClusterService::new(
            replicated.clone(),
            identity.clone(),
            dialer,
            config.catch_up_timeout,
            leader.clone(),
        )))
        .add_service(
            SchedulerServer::from_arc(scheduler)
                .max_decoding_message_size(crate::api::scheduler::MAX_REQUEST_BYTES),
        )
        .add_service(
            AgentRegistryServer::new(AgentService::new(leader))
                .max_decoding_message_size(crate::api::agent::MAX_REQUEST_BYTES),
        )
}

/// This replica's Raft node over its log store and state machine, with the checked settings.
async fn open_raft(
    config: &MasterConfig,
    identity: &Arc<Identity>,
    db: &Arc<rocksdb::DB>,
    dialer: PeerDialer,
    state_machine: StateMachine,
) -> Result<Raft, MasterError> {
    let raft_config = config
        .raft_config()
        .validate()
        .map_err(|e| MasterError::Config(e.to_string()))?;
    Raft::new(
        config.id,
        Arc::new(raft_config),
        NetworkFactory::new(identity.clone(), dialer),
        LogStore::new(db.clone()),
        state_machine,
    )
    .await
    .map_err(|e| MasterError::Raft(e.to_string()))
}

/// Which roles may call what on a master with TLS on. Raft is between masters only; the
/// agent registry takes agents; the framework APIs take frameworks (and operators, who run
/// one-off frameworks such as `drover run`); cluster administration and the operator API
/// take operators (and masters: bootstrap and add-master call other masters). What no rule
/// names (`/health`, `/metrics`, `/state`, `/redirect`) is open to every role.
pub fn role_rules() -> drover_serve::RoleRules {
    use Role::*;
    drover_serve::RoleRules::new([
        ("/drover.raft.v1.RaftService/", &[Master][..]),
        ("/drover.v1.AgentRegistry/", &[Agent][..]),
        ("/drover.v1.Scheduler/", &[Framework, Client][..]),
        (
            "/drover.master.v1.FrameworkStore/",
            &[Framework, Client][..],
        ),
        ("/drover.master.v1.Cluster/", &[Master, Client][..]),
        ("/api/v1/scheduler", &[Framework, Client][..]),
        ("/api/v1", &[Client, Master][..]),
    ])
}

/// Serves the API until `shutdown` resolves, Raft stops on a fatal error or
/// bootstrapping fails; then stops the server (graceful, bounded by [`SHUTDOWN_DRAIN`]).
async fn serve(
    routes: Routes,
    listener: tokio::net::TcpListener,
    serve_config: drover_serve::ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    raft: Raft,
    mut bootstrap_rx: tokio::sync::oneshot::Receiver<Result<(), bootstrap::BootstrapError>>,
) -> Result<(), MasterError> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = drover_serve::serve(listener, routes, serve_config, async move {
        let _ = stop_rx.await;
    });
    let mut server = std::pin::pin!(server);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut bootstrap_done = false;
    let fatal = wait_for_fatal(raft);
    let mut fatal = std::pin::pin!(fatal);
    loop {
        tokio::select! {
            () = &mut server => break Ok(()),
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                let _ = stop_tx.send(());
                // A graceful stop waits for every connection to close, and a framework's
                // event stream never does by itself: bounded, then cut.
                break match tokio::time::timeout(SHUTDOWN_DRAIN, &mut server).await {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        tracing::warn!(drain = ?SHUTDOWN_DRAIN, "connections still open; closing them");
                        Ok(())
                    }
                };
            }
            e = &mut fatal => {
                tracing::error!(error = %e, "raft stopped");
                let _ = stop_tx.send(());
                let _ = tokio::time::timeout(SHUTDOWN_DRAIN, &mut server).await;
                break Err(MasterError::Fatal(e));
            }
            r = &mut bootstrap_rx, if !bootstrap_done => {
                bootstrap_done = true;
                if let Ok(Err(e)) = r {
                    tracing::error!("{e}");
                    let _ = stop_tx.send(());
                    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, &mut server).await;
                    break Err(e.into());
                }
            }
        }
    }
}

/// Resolves with the error once openraft stops on a fatal error (a storage failure, a panic in
/// its core): the replica can serve nothing after that, and staying up would only hide it.
async fn wait_for_fatal(raft: Raft) -> String {
    let mut rx = raft.metrics();
    loop {
        if let Err(e) = &rx.borrow_and_update().running_state {
            return e.to_string();
        }
        if rx.changed().await.is_err() {
            // The metrics sender is gone only when the core stopped.
            return "raft core stopped".to_string();
        }
    }
}

/// Keeps the registry-derived gauges (agents, frameworks, tasks by state) current, at most
/// once a second.
async fn registry_gauges(
    mut applied: tokio::sync::watch::Receiver<crate::raft::state_machine::AppliedState>,
) {
    loop {
        let registry = applied.borrow_and_update().registry.clone();
        m::set_registry_gauges(&registry);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// Mirrors openraft's metrics into Prometheus gauges; the only writer of those gauges.
async fn watch_metrics(raft: Raft, me: MasterId) {
    let mut rx = raft.metrics();
    loop {
        {
            let mm = rx.borrow_and_update();
            let is_leader = mm.state == ServerState::Leader;
            metrics::gauge!(m::RAFT_IS_LEADER).set(if is_leader { 1.0 } else { 0.0 });
            metrics::gauge!(m::RAFT_TERM).set(mm.current_term as f64);
            metrics::gauge!(m::RAFT_LEADER_ID).set(mm.current_leader.unwrap_or(0) as f64);
            metrics::gauge!(m::RAFT_LAST_LOG_INDEX).set(mm.last_log_index.unwrap_or(0) as f64);
            metrics::gauge!(m::RAFT_APPLIED_INDEX)
                .set(mm.last_applied.map_or(0, |l| l.index) as f64);
            metrics::gauge!(m::RAFT_SNAPSHOT_INDEX).set(mm.snapshot.map_or(0, |l| l.index) as f64);
            metrics::gauge!(m::RAFT_PURGED_INDEX).set(mm.purged.map_or(0, |l| l.index) as f64);
            metrics::gauge!(m::RAFT_MEMBERS)
                .set(mm.membership_config.membership().voter_ids().count() as f64);
            if is_leader {
                tracing::trace!(me, term = mm.current_term, "leader");
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
