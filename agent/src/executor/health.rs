//! The task's health check, run by its executor: `/bin/sh -c CHECK` in the sandbox, with the
//! task's environment plus the check's own, every interval after the first delay. A check
//! passes when it exits 0 within its timeout; one that runs longer is killed (its whole
//! process group) and fails.
//!
//! Owns the checking loop, in one spawned task that sends each result to the executor's
//! supervising loop, which decides with [`drover_model::health::HealthState`] what to report
//! and when to kill. Stops when the receiver is dropped (the task ended).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use drover_model::health::HealthCheckSpec;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::group::signal_group;

/// Most of a failed check's output kept for its report, bytes (its end).
const MAX_OUTPUT_BYTES: usize = 512;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub passed: bool,
    /// For a failure: how it failed, and the end of its output.
    pub detail: String,
}

/// Starts checking; results arrive on the returned channel.
pub fn start(
    spec: HealthCheckSpec,
    env: BTreeMap<String, String>,
    sandbox: PathBuf,
) -> mpsc::Receiver<CheckResult> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(spec.delay()).await;
        loop {
            let result = check_once(&spec, &env, &sandbox).await;
            if tx.send(result).await.is_err() {
                return;
            }
            tokio::time::sleep(spec.interval()).await;
        }
    });
    rx
}

/// Runs the check once.
pub async fn check_once(
    spec: &HealthCheckSpec,
    env: &BTreeMap<String, String>,
    sandbox: &std::path::Path,
) -> CheckResult {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(sandbox)
        .env_clear()
        .envs(env)
        .envs(&spec.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return CheckResult {
                passed: false,
                detail: format!("the check did not start: {e}"),
            }
        }
    };
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let mut output = Vec::new();
        let mut e = Vec::new();
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut output).await;
            }
        };
        let read_err = async {
            if let Some(r) = err.as_mut() {
                let _ = r.read_to_end(&mut e).await;
            }
        };
        let (status, (), ()) = tokio::join!(child.wait(), read_out, read_err);
        output.extend_from_slice(&e);
        (status, output)
    };
    match tokio::time::timeout(spec.timeout(), run).await {
        Ok((Ok(status), _)) if status.success() => CheckResult {
            passed: true,
            detail: String::new(),
        },
        Ok((status, output)) => CheckResult {
            passed: false,
            detail: format!(
                "{}{}",
                match status {
                    Ok(s) => format!("the check {s}"),
                    Err(e) => format!("the check was lost: {e}"),
                },
                tail(&output)
            ),
        },
        Err(_) => {
            // Its whole group: a check's children must not outlive it.
            if pgid > 0 {
                signal_group(pgid, Signal::SIGKILL);
            }
            CheckResult {
                passed: false,
                detail: format!(
                    "the check ran longer than its timeout ({:?})",
                    spec.timeout()
                ),
            }
        }
    }
}

/// `: <the end of the output>` on one line, or nothing.
fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(MAX_OUTPUT_BYTES);
    let text: String = String::from_utf8_lossy(&output[start..])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(command: &str, timeout_ms: u64) -> HealthCheckSpec {
        HealthCheckSpec {
            delay_ms: 0,
            interval_ms: 100,
            timeout_ms,
            consecutive_failures: 3,
            grace_period_ms: 0,
            command: command.into(),
            environment: BTreeMap::from([("EXTRA".to_string(), "x".to_string())]),
        }
    }

    #[tokio::test]
    async fn a_check_passes_fails_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        std::fs::write(dir.path().join("ready"), "").unwrap();
        // In the sandbox, with the task's and its own environment.
        let ok = check_once(
            &spec("test -f ready && test \"$EXTRA\" = x", 5000),
            &env,
            dir.path(),
        )
        .await;
        assert!(ok.passed, "{ok:?}");
        let bad = check_once(&spec("echo not ready; exit 3", 5000), &env, dir.path()).await;
        assert!(!bad.passed);
        assert!(
            bad.detail.contains("3") && bad.detail.contains("not ready"),
            "{bad:?}"
        );
        let started = std::time::Instant::now();
        let slow = check_once(&spec("sleep 30", 300), &env, dir.path()).await;
        assert!(!slow.passed);
        assert!(slow.detail.contains("timeout"), "{slow:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn results_keep_coming_until_the_receiver_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = start(
            spec("true", 1000),
            BTreeMap::new(),
            dir.path().to_path_buf(),
        );
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a result in time")
                .expect("the loop runs");
            assert!(r.passed, "{r:?}");
        }
    }
}
