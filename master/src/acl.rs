//! The master's ACLs in force: the `--acls` file ([`drover_acl::Acls`]), read again on SIGHUP
//! and when it changes (a file that does not parse is refused, logged and counted, and the
//! ACLs in force stay), and the one place the API edges ask whether a caller may act
//! ([`LiveAcls::authorize`]: every decision counted, every denial logged).
//!
//! The subject of every decision is the principal the caller's connection proved (its
//! certificate's name), or none: without TLS, only rules for `ANY` principal match. Without
//! an ACL file everything is allowed, as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use drover_acl::{Acls, Action};
use tokio::sync::watch;
use tonic::Status;

/// How often the file is looked at for a change.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The file's size and modification time: an edit changes at least one of them.
type Fingerprint = Option<(u64, SystemTime)>;

fn fingerprint(path: &Path) -> Fingerprint {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// An ACL file as read at start: its path, its rules, and its fingerprint taken before the
/// read (so that a change made meanwhile is seen by the reload task).
#[derive(Clone, Debug)]
pub struct AclFile {
    pub path: PathBuf,
    acls: Arc<Acls>,
    seen: Fingerprint,
}

impl AclFile {
    /// Reads and parses the ACL file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let seen = fingerprint(path);
        Ok(AclFile {
            path: path.to_path_buf(),
            acls: Arc::new(parse(path)?),
            seen,
        })
    }
}

fn parse(path: &Path) -> Result<Acls, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Acls::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The ACLs in force, shared by the edges.
#[derive(Clone, Debug)]
pub struct LiveAcls {
    current: watch::Receiver<Arc<Acls>>,
}

impl LiveAcls {
    /// Everything allowed: a master without `--acls`.
    pub fn permissive() -> Self {
        let (_, current) = watch::channel(Arc::new(Acls::permissive()));
        LiveAcls { current }
    }

    /// The ACLs of `file`, read again on SIGHUP and when its size or time changes, by a task
    /// that runs until the last clone is dropped. Needs a tokio runtime.
    pub fn watch(file: AclFile) -> Self {
        let (tx, current) = watch::channel(file.acls.clone());
        tokio::spawn(reload_loop(file, tx));
        LiveAcls { current }
    }

    /// Whether `principal` may do `action`: `Ok`, or `PERMISSION_DENIED` naming the action,
    /// the principal and the rule (or the lack of one).
    pub fn authorize(&self, principal: Option<&str>, action: &Action<'_>) -> Result<(), Status> {
        let acls = self.current.borrow().clone();
        let decision = acls.decide(principal, action);
        let outcome = if decision.allowed() {
            "allowed"
        } else {
            "denied"
        };
        metrics::counter!("drover_acl_decisions_total", "kind" => action.kind(), "outcome" => outcome)
            .increment(1);
        match decision.refusal(principal, action) {
            None => Ok(()),
            Some(why) => {
                tracing::warn!(principal = principal.unwrap_or(""), kind = action.kind(), %action, "denied by the ACLs");
                Err(Status::permission_denied(why))
            }
        }
    }
}

/// Reloads `file` on SIGHUP and when it changes, until every reader is gone: a file that
/// does not parse is refused and the rules in force stay (as `drover_tls::LiveTls` reloads).
async fn reload_loop(file: AclFile, tx: watch::Sender<Arc<Acls>>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the ACL file is reloaded when it changes only");
            None
        }
    };
    let mut seen = file.seen;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            _ = poll.tick() => false,
            _ = hup => true,
            () = tx.closed() => return,
        };
        let now = fingerprint(&file.path);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match parse(&file.path) {
            Ok(acls) => {
                tx.send_replace(Arc::new(acls));
                metrics::counter!("drover_acl_reloads_total", "outcome" => "loaded").increment(1);
                tracing::info!(file = %file.path.display(), "ACLs reloaded");
            }
            Err(e) => {
                metrics::counter!("drover_acl_reloads_total", "outcome" => "refused").increment(1);
                tracing::error!(error = %e, "the ACL file is refused; the ACLs in force stay");
            }
        }
    }
}
