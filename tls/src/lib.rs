//! Drover's transport security: who a certificate says its holder is (a [`Role`] and a name,
//! [`Identity`]), a development certificate authority that issues such certificates
//! ([`ca`], behind `drover certs`), and the rustls configurations under which both ends of a
//! connection present a certificate of the cluster's CA and each checks the other's role
//! ([`config`]): an agent's certificate cannot act as a master, nor a framework's as an agent.
//!
//! The files can change under a running process: [`live`] reloads them (SIGHUP, or a change
//! seen) and builds each connection's configuration from the ones last loaded, and runs the
//! handshakes of listeners and dialers with a deadline. The crypto is rustls's `ring` provider (no OpenSSL).

pub mod ca;
pub mod config;
mod identity;
pub mod live;

pub use identity::{Identity, IdentityError, Role, MAX_NAME_BYTES, URI_PREFIX};
pub use live::{ClientTls, HandshakeError, LiveTls, ServerTls, TlsArgs};
pub use tokio_rustls;
