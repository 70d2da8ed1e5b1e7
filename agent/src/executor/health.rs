//! The task's health check, run by its executor every interval after the first delay: for a
//! command task `/bin/sh -c CHECK` in the sandbox, with the task's environment plus the
//! check's own; for a container task the same inside its container (`docker exec`, in the
//! sandbox as the container sees it, with the container's environment plus the check's own).
//! A check passes when it exits 0 within its timeout. One that runs longer fails: on the host
//! it is killed (its whole process group); in a container the engine has no way to end an exec,
//! so the check's process may run on there until it ends by itself.
//!
//! Owns the checking loop, in one spawned task that sends each result to the executor's
//! supervising loop, which decides with [`drover_model::health::HealthState`] what to report
//! and when to kill. Stops when the receiver is dropped (the task ended).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use drover_model::container::SANDBOX_MOUNT;
use drover_model::health::HealthCheckSpec;
use futures::StreamExt as _;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::group::signal_group;
use crate::users::RunAs;

/// Most of a failed check's output kept for its report, bytes (its end).
const MAX_OUTPUT_BYTES: usize = 512;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub passed: bool,
    /// For a failure: how it failed, and the end of its output.
    pub detail: String,
}

/// Where the check runs.
#[derive(Clone)]
pub enum CheckPlace {
    /// On the host, in the task's sandbox, with the task's environment.
    Sandbox {
        env: BTreeMap<String, String>,
        sandbox: PathBuf,
        /// The task's user, when it is not the executor's.
        run_as: Option<RunAs>,
    },
    /// In the task's running container (by id).
    Container { docker: bollard::Docker, id: String },
}

/// Starts checking; results arrive on the returned channel.
pub fn start(spec: HealthCheckSpec, place: CheckPlace) -> mpsc::Receiver<CheckResult> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(spec.delay()).await;
        loop {
            let result = match &place {
                CheckPlace::Sandbox {
                    env,
                    sandbox,
                    run_as,
                } => check_once(&spec, env, sandbox, run_as.as_ref()).await,
                CheckPlace::Container { docker, id } => check_in_container(&spec, docker, id).await,
            };
            if tx.send(result).await.is_err() {
                return;
            }
            tokio::time::sleep(spec.interval()).await;
        }
    });
    rx
}

/// Runs the check once inside container `id` (`docker exec`).
pub async fn check_in_container(
    spec: &HealthCheckSpec,
    docker: &bollard::Docker,
    id: &str,
) -> CheckResult {
    let failed = |detail: String| CheckResult {
        passed: false,
        detail,
    };
    let config = bollard::models::ExecConfig {
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), spec.command.clone()]),
        env: Some(
            spec.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        working_dir: Some(SANDBOX_MOUNT.into()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let run = async {
        let exec = docker
            .create_exec(id, config)
            .await
            .map_err(|e| format!("the check could not be created in the container: {e}"))?;
        let mut output = Vec::new();
        if let bollard::exec::StartExecResults::Attached {
            output: mut stream, ..
        } = docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| format!("the check did not start in the container: {e}"))?
        {
            while let Some(Ok(chunk)) = stream.next().await {
                output.extend_from_slice(&chunk.into_bytes());
                if output.len() > 2 * MAX_OUTPUT_BYTES {
                    output.drain(..output.len() - MAX_OUTPUT_BYTES);
                }
            }
        }
        let inspected = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| format!("the check's end could not be read: {e}"))?;
        Ok::<_, String>((inspected.exit_code, output))
    };
    match tokio::time::timeout(spec.timeout(), run).await {
        Ok(Ok((Some(0), _))) => CheckResult {
            passed: true,
            detail: String::new(),
        },
        Ok(Ok((code, output))) => failed(format!(
            "the check exited with status {}{}",
            code.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            tail(&output)
        )),
        Ok(Err(e)) => failed(e),
        Err(_) => failed(format!(
            "the check ran longer than its timeout ({:?})",
            spec.timeout()
        )),
    }
}

/// Runs the check once on the host, in the task's sandbox, as the task's user.
pub async fn check_once(
    spec: &HealthCheckSpec,
    env: &BTreeMap<String, String>,
    sandbox: &std::path::Path,
    run_as: Option<&RunAs>,
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
    if let Some(user) = run_as {
        user.apply(&mut cmd);
    }
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
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (status, mut output, e) = tokio::join!(child.wait(), last_bytes(out), last_bytes(err));
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

/// The last [`MAX_OUTPUT_BYTES`] of what `pipe` gives until it closes: the pipe is drained
/// (a check must not block on a full pipe) while at most twice that is held.
async fn last_bytes(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * MAX_OUTPUT_BYTES {
            kept.drain(..kept.len() - MAX_OUTPUT_BYTES);
        }
    }
    kept
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
            None,
        )
        .await;
        assert!(ok.passed, "{ok:?}");
        let bad = check_once(
            &spec("echo not ready; exit 3", 5000),
            &env,
            dir.path(),
            None,
        )
        .await;
        assert!(!bad.passed);
        assert!(
            bad.detail.contains("3") && bad.detail.contains("not ready"),
            "{bad:?}"
        );
        // The check's own timeout ends it, long before the command would.
        let slow = tokio::time::timeout(
            Duration::from_secs(20),
            check_once(&spec("sleep 30", 300), &env, dir.path(), None),
        )
        .await
        .expect("the check's timeout ended it");
        assert!(!slow.passed);
        assert!(slow.detail.contains("timeout"), "{slow:?}");
        // A chatty check is drained, and only the end of what it said is kept.
        let chatty = check_once(
            &spec(
                "head -c 1000000 /dev/zero | tr '\\0' x; echo THE-END; exit 1",
                5000,
            ),
            &env,
            dir.path(),
            None,
        )
        .await;
        assert!(!chatty.passed);
        assert!(
            chatty.detail.ends_with("THE-END"),
            "{}",
            &chatty.detail[..80]
        );
        assert!(
            chatty.detail.len() < 2 * MAX_OUTPUT_BYTES,
            "{}",
            chatty.detail.len()
        );
    }

    #[tokio::test]
    async fn results_keep_coming_until_the_receiver_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = start(
            spec("true", 1000),
            CheckPlace::Sandbox {
                env: BTreeMap::new(),
                sandbox: dir.path().to_path_buf(),
                run_as: None,
            },
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
