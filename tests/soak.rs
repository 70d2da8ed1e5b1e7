//! The soak benchmark's smoke version: a short steady load with the leader killed twice. The
//! 30-minute run is by command (`drover bench soak`); this keeps the command working and checks
//! that what the masters hold stays bounded under churn and leader changes.

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_keeps_the_registry_bounded_through_leader_kills() {
    let out = common::cli(&[
        "bench",
        "soak",
        "--duration",
        "24s",
        "--rate",
        "100",
        "--agents",
        "50",
        "--kill-every",
        "9s",
        "--report-every",
        "4s",
        "--settle",
        "4s",
        "--store-rate",
        "50",
        "--store-keys",
        "100",
        "--master-arg=--max-completed-tasks-per-framework=100",
    ])
    .await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let reports: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("t=")).collect();
    assert!(reports.len() >= 4, "{}", out.stdout);
    assert!(
        reports.iter().all(|l| l.contains("[SIMULATED agents]")),
        "{}",
        out.stdout
    );
    // 2 400 tasks launched; the registry keeps at most the completed bound (100 here) plus
    // its slack (10) plus the live ones (about 100 at a time) and those ending.
    let tasks: Vec<u64> = reports
        .iter()
        .filter_map(|l| {
            l.split("tasks ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(!tasks.is_empty(), "{}", out.stdout);
    assert!(
        tasks.iter().all(|t| *t <= 1_400),
        "registry sizes {tasks:?}"
    );
    let summary = out
        .stdout
        .lines()
        .find(|l| l.starts_with("launched "))
        .expect("a summary line");
    let launched: u64 = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("launched count");
    assert!(launched > 1_100, "{summary}");
    let kills: u64 = summary
        .split(" leader kills")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("kill count");
    assert!(kills >= 1, "{summary}");
    assert!(out.stdout.contains("master 1: "), "{}", out.stdout);
}
