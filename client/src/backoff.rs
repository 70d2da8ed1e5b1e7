//! Jittered exponential backoff: the one way Drover's retry loops wait between attempts.
//!
//! Each wait is drawn between half of the current step and all of it, so that many clients
//! that failed together (agents after a leader loss, frameworks after a failover) do not come
//! back in lockstep; the step then doubles up to a ceiling.

use std::time::Duration;

/// The waits of one retry loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    /// First step `start`, doubling up to `max`.
    pub fn new(start: Duration, max: Duration) -> Self {
        Self {
            step: start.min(max),
            max,
        }
    }

    /// The current step (the most the next wait can be).
    pub fn step(&self) -> Duration {
        self.step
    }

    /// The next wait, in `[step / 2, step]`; the step then doubles (up to the ceiling).
    pub fn next_wait(&mut self) -> Duration {
        let wait = jittered(self.step);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// Sleeps for [`Backoff::next_wait`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }

    /// Back to the first step, `start`.
    pub fn reset(&mut self, start: Duration) {
        self.step = start.min(self.max);
    }
}

/// A wait between half of `step` and all of it.
pub fn jittered(step: Duration) -> Duration {
    let full = u64::try_from(step.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::random_range(full / 2..=full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_the_step_and_the_step_doubles_to_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        for step in [100, 200, 350, 350] {
            assert_eq!(b.step(), Duration::from_millis(step));
            let w = b.next_wait();
            assert!(
                w >= Duration::from_millis(step) / 2 && w <= Duration::from_millis(step),
                "{w:?} outside [{step}/2, {step}] ms"
            );
        }
        b.reset(Duration::from_millis(100));
        assert_eq!(b.step(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_of_nothing_is_nothing() {
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
