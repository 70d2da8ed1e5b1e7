//! Drover's transport security: who a certificate says its holder is (a [`Role`] and a name,
//! [`Identity`]), a development certificate authority that issues such certificates
//! ([`ca`], behind `drover certs`), and the rustls configurations under which both ends of a
//! connection present a certificate of the cluster's CA and each checks the other's role
//! ([`config`]): an agent's certificate cannot act as a master, nor a framework's as an agent.
//!
//! Owns no state of its own: certificates, keys and the CA are files, read when a
//! configuration is built. The crypto is rustls's `ring` provider (no OpenSSL).

pub mod ca;
pub mod config;
mod identity;

pub use identity::{Identity, IdentityError, Role, MAX_NAME_BYTES, URI_PREFIX};
