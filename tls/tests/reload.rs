//! SIGHUP reloads a process's certificate files even when nothing about them changed (an
//! operator's way to say "now"). Alone in its test binary: the signal goes to the whole
//! process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use drover_tls::ca::{self, Validity, CA_VALIDITY, CERT_VALIDITY};
use drover_tls::config::TlsFiles;
use drover_tls::{Identity, LiveTls, Role};

#[tokio::test]
async fn sighup_reloads_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca::init(d, Validity::from_now(CA_VALIDITY)).unwrap();
    let id = Identity::new(Role::Master, "m1").unwrap();
    let issued = ca
        .issue_to(d, &id, &[], Validity::from_now(CERT_VALIDITY))
        .unwrap();
    let files = TlsFiles {
        cert: issued.cert,
        key: issued.key,
        ca: d.join(ca::CA_CERT),
    };
    // The handler is in place once `watch` returns: the signal cannot end the process.
    let tls = LiveTls::watch(files, Role::Master).unwrap();
    assert_eq!(tls.reloads().loaded.load(Ordering::SeqCst), 0);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // No file changed: only the signal can have asked for this reload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tls.reloads().loaded.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload the files"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tls.reloads().refused.load(Ordering::SeqCst), 0);
    assert_eq!(tls.identity(), id);
}
