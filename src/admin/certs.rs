//! `drover certs init|issue`: a development CA and the certificates it issues, through
//! `drover-tls`'s [`ca`](drover_tls::ca). Prints where each file went.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use drover_tls::ca::{self, Validity, CA_VALIDITY, CERT_VALIDITY};
use drover_tls::{Identity, Role};

#[derive(Subcommand)]
pub enum CertsOp {
    /// Make a new CA in DIR (`ca.pem`, `ca-key.pem`; refuses to replace one).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Days the CA is valid.
        #[arg(long, default_value_t = CA_VALIDITY.as_secs() / 86_400)]
        days: u64,
    },
    /// Issue a certificate for ROLE and NAME, signed by the CA in DIR, as
    /// `<role>-<name>.pem` and `<role>-<name>.key` (into --out, or DIR); issuing again
    /// renews it.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// master, agent, framework or client (operators and tools).
        #[arg(long)]
        role: String,
        /// The holder's name: 1-128 of [A-Za-z0-9._-] (a master's or agent's id, a
        /// framework's principal, an operator's).
        #[arg(long)]
        name: String,
        /// A host name or address the certificate is valid for (repeatable; a server's
        /// clients check it against the name they dialled).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = CERT_VALIDITY.as_secs() / 86_400)]
        days: u64,
        /// Where to write the certificate and key (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("--role: {0}")]
    Role(drover_tls::IdentityError),
    #[error("--name: {0}")]
    Name(drover_tls::IdentityError),
    #[error("--days: must be 1 to 36500")]
    Days,
    #[error(transparent)]
    Ca(#[from] ca::CaError),
}

fn validity(days: u64) -> Result<Validity, CertsError> {
    if !(1..=36_500).contains(&days) {
        return Err(CertsError::Days);
    }
    Ok(Validity::from_now(Duration::from_secs(days * 86_400)))
}

/// Runs `drover certs …`.
pub fn run(op: CertsOp) -> Result<(), CertsError> {
    match op {
        CertsOp::Init { dir, days } => {
            ca::init(&dir, validity(days)?)?;
            println!("CA certificate: {}", dir.join(ca::CA_CERT).display());
            println!(
                "CA key (keep it private): {}",
                dir.join(ca::CA_KEY).display()
            );
        }
        CertsOp::Issue {
            dir,
            role,
            name,
            hosts,
            days,
            out,
        } => {
            let role: Role = role.parse().map_err(CertsError::Role)?;
            let identity = Identity::new(role, name).map_err(CertsError::Name)?;
            let validity = validity(days)?;
            let ca = ca::load(&dir)?;
            let issued =
                ca.issue_to(out.as_deref().unwrap_or(&dir), &identity, &hosts, validity)?;
            println!("{} ({}):", identity, identity.uri());
            println!("  certificate: {}", issued.cert.display());
            println!("  key:         {}", issued.key.display());
        }
    }
    Ok(())
}
