//! Waiting for a condition with a deadline: the only way tests and tools wait for a cluster.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is re-checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}; last: {last}")]
pub struct WaitError {
    pub what: String,
    pub waited: Duration,
    pub last: String,
}

/// Calls `check` until it returns `Ok(value)` or `timeout` passes. `check` returns `Err(reason)`
/// while the condition does not hold; the last reason is reported on timeout.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until_every(what, timeout, POLL_INTERVAL, check).await
}

/// [`wait_until`], re-checking every `interval` (a benchmark timing the condition polls
/// more often than tests need to).
pub async fn wait_until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(reason) => reason,
        };
        if started.elapsed() >= timeout {
            return Err(WaitError {
                what: what.to_string(),
                waited: started.elapsed(),
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}
