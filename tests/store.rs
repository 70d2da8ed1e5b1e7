//! The framework store from the outside: the CLI's commands and exit codes, compare-and-set
//! under contention, and linearizability of concurrent histories, also across a leader kill.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cli, start, wait_until, LEADER_TIMEOUT};
use drover_chaos::linearizability::{check, Op, Operation, Verdict};
use drover_proto::master::compare_and_set_request::Expected;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_and_exit_codes() {
    let c = start(3, &[]).await;
    let m = c.addrs().join(",");
    let run = |args: Vec<&str>| {
        let mut full = vec!["store", "--masters", &m, "--framework", "cli"];
        full.extend(args);
        let full: Vec<String> = full.into_iter().map(String::from).collect();
        async move { cli(&full.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let put = run(vec!["put", "color", "red"]).await;
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert!(put.stdout.starts_with("version "));
    let get = run(vec!["get", "color"]).await;
    assert_eq!((get.code, get.stdout.trim()), (0, "red"));
    let missing = run(vec!["get", "nope"]).await;
    assert_eq!(missing.code, 1);
    let cas_ok = run(vec!["cas", "color", "red", "blue"]).await;
    assert_eq!(cas_ok.code, 0, "{}", cas_ok.stderr);
    let cas_stale = run(vec!["cas", "color", "red", "green"]).await;
    assert_eq!(cas_stale.code, 1, "a failed CAS exits non-zero");
    assert!(
        cas_stale.stderr.contains("\"blue\""),
        "{}",
        cas_stale.stderr
    );
    let absent = run(vec!["cas", "--absent", "fresh", "1"]).await;
    assert_eq!(absent.code, 0, "{}", absent.stderr);
    let absent_again = run(vec!["cas", "--absent", "fresh", "2"]).await;
    assert_eq!(absent_again.code, 1);
    let list = run(vec!["list"]).await;
    assert_eq!(
        list.stdout.lines().collect::<Vec<_>>(),
        vec!["color", "fresh"]
    );
    let del = run(vec!["delete", "color"]).await;
    assert_eq!(del.code, 0);
    assert_eq!(run(vec!["get", "color"]).await.code, 1);
    // Namespaces are separate.
    let other = cli(&[
        "store",
        "--masters",
        &m,
        "--framework",
        "other",
        "get",
        "fresh",
    ])
    .await;
    assert_eq!(other.code, 1);
    // Usage errors exit 2 and say what is wrong.
    let bad = run(vec!["cas", "color", "only-one"]).await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("KEY EXPECTED NEW"), "{}", bad.stderr);
    // A follower's address alone is enough: the client follows the leader.
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let follower = c
        .masters()
        .find(|x| x.id != leader.node_id)
        .unwrap()
        .addr
        .clone();
    let via_follower = cli(&[
        "store",
        "--masters",
        &follower,
        "--framework",
        "cli",
        "get",
        "fresh",
    ])
    .await;
    assert_eq!((via_follower.code, via_follower.stdout.trim()), (0, "1"));
}

/// Each round, every client reads the counter and tries to CAS it from what it read to a
/// value of its own. From any one value at most one CAS may succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_set_never_lets_two_winners_through() {
    let c = start(3, &[]).await;
    let client = c.client();
    client.put("t", "counter", b"0".to_vec()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8u32 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut wins = Vec::new();
            for round in 0..30u32 {
                let cur = client.get("t", "counter").await.unwrap().unwrap().value;
                let new = format!("{w}-{round}").into_bytes();
                let r = client
                    .compare_and_set(
                        "t",
                        "counter",
                        Expected::ExpectedValue(cur.clone()),
                        new.clone(),
                    )
                    .await
                    .unwrap();
                if r.succeeded {
                    wins.push((cur, new, r.version));
                }
            }
            wins
        });
    }
    let mut wins = Vec::new();
    while let Some(r) = tasks.join_next().await {
        wins.extend(r.unwrap());
    }
    let mut from: Vec<&Vec<u8>> = wins.iter().map(|(cur, _, _)| cur).collect();
    from.sort();
    let before = from.len();
    from.dedup();
    assert_eq!(before, from.len(), "two CAS succeeded from the same value");
    // The successful CASes form one chain from "0" to the final value, in version order.
    wins.sort_by_key(|(_, _, v)| *v);
    let mut expect = b"0".to_vec();
    for (cur, new, _) in &wins {
        assert_eq!(cur, &expect, "chain broken");
        expect = new.clone();
    }
    let last = client.get("t", "counter").await.unwrap().unwrap().value;
    assert_eq!(last, expect);
    assert!(wins.len() >= 30, "only {} wins in 240 attempts", wins.len());
}

/// Random reads, writes and compare-and-sets on one key from several clients, with the leader
/// killed in the middle; the recorded history must be linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_one_key_is_linearizable_across_a_leader_kill() {
    let mut c = start(3, &[]).await;
    let client = c.client();
    let t0 = Instant::now();
    let history = Arc::new(std::sync::Mutex::new(Vec::<Operation>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..5u64 {
        let (client, history, stop) = (client.clone(), history.clone(), stop.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let value = format!("{w}-{n}").into_bytes();
                let call = t0.elapsed().as_nanos() as u64;
                let (op, ok) = match n % 3 {
                    0 => match client.get("lin", "x").await {
                        Ok(v) => (
                            Op::Read {
                                value: v.map(|v| v.value),
                            },
                            true,
                        ),
                        Err(_) => (Op::Read { value: None }, false),
                    },
                    1 => {
                        let r = client.put("lin", "x", value.clone()).await;
                        (Op::Write { value }, r.is_ok())
                    }
                    _ => {
                        // CAS from what we last wrote ourselves, or from absent.
                        let expected = format!("{w}-{}", n - 1).into_bytes();
                        match client
                            .compare_and_set(
                                "lin",
                                "x",
                                Expected::ExpectedValue(expected.clone()),
                                value.clone(),
                            )
                            .await
                        {
                            Ok(r) => (
                                Op::Cas {
                                    expected: Some(expected),
                                    new: value,
                                    succeeded: r.succeeded,
                                },
                                true,
                            ),
                            Err(_) => (
                                Op::Cas {
                                    expected: Some(expected),
                                    new: value,
                                    succeeded: false,
                                },
                                false,
                            ),
                        }
                    }
                };
                let ret = ok.then(|| t0.elapsed().as_nanos() as u64);
                history.lock().unwrap().push(Operation { call, ret, op });
            }
        });
    }
    let completed = || {
        history
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.ret.is_some())
            .count()
    };
    let at_least = |n: usize| {
        let done = completed();
        async move {
            if done >= n {
                Ok(())
            } else {
                Err(format!("{done} completed"))
            }
        }
    };
    wait_until(
        "operations before the kill",
        Duration::from_secs(30),
        || at_least(150),
    )
    .await
    .unwrap();
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    c.kill(leader.node_id).await.unwrap();
    c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let after_kill = completed();
    wait_until("operations after the kill", Duration::from_secs(30), || {
        at_least(after_kill + 150)
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let history = history.lock().unwrap().clone();
    let completed = history.iter().filter(|o| o.ret.is_some()).count();
    assert!(completed > 50, "only {completed} operations completed");
    assert_eq!(
        check(&history, None),
        Verdict::Linearizable,
        "{} ops",
        history.len()
    );
}
