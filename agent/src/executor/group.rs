//! The task's process group: signalling it, and making sure nothing of it is left.
//!
//! The executor makes itself a child subreaper, so that processes of the task orphaned by the
//! shell's exit become its children rather than init's; [`kill_and_reap`] can then kill and
//! reap every member of the group, and "the task ended" means "no process of it exists", not
//! "its zombies wait for init".

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// How long [`kill_and_reap`] waits for the group to be gone.
pub const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes this process the reaper of its orphaned descendants (best effort).
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphans of the task go to init");
    }
}

/// Sends `signal` to process group `pgid`; a group that is gone already is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 0 {
        return;
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid, signal = signal.as_str(), error = %e, "cannot signal the task's process group")
        }
    }
}

/// The state (third field) and process group (fifth) of a `/proc/<pid>/stat` line; fields are
/// counted after the command name's closing parenthesis, since the name may hold spaces and
/// parentheses.
pub(crate) fn state_and_group(stat: &str) -> Option<(&str, i32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// The process group of a `/proc/<pid>/stat` line.
fn pgrp_of(stat: &str) -> Option<i32> {
    state_and_group(stat).map(|(_, pgrp)| pgrp)
}

/// Processes whose process group is `pgid` (zombies included).
pub fn members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| pgrp_of(&s))
                == Some(pgid)
        })
        .collect()
}

/// SIGKILLs the group and reaps its members until none exists; false if some remain after
/// [`REAP_TIMEOUT`] (processes that are not this executor's descendants cannot be reaped here).
pub fn kill_and_reap(pgid: i32) -> bool {
    if pgid <= 0 {
        return true;
    }
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        signal_group(pgid, Signal::SIGKILL);
        let left = members(pgid);
        if left.is_empty() {
            return true;
        }
        for pid in left {
            // Not our child (ECHILD) or still dying: look again on the next round.
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_odd_names() {
        assert_eq!(pgrp_of("123 (sleep) S 1 456 456 0 -1"), Some(456));
        assert_eq!(pgrp_of("123 (a) b (c)) Z 1 77 77 0"), Some(77));
        assert_eq!(pgrp_of("garbage"), None);
        assert_eq!(
            state_and_group("123 (a) b (c)) Z 1 77 77 0"),
            Some(("Z", 77))
        );
    }
}
