//! `drover scheduler`: the Marathon-compatible scheduler as a process. Several may run; the
//! one holding the lease ([`super::lease`]) is active: it subscribes to the masters as a
//! partition-aware framework (failing over the framework id kept in the store), loads the
//! records, runs the service and answers `/v2`. The others are standbys: they answer `/v2`
//! with a 307 to the active one (`/v2/leader` names it), and take over when its lease lapses.
//! `/ping`, `/health` and `/metrics` are every process's own.
//!
//! A scheduler that loses its lease stops its driver (without tearing the framework down) and
//! becomes a standby; on SIGINT/SIGTERM it releases the lease so a standby takes over at once.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use drover_client::{MasterClient, RetryPolicy};
use tokio::sync::watch;
use tower::ServiceExt;

use super::error::ApiError;
use super::lease::{Lease, LeaseTimes};
use super::service::{self, Info, FRAMEWORK_ID_KEY};
use super::state::{FrameworkStore, KvStore, Records};
use crate::driver::{Driver, DriverOptions, FrameworkId, FrameworkInfo};

/// How long a term's end waits for the driver to stop.
const DRIVER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// `drover scheduler` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    /// Masters (`host:port`, any of them), comma-separated.
    #[arg(
        long,
        env = "DROVER_MASTERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:5050"
    )]
    pub masters: Vec<String>,
    /// Address `/v2` is served on.
    #[arg(
        long,
        env = "DROVER_SCHEDULER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// The address other schedulers send clients to when this one is active (default: the
    /// address listened on).
    #[arg(long)]
    pub advertise: Option<String>,
    /// The framework's name; also its namespace in the masters' framework store.
    #[arg(long, default_value = "marathon")]
    pub framework_name: String,
    /// The allocation role of the framework.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// How long the masters keep the framework's tasks while no scheduler is subscribed.
    #[arg(long, default_value_t = 604_800.0)]
    pub failover_timeout_seconds: f64,
    /// How long the active scheduler's lease lasts without renewal, milliseconds: a standby
    /// takes over this long after the active one stopped renewing.
    #[arg(long, default_value_t = 2000)]
    pub lease_ms: u64,
    /// Mutual TLS with a framework's certificate: to the masters, and on the `/v2` listener
    /// (HTTPS, clients presenting an operator's certificate of the same CA; give the
    /// certificate the listener's host names so that clients checking names accept it).
    #[command(flatten)]
    pub tls: drover_tls::TlsArgs,
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--masters: {0}")]
    Masters(String),
    #[error("--lease-ms: {0}")]
    Lease(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Stopped(String),
}

/// What the HTTP edge routes `/v2` to.
#[derive(Clone)]
struct Roles {
    active: watch::Receiver<Option<Router>>,
    leader: watch::Receiver<Option<String>>,
    /// How clients reach the active scheduler (`https` with TLS on).
    scheme: &'static str,
}

/// Which certificate roles may call what with TLS on (the handshake takes any role of the
/// cluster's CA): the app API is operators'; `/ping`, `/health` and `/metrics` anyone's.
pub fn role_rules() -> drover_serve::RoleRules {
    drover_serve::RoleRules::new([("/v2", &[drover_tls::Role::Client][..])])
}

/// Runs the scheduler until `shutdown` resolves or the masters end the framework.
pub async fn serve(
    args: SchedulerArgs,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if !(500..=60_000).contains(&args.lease_ms) {
        return Err(ServeError::Lease(format!(
            "{}: must be 500 to 60000",
            args.lease_ms
        )));
    }
    let tls = match args
        .tls
        .files()
        .map_err(|e| ServeError::Tls(e.to_string()))?
    {
        None => None,
        Some(files) => Some(
            drover_tls::LiveTls::watch(files, drover_tls::Role::Framework)
                .map_err(|e| ServeError::Tls(e.to_string()))?,
        ),
    };
    let dialer = drover_client::channel::Dialer {
        bind_ip: None,
        tls: tls.as_ref().map(|t| t.client(&[drover_tls::Role::Master])),
    };
    let client = MasterClient::with_dialer(&args.masters, RetryPolicy::default(), dialer)
        .map_err(|e| ServeError::Masters(e.to_string()))?;
    let store = FrameworkStore {
        client,
        framework: args.framework_name.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: args.listen,
        source,
    })?;
    let advertise = args.advertise.clone().unwrap_or_else(|| local.to_string());
    let (active_tx, active_rx) = watch::channel(None);
    let (leader_tx, leader_rx) = watch::channel(None);
    let edge = edge_router(
        Roles {
            active: active_rx,
            leader: leader_rx,
            scheme: if tls.is_some() { "https" } else { "http" },
        },
        metrics,
    );
    let serve_config = drover_serve::ServeConfig {
        tls: tls.as_ref().map(|t| t.server(&drover_tls::Role::ALL)),
        roles: role_rules(),
        ..drover_serve::ServeConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(drover_serve::serve_router(
        listener,
        edge,
        serve_config,
        async {
            let _ = stop_rx.await;
        },
    ));
    tracing::info!(%local, %advertise, "serving; waiting for the scheduler lease");
    let times = LeaseTimes {
        ttl: Duration::from_millis(args.lease_ms),
        margin: Duration::from_millis(args.lease_ms / 4),
        poll: Duration::from_millis((args.lease_ms / 10).max(50)),
    };
    let lease = Lease::new(
        store.clone(),
        uuid::Uuid::new_v4().to_string(),
        advertise.clone(),
        times,
    );
    let process = Process {
        args,
        store,
        advertise,
        lease,
        times,
        active: active_tx,
        leader: leader_tx,
    };
    let outcome = process.terms(shutdown).await;
    let _ = stop_tx.send(());
    // Event streams never end by themselves: the server gets a bounded time to drain.
    if tokio::time::timeout(Duration::from_secs(2), &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    outcome
}

/// `/ping`, `/health` and `/metrics` of this process; `/v2` to the active scheduler's routes
/// or a redirect.
fn edge_router(
    roles: Roles,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Router {
    let mut edge = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/health", get(|| async { "ok" }));
    if let Some(m) = metrics {
        edge = edge.route("/metrics", get(move || std::future::ready(m.render())));
    }
    edge.fallback(dispatch).with_state(roles)
}

/// What one scheduler process works with, from one term to the next.
struct Process {
    args: SchedulerArgs,
    store: FrameworkStore,
    advertise: String,
    lease: Lease<FrameworkStore>,
    times: LeaseTimes,
    /// The active scheduler's routes while this one is active.
    active: watch::Sender<Option<Router>>,
    /// Where the active scheduler serves, while another one is.
    leader: watch::Sender<Option<String>>,
}

impl Process {
    /// Standby until the lease is won, active until it is lost, again and again, until
    /// `shutdown` (the lease released) or the masters end the framework.
    async fn terms(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let mut holder = tokio::select! {
                h = self.lease.acquire(&self.leader) => h,
                () = &mut shutdown => return Ok(()),
            };
            tracing::info!("holding the scheduler lease: active");
            let term = async {
                let (driver, started) =
                    start_active(&self.args, &self.store, &self.advertise, holder.fence()).await?;
                self.active
                    .send_replace(Some(super::api::router(started.handle.clone())));
                let mut done = started.done;
                let end = tokio::select! {
                    () = self.lease.hold(&mut holder) => Term::LostLease,
                    why = &mut done => Term::Stopped(why.unwrap_or_else(|e| e.to_string())),
                    () = &mut shutdown => Term::Shutdown,
                };
                self.active.send_replace(None);
                // Not torn down: the framework and its tasks stay for the next scheduler. The
                // driver may be in a subscription attempt (up to its subscribe timeout): the
                // stop is bounded, and the driver ends anyway once its handles are gone.
                let _ = tokio::time::timeout(DRIVER_STOP_TIMEOUT, driver.stop()).await;
                Ok::<Term, ServeError>(end)
            };
            match term.await {
                Ok(Term::LostLease) => tracing::warn!("lost the scheduler lease: standby again"),
                Ok(Term::Shutdown) => {
                    self.lease.release(&holder).await;
                    return Ok(());
                }
                Ok(Term::Stopped(why)) => {
                    self.lease.release(&holder).await;
                    return Err(ServeError::Stopped(why));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not become active; trying again");
                    self.lease.release(&holder).await;
                    tokio::time::sleep(self.times.ttl).await;
                }
            }
        }
    }
}

/// How one term as the active scheduler ended.
enum Term {
    LostLease,
    Shutdown,
    Stopped(String),
}

async fn start_active(
    args: &SchedulerArgs,
    store: &FrameworkStore,
    advertise: &str,
    fence: watch::Receiver<tokio::time::Instant>,
) -> Result<(Driver, service::Started), ServeError> {
    let known_id = store
        .get(FRAMEWORK_ID_KEY)
        .await
        .map_err(|e| ServeError::Stopped(e.to_string()))?
        .and_then(|(v, _)| String::from_utf8(v).ok())
        .map(FrameworkId::new);
    let framework = FrameworkInfo {
        name: args.framework_name.clone(),
        role: args.role.clone(),
        principal: String::new(),
        failover_timeout_seconds: args.failover_timeout_seconds,
        id: known_id,
        partition_aware: true,
    };
    let options = DriverOptions {
        tls: store.client.dialer().tls.clone(),
        ..DriverOptions::default()
    };
    let (driver, events) = Driver::start(&args.masters, framework, options)
        .map_err(|e| ServeError::Masters(e.to_string()))?;
    let info = Info {
        name: "drover".into(),
        http_address: advertise.to_string(),
        masters: args.masters.clone(),
        framework_name: args.framework_name.clone(),
        failover_timeout_seconds: args.failover_timeout_seconds,
        role: args.role.clone(),
    };
    match service::start(
        Records::new(store.clone()),
        driver.clone(),
        events,
        info,
        Some(fence),
    )
    .await
    {
        Ok(started) => Ok((driver, started)),
        Err(e) => {
            driver.stop().await;
            Err(ServeError::Stopped(e.message))
        }
    }
}

/// `/v2` on the active scheduler's routes, or a 307 to the active one.
async fn dispatch(State(roles): State<Roles>, request: Request) -> Response {
    let active = roles.active.borrow().clone();
    if let Some(router) = active {
        return match router.oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let leader = roles.leader.borrow().clone();
    let path = request.uri().path().to_string();
    match leader {
        Some(addr) if path == "/v2/leader" => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "leader": addr }).to_string(),
        )
            .into_response(),
        Some(addr) => {
            let target = request
                .uri()
                .path_and_query()
                .map_or(path.clone(), |p| p.as_str().to_string());
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(
                    header::LOCATION,
                    format!("{}://{addr}{target}", roles.scheme),
                )
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        None if path == "/v2/leader" => ApiError::not_found("There is no leader").into_response(),
        None => ApiError::new(503, "There is no leader: no scheduler holds the lease yet")
            .into_response(),
    }
}
