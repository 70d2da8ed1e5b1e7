//! rustls configurations for Drover's connections: both ends present a certificate of the
//! cluster's CA (mutual TLS), and each checks the other's [`Role`] during the handshake, so a
//! certificate issued for an agent cannot act as a master and a framework's cannot act as an
//! agent. A peer without a certificate, with one of another CA, an expired one or one of a role
//! the side does not talk to, is refused before any request is read.
//!
//! Owns nothing past a call: [`TlsFiles::load`] reads the files once; building the configs
//! again from the files is how a renewed certificate or CA is taken up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::identity::{Identity, Role};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: no certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {source}")]
    Identity {
        path: PathBuf,
        source: crate::IdentityError,
    },
    #[error("{path}: the certificate is for a {found}, this process runs as a {wanted}")]
    WrongRole {
        path: PathBuf,
        found: Role,
        wanted: Role,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where a process's certificate chain, key and CA are (`--tls-cert`, `--tls-key`,
/// `--tls-ca`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The files of [`TlsFiles`], read and checked.
#[derive(Debug)]
pub struct Loaded {
    /// Who this process is, as its certificate says.
    pub identity: Identity,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Clone for Loaded {
    fn clone(&self) -> Self {
        Loaded {
            identity: self.identity.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
        }
    }
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads the chain, key and CA; `role`: the role this process runs as, which its
    /// certificate must name.
    pub fn load(&self, role: Role) -> Result<Loaded, TlsError> {
        let chain = certificates(&self.cert)?;
        let identity =
            Identity::of_certificate(&chain[0]).map_err(|source| TlsError::Identity {
                path: self.cert.clone(),
                source,
            })?;
        if identity.role != role {
            return Err(TlsError::WrongRole {
                path: self.cert.clone(),
                found: identity.role,
                wanted: role,
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in certificates(&self.ca)? {
            roots.add(ca).map_err(|e| file_error(&self.ca, e))?;
        }
        Ok(Loaded {
            identity,
            chain,
            key,
            roots: Arc::new(roots),
        })
    }
}

/// Checks that `loaded`'s own certificate is one its own CA file vouches for, now: issued by
/// one of its CAs, in its validity. Peers holding the same CA file would refuse it otherwise.
pub fn check_own_chain(loaded: &Loaded) -> Result<(), TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(loaded.roots.clone(), provider())
        .build()
        .map_err(config_error)?;
    verifier
        .verify_client_cert(&loaded.chain[0], &loaded.chain[1..], UnixTime::now())
        .map_err(|e| {
            TlsError::Config(format!(
                "{}: the certificate does not verify against the CA file: {e}",
                loaded.identity
            ))
        })?;
    Ok(())
}

/// rustls's `ring` provider: it builds in seconds where `aws-lc-rs` compiles a C library
/// (minutes on CI's two cores), but it has no post-quantum key exchange, hence rustls's
/// deprecation; moving to `aws-lc-rs` is one line here when that exchange is wanted.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: impl ToString) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A server's configuration: it presents `loaded`'s certificate and takes only clients whose
/// certificate, of the same CA, names one of `clients`' roles.
pub fn server_config(loaded: &Loaded, clients: &[Role]) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(loaded.roots.clone(), provider.clone())
        .build()
        .map_err(config_error)?;
    let verifier = Arc::new(RoleCheckingClientVerifier {
        inner,
        allowed: clients.to_vec(),
    });
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(loaded.chain.clone(), loaded.key.clone_key())
        .map_err(config_error)
}

/// A client's configuration: it presents `loaded`'s certificate and talks only to servers
/// whose certificate, of the same CA and valid for the name dialled, names one of `servers`'
/// roles.
pub fn client_config(loaded: &Loaded, servers: &[Role]) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let inner = WebPkiServerVerifier::builder_with_provider(loaded.roots.clone(), provider.clone())
        .build()
        .map_err(config_error)?;
    let verifier = Arc::new(RoleCheckingServerVerifier {
        inner,
        allowed: servers.to_vec(),
    });
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(loaded.chain.clone(), loaded.key.clone_key())
        .map_err(config_error)
}

/// Why a peer's certificate was refused for its role (carried in rustls's error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RoleRefused(String);

/// Checks that `end_entity` names one of `allowed`.
fn check_role(
    end_entity: &CertificateDer<'_>,
    allowed: &[Role],
) -> Result<Identity, rustls::Error> {
    let refused = |why: String| {
        tracing::warn!("TLS peer refused: {why}");
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            RoleRefused(why),
        ))))
    };
    let identity = Identity::of_certificate(end_entity).map_err(|e| refused(e.to_string()))?;
    if !allowed.contains(&identity.role) {
        let allowed: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        return Err(refused(format!(
            "{identity} is not allowed here (only {})",
            allowed.join(", ")
        )));
    }
    Ok(identity)
}

/// The handshake-signature methods both verifiers leave to the CA's verifier they wrap
/// (`self.inner`): only the certificate checks differ.
macro_rules! handshake_signatures_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// The CA's verifier for clients, then their role.
#[derive(Debug)]
struct RoleCheckingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<Role>,
}

impl ClientCertVerifier for RoleCheckingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_role(end_entity, &self.allowed)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures_by_inner!();
}

/// The CA's verifier for servers (chain, validity, the name dialled), then their role.
#[derive(Debug)]
struct RoleCheckingServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    allowed: Vec<Role>,
}

impl ServerCertVerifier for RoleCheckingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_role(end_entity, &self.allowed)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures_by_inner!();
}

/// The identity a peer's certificate chain names (its first certificate), for a server that
/// wants to know who called (the verifiers have already checked the chain and the role).
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Option<Identity> {
    Identity::of_certificate(chain.first()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{self, Validity, CA_VALIDITY, CERT_VALIDITY};

    #[test]
    fn loading_checks_the_role_and_names_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::init(dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
        let id = Identity::new(Role::Agent, "a1").unwrap();
        let issued = ca
            .issue_to(dir.path(), &id, &[], Validity::from_now(CERT_VALIDITY))
            .unwrap();
        let files = TlsFiles {
            cert: issued.cert.clone(),
            key: issued.key.clone(),
            ca: dir.path().join(ca::CA_CERT),
        };
        assert_eq!(files.load(Role::Agent).unwrap().identity, id);
        assert!(matches!(
            files.load(Role::Master),
            Err(TlsError::WrongRole {
                found: Role::Agent,
                wanted: Role::Master,
                ..
            })
        ));
        let missing = TlsFiles {
            ca: dir.path().join("nope.pem"),
            ..files.clone()
        };
        let e = missing.load(Role::Agent).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let swapped = TlsFiles {
            cert: issued.key.clone(),
            ..files
        };
        assert!(matches!(
            swapped.load(Role::Agent),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
