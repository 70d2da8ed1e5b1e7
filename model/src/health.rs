//! A task's health check, run by its executor beside it (Mesos's `HealthCheck`, its COMMAND
//! kind), and how a status says what the check found.
//!
//! Owns the one validation of a check from the wire, which the master (at ACCEPT) and the
//! agent (at RunTask) both apply, and the reasons that mark a status as a health report:
//! a RUNNING update with reason [`REASON_HEALTHY`] or [`REASON_UNHEALTHY`] says the check
//! passed or failed, and a task the executor killed for failing it ends KILLED with reason
//! [`REASON_UNHEALTHY`]. The health rides in the reason, which every holder of a status
//! already keeps, rather than in a field of its own that would change the master's log
//! format; the wire form (`TaskStatus.healthy`) is derived from it.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::v1;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_COMMAND_BYTES, MAX_ENV_BYTES, MAX_ENV_VARS};

/// The reason of a RUNNING update that reports a passed check.
pub const REASON_HEALTHY: &str = "task_healthy";
/// The reason of a RUNNING update that reports a failed check, and of the KILLED end of a
/// task killed for failing it too often.
pub const REASON_UNHEALTHY: &str = "task_unhealthy";
/// Longest wait any of a check's times may name (a day).
pub const MAX_CHECK_SECONDS: f64 = 86_400.0;
/// Most failures in a row a check may allow.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 1_000;

/// What the health flag of a status with `reason` is, if it carries one.
pub fn healthy_of(reason: &str) -> Option<bool> {
    match reason {
        REASON_HEALTHY => Some(true),
        REASON_UNHEALTHY => Some(false),
        _ => None,
    }
}

/// A checked health check: run `command` with `/bin/sh -c` in the sandbox, with the task's
/// environment plus `environment`; it passes when the command exits 0 within `timeout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    /// Before the first check.
    pub delay_ms: u64,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// The executor kills the task after this many failures in a row; 0: never.
    pub consecutive_failures: u32,
    /// Failures this soon after the task started do not count, until a check first passes.
    pub grace_period_ms: u64,
    pub command: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// A field of a check that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCheck {
    pub field: String,
    pub reason: String,
}

impl HealthCheckSpec {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn grace_period(&self) -> Duration {
        Duration::from_millis(self.grace_period_ms)
    }

    /// Checks a check from the wire; `at` names it in errors (`launch[0].health_check`).
    pub fn from_proto(h: &v1::HealthCheck, at: &str) -> Result<Self, InvalidCheck> {
        let invalid = |f: &str, reason: String| InvalidCheck {
            field: format!("{at}.{f}"),
            reason,
        };
        let ms = |f: &str, s: f64| -> Result<u64, InvalidCheck> {
            if !s.is_finite() || !(0.0..=MAX_CHECK_SECONDS).contains(&s) {
                return Err(invalid(
                    f,
                    format!("{s}: must be 0 to {MAX_CHECK_SECONDS} seconds"),
                ));
            }
            Ok((s * 1000.0).round() as u64)
        };
        let command = h
            .command
            .as_ref()
            .ok_or_else(|| invalid("command", "missing: a check runs a command".into()))?;
        if command.shell.trim().is_empty() || command.shell.len() > MAX_COMMAND_BYTES {
            return Err(invalid(
                "command.shell",
                format!("1 to {MAX_COMMAND_BYTES} bytes"),
            ));
        }
        if !command.arguments.is_empty() {
            return Err(invalid(
                "command.arguments",
                "a check runs its shell (with /bin/sh -c): give no arguments".into(),
            ));
        }
        if command.shell.contains('\0') {
            return Err(invalid("command.shell", "contains a NUL byte".into()));
        }
        if command.environment.len() > MAX_ENV_VARS {
            return Err(invalid(
                "command.environment",
                format!("more than {MAX_ENV_VARS} variables"),
            ));
        }
        let mut bytes = 0;
        for (k, v) in &command.environment {
            bytes += k.len() + v.len();
            if !crate::limits::is_env_name(k) || v.contains('\0') {
                return Err(invalid(
                    "command.environment",
                    format!(
                        "{:?}: a variable name, and a value without NUL",
                        k.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
        if bytes > MAX_ENV_BYTES {
            return Err(invalid(
                "command.environment",
                format!("larger than {MAX_ENV_BYTES} bytes"),
            ));
        }
        let interval_ms = ms("interval_seconds", h.interval_seconds)?;
        let timeout_ms = ms("timeout_seconds", h.timeout_seconds)?;
        if interval_ms == 0 || timeout_ms == 0 {
            return Err(invalid(
                if interval_ms == 0 {
                    "interval_seconds"
                } else {
                    "timeout_seconds"
                },
                "must be more than 0".into(),
            ));
        }
        if h.consecutive_failures > MAX_CONSECUTIVE_FAILURES {
            return Err(invalid(
                "consecutive_failures",
                format!("at most {MAX_CONSECUTIVE_FAILURES}"),
            ));
        }
        Ok(Self {
            delay_ms: ms("delay_seconds", h.delay_seconds)?,
            interval_ms,
            timeout_ms,
            consecutive_failures: h.consecutive_failures,
            grace_period_ms: ms("grace_period_seconds", h.grace_period_seconds)?,
            command: command.shell.clone(),
            environment: command
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    pub fn to_proto(&self) -> v1::HealthCheck {
        v1::HealthCheck {
            delay_seconds: self.delay_ms as f64 / 1000.0,
            interval_seconds: self.interval_ms as f64 / 1000.0,
            timeout_seconds: self.timeout_ms as f64 / 1000.0,
            consecutive_failures: self.consecutive_failures,
            grace_period_seconds: self.grace_period_ms as f64 / 1000.0,
            command: Some(v1::CommandInfo {
                shell: self.command.clone(),
                environment: self.environment.clone().into_iter().collect(),
                ..Default::default()
            }),
        }
    }
}

/// What one more check result means for the task, as the executor applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Nothing to report (the same health as before, or a failure inside the grace period).
    Quiet,
    /// The health changed (or is known for the first time): report it.
    Report { healthy: bool },
    /// Too many failures in a row: kill the task.
    Kill { failures: u32 },
}

/// A task's health as its checks found it so far. Pure: the executor feeds it each result and
/// the time since the task started.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    /// The last health reported, if any.
    pub reported: Option<bool>,
    pub consecutive_failures: u32,
    pub passed_once: bool,
}

impl HealthState {
    /// Takes one result, `since_start` after the task started.
    pub fn observe(
        &mut self,
        spec: &HealthCheckSpec,
        passed: bool,
        since_start: Duration,
    ) -> HealthVerdict {
        if passed {
            self.passed_once = true;
            self.consecutive_failures = 0;
            return self.report(true);
        }
        // Mesos's rule: inside the grace period, failures do not count until a check passed.
        if !self.passed_once && since_start < spec.grace_period() {
            return HealthVerdict::Quiet;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if spec.consecutive_failures > 0 && self.consecutive_failures >= spec.consecutive_failures {
            return HealthVerdict::Kill {
                failures: self.consecutive_failures,
            };
        }
        self.report(false)
    }

    fn report(&mut self, healthy: bool) -> HealthVerdict {
        if self.reported == Some(healthy) {
            HealthVerdict::Quiet
        } else {
            self.reported = Some(healthy);
            HealthVerdict::Report { healthy }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(failures: u32, grace_ms: u64) -> HealthCheckSpec {
        HealthCheckSpec {
            delay_ms: 0,
            interval_ms: 1000,
            timeout_ms: 1000,
            consecutive_failures: failures,
            grace_period_ms: grace_ms,
            command: "true".into(),
            environment: BTreeMap::new(),
        }
    }

    #[test]
    fn reports_changes_and_kills_after_failures_in_a_row() {
        let s = spec(3, 0);
        let mut h = HealthState::default();
        let t = Duration::from_secs(5);
        assert_eq!(
            h.observe(&s, true, t),
            HealthVerdict::Report { healthy: true }
        );
        assert_eq!(h.observe(&s, true, t), HealthVerdict::Quiet);
        assert_eq!(
            h.observe(&s, false, t),
            HealthVerdict::Report { healthy: false }
        );
        assert_eq!(h.observe(&s, false, t), HealthVerdict::Quiet);
        assert_eq!(h.observe(&s, false, t), HealthVerdict::Kill { failures: 3 });
        // A pass in between starts the count again.
        let mut h = HealthState::default();
        for passed in [false, false, true, false, false] {
            assert!(!matches!(
                h.observe(&s, passed, t),
                HealthVerdict::Kill { .. }
            ));
        }
        // 0 never kills.
        let never = spec(0, 0);
        let mut h = HealthState::default();
        for _ in 0..100 {
            assert!(!matches!(
                h.observe(&never, false, t),
                HealthVerdict::Kill { .. }
            ));
        }
    }

    #[test]
    fn failures_inside_the_grace_period_do_not_count_until_a_pass() {
        let s = spec(1, 10_000);
        let mut h = HealthState::default();
        assert_eq!(
            h.observe(&s, false, Duration::from_secs(2)),
            HealthVerdict::Quiet
        );
        assert_eq!(
            h.observe(&s, true, Duration::from_secs(3)),
            HealthVerdict::Report { healthy: true }
        );
        // After a pass, a failure counts even inside the grace period.
        assert_eq!(
            h.observe(&s, false, Duration::from_secs(4)),
            HealthVerdict::Kill { failures: 1 }
        );
        let mut h = HealthState::default();
        assert_eq!(
            h.observe(&s, false, Duration::from_secs(11)),
            HealthVerdict::Kill { failures: 1 }
        );
    }

    #[test]
    fn checks_from_the_wire_are_bounded_and_name_the_field() {
        let good = v1::HealthCheck {
            delay_seconds: 0.5,
            interval_seconds: 2.0,
            timeout_seconds: 1.0,
            consecutive_failures: 3,
            grace_period_seconds: 10.0,
            command: Some(v1::CommandInfo {
                shell: "test -f ready".into(),
                environment: Default::default(),
                ..Default::default()
            }),
        };
        let s = HealthCheckSpec::from_proto(&good, "h").unwrap();
        assert_eq!(
            (s.delay_ms, s.interval_ms, s.grace_period_ms),
            (500, 2000, 10_000)
        );
        assert_eq!(HealthCheckSpec::from_proto(&s.to_proto(), "h").unwrap(), s);
        for (bad, field) in [
            (
                v1::HealthCheck {
                    command: None,
                    ..good.clone()
                },
                "h.command",
            ),
            (
                v1::HealthCheck {
                    interval_seconds: 0.0,
                    ..good.clone()
                },
                "h.interval_seconds",
            ),
            (
                v1::HealthCheck {
                    timeout_seconds: f64::NAN,
                    ..good.clone()
                },
                "h.timeout_seconds",
            ),
            (
                v1::HealthCheck {
                    consecutive_failures: 5000,
                    ..good.clone()
                },
                "h.consecutive_failures",
            ),
        ] {
            assert_eq!(
                HealthCheckSpec::from_proto(&bad, "h").unwrap_err().field,
                field
            );
        }
    }

    #[test]
    fn the_health_of_a_status_is_read_from_its_reason() {
        assert_eq!(healthy_of(REASON_HEALTHY), Some(true));
        assert_eq!(healthy_of(REASON_UNHEALTHY), Some(false));
        assert_eq!(healthy_of("command_exited"), None);
    }
}
