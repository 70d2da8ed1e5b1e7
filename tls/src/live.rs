//! Certificates that change while the process runs: a [`LiveTls`] holds the files last loaded
//! and good, and the server and client sides ([`ServerTls`], [`ClientTls`]) build their rustls
//! configurations from whatever it holds when a connection starts. Connections already open
//! keep the certificates they were opened with; the next ones use the new files.
//!
//! Owns the current [`Loaded`] files (one `watch` channel, written only by the reload task
//! [`LiveTls::watch`] starts). The reload task reads the files again on SIGHUP and whenever
//! one of them changes (looked at every [`POLL_INTERVAL`]); files that fail to load, or from
//! which no configuration can be built, are refused and the ones in use stay, with an error
//! logged and counted (`drover_tls_reloads_total{outcome="refused"}`), so a half-written
//! renewal never takes a process off the network.
//!
//! Also the two ends of a handshake: [`ServerTls::accept`] and [`ClientTls::connect`], each
//! bounded by a deadline, so a peer that connects and says nothing cannot hold a connection
//! slot in the handshake.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::{
    check_own_chain, client_config, peer_identity, server_config, Loaded, TlsError, TlsFiles,
};
use crate::identity::{Identity, Role};

/// How often the reload task looks at the files' sizes and modification times.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The longest a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ALPN protocols, in order of preference: gRPC needs HTTP/2; the HTTP/1.1 APIs (Mesos's,
/// Marathon's, `/metrics`) are served on the same port.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS configuration: {0}")]
    Config(#[from] TlsError),
    #[error("the TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer's certificate names no Drover identity")]
    NoIdentity,
    #[error("{0:?} is not a host name or an IP address")]
    BadServerName(String),
}

/// The files of one process's certificate, as last loaded and checked; the same for every
/// clone.
#[derive(Clone)]
pub struct LiveTls {
    files: TlsFiles,
    role: Role,
    current: watch::Receiver<Arc<Loaded>>,
    outcomes: Arc<ReloadOutcomes>,
}

/// How many reloads took new files, and how many were refused.
#[derive(Debug, Default)]
pub struct ReloadOutcomes {
    pub loaded: AtomicU64,
    pub refused: AtomicU64,
}

/// The files' sizes and modification times: a renewal changes at least one of them.
type Fingerprint = Vec<Option<(u64, SystemTime)>>;

fn fingerprint(files: &TlsFiles) -> Fingerprint {
    [&files.cert, &files.key, &files.ca]
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Loads `files` as `role` and checks that both configurations can be built from them (a
/// key that does not match its certificate is found here, not at the next handshake), and
/// that the certificate verifies against the CA file now ([`check_own_chain`]). A process
/// starting with a certificate that does not verify is warned and starts (its peers will
/// refuse it, and say why); a reload to such files is refused (`strict`): replacing the CA
/// file with a new CA alone, before the certificates are renewed, or an expired renewal,
/// would otherwise take every process off the network within seconds.
fn load_checked(files: &TlsFiles, role: Role, strict: bool) -> Result<Loaded, TlsError> {
    let loaded = files.load(role)?;
    server_config(&loaded, &Role::ALL)?;
    client_config(&loaded, &Role::ALL)?;
    if let Err(e) = check_own_chain(&loaded) {
        if strict {
            return Err(e);
        }
        tracing::warn!(error = %e, "this process's certificate will be refused by its peers");
    }
    Ok(loaded)
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("files", &self.files)
            .field("role", &self.role)
            .field("identity", &self.current.borrow().identity)
            .finish()
    }
}

impl LiveTls {
    /// The files loaded once, never reloaded (tests, one-shot commands).
    pub fn fixed(files: TlsFiles, role: Role) -> Result<Self, TlsError> {
        let loaded = load_checked(&files, role, false)?;
        let (_, current) = watch::channel(Arc::new(loaded));
        Ok(Self {
            files,
            role,
            current,
            outcomes: Arc::default(),
        })
    }

    /// The files loaded now (an error if they cannot be), and reloaded on SIGHUP and when
    /// they change, by a task that runs until the last clone is dropped. Needs a tokio runtime.
    pub fn watch(files: TlsFiles, role: Role) -> Result<Self, TlsError> {
        // Taken before the files are read: a change made after this is seen by the task.
        let seen = fingerprint(&files);
        let loaded = load_checked(&files, role, false)?;
        let (tx, current) = watch::channel(Arc::new(loaded));
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| TlsError::Config(format!("SIGHUP handler: {e}")))?;
        let outcomes = Arc::new(ReloadOutcomes::default());
        tokio::spawn(reload_loop(
            files.clone(),
            role,
            seen,
            tx,
            hangup,
            outcomes.clone(),
        ));
        Ok(Self {
            files,
            role,
            current,
            outcomes,
        })
    }

    /// Who this process is, as its current certificate says.
    pub fn identity(&self) -> Identity {
        self.current.borrow().identity.clone()
    }

    /// What the reloads so far did.
    pub fn reloads(&self) -> &ReloadOutcomes {
        &self.outcomes
    }

    /// The server side, taking clients of `clients`' roles.
    pub fn server(&self, clients: &[Role]) -> ServerTls {
        ServerTls {
            live: self.clone(),
            peers: clients.to_vec(),
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// The client side, talking to servers of `servers`' roles.
    pub fn client(&self, servers: &[Role]) -> ClientTls {
        ClientTls {
            live: self.clone(),
            peers: servers.to_vec(),
            cache: Arc::new(Mutex::new(None)),
        }
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.borrow().clone()
    }
}

/// Reloads `files` on SIGHUP and when they change, until every receiver is gone.
async fn reload_loop(
    files: TlsFiles,
    role: Role,
    mut seen: Fingerprint,
    tx: watch::Sender<Arc<Loaded>>,
    mut hangup: tokio::signal::unix::Signal,
    outcomes: Arc<ReloadOutcomes>,
) {
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::select! {
            _ = poll.tick() => false,
            _ = hangup.recv() => true,
            () = tx.closed() => return,
        };
        let now = fingerprint(&files);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match load_checked(&files, role, true) {
            Ok(loaded) => {
                tracing::info!(
                    identity = %loaded.identity,
                    cert = %files.cert.display(),
                    "TLS certificate and CA reloaded"
                );
                metrics::counter!("drover_tls_reloads_total", "outcome" => "loaded").increment(1);
                tx.send_replace(Arc::new(loaded));
                outcomes.loaded.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS files refused; the ones loaded before stay in use");
                metrics::counter!("drover_tls_reloads_total", "outcome" => "refused").increment(1);
                outcomes.refused.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// A configuration built for one [`Loaded`]: rebuilt when the files change.
type Cached<C> = Arc<Mutex<Option<(Arc<Loaded>, Arc<C>)>>>;

fn cached<C>(
    cache: &Cached<C>,
    loaded: Arc<Loaded>,
    build: impl FnOnce(&Loaded) -> Result<C, TlsError>,
) -> Result<Arc<C>, TlsError> {
    let mut slot = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((l, c)) = slot.as_ref() {
        if Arc::ptr_eq(l, &loaded) {
            return Ok(c.clone());
        }
    }
    let config = Arc::new(build(&loaded)?);
    *slot = Some((loaded, config.clone()));
    Ok(config)
}

/// The server end of mutual TLS for a listener.
#[derive(Clone)]
pub struct ServerTls {
    live: LiveTls,
    peers: Vec<Role>,
    cache: Cached<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("live", &self.live)
            .field("clients", &self.peers)
            .finish()
    }
}

impl ServerTls {
    /// The configuration for the next connection.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        cached(&self.cache, self.live.loaded(), |loaded| {
            let mut c = server_config(loaded, &self.peers)?;
            c.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
            Ok(c)
        })
    }

    /// The handshake on an accepted connection, within [`HANDSHAKE_TIMEOUT`]: the encrypted
    /// stream and who the peer is (its certificate already checked against the CA and the
    /// roles this side takes).
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(tokio_rustls::server::TlsStream<IO>, Identity), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config()?);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io))
            .await
            .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))??;
        let who = peer_identity(stream.get_ref().1.peer_certificates().unwrap_or(&[]))
            .ok_or(HandshakeError::NoIdentity)?;
        Ok((stream, who))
    }
}

/// The client end of mutual TLS for outgoing connections.
#[derive(Clone)]
pub struct ClientTls {
    live: LiveTls,
    peers: Vec<Role>,
    cache: Cached<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("live", &self.live)
            .field("servers", &self.peers)
            .finish()
    }
}

impl ClientTls {
    /// The configuration for the next connection.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        cached(&self.cache, self.live.loaded(), |loaded| {
            let mut c = client_config(loaded, &self.peers)?;
            c.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
            Ok(c)
        })
    }

    /// The configuration for an HTTP/1.1 client (reqwest, which speaks no HTTP/2 here):
    /// the same, offering only `http/1.1` in ALPN.
    pub fn http1_config(&self) -> Result<ClientConfig, TlsError> {
        Ok(http1_only(self.config()?.as_ref()))
    }

    /// The handshake on a connection to `host` (a name or an address, which the server's
    /// certificate must be valid for), within [`HANDSHAKE_TIMEOUT`].
    pub async fn connect<IO>(
        &self,
        host: &str,
        io: IO,
    ) -> Result<tokio_rustls::client::TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| HandshakeError::BadServerName(host.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(self.config()?);
        Ok(
            tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, io))
                .await
                .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))??,
        )
    }
}

/// `config`, offering only `http/1.1` in ALPN: for an HTTP/1.1 client (reqwest speaks no
/// HTTP/2 here, and a server offered `h2` first would pick it).
pub fn http1_only(config: &ClientConfig) -> ClientConfig {
    let mut c = config.clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

/// The three files `--tls-cert`, `--tls-key` and `--tls-ca` name, all or none: `None` when
/// none is given, an error naming what is missing when only some are.
pub fn files_from_flags(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, TlsError> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        (cert, key, ca) => {
            let missing: Vec<&str> = [
                ("--tls-cert", cert.is_none()),
                ("--tls-key", key.is_none()),
                ("--tls-ca", ca.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(f, _)| f)
            .collect();
            Err(TlsError::Config(format!(
                "TLS needs --tls-cert, --tls-key and --tls-ca together; missing {}",
                missing.join(", ")
            )))
        }
    }
}

/// The flags of a process that can speak mutual TLS, to flatten into its arguments.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsArgs {
    /// This process's certificate (PEM; its chain after it), issued by `drover certs issue`
    /// for its role. With --tls-key and --tls-ca, every connection is mutual TLS.
    #[arg(long, env = "DROVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "DROVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM; several for a CA rotation): peers must present a
    /// certificate it issued.
    #[arg(long, env = "DROVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The three files, all or none (see [`files_from_flags`]).
    pub fn files(&self) -> Result<Option<TlsFiles>, TlsError> {
        files_from_flags(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_ca.clone(),
        )
    }
}
