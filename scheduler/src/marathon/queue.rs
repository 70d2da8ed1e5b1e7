//! The launch queue: which apps wait for instances, how many, and until when a failing app is
//! held back. Pure: time is passed in, in milliseconds since the epoch.
//!
//! Owns the backoff rule (Marathon's): after the n-th consecutive failed launch of an app its
//! next launch waits `backoffSeconds × backoffFactor^(n-1)`, at most `maxLaunchDelaySeconds`.
//! A new version of the app, or `DELETE /v2/queue/{id}/delay`, clears the delay; a failure of
//! a task that had run for [`STABLE_RUN_MS`] counts as a first failure again (a task that
//! reaches RUNNING and then crashes at once still backs off more each time). The queue also says whether the scheduler wants offers at
//! all (the framework SUPPRESSes when nothing can launch now, REVIVEs when something can).

use std::collections::BTreeMap;

use serde::Serialize;

use super::app::AppDefinition;
use super::path::PathId;
use super::time::Timestamp;

/// A task that ran this long before it failed was not crash-looping: its failure starts the
/// backoff again from the app's `backoffSeconds`.
pub const STABLE_RUN_MS: u64 = 60_000;

/// How long the next launch of an app that failed `failures` times in a row waits.
pub fn backoff_ms(app: &AppDefinition, failures: u32) -> u64 {
    if failures == 0 {
        return 0;
    }
    let max = f64::from(app.max_launch_delay_seconds) * 1000.0;
    let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
    let delay = f64::from(app.backoff_seconds) * 1000.0 * app.backoff_factor.powi(exponent);
    // NaN or infinity (a huge exponent) is the maximum, as any value beyond it.
    if delay.is_finite() {
        delay.min(max).round() as u64
    } else {
        max as u64
    }
}

/// One app's place in the queue.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Consecutive failed launches since the last success or reset.
    failures: u32,
    /// No launch before this time.
    delayed_until_ms: u64,
    /// Since when the app has waited for instances.
    since_ms: u64,
}

/// The apps waiting for instances.
#[derive(Debug, Default)]
pub struct LaunchQueue {
    entries: BTreeMap<PathId, Entry>,
}

/// What `/v2/queue` shows of an app's delay.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDelay {
    pub time_left_seconds: u64,
    pub overdue: bool,
}

/// One waiting app as `/v2/queue` shows it (without the app, which the caller adds).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: PathId,
    /// Instances still to launch.
    pub count: u32,
    pub delay: QueueDelay,
    pub since: Timestamp,
}

impl LaunchQueue {
    /// A task of `app` failed (`ran_ms`: how long it had been RUNNING, if it was): the next
    /// launch waits.
    pub fn launch_failed(&mut self, app: &AppDefinition, ran_ms: Option<u64>, now_ms: u64) {
        let e = self.entry(&app.id, now_ms);
        if ran_ms.is_some_and(|ran| ran >= STABLE_RUN_MS) {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.delayed_until_ms = now_ms.saturating_add(backoff_ms(app, e.failures));
    }

    /// The app changed, or an operator reset it: no delay any more.
    pub fn reset_delay(&mut self, id: &PathId) {
        if let Some(e) = self.entries.get_mut(id) {
            e.failures = 0;
            e.delayed_until_ms = 0;
        }
    }

    /// Whether `id` may launch at `now_ms`.
    pub fn ready(&self, id: &PathId, now_ms: u64) -> bool {
        self.entries
            .get(id)
            .is_none_or(|e| e.delayed_until_ms <= now_ms)
    }

    /// Until when app `id` is held back (0: it is not).
    pub fn delayed_until(&self, id: &PathId) -> u64 {
        self.entries.get(id).map_or(0, |e| e.delayed_until_ms)
    }

    /// The app was deleted: it leaves the queue.
    pub fn forget(&mut self, id: &PathId) {
        self.entries.remove(id);
    }

    /// The apps that wait for instances at `now_ms`, given each app and how many of its
    /// instances are live; an app with all its instances leaves the queue's view (its delay
    /// is kept until a task of it runs).
    pub fn waiting<'a>(
        &mut self,
        apps: impl IntoIterator<Item = (&'a AppDefinition, u32)>,
        now_ms: u64,
    ) -> Vec<Waiting> {
        let mut out = Vec::new();
        for (app, live) in apps {
            let count = app.instances.saturating_sub(live);
            if count == 0 {
                if let Some(e) = self.entries.get_mut(&app.id) {
                    e.since_ms = now_ms;
                }
                continue;
            }
            let e = self.entry(&app.id, now_ms);
            let left_ms = e.delayed_until_ms.saturating_sub(now_ms);
            out.push(Waiting {
                id: app.id.clone(),
                count,
                delay: QueueDelay {
                    time_left_seconds: left_ms.div_ceil(1000),
                    overdue: left_ms == 0,
                },
                since: Timestamp(e.since_ms),
            });
        }
        out
    }

    /// Whether any of `waiting` may launch now: the framework wants offers (REVIVE) if so,
    /// and SUPPRESSes otherwise.
    pub fn wants_offers(waiting: &[Waiting]) -> bool {
        waiting.iter().any(|w| w.delay.overdue)
    }

    fn entry(&mut self, id: &PathId, now_ms: u64) -> &mut Entry {
        self.entries.entry(id.clone()).or_insert(Entry {
            failures: 0,
            delayed_until_ms: 0,
            since_ms: now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::app::parse_app;

    fn app(extra: &str) -> AppDefinition {
        parse_app(format!(r#"{{"id": "/a", "cmd": "x"{extra}}}"#).as_bytes()).unwrap()
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_maximum() {
        let a = app(r#", "backoffSeconds": 1, "backoffFactor": 2.0, "maxLaunchDelaySeconds": 10"#);
        let delays: Vec<u64> = (0..7).map(|n| backoff_ms(&a, n)).collect();
        assert_eq!(delays, vec![0, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff_ms(&a, u32::MAX), 10_000);
        let defaults = app("");
        assert_eq!(backoff_ms(&defaults, 1), 1000);
        assert_eq!(backoff_ms(&defaults, 2), 1150);
        assert_eq!(backoff_ms(&defaults, 1000), 3_600_000);
    }

    #[test]
    fn a_failing_app_waits_and_a_running_task_clears_the_delay() {
        let a = app(r#", "instances": 2, "backoffSeconds": 3, "backoffFactor": 2.0"#);
        let mut q = LaunchQueue::default();
        let waiting = q.waiting([(&a, 0)], 1_000);
        assert_eq!(waiting[0].count, 2);
        assert!(LaunchQueue::wants_offers(&waiting));
        q.launch_failed(&a, None, 5_000);
        q.launch_failed(&a, Some(1_000), 5_000);
        assert!(!q.ready(&a.id, 10_999));
        assert!(q.ready(&a.id, 11_000), "second failure: 6 s");
        let waiting = q.waiting([(&a, 1)], 8_000);
        assert_eq!(waiting[0].count, 1);
        assert_eq!(
            waiting[0].delay,
            QueueDelay {
                time_left_seconds: 3,
                overdue: false
            }
        );
        assert_eq!(waiting[0].since, Timestamp(1_000));
        assert!(
            !LaunchQueue::wants_offers(&waiting),
            "nothing may launch now: suppress"
        );
        // A task that ran long enough: its failure is a first one again (3 s).
        q.launch_failed(&a, Some(STABLE_RUN_MS), 8_000);
        assert!(q.ready(&a.id, 11_000) && !q.ready(&a.id, 10_999));
        q.reset_delay(&a.id);
        assert!(q.ready(&a.id, 8_000));
        assert!(LaunchQueue::wants_offers(&q.waiting([(&a, 1)], 8_000)));
        assert!(q.waiting([(&a, 2)], 9_000).is_empty(), "all instances live");
        q.forget(&a.id);
        assert!(q.ready(&a.id, 0));
    }
}
