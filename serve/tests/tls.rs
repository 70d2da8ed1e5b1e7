//! The listener with mutual TLS, over loopback: who gets through the handshake, what a request
//! learns of its caller, which paths a role may call, and certificates replaced under a
//! running listener.

use std::path::Path;
use std::time::Duration;

use axum::http::Request;
use drover_serve::{serve, RoleRules, ServeConfig};
use drover_tls::ca::{self, Ca, Validity, CA_VALIDITY, CERT_VALIDITY};
use drover_tls::config::TlsFiles;
use drover_tls::{Identity, LiveTls, Role};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

fn issue(ca: &Ca, dir: &Path, role: Role, name: &str, hosts: &[&str]) -> TlsFiles {
    let id = Identity::new(role, name).unwrap();
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let issued = ca
        .issue_to(dir, &id, &hosts, Validity::from_now(CERT_VALIDITY))
        .unwrap();
    TlsFiles {
        cert: issued.cert,
        key: issued.key,
        ca: dir.join(ca::CA_CERT),
    }
}

/// `/whoami` answers the caller's identity; `/raft/…` is for masters only.
fn routes() -> tonic::service::Routes {
    tonic::service::Routes::from(
        axum::Router::new()
            .route(
                "/whoami",
                axum::routing::get(|r: Request<axum::body::Body>| async move {
                    match r.extensions().get::<Identity>() {
                        Some(who) => who.to_string(),
                        None => "nobody".to_string(),
                    }
                }),
            )
            .route("/raft/append", axum::routing::post(|| async { "appended" })),
    )
}

/// A listener on loopback with `tls` taking `clients`; its port.
async fn start(tls: &LiveTls, clients: &[Role]) -> (u16, tokio::sync::oneshot::Sender<()>) {
    start_with(tls, clients, ServeConfig::default()).await
}

/// [`start`] with `config`'s connection bounds.
async fn start_with(
    tls: &LiveTls,
    clients: &[Role],
    config: ServeConfig,
) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ServeConfig {
        tls: Some(tls.server(clients)),
        roles: RoleRules::new([("/raft/", &[Role::Master][..])]),
        ..config
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, routes(), config, async {
        let _ = stop_rx.await;
    }));
    (port, stop_tx)
}

/// One HTTP/1.1 request over mutual TLS as `files` (a certificate of `role`): the answer,
/// or why there was none.
async fn request(files: &TlsFiles, role: Role, port: u16, head: &str) -> Result<String, String> {
    let tls = LiveTls::fixed(files.clone(), role).map_err(|e| e.to_string())?;
    let client = tls.client(&[Role::Master]);
    let attempt = async {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let mut s = client
            .connect("127.0.0.1", tcp)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        if got.is_empty() {
            return Err("closed without an answer".to_string());
        }
        Ok(String::from_utf8_lossy(&got).into_owned())
    };
    tokio::time::timeout(DEADLINE, attempt)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn a_tls_listener_knows_its_callers_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let master = issue(&ca, d, Role::Master, "m1", &["127.0.0.1"]);
    let agent = issue(&ca, d, Role::Agent, "a1", &[]);
    let operator = issue(&ca, d, Role::Client, "ops", &[]);
    let peer = issue(&ca, d, Role::Master, "m2", &["127.0.0.1"]);
    let tls = LiveTls::fixed(master, Role::Master).unwrap();
    let (port, _stop) = start(&tls, &[Role::Master, Role::Client]).await;

    // An operator: through, and the request carries who it is.
    let who = request(&operator, Role::Client, port, &get("/whoami"))
        .await
        .unwrap();
    assert!(who.starts_with("HTTP/1.1 200"), "{who}");
    assert!(who.ends_with("client ops"), "{who}");

    // A role the listener does not take: refused at the handshake, no request read.
    let refused = request(&agent, Role::Agent, port, &get("/whoami")).await;
    assert!(refused.is_err(), "{refused:?}");

    // A path for masters only: an operator gets 403 naming the path and the caller, a gRPC
    // call gets PERMISSION_DENIED; a master gets through.
    let post = |content_type: &str| {
        format!(
            "POST /raft/append HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let forbidden = request(&operator, Role::Client, port, &post("text/plain"))
        .await
        .unwrap();
    assert!(forbidden.starts_with("HTTP/1.1 403"), "{forbidden}");
    assert!(
        forbidden.contains("/raft/append: not allowed for client ops"),
        "{forbidden}"
    );
    let denied = request(&operator, Role::Client, port, &post("application/grpc"))
        .await
        .unwrap();
    assert!(denied.starts_with("HTTP/1.1 200"), "{denied}");
    assert!(denied.to_lowercase().contains("grpc-status: 7"), "{denied}");
    let appended = request(&peer, Role::Master, port, &post("text/plain"))
        .await
        .unwrap();
    assert!(appended.ends_with("appended"), "{appended}");

    // Plain HTTP on a TLS port: no answer to it.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain.write_all(get("/whoami").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, plain.read_to_end(&mut got))
        .await
        .expect("the listener closes a plain connection");
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200"),
        "{got:?}"
    );
}

/// A peer that connects and sends nothing is dropped when the handshake's deadline passes
/// (checked under tokio's paused clock, which jumps to the deadline once all is idle).
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_at_the_handshake_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let master = issue(&ca, d, Role::Master, "m1", &["127.0.0.1"]);
    let tls = LiveTls::fixed(master, Role::Master).unwrap();
    let (port, _stop) = start(&tls, &Role::ALL).await;
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the listener sent {:?}", &buf[..n]);
    assert!(
        started.elapsed() >= drover_tls::live::HANDSHAKE_TIMEOUT,
        "closed after {:?}",
        started.elapsed()
    );
}

/// With every slot taken by a peer that connected and says nothing, a new connection makes
/// room: the silent one, not authenticated, is dropped at once rather than holding its slot
/// until its handshake deadline.
#[tokio::test]
async fn a_peer_silent_in_its_handshake_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let master = issue(&ca, d, Role::Master, "m1", &["127.0.0.1"]);
    let operator = issue(&ca, d, Role::Client, "ops", &[]);
    let tls = LiveTls::fixed(master, Role::Master).unwrap();
    let config = ServeConfig {
        max_connections: 1,
        evict_idle_after: Duration::ZERO,
        ..ServeConfig::default()
    };
    let (port, _stop) = start_with(&tls, &[Role::Client], config).await;
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Served well before the silent peer's handshake deadline would free its slot.
    let within = drover_tls::live::HANDSHAKE_TIMEOUT / 2;
    let answer = tokio::time::timeout(
        within,
        request(&operator, Role::Client, port, &get("/whoami")),
    )
    .await
    .expect("served before the silent peer's handshake deadline")
    .unwrap();
    assert!(answer.ends_with("client ops"), "{answer}");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, silent.read(&mut buf))
        .await
        .expect("the silent peer was dropped")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// New files under a running listener (a rotated CA and the certificates it issued) are
/// taken up without a restart: the new CA's peers get through, the old CA's no longer do.
#[tokio::test]
async fn a_rotated_ca_is_taken_up_without_a_restart() {
    let old_dir = tempfile::tempdir().unwrap();
    let old = ca::init(old_dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
    let served = issue(&old, old_dir.path(), Role::Master, "m1", &["127.0.0.1"]);
    let old_operator = issue(&old, old_dir.path(), Role::Client, "ops", &[]);
    let tls = LiveTls::watch(served.clone(), Role::Master).unwrap();
    let (port, _stop) = start(&tls, &[Role::Client]).await;
    assert!(request(&old_operator, Role::Client, port, &get("/whoami"))
        .await
        .unwrap()
        .ends_with("client ops"));

    let new_dir = tempfile::tempdir().unwrap();
    let new = ca::init(new_dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
    let renewed = issue(&new, new_dir.path(), Role::Master, "m1", &["127.0.0.1"]);
    let new_operator = issue(&new, new_dir.path(), Role::Client, "ops2", &[]);
    // Replaced as an operator's tooling would: each file written beside and renamed over.
    for (from, to) in [
        (&renewed.key, &served.key),
        (&renewed.cert, &served.cert),
        (&renewed.ca, &served.ca),
    ] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    let deadline = tokio::time::Instant::now() + 4 * drover_tls::live::POLL_INTERVAL + DEADLINE;
    loop {
        match request(&new_operator, Role::Client, port, &get("/whoami")).await {
            Ok(answer) => {
                assert!(answer.ends_with("client ops2"), "{answer}");
                break;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the new CA was not taken up: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(tls.identity(), Identity::new(Role::Master, "m1").unwrap());
    // The old operator reads the same CA file, now the new CA's, so it trusts the renewed
    // server: the refusal is the server's, of a certificate its new CA did not issue.
    let stale = request(&old_operator, Role::Client, port, &get("/whoami")).await;
    assert!(stale.is_err(), "{stale:?}");
}

/// Files that do not load (a key that is not one), and a CA file that no longer vouches for
/// the process's own certificate (a new CA put in alone, before the renewal), are refused and
/// the listener goes on with the files it had.
#[tokio::test]
async fn broken_files_are_refused_and_the_old_ones_stay() {
    refused_reload(|served, _| std::fs::write(&served.key, "not a key\n").unwrap()).await;
}

#[tokio::test]
async fn a_ca_file_that_drops_the_processs_own_ca_is_refused() {
    refused_reload(|served, other| {
        let tmp = served.ca.with_extension("new");
        std::fs::write(&tmp, other.cert_pem()).unwrap();
        std::fs::rename(&tmp, &served.ca).unwrap();
    })
    .await;
}

/// Serves with watched files, spoils them with `spoil` (given the served files and another
/// CA), and checks that the reload was refused and the old files still serve.
async fn refused_reload(spoil: impl FnOnce(&TlsFiles, &Ca)) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let served = issue(&ca, d, Role::Master, "m1", &["127.0.0.1"]);
    let operator = issue(&ca, d, Role::Client, "ops", &[]);
    // The operator trusts a CA file of its own, which the spoiling leaves alone.
    let operator = TlsFiles {
        ca: {
            let own = d.join("operator-ca.pem");
            std::fs::copy(&operator.ca, &own).unwrap();
            own
        },
        ..operator
    };
    let other_dir = tempfile::tempdir().unwrap();
    let other = ca::init(other_dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
    let tls = LiveTls::watch(served.clone(), Role::Master).unwrap();
    let (port, _stop) = start(&tls, &[Role::Client]).await;
    spoil(&served, &other);
    let deadline = tokio::time::Instant::now() + 4 * drover_tls::live::POLL_INTERVAL;
    while tls
        .reloads()
        .refused
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken files were not looked at"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        tls.reloads()
            .loaded
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let answer = request(&operator, Role::Client, port, &get("/whoami"))
        .await
        .unwrap();
    assert!(answer.ends_with("client ops"), "{answer}");
}
