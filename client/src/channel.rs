//! gRPC channel settings shared by every Drover connection between processes.

use std::time::Duration;

use tonic::transport::Endpoint;

/// How long establishing a TCP connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
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
