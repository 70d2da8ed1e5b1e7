//! One listening port for gRPC (HTTP/2) and the HTTP/1.1 APIs (Mesos's, the state and
//! metrics endpoints), shared by masters and agents.
//!
//! Owns the connections: accepting them (at most [`ServeConfig::max_connections`] at once;
//! the next waits in the kernel's backlog), serving each with hyper (HTTP/1.1 or HTTP/2 as
//! the client speaks), and stopping them gracefully. It exists for one thing tonic's server
//! does not let a caller set: an idle HTTP/1.1 connection is kept open, as Mesos keeps it.
//! hyper's default closes a keep-alive connection that sends no request for 30 s, and the
//! Mesos clients in use (pymesos's scheduler and executor) send their next call on the
//! connection they kept and lose that call when the server closed it meanwhile. Connections
//! are bounded in number, not in idle time; TCP keepalive probes find the peers that are gone
//! (a crashed host, a cut network) and free their connections.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            max_concurrent_streams: 1024,
            http2_keepalive_interval: Duration::from_secs(5),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(60),
        }
    }
}

/// How long accepting pauses after an error (out of file descriptors, say) before it tries
/// again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    let router = routes.prepare().into_axum_router();
    let builder = builder(&config);
    let permits = std::sync::Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
        let service = TowerToHyperService::new(router.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn routes() -> tonic::service::Routes {
        tonic::service::Routes::from(
            axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" })),
        )
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

    /// Past `max_connections`, a new connection is served only once one closes.
    #[tokio::test]
    async fn connections_beyond_the_bound_wait_for_a_free_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ServeConfig {
            max_connections: 1,
            ..ServeConfig::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, routes(), config, async {
            let _ = stop_rx.await;
        }));
        let request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first.write_all(request).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), read_answer(&mut first))
            .await
            .expect("answered");
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second.write_all(request).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf))
                .await
                .is_err(),
            "the second connection was served while the first was open"
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
}
