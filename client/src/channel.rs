//! gRPC channel settings shared by every Drover connection between processes, and the
//! [`Dialer`] that opens them, over plain TCP or mutual TLS.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use drover_tls::{tokio_rustls, ClientTls};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Endpoint};

/// How long establishing a TCP connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long establishing a TLS connection may take: TCP, then the handshake's two round
/// trips and its signatures (a busy peer, or a listener whose slots are all taken, answers
/// later than a plain connect needs).
pub const TLS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keepalive: ping an idle connection this often, and drop it when a ping goes
/// unanswered for `KEEPALIVE_TIMEOUT` (detects a silently partitioned peer).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// An endpoint for `host:port` (plain HTTP/2) with Drover's settings.
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// How a process dials the others: the source address of its connections, and mutual TLS
/// (the certificate it presents and the roles of the servers it talks to) or plain TCP.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    /// Source address (a multi-homed host picks its interface; a fault-injecting proxy
    /// tells processes apart by it). `None` lets the kernel choose.
    pub bind_ip: Option<IpAddr>,
    /// Mutual TLS; plain HTTP/2 when `None`.
    pub tls: Option<ClientTls>,
}

impl Dialer {
    /// A lazily connecting channel to `addr` (`host:port`), with Drover's settings: it
    /// connects (TCP, then the TLS handshake) on first use and again after a failure.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let endpoint = endpoint(addr)?;
        Ok(match &self.tls {
            None => endpoint.local_address(self.bind_ip).connect_lazy(),
            Some(tls) => endpoint
                .connect_timeout(TLS_CONNECT_TIMEOUT)
                .connect_with_connector_lazy(TlsConnector {
                    tls: tls.clone(),
                    bind_ip: self.bind_ip,
                }),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// TCP to the address the URI names (from `bind_ip` when set), then the TLS handshake for
/// its host. tonic bounds the whole by the endpoint's connect timeout.
#[derive(Clone)]
struct TlsConnector {
    tls: ClientTls,
    bind_ip: Option<IpAddr>,
}

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, bind_ip) = (self.tls.clone(), self.bind_ip);
        Box::pin(async move {
            let host = uri.host().ok_or("the address names no host")?.to_string();
            let port = uri.port_u16().ok_or("the address names no port")?;
            let tcp = tcp_connect(&host, port, bind_ip).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tls.connect(&host, tcp).await?))
        })
    }
}

/// A TCP connection to the first address of `host` that answers, from `bind_ip` when set.
async fn tcp_connect(host: &str, port: u16, bind_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut last = None;
    for addr in tokio::net::lookup_host((bare, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = bind_ip {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address"))
    }))
}
