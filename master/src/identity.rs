//! Who this replica is: its node id, its incarnation and the cluster it belongs to.
//!
//! The incarnation is a random id drawn the first time a data directory is used. The cluster's
//! membership records every replica's incarnation, and every Raft request names the incarnation
//! it is meant for, so a replica whose data directory was wiped (and therefore lost its vote and
//! log) refuses to take part under its old id instead of voting twice in a term or forgetting
//! acknowledged entries. It must be removed and added back under a new id.
//!
//! The cluster id is drawn by the replica that bootstraps the cluster and adopted by the others
//! from the first request that names their incarnation. All three are persisted (synced) in the
//! `node` column family before they are used.

use std::fmt;
#[cfg(feature = "durable")]
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};

#[cfg(feature = "durable")]
use rocksdb::DB;
use serde::{Deserialize, Serialize};

#[cfg(feature = "durable")]
use crate::db::{self, CF_NODE};

/// A master replica's id in the Raft group.
pub type MasterId = u64;

/// A random id naming one life of a replica's data directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Incarnation(pub String);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a Drover cluster, drawn once when it is bootstrapped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub String);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the data directory belongs to master {stored}, but this process was started with --id {given}; start it with --id {stored} or use another --data-dir")]
    WrongId { stored: MasterId, given: MasterId },
    #[error("this replica belongs to cluster {ours}; refusing to join cluster {theirs}")]
    OtherCluster { ours: ClusterId, theirs: ClusterId },
    #[cfg(feature = "durable")]
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("corrupt identity record {key}: {reason}")]
    Corrupt { key: &'static str, reason: String },
}

#[cfg(feature = "durable")]
const KEY_NODE_ID: &[u8] = b"node_id";
#[cfg(feature = "durable")]
const KEY_INCARNATION: &[u8] = b"incarnation";
#[cfg(feature = "durable")]
const KEY_CLUSTER_ID: &[u8] = b"cluster_id";

/// Persists (synced) the cluster id a replica adopts, before the adoption is used.
pub type PersistClusterId = Box<dyn Fn(&ClusterId) -> Result<(), IdentityError> + Send + Sync>;

/// This replica's identity, shared by the Raft transport (which checks every request against
/// it) and the bootstrap logic (which sets the cluster id).
pub struct Identity {
    node_id: MasterId,
    incarnation: Incarnation,
    cluster_id: OnceLock<ClusterId>,
    /// Serialises adoption of the cluster id so that it is persisted exactly once.
    adopt: Mutex<()>,
    persist: PersistClusterId,
}

impl Identity {
    /// An identity loaded from wherever `persist` writes (see [`Identity::load_or_create`]).
    pub fn new(
        node_id: MasterId,
        incarnation: Incarnation,
        cluster_id: Option<ClusterId>,
        persist: PersistClusterId,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(id) = cluster_id {
            let _ = cell.set(id);
        }
        Self {
            node_id,
            incarnation,
            cluster_id: cell,
            adopt: Mutex::new(()),
            persist,
        }
    }

    /// Loads the identity from `db`, creating it on a fresh data directory.
    #[cfg(feature = "durable")]
    pub fn load_or_create(db: Arc<DB>, node_id: MasterId) -> Result<Self, IdentityError> {
        let cf = db::cf(&db, CF_NODE);
        let stored_id = db.get_cf(cf, KEY_NODE_ID)?;
        let incarnation = match stored_id {
            Some(raw) => {
                let stored = decode_u64(&raw, "node_id")?;
                if stored != node_id {
                    return Err(IdentityError::WrongId {
                        stored,
                        given: node_id,
                    });
                }
                let inc = db
                    .get_cf(cf, KEY_INCARNATION)?
                    .ok_or(IdentityError::Corrupt {
                        key: "incarnation",
                        reason: "missing".into(),
                    })?;
                Incarnation(String::from_utf8(inc).map_err(|e| IdentityError::Corrupt {
                    key: "incarnation",
                    reason: e.to_string(),
                })?)
            }
            None => {
                let inc = Incarnation(uuid::Uuid::new_v4().simple().to_string());
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(cf, KEY_NODE_ID, node_id.to_be_bytes());
                batch.put_cf(cf, KEY_INCARNATION, inc.0.as_bytes());
                db.write_opt(batch, &db::synced())?;
                inc
            }
        };
        let cluster_id = match db.get_cf(cf, KEY_CLUSTER_ID)? {
            Some(raw) => Some(ClusterId(String::from_utf8(raw).map_err(|e| {
                IdentityError::Corrupt {
                    key: "cluster_id",
                    reason: e.to_string(),
                }
            })?)),
            None => None,
        };
        let persist: PersistClusterId = Box::new(move |id: &ClusterId| {
            db.put_cf_opt(
                db::cf(&db, CF_NODE),
                KEY_CLUSTER_ID,
                id.0.as_bytes(),
                &db::synced(),
            )?;
            Ok(())
        });
        Ok(Self::new(node_id, incarnation, cluster_id, persist))
    }

    pub fn node_id(&self) -> MasterId {
        self.node_id
    }

    pub fn incarnation(&self) -> &Incarnation {
        &self.incarnation
    }

    /// The cluster this replica belongs to, once it has one.
    pub fn cluster_id(&self) -> Option<&ClusterId> {
        self.cluster_id.get()
    }

    /// Records (synced) that this replica belongs to `id`. Idempotent for the same id; refuses
    /// another.
    pub fn adopt_cluster(&self, id: &ClusterId) -> Result<(), IdentityError> {
        let _guard = self.adopt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ours) = self.cluster_id.get() {
            if ours == id {
                return Ok(());
            }
            return Err(IdentityError::OtherCluster {
                ours: ours.clone(),
                theirs: id.clone(),
            });
        }
        (self.persist)(id)?;
        let _ = self.cluster_id.set(id.clone());
        Ok(())
    }
}

#[cfg(feature = "durable")]
fn decode_u64(raw: &[u8], key: &'static str) -> Result<u64, IdentityError> {
    let arr: [u8; 8] = raw.try_into().map_err(|_| IdentityError::Corrupt {
        key,
        reason: format!("{} bytes, expected 8", raw.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(all(test, feature = "durable"))]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_reopen_and_rejects_other_id() {
        let dir = tempfile::tempdir().unwrap();
        let inc = {
            let db = db::open(dir.path()).unwrap();
            let id = Identity::load_or_create(db, 3).unwrap();
            id.adopt_cluster(&ClusterId("c1".into())).unwrap();
            assert!(id.adopt_cluster(&ClusterId("c2".into())).is_err());
            id.incarnation().clone()
        };
        let db = db::open(dir.path()).unwrap();
        let id = Identity::load_or_create(db.clone(), 3).unwrap();
        assert_eq!(id.incarnation(), &inc);
        assert_eq!(id.cluster_id(), Some(&ClusterId("c1".into())));
        drop(id);
        assert!(matches!(
            Identity::load_or_create(db, 4),
            Err(IdentityError::WrongId {
                stored: 3,
                given: 4
            })
        ));
    }
}
