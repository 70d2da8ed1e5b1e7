//! Background work for the Raft replica: CPU-heavy jobs that must never delay heartbeats.
//!
//! Building a snapshot of a large registry (tens of MiB) takes a core for the better part of a
//! second. Every replica reaches the same snapshot index at about the same time, so on a host
//! that runs several masters (`drover up`, the tests, a small lab), or on a busy one, the
//! snapshot threads took the CPU from the Raft tasks long enough for followers to miss
//! heartbeats and campaign (a leader change every few runs of `bench launch` at 10 000
//! agents). Such jobs therefore run here: on a thread of their own, at a lower scheduling
//! priority (nice +10 on Linux), so that the runtime's threads preempt them.

use tokio::sync::oneshot;

/// How much lower than the process the job's thread runs (a nice increment).
const NICE_INCREMENT: i32 = 10;

/// The job's thread ended without an answer (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("background job {0} ended without an answer")]
pub struct JobLost(pub &'static str);

/// Runs `job` on a new low-priority thread named `name` and waits for its answer.
pub async fn run<T: Send + 'static>(
    name: &'static str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobLost> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_priority(name);
            let _ = tx.send(job());
        });
    if let Err(e) = spawned {
        tracing::error!(job = name, error = %e, "cannot start a background thread");
        return Err(JobLost(name));
    }
    rx.await.map_err(|_| JobLost(name))
}

/// Lowers the calling thread's priority (only this thread's: on Linux a nice value is per
/// thread). Failing to is logged, not fatal.
fn lower_priority(name: &'static str) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers and touch only this thread.
        let r = unsafe {
            let tid = libc::gettid();
            let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            libc::setpriority(
                libc::PRIO_PROCESS,
                tid as libc::id_t,
                (now + NICE_INCREMENT).min(19),
            )
        };
        if r != 0 {
            tracing::debug!(job = name, error = %std::io::Error::last_os_error(), "cannot lower the background thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_at_a_lower_priority_and_answers() {
        let (before, after) = run("test-job", || unsafe {
            let me = libc::gettid() as libc::id_t;
            (
                libc::getpriority(libc::PRIO_PROCESS, 0),
                libc::getpriority(libc::PRIO_PROCESS, me),
            )
        })
        .await
        .unwrap();
        // PRIO_PROCESS 0 is the calling thread too on Linux; both read the job's own value.
        assert_eq!(before, after);
        let main = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert_eq!(after, (main + NICE_INCREMENT).min(19));
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_lost() {
        let r: Result<(), JobLost> = run("test-panic", || panic!("boom")).await;
        assert!(r.is_err());
    }
}
