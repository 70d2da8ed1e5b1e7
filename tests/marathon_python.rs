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
    let Some(python) = common::test_python() else {
        return;
    };
    let c = common::start_with_agents(3, &[], 2, &[], 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    s.wait_active(Duration::from_secs(30)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/marathon_client.py");
    let address = format!("http://{}", s.addr);
    let stdout = common::run_python_ok(&python, script, &[&address], SCRIPT_TIMEOUT).await;
    eprintln!("{}", stdout.trim());
}
