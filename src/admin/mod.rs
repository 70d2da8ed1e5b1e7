//! The command-line clients, once their arguments are parsed: the operators' `drover store`,
//! `drover cluster`, `drover agent drain|…` and `drover leader` through `drover-client`, and
//! the users' `drover app|task|deployment|watch` over the scheduler's `/v2` ([`apps`]), and
//! `drover task logs` through the agents' `/files` ([`logs`]), and `drover certs` ([`certs`]).
//! Output goes to stdout (results) and stderr (diagnostics); the exit status follows grep:
//! 0 success, 1 "no" (key absent, compare-and-set refused), 2 error.

pub mod agents;
pub mod apps;
pub mod certs;
pub mod cluster;
pub mod logs;
pub mod store;

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The answer is "no": the key does not exist, or a compare-and-set did not apply.
    No,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] drover_client::ClientError),
}
