//! Stopping with the owner: a master, agent or scheduler that a local-cluster harness started
//! (`drover up`, `drover bench`, `drover chaos`, the tests) carries the harness's pid in
//! `DROVER_OWNER_PID` and stops when its owner is gone, so that a harness killed with SIGKILL
//! leaves nothing holding its ports (issue 16). A process started any other way has no owner
//! and is never stopped by this.
//!
//! The owner is gone when this process is no longer its child (it was re-parented to init or a
//! subreaper). Asking for the parent rather than probing the owner's pid cannot be fooled by a
//! recycled pid; and unlike `PR_SET_PDEATHSIG`, which fires when the *thread* that forked the
//! child exits, it does not depend on which runtime thread spawned it.

use std::time::Duration;

use drover_chaos::cluster::OWNER_PID_ENV;

/// How often the parent is checked: the bound on how long an orphan keeps running.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Resolves once the owner named in the environment is gone; never, without one.
pub async fn gone() {
    let Some(owner) = std::env::var(OWNER_PID_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
    else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let parent = nix::unistd::getppid().as_raw();
        if parent != owner {
            tracing::warn!(
                owner,
                parent,
                "the process that started this one ({OWNER_PID_ENV}={owner}) is gone; stopping"
            );
            return;
        }
    }
}
