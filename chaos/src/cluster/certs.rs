//! A local cluster's certificates, when it runs with mutual TLS: a development CA under
//! `BASE_DIR/tls` and one certificate per process (each master, agent and scheduler, and the
//! harness itself as an operator), issued as `drover certs issue` would.
//!
//! Owns the `tls/` directory. A certificate is issued once and kept: a process restarted
//! presents the same one.

use std::path::{Path, PathBuf};

use drover_tls::ca::{self, Ca, Validity, CA_VALIDITY, CERT_VALIDITY};
use drover_tls::config::TlsFiles;
use drover_tls::{Identity, LiveTls, Role};

use super::ClusterError;

/// The name of the harness's own (operator) certificate.
pub const HARNESS: &str = "harness";

/// The CA of a local cluster and what it issued.
#[derive(Debug)]
pub struct ClusterCerts {
    dir: PathBuf,
    ca: Ca,
}

fn tls_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Io {
        what: what.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl ClusterCerts {
    /// The CA under `base_dir/tls`, made if it is not there yet.
    pub fn open(base_dir: &Path) -> Result<Self, ClusterError> {
        let dir = base_dir.join("tls");
        let ca = if dir.join(ca::CA_CERT).exists() {
            ca::load(&dir)
        } else {
            ca::init(&dir, Validity::from_now(CA_VALIDITY))
        }
        .map_err(|e| tls_error(format!("the cluster CA in {}", dir.display()), e))?;
        Ok(Self { dir, ca })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate of `role` `name`, valid for `hosts`: issued on first use, then kept.
    pub fn files(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
    ) -> Result<TlsFiles, ClusterError> {
        self.issue(role, name, hosts, None)
    }

    /// A certificate of `role` `name` valid only during `validity` (an expired one, say),
    /// issued now whatever exists.
    pub fn issue_valid(
        &self,
        role: Role,
        name: &str,
        validity: Validity,
    ) -> Result<TlsFiles, ClusterError> {
        self.issue(role, name, &[], Some(validity))
    }

    fn issue(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
        validity: Option<Validity>,
    ) -> Result<TlsFiles, ClusterError> {
        let what = format!("a certificate for {role} {name}");
        let identity = Identity::new(role, name).map_err(|e| tls_error(&what, e))?;
        // As `Ca::issue_to` names them (not `with_extension`: a name may hold a dot).
        let files = TlsFiles {
            cert: self.dir.join(format!("{role}-{name}.pem")),
            key: self.dir.join(format!("{role}-{name}.key")),
            ca: self.dir.join(ca::CA_CERT),
        };
        if validity.is_none() && files.cert.exists() && files.key.exists() {
            return Ok(files);
        }
        let validity = validity.unwrap_or_else(|| Validity::from_now(CERT_VALIDITY));
        let mut hosts: Vec<String> = hosts.to_vec();
        hosts.sort();
        hosts.dedup();
        let issued = self
            .ca
            .issue_to(&self.dir, &identity, &hosts, validity)
            .map_err(|e| tls_error(&what, e))?;
        Ok(TlsFiles {
            cert: issued.cert,
            key: issued.key,
            ..files
        })
    }

    /// The harness's operator certificate, loaded.
    pub fn harness(&self) -> Result<LiveTls, ClusterError> {
        self.loaded(Role::Client, HARNESS)
    }

    /// The certificate of `role` `name` (issued on first use), loaded.
    pub fn loaded(&self, role: Role, name: &str) -> Result<LiveTls, ClusterError> {
        let files = self.files(role, name, &[])?;
        LiveTls::fixed(files, role)
            .map_err(|e| tls_error(format!("the certificate of {role} {name}"), e))
    }
}

/// The flags that hand `files` to a process.
pub fn flags(files: &TlsFiles) -> Vec<String> {
    [
        ("--tls-cert", &files.cert),
        ("--tls-key", &files.key),
        ("--tls-ca", &files.ca),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect()
}

/// The host part of `host:port` (an IPv6 address without its brackets).
pub fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}
