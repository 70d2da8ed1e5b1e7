use std::io::Write;

use drover_proto::v1;

use super::*;
use crate::testing::{wait_for, FakeMaster};
use crate::update::{StatusSource, TaskState};

const DEADLINE: Duration = Duration::from_secs(20);

fn update(task: &str, state: TaskState) -> StatusUpdate {
    StatusUpdate::new(
        AgentId::new("agent-1").expect("id"),
        FrameworkId::new("fw-1").expect("id"),
        TaskId::new(task).expect("id"),
        state,
        StatusSource::Executor,
        "test",
        format!("{task} {state:?}"),
    )
}

fn fast(checkpointing: Checkpointing) -> Config {
    Config {
        checkpointing,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        send_timeout: Duration::from_secs(1),
        ended: None,
    }
}

fn records(layout: &Layout, task: &str) -> Vec<Record> {
    let path = TaskDir(layout.task_dir(
        &FrameworkId::new("fw-1").expect("id"),
        &TaskId::new(task).expect("id"),
    ))
    .updates_log();
    checkpoint::read_records::<Record>(&path)
        .expect("read log")
        .records
}

async fn drained(updates: &StatusUpdates) -> bool {
    updates.pending().await.expect("pending") == 0
}

#[tokio::test]
async fn updates_reach_the_master_in_order_one_in_flight_per_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    let fake = FakeMaster::with_update_delay(Duration::from_millis(15));
    let addr = fake.serve().await;
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        fast(Checkpointing::Disk(layout.clone())),
    );
    let tasks = ["t1", "t2", "t3"];
    let states = [TaskState::Starting, TaskState::Running, TaskState::Finished];
    let mut sent: HashMap<&str, Vec<String>> = HashMap::new();
    for state in states {
        for task in tasks {
            let u = update(task, state);
            sent.entry(task)
                .or_default()
                .push(u.status.uuid.to_string());
            updates.update(u).await.expect("checkpointed");
        }
    }
    wait_for(DEADLINE, "every update acknowledged", || drained(&updates)).await;
    for task in tasks {
        let applied = fake.applied_for(task);
        let uuids: Vec<String> = applied.iter().map(|(_, u)| u.clone()).collect();
        assert_eq!(uuids, sent[task], "order of {task}");
        let states_seen: Vec<i32> = applied.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            states_seen,
            vec![
                v1::TaskState::TaskStarting as i32,
                v1::TaskState::TaskRunning as i32,
                v1::TaskState::TaskFinished as i32
            ]
        );
        // Each update, then its ack, in the log (nothing waits for an ack's record: it is
        // written after the master's answer).
        wait_for(DEADLINE, "every ack recorded", || {
            let n = records(&layout, task).len();
            async move { n >= 6 }
        })
        .await;
        let log = records(&layout, task);
        assert_eq!(log.len(), 6, "{log:?}");
        let acked = log
            .iter()
            .filter(|r| matches!(r, Record::Acked { .. }))
            .count();
        assert_eq!(acked, 3);
    }
    assert!(
        !fake.state().overlap,
        "two updates of one task were in flight at once"
    );
    manager.stop().await;
}

#[tokio::test]
async fn updates_of_many_tasks_share_calls_while_the_master_is_busy() {
    // The fake holds calls until the gate opens: while the first calls are out, the other
    // tasks' updates gather into few calls instead of one call each.
    let fake = FakeMaster::gated();
    let addr = fake.serve().await;
    let (updates, manager) =
        StatusUpdates::start(FakeMaster::client(&addr), fast(Checkpointing::Memory));
    let tasks: Vec<String> = (0..200).map(|n| format!("t{n}")).collect();
    for state in [TaskState::Starting, TaskState::Running] {
        for task in &tasks {
            updates.update(update(task, state)).await.expect("accepted");
        }
    }
    wait_for(DEADLINE, "every call slot taken", || async {
        fake.state().batches.len() == MAX_BATCHES_IN_FLIGHT
    })
    .await;
    fake.open_gate();
    wait_for(DEADLINE, "every update acknowledged", || drained(&updates)).await;
    {
        let s = fake.state();
        assert_eq!(s.applied.len(), 400);
        let largest = s.batches.iter().copied().max().unwrap_or(0);
        assert!(
            largest > 1,
            "no call carried more than one update: {:?}",
            s.batches
        );
        assert!(largest <= MAX_BATCH_UPDATES, "a call of {largest} updates");
        assert!(
            s.batches.len() < 200,
            "{} calls for 400 updates",
            s.batches.len()
        );
        assert!(!s.overlap, "two updates of one task were in flight at once");
        for task in &tasks {
            let states: Vec<i32> = fake_applied(&s, task);
            assert_eq!(
                states,
                vec![
                    v1::TaskState::TaskStarting as i32,
                    v1::TaskState::TaskRunning as i32
                ],
                "order of {task}"
            );
        }
    }
    manager.stop().await;
}

fn fake_applied(s: &crate::testing::FakeState, task: &str) -> Vec<i32> {
    s.applied
        .iter()
        .filter(|a| a.task_id == task)
        .map(|a| a.state)
        .collect()
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_is_sent_update_by_update() {
    // One malformed update makes the master refuse its whole call; the others still land.
    // The fake holds calls until the gate opens: the first updates take every call slot, so
    // the later ones, "bad" among them, wait together and then go in one call.
    let fake = FakeMaster::gated();
    fake.state().refuse_calls_with_task.insert("bad".into());
    let addr = fake.serve().await;
    let (updates, manager) =
        StatusUpdates::start(FakeMaster::client(&addr), fast(Checkpointing::Memory));
    let mut tasks: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
    tasks.insert(8, "bad".into());
    for task in &tasks {
        updates
            .update(update(task, TaskState::Running))
            .await
            .expect("accepted");
    }
    wait_for(DEADLINE, "every call slot taken", || async {
        fake.state().batches.len() == MAX_BATCHES_IN_FLIGHT
    })
    .await;
    fake.open_gate();
    wait_for(DEADLINE, "every update decided", || drained(&updates)).await;
    {
        let s = fake.state();
        for task in tasks.iter().filter(|t| *t != "bad") {
            assert_eq!(fake_applied(&s, task).len(), 1, "{task}");
        }
        assert!(fake_applied(&s, "bad").is_empty());
        let sends_of_bad = s.calls.iter().filter(|(_, c)| c.task_id == "bad").count();
        assert_eq!(sends_of_bad, 2, "in its batch, then alone: {:?}", s.batches);
    }
    manager.stop().await;
}

#[tokio::test]
async fn retries_until_the_master_acknowledges() {
    let fake = FakeMaster::default();
    fake.state().unavailable_remaining = 4;
    let addr = fake.serve().await;
    let (updates, manager) =
        StatusUpdates::start(FakeMaster::client(&addr), fast(Checkpointing::Memory));
    let u = update("t1", TaskState::Running);
    updates.update(u.clone()).await.expect("accepted");
    wait_for(DEADLINE, "the update acknowledged", || drained(&updates)).await;
    assert_eq!(
        fake.applied_for("t1"),
        vec![(v1::TaskState::TaskRunning as i32, u.status.uuid.to_string())]
    );
    assert!(
        fake.state().calls.len() >= 5,
        "sent {} times",
        fake.state().calls.len()
    );
    manager.stop().await;
}

#[tokio::test]
async fn a_refused_update_is_dropped_and_the_next_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    let fake = FakeMaster::default();
    fake.state().refuse_tasks.insert("t1".into());
    let addr = fake.serve().await;
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        fast(Checkpointing::Disk(layout.clone())),
    );
    updates
        .update(update("t1", TaskState::Running))
        .await
        .expect("accepted");
    updates
        .update(update("t1", TaskState::Finished))
        .await
        .expect("accepted");
    updates
        .update(update("t2", TaskState::Running))
        .await
        .expect("accepted");
    wait_for(DEADLINE, "every update settled", || drained(&updates)).await;
    assert!(fake.applied_for("t1").is_empty());
    assert_eq!(fake.applied_for("t2").len(), 1);
    // Refused once each: no retry of a refusal.
    let t1_calls = fake
        .state()
        .calls
        .iter()
        .filter(|(_, s)| s.task_id == "t1")
        .count();
    assert_eq!(t1_calls, 2);
    let dropped = || {
        records(&layout, "t1")
            .into_iter()
            .filter(|r| matches!(r, Record::Dropped { reason, .. } if reason.contains("FailedPrecondition")))
            .count()
    };
    // Recording a drop is written after the refusal; nothing waits for it.
    wait_for(DEADLINE, "both drops recorded", || {
        let n = dropped();
        async move { n >= 2 }
    })
    .await;
    assert_eq!(dropped(), 2);
    manager.stop().await;
}

#[tokio::test]
async fn a_resent_update_is_checkpointed_and_sent_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    let fake = FakeMaster::with_update_delay(Duration::from_millis(20));
    let addr = fake.serve().await;
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        fast(Checkpointing::Disk(layout.clone())),
    );
    let u = update("t1", TaskState::Running);
    updates.update(u.clone()).await.expect("accepted");
    updates
        .update(u.clone())
        .await
        .expect("a resend is acknowledged too");
    wait_for(DEADLINE, "the update acknowledged", || drained(&updates)).await;
    // And once more after the master acknowledged it.
    updates
        .update(u.clone())
        .await
        .expect("a late resend is acknowledged too");
    assert_eq!(updates.pending().await.expect("pending"), 0);
    assert_eq!(fake.state().calls.len(), 1);
    let log = records(&layout, "t1");
    let copies = log
        .iter()
        .filter(|r| matches!(r, Record::Update { update } if update.status.uuid == u.status.uuid))
        .count();
    assert_eq!(copies, 1, "{log:?}");
    manager.stop().await;
}

#[tokio::test]
async fn unacknowledged_updates_are_resent_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    // First life: no master answers.
    let dead = FakeMaster::default();
    dead.state().unavailable_remaining = usize::MAX;
    let dead_addr = dead.serve().await;
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&dead_addr),
        fast(Checkpointing::Disk(layout.clone())),
    );
    let sent: Vec<StatusUpdate> = [TaskState::Starting, TaskState::Running, TaskState::Failed]
        .into_iter()
        .map(|s| update("t1", s))
        .collect();
    for u in &sent {
        updates.update(u.clone()).await.expect("accepted");
    }
    manager.stop().await;
    // A crash in the middle of a later append leaves a torn line.
    let log = TaskDir(layout.task_dir(
        &FrameworkId::new("fw-1").expect("id"),
        &TaskId::new("t1").expect("id"),
    ))
    .updates_log();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(b"1234abcd {\"record\":\"ack"))
        .expect("tear the log");

    // Second life: a master that answers.
    let fake = FakeMaster::default();
    let addr = fake.serve().await;
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        fast(Checkpointing::Disk(layout.clone())),
    );
    wait_for(DEADLINE, "recovered updates acknowledged", || async {
        fake.applied_for("t1").len() == 3 && drained(&updates).await
    })
    .await;
    let uuids: Vec<String> = fake.applied_for("t1").into_iter().map(|(_, u)| u).collect();
    let want: Vec<String> = sent.iter().map(|u| u.status.uuid.to_string()).collect();
    assert_eq!(uuids, want);
    // The torn tail was cut: the log reads clean, three updates and three acks.
    let replay = checkpoint::read_records::<Record>(&log).expect("read");
    assert!(replay.skipped.is_empty(), "{:?}", replay.skipped);
    assert_eq!(replay.records.len(), 6);
    manager.stop().await;

    // Third life: nothing left to send, and a late resend by the executor is recognised.
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        fast(Checkpointing::Disk(layout.clone())),
    );
    assert_eq!(updates.pending().await.expect("pending"), 0);
    let calls = fake.state().calls.len();
    updates
        .update(sent[2].clone())
        .await
        .expect("a late resend is acknowledged");
    assert_eq!(updates.pending().await.expect("pending"), 0);
    assert_eq!(fake.state().calls.len(), calls);
    manager.stop().await;
}

/// Issue 16: a task that had sent [`MAX_UPDATES_PER_TASK`] distinct updates had every later
/// one refused ("updates per task") for good; the set of remembered uuids is bounded by
/// forgetting the oldest instead.
#[tokio::test]
async fn a_long_lived_task_keeps_sending_updates_past_the_remembered_bound() {
    let fake = FakeMaster::default();
    let addr = fake.serve().await;
    let (updates, manager) =
        StatusUpdates::start(FakeMaster::client(&addr), fast(Checkpointing::Memory));
    let total = MAX_UPDATES_PER_TASK + 50;
    let mut last = None;
    for _ in 0..total {
        let u = update("chatty", TaskState::Running);
        last = Some(u.clone());
        updates.update(u).await.expect("accepted");
        // Keep the pending count low, as a real executor's pace would.
        if updates.pending().await.expect("pending") > MAX_PENDING_PER_TASK / 2 {
            wait_for(DEADLINE, "the backlog drains", || drained(&updates)).await;
        }
    }
    wait_for(DEADLINE, "every update acknowledged", || drained(&updates)).await;
    assert_eq!(fake.applied_for("chatty").len(), total);
    // The newest is still recognised as a resend (answered, not sent again).
    updates.update(last.expect("sent")).await.expect("a resend");
    wait_for(DEADLINE, "nothing pending", || drained(&updates)).await;
    assert_eq!(fake.applied_for("chatty").len(), total);
    manager.stop().await;
}

#[test]
fn remembered_uuids_are_bounded_and_forget_the_oldest() {
    let mut seen = SeenIds::default();
    let ids: Vec<Uuid> = (0..MAX_UPDATES_PER_TASK + 10)
        .map(|_| Uuid::new_v4())
        .collect();
    for id in &ids {
        seen.insert(*id);
        seen.insert(*id);
    }
    assert_eq!(seen.len(), MAX_UPDATES_PER_TASK);
    assert!(!seen.contains(&ids[0]) && !seen.contains(&ids[9]));
    assert!(seen.contains(&ids[10]) && seen.contains(ids.last().unwrap()));
    seen.remove(&ids[10]);
    assert!(!seen.contains(&ids[10]));
    assert_eq!(seen.len(), MAX_UPDATES_PER_TASK - 1);
}

#[test]
fn a_compacted_log_keeps_every_unacknowledged_update_and_the_newest_others() {
    let mut records = Vec::new();
    let mut all = Vec::new();
    for i in 0..3000 {
        let u = update("t", TaskState::Running);
        all.push(u.status.uuid);
        records.push(Record::Update { update: u.clone() });
        // The last five are not acknowledged; one old one was dropped.
        if i < 2995 {
            records.push(if i == 7 {
                Record::Dropped {
                    uuid: u.status.uuid,
                    reason: "refused".into(),
                }
            } else {
                Record::Acked {
                    uuid: u.status.uuid,
                }
            });
        }
    }
    let kept = compact_log(records);
    let updates: Vec<Uuid> = kept
        .iter()
        .filter_map(|r| match r {
            Record::Update { update } => Some(update.status.uuid),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len(), MAX_UPDATES_PER_TASK);
    assert_eq!(updates[..], all[all.len() - MAX_UPDATES_PER_TASK..]);
    // Each kept acknowledged update is followed by its record; the unacknowledged are bare.
    let Recovered {
        key,
        pending,
        seen,
        ended,
    } = {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("updates.log");
        for r in &kept {
            checkpoint::append_record(&path, r, true, |_| Vec::new()).expect("write");
        }
        recover_log(&path).expect("recovered")
    };
    assert_eq!(key.2.as_str(), "t");
    let pending: Vec<Uuid> = pending.iter().map(|u| u.status.uuid).collect();
    assert_eq!(pending[..], all[2995..]);
    assert_eq!(seen.len(), MAX_UPDATES_PER_TASK);
    assert!(ended.is_none(), "five updates are not acknowledged");
}

#[test]
fn compaction_keeps_unacknowledged_updates_even_beyond_the_count() {
    // More unacknowledged updates than the count kept (the runtime never lets so many pile
    // up; compaction must still not drop one), after as many acknowledged ones.
    let mut records = Vec::new();
    for _ in 0..MAX_UPDATES_PER_TASK {
        let u = update("t", TaskState::Running);
        records.push(Record::Acked {
            uuid: u.status.uuid,
        });
        records.insert(records.len() - 1, Record::Update { update: u });
    }
    let pending: Vec<Uuid> = (0..MAX_UPDATES_PER_TASK + 100)
        .map(|_| {
            let u = update("t", TaskState::Running);
            let id = u.status.uuid;
            records.push(Record::Update { update: u });
            id
        })
        .collect();
    let kept = compact_log(records);
    let kept_updates: Vec<Uuid> = kept
        .iter()
        .filter_map(|r| match r {
            Record::Update { update } => Some(update.status.uuid),
            _ => None,
        })
        .collect();
    assert_eq!(
        kept_updates, pending,
        "every unacknowledged one, and only those"
    );
}

/// The sandbox collector hears of a task once the master acknowledged its terminal update and
/// that acknowledgement is in the log, and at start of every log that shows a settled end.
#[tokio::test]
async fn the_collector_hears_of_a_task_once_its_end_is_acknowledged_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    let fake = FakeMaster::default();
    let addr = fake.serve().await;
    let (tx, mut rx) = mpsc::channel(16);
    let (updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        Config {
            ended: Some(tx),
            ..fast(Checkpointing::Disk(layout.clone()))
        },
    );
    updates
        .update(update("t1", TaskState::Running))
        .await
        .expect("accepted");
    wait_for(DEADLINE, "running acknowledged", || drained(&updates)).await;
    assert!(rx.try_recv().is_err(), "a running task is not over");
    let end = update("t1", TaskState::Finished);
    updates.update(end.clone()).await.expect("accepted");
    let (framework, task, last) = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("told within the deadline")
        .expect("a notice");
    assert_eq!((framework.as_str(), task.as_str()), ("fw-1", "t1"));
    assert_eq!(last, end.status.uuid, "the notice names the end it is for");
    let log = records(&layout, "t1");
    assert!(
        matches!(log.last(), Some(Record::Acked { .. })),
        "told only once the end's acknowledgement is recorded: {log:?}"
    );
    manager.stop().await;

    // A restart reads the log and tells again (the move may not have happened).
    let (tx, mut rx) = mpsc::channel(16);
    let (_updates, manager) = StatusUpdates::start(
        FakeMaster::client(&addr),
        Config {
            ended: Some(tx),
            ..fast(Checkpointing::Disk(layout.clone()))
        },
    );
    let again = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("told at start")
        .expect("a notice");
    assert_eq!(again.1.as_str(), "t1");
    manager.stop().await;
}
