//! A development certificate authority, behind `drover certs init|issue`: a CA key and
//! certificate in a directory (`ca.pem`, `ca-key.pem`), and the certificates it issues for an
//! [`Identity`] (`<role>-<name>.pem`, `<role>-<name>.key`), each valid for the host names
//! and addresses it is given and carrying its identity as a URI SAN. A deployment may use its
//! own CA instead: Drover reads only the chain, the key, the CA and that URI SAN.
//!
//! Owns the files it writes: keys are written owner-only (0600), every file through a
//! temporary file and a rename, so a reader never sees half of one.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::identity::Identity;

/// The CA's certificate, in its directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key, in its directory.
pub const CA_KEY: &str = "ca-key.pem";
/// How long a CA made by [`init`] is valid by default (ten years).
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long an issued certificate is valid by default (one year).
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most host names and addresses one certificate is valid for.
pub const MAX_HOSTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already holds a CA: remove it first to make another (its certificates would no longer be trusted)")]
    Exists(PathBuf),
    #[error("host {host:?}: {reason}")]
    BadHost { host: String, reason: String },
    #[error("at most {MAX_HOSTS} hosts per certificate")]
    TooManyHosts,
    #[error("validity: {0}")]
    BadValidity(String),
    #[error("{what}: {source}")]
    Certificate { what: String, source: rcgen::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CaError {
    let what = what.into();
    move |source| CaError::Certificate { what, source }
}

/// From when to when a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clocks differ a little between hosts) for `length`.
    pub fn from_now(length: Duration) -> Self {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + length,
        }
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), CaError> {
        if self.not_after <= self.not_before {
            return Err(CaError::BadValidity(
                "it must end after it begins".to_string(),
            ));
        }
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
        Ok(())
    }
}

/// A CA that can issue certificates: its certificate (PEM) and its signing key.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Files [`Ca::issue_to`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub identity: Identity,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a new CA in `dir` (created if missing); refuses to replace one.
pub fn init(dir: &Path, validity: Validity) -> Result<Ca, CaError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    if cert_path.exists() || key_path.exists() {
        return Err(CaError::Exists(dir.to_path_buf()));
    }
    let mut params = CertificateParams::default();
    // A name of its own (the moment it was made): two CAs never share an issuer name, so a
    // certificate of another CA is refused as of an unknown issuer, not by its signature.
    let made = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Drover cluster CA {made:x}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Drover");
    // It signs leaf certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity.apply(&mut params)?;
    let key = KeyPair::generate().map_err(cert_error("making the CA's key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(cert_error("signing the CA's certificate"))?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

/// The CA in `dir`, as [`init`] left it.
pub fn load(dir: &Path) -> Result<Ca, CaError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let cert_pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let key = KeyPair::from_pem(&key_pem).map_err(cert_error(key_path.display().to_string()))?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
        .map_err(cert_error(cert_path.display().to_string()))?;
    Ok(Ca { cert_pem, issuer })
}

impl Ca {
    /// The CA's certificate, PEM: what every peer trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `identity`, valid for `hosts` (names or addresses), signed by this
    /// CA: its PEM and its new key's PEM.
    pub fn issue(
        &self,
        identity: &Identity,
        hosts: &[String],
        validity: Validity,
    ) -> Result<(String, String), CaError> {
        if hosts.len() > MAX_HOSTS {
            return Err(CaError::TooManyHosts);
        }
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.to_string());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Drover");
        let uri = identity
            .uri()
            .try_into()
            .map_err(cert_error(format!("the identity {identity}")))?;
        params.subject_alt_names.push(SanType::URI(uri));
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(host.as_str().try_into().map_err(|e: rcgen::Error| {
                        CaError::BadHost {
                            host: host.clone(),
                            reason: e.to_string(),
                        }
                    })?)
                }
            };
            params.subject_alt_names.push(san);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Masters and agents serve and call; frameworks serve too (the Marathon API) and
        // clients only call, but one usage set for all keeps a role's checks in one place:
        // the role, not the usage, says what a holder may do.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params)?;
        let key = KeyPair::generate().map_err(cert_error("making the key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_error(format!("signing the certificate of {identity}")))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// [`Ca::issue`], written into `dir` as `<role>-<name>.pem` and `<role>-<name>.key` (the
    /// key's own extension: with `-key.pem`, the certificate of a name ending in `-key` would
    /// overwrite the key of the name without it)
    /// (replacing earlier ones: issuing again is how a certificate is renewed).
    pub fn issue_to(
        &self,
        dir: &Path,
        identity: &Identity,
        hosts: &[String],
        validity: Validity,
    ) -> Result<Issued, CaError> {
        let (cert_pem, key_pem) = self.issue(identity, hosts, validity)?;
        fs::create_dir_all(dir).map_err(io(dir))?;
        let stem = format!("{}-{}", identity.role, identity.name);
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&key, key_pem.as_bytes(), true)?;
        write_file(&cert, cert_pem.as_bytes(), false)?;
        Ok(Issued {
            identity: identity.clone(),
            cert,
            key,
        })
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename; `secret`: owner-only.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), CaError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::Role;

    #[test]
    fn a_ca_issues_certificates_that_name_their_identity_and_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init(dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
        assert!(matches!(
            init(dir.path(), Validity::from_now(CA_VALIDITY)),
            Err(CaError::Exists(_))
        ));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(CA_KEY)), 0o600);

        let id = Identity::new(Role::Agent, "a1").unwrap();
        let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
        let issued = ca
            .issue_to(dir.path(), &id, &hosts, Validity::from_now(CERT_VALIDITY))
            .unwrap();
        assert_eq!(issued.cert, dir.path().join("agent-a1.pem"));
        assert_eq!(mode(&issued.key), 0o600);
        // Regression: a name ending in `-key` once wrote its certificate over this key.
        let suffixed = Identity::new(Role::Agent, "a1-key").unwrap();
        let other = ca
            .issue_to(
                dir.path(),
                &suffixed,
                &[],
                Validity::from_now(CERT_VALIDITY),
            )
            .unwrap();
        assert_ne!(other.cert, issued.key);
        assert!(fs::read_to_string(&issued.key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));

        // The CA loads again from its files and still issues.
        let again = load(dir.path()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let (pem, _) = again
            .issue(
                &Identity::new(Role::Master, "m1").unwrap(),
                &[],
                Validity::from_now(CERT_VALIDITY),
            )
            .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

        // What it issued names the identity and the hosts.
        let der = der_of(&fs::read_to_string(&issued.cert).unwrap());
        assert_eq!(Identity::of_certificate(&der).unwrap(), id);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        use x509_parser::extensions::GeneralName;
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(&[a, b, c, d]) => {
                    std::net::Ipv4Addr::new(a, b, c, d).to_string()
                }
                GeneralName::URI(u) => u.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["urn:drover:agent:a1", "localhost", "127.0.0.1"]);
    }

    #[test]
    fn bad_hosts_and_validities_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init(dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
        let id = Identity::new(Role::Client, "ops").unwrap();
        assert!(matches!(
            ca.issue(
                &id,
                &["bad host é".into()],
                Validity::from_now(CERT_VALIDITY)
            ),
            Err(CaError::BadHost { .. })
        ));
        assert!(matches!(
            ca.issue(
                &id,
                &vec!["h".to_string(); MAX_HOSTS + 1],
                Validity::from_now(CERT_VALIDITY)
            ),
            Err(CaError::TooManyHosts)
        ));
        let now = SystemTime::now();
        assert!(matches!(
            ca.issue(
                &id,
                &[],
                Validity {
                    not_before: now,
                    not_after: now
                }
            ),
            Err(CaError::BadValidity(_))
        ));
    }

    /// The DER of the first certificate in `pem`.
    fn der_of(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject as _;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }
}
