//! Applies committed entries to the registry, and builds and installs snapshots: openraft's
//! `RaftStateMachine`.
//!
//! Owns the live [`Registry`]; only openraft's state-machine worker touches it. After each
//! batch of entries it publishes an immutable view ([`AppliedState`], an O(1) clone of the
//! registry's persistent maps) on a watch channel: linearizable readers take that view once
//! read-index has confirmed the applied index is high enough. Snapshots are built from such a
//! clone on a blocking thread, so apply never waits for a snapshot to be written.
//!
//! The registry is in memory and persisted through snapshot files plus the log: on start the
//! newest snapshot is loaded and openraft re-applies the committed entries after it.

use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use tokio::sync::watch;

use super::snapshot::{SnapshotDir, SnapshotError, SnapshotFile};
use super::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::metrics as m;
use crate::registry::{Outcome, Registry};

/// What linearizable readers see: the registry as of `last_applied`.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    pub registry: Registry,
    pub last_applied: Option<LogId>,
}

fn snap_err(e: SnapshotError) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        ErrorVerb::Write,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

/// The state machine handed to openraft.
pub struct StateMachine {
    registry: Registry,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: Arc<SnapshotDir>,
    published: watch::Sender<AppliedState>,
}

impl StateMachine {
    /// Opens the state machine from the newest snapshot in `snapshots`, if any.
    pub fn open(snapshots: Arc<SnapshotDir>) -> Result<Self, SnapshotError> {
        let (registry, last_applied, last_membership) = match snapshots.load_current()? {
            Some((meta, registry, size)) => {
                tracing::info!(snapshot = %meta.snapshot_id, "loaded snapshot");
                metrics::gauge!(m::RAFT_SNAPSHOT_BYTES).set(size as f64);
                (registry, meta.last_log_id, meta.last_membership)
            }
            None => (Registry::default(), None, StoredMembership::default()),
        };
        let (published, _) = watch::channel(AppliedState {
            registry: registry.clone(),
            last_applied,
        });
        Ok(Self {
            registry,
            last_applied,
            last_membership,
            snapshots,
            published,
        })
    }

    /// A receiver of the applied state, for readers.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.published.subscribe()
    }

    fn publish(&self) {
        self.published.send_replace(AppliedState {
            registry: self.registry.clone(),
            last_applied: self.last_applied,
        });
        metrics::gauge!(m::STORE_KEYS).set(self.registry.store().len() as f64);
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let outcome = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => self.registry.apply(log_id.index, &proposal),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(log_id), membership);
                    Vec::new()
                }
            };
            self.last_applied = Some(log_id);
            out.push(outcome);
        }
        metrics::counter!(m::RAFT_APPLIED_ENTRIES_TOTAL).increment(out.len() as u64);
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            registry: self.registry.clone(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(SnapshotFile {
            path: self.snapshots.incoming_path(),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let dir = self.snapshots.clone();
        let meta_c = meta.clone();
        let registry =
            super::background::run("snapshot-install", move || dir.install(&meta_c, &snapshot))
                .await
                .map_err(|e| {
                    snap_err(SnapshotError::Corrupt {
                        path: Default::default(),
                        reason: format!("install task failed: {e}"),
                    })
                })?
                .map_err(snap_err)?;
        self.registry = registry;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "installed snapshot");
        metrics::counter!(m::RAFT_SNAPSHOT_INSTALLS_TOTAL).increment(1);
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let dir = self.snapshots.clone();
        let current = tokio::task::spawn_blocking(move || dir.current())
            .await
            .map_err(|e| {
                snap_err(SnapshotError::Corrupt {
                    path: Default::default(),
                    reason: format!("snapshot lookup failed: {e}"),
                })
            })?
            .map_err(snap_err)?;
        Ok(current.map(|(meta, path)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path }),
        }))
    }
}

/// Builds one snapshot from a frozen clone of the registry, off the apply path.
pub struct SnapshotBuilder {
    registry: Registry,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = Instant::now();
        let snapshot_id = match self.last_applied {
            Some(l) => format!(
                "{}-{}-{}",
                l.leader_id.term,
                l.index,
                uuid::Uuid::new_v4().simple()
            ),
            None => format!("0-0-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        let dir = self.snapshots.clone();
        let registry = self.registry.clone();
        let meta_c = meta.clone();
        let current =
            super::background::run("snapshot-build", move || dir.write(&meta_c, &registry))
                .await
                .map_err(|e| {
                    snap_err(SnapshotError::Corrupt {
                        path: Default::default(),
                        reason: format!("snapshot task failed: {e}"),
                    })
                })?
                .map_err(snap_err)?;
        metrics::counter!(m::RAFT_SNAPSHOTS_TOTAL).increment(1);
        metrics::histogram!(m::RAFT_SNAPSHOT_SECONDS).record(started.elapsed());
        metrics::gauge!(m::RAFT_SNAPSHOT_BYTES).set(current.bytes as f64);
        if current.meta.snapshot_id == meta.snapshot_id {
            tracing::info!(snapshot = %meta.snapshot_id, bytes = current.bytes, elapsed_ms = started.elapsed().as_millis() as u64, "built snapshot");
        } else {
            tracing::info!(built = %meta.snapshot_id, current = %current.meta.snapshot_id, "a newer snapshot was installed while this one was built; keeping the newer");
        }
        // What is returned must describe the file it points to: a follower checks the two
        // against each other.
        Ok(Snapshot {
            meta: current.meta,
            snapshot: Box::new(SnapshotFile { path: current.path }),
        })
    }
}
