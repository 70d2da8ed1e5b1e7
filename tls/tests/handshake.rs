//! Mutual TLS over loopback with the configurations of `drover_tls::config`: who gets through
//! the handshake and who is refused (no certificate, another CA, expired, a role the side does
//! not talk to, a name the certificate is not for), seen from both ends.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use drover_tls::ca::{self, Ca, Validity, CA_VALIDITY, CERT_VALIDITY};
use drover_tls::config::{client_config, peer_identity, server_config, TlsFiles};
use drover_tls::{Identity, Role};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DEADLINE: Duration = Duration::from_secs(10);

fn issue(
    ca: &Ca,
    dir: &Path,
    role: Role,
    name: &str,
    hosts: &[&str],
    validity: Validity,
) -> TlsFiles {
    let id = Identity::new(role, name).unwrap();
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let issued = ca.issue_to(dir, &id, &hosts, validity).unwrap();
    TlsFiles {
        cert: issued.cert,
        key: issued.key,
        ca: dir.join(ca::CA_CERT),
    }
}

/// A server on loopback taking `clients`' roles: it greets each peer by its identity and
/// reports each handshake's outcome.
async fn serve(
    files: &TlsFiles,
    role: Role,
    clients: &[Role],
) -> (u16, mpsc::UnboundedReceiver<Result<Identity, String>>) {
    let loaded = files.load(role).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&loaded, clients).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let who = peer_identity(tls.get_ref().1.peer_certificates().unwrap_or(&[]))
                            .expect("a verified peer has an identity");
                        let _ = tls.write_all(format!("hello {who}").as_bytes()).await;
                        let _ = tls.shutdown().await;
                        let _ = tx.send(Ok(who));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Dials `port` as `name` with `config`: the greeting, or why there was none.
async fn call(config: rustls::ClientConfig, port: u16, name: &str) -> Result<String, String> {
    let connector = TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(server, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut got = String::new();
        tls.read_to_string(&mut got)
            .await
            .map_err(|e| e.to_string())?;
        if got.is_empty() {
            return Err("the server closed without a word".into());
        }
        Ok(got)
    };
    tokio::time::timeout(DEADLINE, attempt)
        .await
        .expect("the handshake ends in time")
}

async fn outcome(
    rx: &mut mpsc::UnboundedReceiver<Result<Identity, String>>,
) -> Result<Identity, String> {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("the server reports in time")
        .expect("the server runs")
}

#[tokio::test]
async fn only_peers_of_the_ca_with_an_allowed_role_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let year = Validity::from_now(CERT_VALIDITY);
    let master = issue(
        &ca,
        d,
        Role::Master,
        "m1",
        &["localhost", "127.0.0.1"],
        year,
    );
    let agent = issue(&ca, d, Role::Agent, "a1", &["127.0.0.1"], year);
    let operator = issue(&ca, d, Role::Client, "ops", &[], year);
    let now = SystemTime::now();
    let expired = issue(
        &ca,
        d,
        Role::Agent,
        "old",
        &[],
        Validity {
            not_before: now - Duration::from_secs(2 * 86400),
            not_after: now - Duration::from_secs(86400),
        },
    );
    // Another CA's agent (it trusts the cluster's CA, so the refusal is the server's).
    let other_dir = tempfile::tempdir().unwrap();
    let other = ca::init(other_dir.path(), Validity::from_now(CA_VALIDITY)).unwrap();
    let stranger = TlsFiles {
        ca: d.join(ca::CA_CERT),
        ..issue(&other, other_dir.path(), Role::Agent, "a1", &[], year)
    };

    // A master's agent-facing side: agents and frameworks only.
    let (port, mut rx) = serve(&master, Role::Master, &[Role::Agent, Role::Framework]).await;
    let as_client =
        |f: &TlsFiles, role: Role| client_config(&f.load(role).unwrap(), &[Role::Master]).unwrap();

    // An agent of the CA: through, and the server knows who it is.
    assert_eq!(
        call(as_client(&agent, Role::Agent), port, "127.0.0.1")
            .await
            .unwrap(),
        "hello agent a1"
    );
    assert_eq!(
        outcome(&mut rx).await.unwrap(),
        Identity::new(Role::Agent, "a1").unwrap()
    );

    // An operator's certificate: the CA's, but not a role this side takes.
    assert!(call(as_client(&operator, Role::Client), port, "127.0.0.1")
        .await
        .is_err());
    let why = outcome(&mut rx).await.unwrap_err();
    assert!(
        why.contains("client ops is not allowed here (only agent, framework)"),
        "{why}"
    );

    // Expired.
    assert!(call(as_client(&expired, Role::Agent), port, "127.0.0.1")
        .await
        .is_err());
    let why = outcome(&mut rx).await.unwrap_err();
    assert!(why.to_lowercase().contains("expired"), "{why}");

    // Another CA's.
    assert!(call(as_client(&stranger, Role::Agent), port, "127.0.0.1")
        .await
        .is_err());
    let why = outcome(&mut rx).await.unwrap_err();
    // Each CA has a name of its own: the issuer is unknown.
    assert!(why.contains("UnknownIssuer"), "{why}");

    // No certificate at all.
    let anonymous = {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject as _;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(d.join(ca::CA_CERT)).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(drover_tls::config::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    };
    assert!(call(anonymous, port, "127.0.0.1").await.is_err());
    let why = outcome(&mut rx).await.unwrap_err();
    assert!(why.to_lowercase().contains("certificate"), "{why}");

    // Still open to the next good peer.
    assert!(call(as_client(&agent, Role::Agent), port, "localhost")
        .await
        .is_ok());
    assert!(outcome(&mut rx).await.is_ok());
}

#[tokio::test]
async fn a_client_refuses_a_server_of_the_wrong_role_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let year = Validity::from_now(CERT_VALIDITY);
    let agent = issue(&ca, d, Role::Agent, "a1", &["127.0.0.1"], year);
    let framework = issue(&ca, d, Role::Framework, "f1", &[], year);
    let master = issue(&ca, d, Role::Master, "m1", &["localhost"], year);

    // An agent posing as a master: a framework that dials a master refuses it.
    let (port, _rx) = serve(&agent, Role::Agent, &[Role::Framework, Role::Master]).await;
    let to_master =
        client_config(&framework.load(Role::Framework).unwrap(), &[Role::Master]).unwrap();
    let why = call(to_master, port, "127.0.0.1").await.unwrap_err();
    assert!(
        why.contains("agent a1 is not allowed here (only master)"),
        "{why}"
    );

    // A master's certificate for `localhost` only, dialled as 127.0.0.1.
    let (port, _rx) = serve(&master, Role::Master, &[Role::Framework]).await;
    let to_master =
        client_config(&framework.load(Role::Framework).unwrap(), &[Role::Master]).unwrap();
    let why = call(to_master.clone(), port, "127.0.0.1")
        .await
        .unwrap_err();
    assert!(why.contains("not valid for name"), "{why}");
    assert_eq!(
        call(to_master, port, "localhost").await.unwrap(),
        "hello framework f1"
    );
}
