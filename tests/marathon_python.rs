//! A real Marathon client, unchanged: `tests/marathon_client.py` drives `drover scheduler` on a
//! real cluster with marathon-python 0.13.0 from PyPI (create, list, get, scale, tasks, kills,
//! deployments, queue, versions, info, leader, errors, the event stream). The client's models
//! refuse any key they do not know, so this proves the response shapes.
//!
//! The Python interpreter comes from `DROVER_PYTHON` (the test command's virtualenv, where
//! `scripts/setup.sh` installs the client). Without it the test says so and passes, unless
//! `DROVER_REQUIRE_PYTHON=1` (as the test command sets), where it fails.

mod common;

use std::time::Duration;

use common::scheduler::Scheduler;

/// How long the client's whole script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread")]
async fn marathon_python_drives_the_scheduler_unchanged() {
    let python = match std::env::var("DROVER_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            assert!(
                std::env::var("DROVER_REQUIRE_PYTHON").as_deref() != Ok("1"),
                "DROVER_PYTHON is not set: run scripts/setup.sh (it makes the client's virtualenv)"
            );
            eprintln!("skipped: DROVER_PYTHON is not set (scripts/test.sh sets it)");
            return;
        }
    };
    let c = common::start_with_agents(3, &[], 2, &[], 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    s.wait_active(Duration::from_secs(30)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/marathon_client.py");
    let run = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", s.addr))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .expect("the client script finished in time")
        .expect("run the client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("ok"),
        "marathon-python failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{}", stdout.trim());
}
