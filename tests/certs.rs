//! `drover certs init|issue`: a development CA on disk, certificates that name their role and
//! name and load as such, and clear refusals (a second CA over the first, an unknown role, a
//! bad name) that exit 2 naming the flag at fault.

mod common;

use common::cli;
use drover_tls::config::TlsFiles;
use drover_tls::{Identity, Role};

#[tokio::test]
async fn certs_init_and_issue_make_files_that_load_with_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = cli(&["certs", "init", "--dir", d]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ca.pem"), "{}", out.stdout);

    let agents = dir.path().join("agents");
    let out = cli(&[
        "certs",
        "issue",
        "--dir",
        d,
        "--role",
        "agent",
        "--name",
        "a1",
        "--host",
        "127.0.0.1",
        "--host",
        "agent-1.example",
        "--out",
        agents.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("urn:drover:agent:a1"), "{}", out.stdout);
    let files = TlsFiles {
        cert: agents.join("agent-a1.pem"),
        key: agents.join("agent-a1.key"),
        ca: dir.path().join("ca.pem"),
    };
    let loaded = files.load(Role::Agent).expect("the issued files load");
    assert_eq!(loaded.identity, Identity::new(Role::Agent, "a1").unwrap());
    assert!(
        files.load(Role::Master).is_err(),
        "an agent's certificate is not a master's"
    );

    for (args, field) in [
        (vec!["certs", "init", "--dir", d], "already holds a CA"),
        (
            vec![
                "certs", "issue", "--dir", d, "--role", "root", "--name", "x",
            ],
            "--role",
        ),
        (
            vec![
                "certs", "issue", "--dir", d, "--role", "agent", "--name", "a b",
            ],
            "--name",
        ),
        (
            vec![
                "certs", "issue", "--dir", d, "--role", "agent", "--name", "a", "--days", "0",
            ],
            "--days",
        ),
    ] {
        let out = cli(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(field), "{args:?}: {}", out.stderr);
    }
}
