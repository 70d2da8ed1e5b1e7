//! One listening port for gRPC (HTTP/2) and the HTTP/1.1 APIs (Mesos's, the state and
//! metrics endpoints), shared by masters and agents.
//!
//! Owns the connections: accepting them (at most [`ServeConfig::max_connections`] at once),
//! serving each with hyper (HTTP/1.1 or HTTP/2 as the client speaks), and stopping them
//! gracefully. It exists for one thing tonic's server does not let a caller set: an idle
//! HTTP/1.1 connection is kept open, as Mesos keeps it. hyper's default closes a keep-alive
//! connection that sends no request for 30 s, and the Mesos clients in use (pymesos's
//! scheduler and executor) send their next call on the connection they kept and lose that
//! call when the server closed it meanwhile.
//!
//! Connections are therefore bounded in number, not in idle time. TCP keepalive probes find
//! the peers that are gone (a crashed host, a cut network) and free their connections. When
//! every slot is taken, the connection idle longest (no request being answered, no response
//! body being sent, for at least [`ServeConfig::evict_idle_after`]) is closed gracefully to
//! make room: a peer that connects and stays silent, or a client that leaks idle connections,
//! cannot keep Raft peers, agents and frameworks out. A connection answering a request or
//! streaming events is never closed for room; with all of them busy a new connection waits,
//! accepted but not read, and the ones after it in the kernel's backlog, until one ends.
//!
//! With [`ServeConfig::tls`], every connection is mutual TLS: the handshake (bounded by
//! `drover_tls::live::HANDSHAKE_TIMEOUT`) comes first, in the connection's own task, and a
//! peer without a certificate of the cluster's CA and of a role the listener takes is
//! dropped before any request is read. Each request then carries the peer's
//! [`Identity`] as an extension, and [`RoleRules`] refuse paths the peer's role may not call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use drover_tls::{Identity, Role, ServerTls};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

/// How a listener serves its connections.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Connections served at once.
    pub max_connections: usize,
    /// HTTP/2 streams at once per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 pings to an idle connection, and how long a ping may go unanswered before the
    /// connection is dropped.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive: the first probe after this much silence, then one every
    /// `tcp_keepalive / 6`; after 3 unanswered the connection is dropped.
    pub tcp_keepalive: Duration,
    /// How long a connection must have been idle before it may be closed to make room for a
    /// new one (see the module doc).
    pub evict_idle_after: Duration,
    /// Mutual TLS on every connection (plain TCP when `None`): the handshake, bounded in
    /// time, comes before any request is read.
    pub tls: Option<ServerTls>,
    /// Which roles may call which paths (only with `tls`: without it no caller is known).
    pub roles: RoleRules,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            max_concurrent_streams: 1024,
            http2_keepalive_interval: Duration::from_secs(5),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(60),
            evict_idle_after: Duration::from_secs(5),
            tls: None,
            roles: RoleRules::default(),
        }
    }
}

/// How long accepting pauses after an error (out of file descriptors, say) before it tries
/// again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// With every slot taken and none idle long enough to close, how often the slots are looked
/// at again.
const EVICT_RETRY: Duration = Duration::from_millis(500);

/// The connection builder: HTTP/1.1 keep-alive without an idle limit, HTTP/2 with pings.
fn builder(config: &ServeConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .keep_alive_interval(Some(config.http2_keepalive_interval))
        .keep_alive_timeout(config.http2_keepalive_timeout);
    b
}

/// What one connection is doing, as its requests and response bodies tell it.
struct Activity {
    /// Requests being answered and response bodies being sent.
    busy: AtomicUsize,
    /// When it was last busy, in milliseconds since the listener started.
    last_active_ms: AtomicU64,
    /// Told to close gracefully (to make room).
    evict: Notify,
}

/// Held while a request is answered and its response body sent.
struct Busy {
    activity: Arc<Activity>,
    epoch: Instant,
}

impl Busy {
    fn new(activity: Arc<Activity>, epoch: Instant) -> Self {
        activity.busy.fetch_add(1, Ordering::SeqCst);
        Self { activity, epoch }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.activity.last_active_ms.store(now, Ordering::SeqCst);
        self.activity.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection busy until it is sent (or dropped).
struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl axum::body::HttpBody for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The live connections, by a number of their own.
#[derive(Default)]
struct Slots {
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells the connection idle longest (at least `min_idle`) to close, if there is one.
    fn evict_idlest(&self, epoch: Instant, min_idle: Duration) {
        let now = epoch.elapsed().as_millis() as u64;
        let min_idle = min_idle.as_millis() as u64;
        let connections = self.lock();
        let idlest = connections
            .values()
            .filter(|a| a.busy.load(Ordering::SeqCst) == 0)
            .map(|a| (a.last_active_ms.load(Ordering::SeqCst), a))
            .filter(|(at, _)| now.saturating_sub(*at) >= min_idle)
            .min_by_key(|(at, _)| *at);
        if let Some((_, a)) = idlest {
            // Never idle again: it is not picked twice while it closes.
            a.busy.fetch_add(1, Ordering::SeqCst);
            a.evict.notify_one();
        }
    }
}

/// One accepted connection, and what serving it needs.
struct Connection {
    peer: std::net::SocketAddr,
    router: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    rules: RoleRules,
    activity: Arc<Activity>,
    epoch: Instant,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// The TLS handshake, unless the connection is told to make room or the listener stops
    /// first (`None`: a peer not yet authenticated is dropped at once).
    async fn handshake(
        &self,
        tls: &ServerTls,
        stream: tokio::net::TcpStream,
    ) -> Option<
        Result<
            (
                drover_tls::tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
                Identity,
            ),
            drover_tls::HandshakeError,
        >,
    > {
        let mut stop = self.stop.clone();
        tokio::select! {
            r = tls.accept(stream) => Some(r),
            () = self.activity.evict.notified() => {
                tracing::debug!(peer = %self.peer, "dropping a connection still in its TLS handshake to make room");
                None
            }
            _ = stop.wait_for(|stop| *stop) => None,
        }
    }

    /// Serves the connection's requests until it ends, is told to make room or the listener
    /// stops. `who`: the peer's identity, as its certificate said (with TLS): each request
    /// carries it as an extension, and the listener's [`RoleRules`] are applied to it.
    async fn drive<IO>(self, io: IO, who: Option<Identity>)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            router,
            builder,
            rules,
            activity,
            epoch,
            mut stop,
        } = self;
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                let busy = Busy::new(activity.clone(), epoch);
                let refused = who.as_ref().and_then(|who| rules.refusal(&request, who));
                if let Some(who) = &who {
                    request.extensions_mut().insert(who.clone());
                }
                let answer = router.clone().oneshot(request);
                async move {
                    let response = match refused {
                        Some(refused) => refused,
                        None => answer.await?,
                    };
                    Ok::<_, std::convert::Infallible>(
                        response.map(|inner| Body::new(TrackedBody { inner, _busy: busy })),
                    )
                }
            })
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let mut closing = false;
        let ended = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                () = activity.evict.notified(), if !closing => {
                    tracing::debug!(%peer, "closing the idlest connection to make room");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                r = stop.wait_for(|stop| *stop), if !closing => {
                    closing = true;
                    if r.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }
}

/// Which roles may call which paths on a TLS listener: the first rule whose prefix the
/// request's path starts with decides; a path no rule covers is open to every role the
/// listener's handshake takes. A request refused gets gRPC's `PERMISSION_DENIED` (a gRPC
/// call) or HTTP 403, naming the path and the caller.
#[derive(Clone, Debug, Default)]
pub struct RoleRules(Arc<Vec<(String, Vec<Role>)>>);

impl RoleRules {
    /// Rules from `(path prefix, roles allowed)`, first match wins.
    pub fn new<'a>(rules: impl IntoIterator<Item = (&'a str, &'a [Role])>) -> Self {
        RoleRules(Arc::new(
            rules
                .into_iter()
                .map(|(prefix, roles)| (prefix.to_string(), roles.to_vec()))
                .collect(),
        ))
    }

    /// Whether `who` may call `path`.
    pub fn allows(&self, path: &str, who: &Identity) -> bool {
        self.0
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .is_none_or(|(_, roles)| roles.contains(&who.role))
    }

    /// The answer to a request `who` may not make, if it may not.
    fn refusal<B>(
        &self,
        request: &http::Request<B>,
        who: &Identity,
    ) -> Option<axum::response::Response> {
        let path = request.uri().path();
        if self.allows(path, who) {
            return None;
        }
        metrics::counter!("drover_role_refusals_total", "role" => who.role.as_str()).increment(1);
        let message = format!("{path}: not allowed for {who}");
        tracing::warn!(%who, path, "request refused for the caller's role");
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        Some(if grpc {
            tonic::Status::permission_denied(message).into_http::<axum::body::Body>()
        } else {
            use axum::response::IntoResponse;
            (
                http::StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "message": message, "field": null })),
            )
                .into_response()
        })
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the open connections to finish what they are answering (a caller bounds the wait:
/// streams that never end by themselves, such as a framework's events, keep it waiting).
/// Dropping the future drops every connection.
pub async fn serve(
    listener: TcpListener,
    routes: tonic::service::Routes,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve_router(
        listener,
        routes.prepare().into_axum_router(),
        config,
        shutdown,
    )
    .await
}

/// [`serve`] for an HTTP-only service (no gRPC): `router` answers every request.
pub async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(&config);
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let slots = Arc::new(Slots::default());
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // A slot for it; with none free, room is made by closing the idlest connection, if one
        // is idle long enough (looked at again after a while: the one told to close may take
        // its time, or none may be idle yet). Meanwhile the connections after this one wait
        // in the kernel's backlog.
        let permit = loop {
            if let Ok(p) = permits.clone().try_acquire_owned() {
                break Some(p);
            }
            slots.evict_idlest(epoch, config.evict_idle_after);
            tokio::select! {
                p = permits.clone().acquire_owned() => break p.ok(),
                () = tokio::time::sleep(EVICT_RETRY) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(permit) = permit else { break };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY");
        }
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(config.tcp_keepalive)
            .with_interval(config.tcp_keepalive / 6)
            .with_retries(3);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%peer, error = %e, "TCP keepalive");
        }
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            evict: Notify::new(),
        });
        let id = next_id;
        next_id += 1;
        slots.lock().insert(id, activity.clone());
        let connection = Connection {
            peer,
            router: router.clone(),
            builder: builder.clone(),
            rules: config.roles.clone(),
            activity,
            epoch,
            stop: stop_rx.clone(),
        };
        let (slots, tls) = (slots.clone(), config.tls.clone());
        connections.spawn(async move {
            match tls {
                None => connection.drive(stream, None).await,
                Some(tls) => match connection.handshake(&tls, stream).await {
                    None => {}
                    Some(Ok((stream, who))) => {
                        metrics::counter!("drover_tls_handshakes_total", "outcome" => "accepted")
                            .increment(1);
                        connection.drive(stream, Some(who)).await
                    }
                    Some(Err(e)) => {
                        metrics::counter!("drover_tls_handshakes_total", "outcome" => "refused")
                            .increment(1);
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                    }
                },
            }
            slots.lock().remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn routes() -> tonic::service::Routes {
        tonic::service::Routes::from(
            axum::Router::new()
                .route("/ping", axum::routing::get(|| async { "pong" }))
                // A response that never ends (as a framework's event stream): "open", then
                // nothing.
                .route(
                    "/stream",
                    axum::routing::get(|| async {
                        let open = futures::stream::iter([Ok::<_, std::convert::Infallible>(
                            axum::body::Bytes::from_static(b"open"),
                        )]);
                        Body::from_stream(open.chain(futures::stream::pending()))
                    }),
                ),
        )
    }

    /// A server of `max_connections` slots, any idle connection closable for room; its
    /// address, its stop switch and its task.
    async fn start(
        max_connections: usize,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ServeConfig {
            max_connections,
            evict_idle_after: Duration::ZERO,
            ..ServeConfig::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, routes(), config, async {
            let _ = stop_rx.await;
        }));
        (addr, stop_tx, server)
    }

    /// Opens a connection and sends `GET path`, reading until `until` arrives.
    async fn get(addr: std::net::SocketAddr, path: &str, until: &str) -> tokio::net::TcpStream {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let mut got = String::new();
        while !got.contains(until) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("answered within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed after {got:?}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        s
    }

    /// Reads one answer. No timeout: under a paused clock, a timeout would fire while the
    /// runtime waits on the socket.
    async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 1024];
        let mut got = String::new();
        while !got.ends_with("pong") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {got:?}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    }

    /// An idle HTTP/1.1 connection is still served long after hyper's default would have
    /// closed it: under tokio's paused clock, any timer the server set on it (hyper's 30 s
    /// header read timeout) fires as soon as the runtime is idle, and the read sees the close.
    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, routes(), ServeConfig::default(), async {
            let _ = stop_rx.await;
        }));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
        s.write_all(request).await.unwrap();
        let first = read_answer(&mut s).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(
            !first.to_ascii_lowercase().contains("connection: close"),
            "{first}"
        );
        tokio::time::advance(Duration::from_secs(600)).await;
        s.write_all(request).await.unwrap();
        let second = read_answer(&mut s).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        let _ = stop_tx.send(());
        drop(s);
        server.await.unwrap();
    }

    /// Past `max_connections` with every connection busy (a response still being sent), a
    /// new connection is served only once one closes.
    #[tokio::test]
    async fn connections_beyond_the_bound_wait_for_a_busy_one_to_end() {
        let (addr, stop_tx, server) = start(1).await;
        let first = get(addr, "/stream", "open").await;
        let request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second.write_all(request).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), second.read(&mut buf))
                .await
                .is_err(),
            "the second connection was served while the first was streaming"
        );
        drop(first);
        let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut second))
            .await
            .expect("answered once the first closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let _ = stop_tx.send(());
        drop(second);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("stopped")
            .unwrap();
    }

    /// With every slot taken, the connection idle longest is closed for a new one; one
    /// streaming a response is not.
    #[tokio::test]
    async fn the_idlest_connection_makes_room_and_a_streaming_one_stays() {
        let (addr, stop_tx, server) = start(2).await;
        // Streaming since before the idle one's last request.
        let mut streaming = get(addr, "/stream", "open").await;
        let mut idle = get(addr, "/ping", "pong").await;
        // A third connection is served: the idle one made room.
        let third = get(addr, "/ping", "pong").await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
            .await
            .expect("the idle connection closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "the idle connection got {:?}", &buf[..n]);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), streaming.read(&mut buf))
                .await
                .is_err(),
            "the streaming connection was closed or sent more"
        );
        let _ = stop_tx.send(());
        drop((streaming, third));
        server.abort();
    }
}
