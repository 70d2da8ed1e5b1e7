//! [`unix_ms`]: the one wall-clock reading every Drover process stamps statuses and records
//! with (the master's offer cycle reads it once per input, see `drover_master::clock`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before the epoch).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
