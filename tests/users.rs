//! Whom tasks run as, end to end on real processes (`drover run` through a master to a real
//! agent and executor): the user a task names, the agent's default task user (`nobody` on an
//! agent running as root), and the agent's refusals (root without `--allow-root-tasks`, a
//! user off `--allowed-users`, one that does not exist), each a TASK_FAILED that says why.
//!
//! Switching users needs root: run as anyone else, the tests print why they skip.

mod common;

use common::{cli, start_with_agents, CliOutput};

/// `id -u NAME` on this host.
fn uid_of(name: &str) -> String {
    let out = std::process::Command::new("id")
        .args(["-u", name])
        .output()
        .expect("id");
    assert!(out.status.success(), "no user {name} on this host");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::getuid().is_root() {
        return false;
    }
    eprintln!("{test}: skipped: switching a task's user needs the agent to run as root");
    true
}

/// `drover run --masters M [--user U] -- SHELL`, with the task's output.
async fn run_as(masters: &str, user: Option<&str>, shell: &str) -> CliOutput {
    let mut args = vec!["run", "--masters", masters, "--timeout", "30s"];
    if let Some(u) = user {
        args.extend(["--user", u]);
    }
    args.extend(["--", shell]);
    cli(&args).await
}

fn lines(out: &CliOutput) -> Vec<&str> {
    out.stdout.lines().map(str::trim).collect()
}

/// The task's last status line, which for a refused user is `TASK_FAILED …: why`.
fn assert_refused(out: &CliOutput, why: &str) {
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let failed = out
        .stdout
        .lines()
        .find(|l| l.starts_with("TASK_FAILED"))
        .unwrap_or_else(|| panic!("no TASK_FAILED:\n{}\n{}", out.stdout, out.stderr));
    assert!(failed.contains(why), "{failed:?} does not say {why:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_run_as_the_user_they_name_else_nobody_and_never_as_root_by_default() {
    if skip_unless_root("tasks_run_as_the_user_they_name") {
        return;
    }
    let c = start_with_agents(1, &[], 1, &[], 1).await;
    let masters = c.addrs().join(",");
    let nobody = uid_of("nobody");

    // Named: its id, and its sandbox is its own to write in.
    let out = run_as(
        &masters,
        Some("nobody"),
        "id -u; echo written > mine && cat mine",
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let l = lines(&out);
    assert!(
        l.contains(&nobody.as_str()),
        "uid {nobody} not in:\n{}",
        out.stdout
    );
    assert!(l.contains(&"written"), "{}", out.stdout);

    // Unnamed: the agent's default task user, nobody (the agent runs as root).
    let out = run_as(&masters, None, "id -un").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(lines(&out).contains(&"nobody"), "{}", out.stdout);

    // Root: refused, saying how to allow it; a user the host lacks: refused, saying so.
    let out = run_as(&masters, Some("root"), "id -u").await;
    assert_refused(&out, "--allow-root-tasks");
    assert!(
        !lines(&out).contains(&"0"),
        "a root task ran:\n{}",
        out.stdout
    );
    let out = run_as(&masters, Some("no-such-user-here"), "true").await;
    assert_refused(&out, "does not exist on this agent");

    // A name that is no user name never reaches the agent.
    let out = run_as(&masters, Some("../etc"), "true").await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("--user"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_s_allowed_users_default_user_and_root_flag_are_its_rules() {
    if skip_unless_root("an_agent_s_allowed_users") {
        return;
    }
    let c = start_with_agents(
        1,
        &[],
        1,
        &[
            "--allowed-users",
            "daemon,root",
            "--default-task-user",
            "daemon",
            "--allow-root-tasks",
        ],
        1,
    )
    .await;
    let masters = c.addrs().join(",");

    let out = run_as(&masters, None, "id -un").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(lines(&out).contains(&"daemon"), "{}", out.stdout);

    let out = run_as(&masters, Some("root"), "id -u").await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(lines(&out).contains(&"0"), "{}", out.stdout);

    let out = run_as(&masters, Some("nobody"), "id -u").await;
    assert_refused(&out, "--allowed-users (daemon,root)");
}
