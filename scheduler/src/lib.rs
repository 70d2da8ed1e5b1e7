//! Drover's scheduler side: the framework driver ([`driver`], reusable by any Rust framework),
//! `drover run` ([`run`], one command as one task) and the Marathon-compatible app service
//! ([`marathon`]: its model so far). The operators' command-line client lives in the `drover`
//! binary (`src/admin`).
//!
//! The scheduler keeps its state in the masters' replicated framework store, through
//! `drover-client`, so that it is stateless and can fail over.

pub mod driver;
pub mod marathon;
pub mod run;
pub mod sandbox;

#[cfg(test)]
mod fake_master;
