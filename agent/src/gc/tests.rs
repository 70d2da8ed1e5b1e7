use std::time::Duration;

use super::*;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

#[test]
fn the_maximum_age_shrinks_as_the_disk_fills_past_its_headroom() {
    assert_eq!(max_age(WEEK, 0.1, 0.0), WEEK.mul_f64(0.9));
    assert_eq!(max_age(WEEK, 0.1, 0.5), WEEK.mul_f64(0.4));
    assert_eq!(max_age(WEEK, 0.1, 0.9), Duration::ZERO);
    assert_eq!(max_age(WEEK, 0.1, 1.0), Duration::ZERO);
    assert_eq!(max_age(WEEK, 0.0, 0.0), WEEK);
}

#[test]
fn due_takes_the_old_and_the_oldest_beyond_the_cap() {
    let set: BTreeSet<(u64, PathBuf)> = [(10, "a"), (20, "b"), (30, "c"), (40, "d")]
        .into_iter()
        .map(|(t, p)| (t, PathBuf::from(p)))
        .collect();
    let names = |v: Vec<(u64, PathBuf)>| -> Vec<String> {
        v.into_iter()
            .map(|(_, p)| p.display().to_string())
            .collect()
    };
    // Older than 15 ms at t=40: a and b.
    assert_eq!(
        names(due(&set, 40, Duration::from_millis(15), 100)),
        ["a", "b"]
    );
    // Nothing old, but one over a cap of three: the oldest.
    assert_eq!(names(due(&set, 40, Duration::from_secs(1), 3)), ["a"]);
    assert!(due(&set, 40, Duration::from_secs(1), 100).is_empty());
    assert_eq!(due(&set, 40, Duration::ZERO, 100).len(), 4);
}

/// A task directory as the agent leaves it when the task ended and the master acknowledged
/// its end; the notice the collector gets for it.
fn ended(layout: &Layout, framework: &str, task: &str) -> Ended {
    let (f, t) = (
        FrameworkId::new(framework).unwrap(),
        TaskId::new(task).unwrap(),
    );
    let dir = TaskDir(layout.task_dir(&f, &t));
    std::fs::create_dir_all(dir.sandbox()).unwrap();
    std::fs::write(dir.sandbox().join("stdout"), b"hello").unwrap();
    let end = crate::update::StatusUpdate::new(
        crate::ids::AgentId::new("a1").unwrap(),
        f.clone(),
        t.clone(),
        crate::update::TaskState::Finished,
        crate::update::StatusSource::Executor,
        "",
        "done",
    );
    crate::status_updates::write_acknowledged_log(&dir.updates_log(), std::slice::from_ref(&end))
        .unwrap();
    (f, t, end.status.uuid)
}

fn fixed(layout: &Layout, gc_delay: Duration) -> GcConfig {
    GcConfig {
        layout: layout.clone(),
        gc_delay,
        disk_headroom: 0.0,
        disk_watch_interval: Duration::from_millis(20),
        disk_usage: DiskUsage::Fixed(0.0),
        docker_socket: None,
    }
}

#[test]
fn a_moved_directory_leaves_the_scanned_tree_and_each_life_keeps_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path());
    let e = ended(&layout, "fw", "t");
    let first = move_to_completed(&layout, &e.0, &e.1, e.2).ok().unwrap();
    assert_eq!(first, layout.completed_dir().join("fw").join("t"));
    assert!(first.join("sandbox/stdout").exists());
    assert!(!layout.task_dir(&e.0, &e.1).exists());
    // What the restart scan reads no longer holds it.
    assert!(crate::recovery::scan(&layout).is_empty());
    // The same id again (a framework reusing it): its own directory. A late notice of the
    // first life does not move the second.
    let again = ended(&layout, "fw", "t");
    assert!(matches!(
        move_to_completed(&layout, &e.0, &e.1, e.2),
        Err(Move::Missing)
    ));
    assert!(layout.task_dir(&e.0, &e.1).exists());
    let second = move_to_completed(&layout, &again.0, &again.1, again.2)
        .ok()
        .unwrap();
    assert_eq!(second, layout.completed_dir().join("fw").join("t.1"));
    assert!(matches!(
        move_to_completed(&layout, &again.0, &again.1, again.2),
        Err(Move::Missing)
    ));
    assert_eq!(scan_completed(&layout).len(), 2);
}

#[test]
fn a_directory_whose_executor_still_runs_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path());
    let e = ended(&layout, "fw", "busy");
    let dir = layout.task_dir(&e.0, &e.1);
    // A process whose command line is this task's executor's (what the agent checks).
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 30; true", "executor", "--task-dir"])
        .arg(&dir)
        .spawn()
        .unwrap();
    let cmdline = format!("/proc/{}/cmdline", child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read(&cmdline).is_ok_and(|c| c.windows(10).any(|w| w == b"--task-dir")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(dir.join("executor.pid"), child.id().to_string()).unwrap();
    assert!(matches!(
        move_to_completed(&layout, &e.0, &e.1, e.2),
        Err(Move::ExecutorRunning)
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(move_to_completed(&layout, &e.0, &e.1, e.2).is_ok());
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ended_tasks_are_moved_then_removed_once_past_the_delay_and_not_before() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path());
    // One left over from an earlier life of the agent, already in completed/.
    let old = ended(&layout, "fw", "old");
    move_to_completed(&layout, &old.0, &old.1, old.2)
        .ok()
        .unwrap();
    let delay = Duration::from_millis(800);
    let (tx, rx) = mpsc::channel(16);
    let collector = tokio::spawn(run(fixed(&layout, delay), rx));
    let e = ended(&layout, "fw", "t");
    tx.send(e.clone()).await.unwrap();
    let moved = layout.completed_dir().join("fw").join("t");
    wait_for("the ended task's directory moves", || moved.exists()).await;
    let moved_at = std::time::Instant::now();
    assert!(!layout.task_dir(&e.0, &e.1).exists());
    wait_for("both removed after the delay", || {
        !moved.exists() && !layout.completed_dir().join("fw").join("old").exists()
    })
    .await;
    // Not before its time (with the disk empty, the maximum age is the whole delay).
    assert!(
        moved_at.elapsed() >= delay.mul_f64(0.9),
        "removed {:?} after its move, delay {delay:?}",
        moved_at.elapsed()
    );
    drop(tx);
    collector.await.unwrap();
}

/// A run of a custom executor `executor` of framework `fw`, with a file in its sandbox.
fn run_dir(layout: &Layout, executor: &str, container: &str) -> RunDir {
    let run = layout.executor_run_dir(
        &FrameworkId::new("fw").unwrap(),
        &crate::ids::ExecutorId::new(executor).unwrap(),
        container,
    );
    std::fs::create_dir_all(run.sandbox()).unwrap();
    std::fs::write(run.sandbox().join("stdout"), b"hello").unwrap();
    run
}

#[tokio::test]
async fn ended_runs_are_removed_in_place_once_no_live_task_links_to_them() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path());
    // Ended (its supervisor recorded the end), and a task whose end is not settled yet
    // still has its sandbox there.
    let linked = run_dir(&layout, "e1", "c1");
    std::fs::write(linked.exit_status(), "0\n").unwrap();
    let task = layout.task_dir(
        &FrameworkId::new("fw").unwrap(),
        &TaskId::new("t1").unwrap(),
    );
    std::fs::create_dir_all(&task).unwrap();
    std::os::unix::fs::symlink(linked.sandbox(), TaskDir(task.clone()).sandbox()).unwrap();
    // Still starting: no supervisor yet.
    let starting = run_dir(&layout, "e2", "c2");
    // Its supervisor started and died without recording an end.
    let died = run_dir(&layout, "e3", "c3");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(died.supervisor_pid(), format!("{pid}\n")).unwrap();

    let (tx, rx) = mpsc::channel(16);
    let collector = tokio::spawn(run(fixed(&layout, Duration::ZERO), rx));
    wait_for("the run whose supervisor died is removed", || {
        !died.0.exists()
    })
    .await;
    assert!(
        linked.sandbox().join("stdout").exists(),
        "a live task links to it"
    );
    // The task's end is settled: its directory leaves `frameworks/`.
    std::fs::remove_dir_all(&task).unwrap();
    wait_for("the linked run is removed once its task left", || {
        !linked.0.exists()
    })
    .await;
    assert!(
        starting.sandbox().join("stdout").exists(),
        "a starting run stays"
    );
    assert_eq!(
        crate::recovery::ended_runs(&layout).len(),
        0,
        "nothing ended is left"
    );
    drop(tx);
    collector.await.unwrap();
}

#[test]
fn disk_usage_reads_like_df() {
    let tmp = tempfile::tempdir().unwrap();
    let usage = disk_usage(tmp.path()).expect("a file system");
    assert!((0.0..=1.0).contains(&usage), "{usage}");
    let df = std::process::Command::new("df")
        .args(["--output=pcent"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&df.stdout);
    let pcent: f64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().trim_end_matches('%').parse().ok())
        .expect("df's Use%");
    // df rounds up to a whole percent.
    assert!(
        (usage * 100.0 - pcent).abs() <= 1.0,
        "{usage} vs df {pcent}%"
    );
}
