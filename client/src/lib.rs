//! A client for Drover's masters that finds and follows the leader.
//!
//! Used by the CLI, the scheduler, the benchmarks and the chaos suite. Give it any subset of the
//! masters' addresses; it tries the last leader it heard of first, follows the leader hints
//! followers return, and rotates through the list when a master is down.
//!
//! Retrying is only automatic where it cannot change the outcome: reads, and writes that a
//! master refused before proposing them (a follower's redirect) or that never left this process
//! (connection refused). A write whose fate is unknown (connection lost after sending, or the
//! leader's deadline passed) is reported as [`ClientError::Ambiguous`]: it may or may not have
//! been applied, and only the caller can decide what to do about that.

mod backoff;
pub mod channel;
mod master;

pub use backoff::{jittered, Backoff};

pub use master::{AttemptError, ClientError, MasterClient, RetryPolicy, MAX_REPLY_BYTES};
