//! Drover's scheduler side: the framework driver ([`driver`], reusable by any Rust framework),
//! `drover run` ([`run`], one command as one task) and the Marathon-like app service (later
//! issues). The operators' command-line client lives in the `drover` binary (`src/admin`).
//!
//! The scheduler keeps its state in the masters' replicated framework store, through
//! `drover-client`, so that it is stateless and can fail over.

pub mod driver;
pub mod run;

#[cfg(test)]
mod fake_master;
