//! Drover's scheduler side: the framework driver ([`driver`], reusable by any Rust framework),
//! `drover run` ([`run`], one command as one task), the Marathon-like app service (later
//! issues), and the command-line client ([`cli`]) that talks to the masters and the scheduler.
//!
//! The scheduler keeps its state in the masters' replicated framework store, through
//! `drover-client`, so that it is stateless and can fail over.

pub mod cli;
pub mod driver;
pub mod run;

#[cfg(test)]
mod fake_master;
