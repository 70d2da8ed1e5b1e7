//! Reading the clocks: the one place the master reads wall-clock time, and the instant an input
//! to the offer cycle is handled at.
//!
//! The registry never reads a clock (the leader stamps its time into each proposal); the offer
//! cycle reads both clocks once per input, in the loop that owns them, and hands the reading
//! ([`Now`]) to the code that decides, which reads none and so can be driven by a test's clock.

use std::time::Instant;

/// Milliseconds since the Unix epoch by the wall clock: the model's one reading, shared with
/// the agent.
pub use drover_model::unix_ms;

/// When an input is handled, by both clocks: the monotonic one for timeouts and intervals
/// (agent liveness, failover timeouts, heartbeats, allocation), the wall clock for what the
/// registry records in milliseconds (offer expiry, filters, removal timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall_ms: u64,
}

impl Now {
    /// Reads both clocks.
    pub fn read() -> Self {
        Self {
            mono: Instant::now(),
            wall_ms: unix_ms(),
        }
    }
}
