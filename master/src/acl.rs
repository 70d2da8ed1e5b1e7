//! The master's ACLs in force: the `--acls` file ([`drover_acl::Acls`]), read again on SIGHUP
//! and when it changes (a file that does not parse is refused, logged and counted, and the
//! ACLs in force stay), and the one place the API edges ask whether a caller may act
//! ([`LiveAcls::authorize`]: every decision counted, every denial logged).
//!
//! The subject of every decision is the principal the caller's connection proved (its
//! certificate's name), or none: without TLS, only rules for `ANY` principal match. Without
//! an ACL file everything is allowed, as before.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use drover_acl::{Acls, Action};
use tonic::Status;

/// How often the file is looked at for a change.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The ACLs in force, shared by the edges.
#[derive(Clone, Debug)]
pub struct LiveAcls {
    current: Arc<RwLock<Arc<Acls>>>,
    file: Option<PathBuf>,
}

/// Reads and parses the ACL file at `path`.
pub fn load(path: &std::path::Path) -> Result<Acls, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Acls::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl LiveAcls {
    /// Everything allowed: a master without `--acls`.
    pub fn permissive() -> Self {
        LiveAcls {
            current: Arc::new(RwLock::new(Arc::new(Acls::permissive()))),
            file: None,
        }
    }

    /// The ACLs of `file`, loaded now (an error if it cannot be).
    pub fn from_file(file: PathBuf) -> Result<Self, String> {
        let acls = load(&file)?;
        Ok(LiveAcls {
            current: Arc::new(RwLock::new(Arc::new(acls))),
            file: Some(file),
        })
    }

    /// The ACLs of `file`, or, when it cannot be loaded now (it changed since the
    /// configuration was checked), none granted until it can be: a master fails closed.
    pub fn from_file_or_deny(file: PathBuf) -> Self {
        Self::from_file(file.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the ACL file is refused: everything is denied until it loads");
            LiveAcls {
                current: Arc::new(RwLock::new(Arc::new(Acls::default()))),
                file: Some(file),
            }
        })
    }

    /// Reads the file again on SIGHUP and when its size or time changes, until the process
    /// ends (nothing to do without a file).
    pub fn watch(&self) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let current = self.current.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler: the ACL file is reloaded when it changes only");
                    None
                }
            };
            let stamp = |f: &PathBuf| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok()))
            };
            let mut seen = stamp(&file);
            let mut poll = tokio::time::interval(POLL_INTERVAL);
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = poll.tick() => {
                        let now = stamp(&file);
                        if now == seen {
                            continue;
                        }
                        seen = now;
                    }
                    _ = hangup => {}
                }
                match load(&file) {
                    Ok(acls) => {
                        if let Ok(mut c) = current.write() {
                            *c = Arc::new(acls);
                        }
                        metrics::counter!("drover_acl_reloads_total", "outcome" => "loaded")
                            .increment(1);
                        tracing::info!(file = %file.display(), "ACLs reloaded");
                    }
                    Err(e) => {
                        metrics::counter!("drover_acl_reloads_total", "outcome" => "refused")
                            .increment(1);
                        tracing::error!(error = %e, "the ACL file is refused; the ACLs in force stay");
                    }
                }
            }
        });
    }

    /// Whether `principal` may do `action`: `Ok`, or `PERMISSION_DENIED` naming the action,
    /// the principal and the rule (or the lack of one).
    pub fn authorize(&self, principal: Option<&str>, action: &Action<'_>) -> Result<(), Status> {
        let acls = self
            .current
            .read()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
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
