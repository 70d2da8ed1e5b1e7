//! The identity a Drover certificate carries: one URI subject alternative name
//! `urn:drover:<role>:<name>` (as SPIFFE puts a workload's identity in a URI SAN). The host
//! names and addresses a certificate is valid for are its DNS and IP SANs, checked by the TLS
//! layer as usual; the role says what its holder may act as, whatever address it connects from.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;

/// What a certificate's holder may act as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A master: a Raft peer, the framework and agent API.
    Master,
    /// An agent: registers with the masters, runs tasks.
    Agent,
    /// A framework (scheduler): subscribes, accepts offers, launches tasks.
    Framework,
    /// An operator or a tool (the CLI, `curl`): operator calls and reads.
    Client,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Master, Role::Agent, Role::Framework, Role::Client];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Framework => "framework",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole(s.to_string()))
    }
}

/// The prefix of the URI SAN that names a Drover identity.
pub const URI_PREFIX: &str = "urn:drover:";
/// Longest name.
pub const MAX_NAME_BYTES: usize = 128;

/// A role and a name (`agent`, `a1`): who a certificate's holder is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("unknown role {0:?} (master, agent, framework or client)")]
    UnknownRole(String),
    #[error("name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("{0:?} is not a Drover identity (urn:drover:<role>:<name>)")]
    BadUri(String),
    #[error("the certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("the certificate names no Drover identity (no urn:drover:<role>:<name> subject alternative name)")]
    None,
    #[error("the certificate names more than one Drover identity")]
    Several,
}

impl Identity {
    /// Checks the name: 1 to [`MAX_NAME_BYTES`] of `[A-Za-z0-9._-]`.
    pub fn new(role: Role, name: impl Into<String>) -> Result<Self, IdentityError> {
        let name = name.into();
        let bad = |reason| IdentityError::BadName {
            name: name.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(bad("longer than 128 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("only letters, digits, '.', '_' and '-'"));
        }
        Ok(Identity { role, name })
    }

    /// `urn:drover:<role>:<name>`.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}:{}", self.role, self.name)
    }

    /// Reads `urn:drover:<role>:<name>`.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadUri(uri.to_string());
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(bad)?;
        let (role, name) = rest.split_once(':').ok_or_else(bad)?;
        Identity::new(role.parse()?, name)
    }

    /// The identity a DER certificate names (exactly one `urn:drover:` URI SAN).
    pub fn of_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unreadable(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unreadable(e.to_string()))?
            .ok_or(IdentityError::None)?;
        let mut found = None;
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with(URI_PREFIX) {
                    if found.is_some() {
                        return Err(IdentityError::Several);
                    }
                    found = Some(Identity::from_uri(uri)?);
                }
            }
        }
        found.ok_or(IdentityError::None)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_go_to_a_uri_and_back_and_bad_ones_name_their_fault() {
        let id = Identity::new(Role::Agent, "a-1.rack_2").unwrap();
        assert_eq!(id.uri(), "urn:drover:agent:a-1.rack_2");
        assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        assert_eq!(id.to_string(), "agent a-1.rack_2");
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!(matches!(
            Identity::from_uri("urn:drover:root:x"),
            Err(IdentityError::UnknownRole(r)) if r == "root"
        ));
        assert!(matches!(
            Identity::from_uri("urn:other:agent:x"),
            Err(IdentityError::BadUri(_))
        ));
        assert!(matches!(
            Identity::from_uri("urn:drover:agent"),
            Err(IdentityError::BadUri(_))
        ));
        for name in ["", "a b", "a:b", "é", &"x".repeat(129)] {
            assert!(
                matches!(
                    Identity::new(Role::Master, name),
                    Err(IdentityError::BadName { .. })
                ),
                "{name:?}"
            );
        }
        assert!(Identity::new(Role::Master, "x".repeat(128)).is_ok());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            Identity::of_certificate(b"not a certificate"),
            Err(IdentityError::Unreadable(_))
        ));
    }
}
