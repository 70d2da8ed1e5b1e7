//! The master's data directory format: one version for all it holds in RocksDB (the Raft log,
//! the vote and log markers, this replica's identity), stamped in the `node` column family
//! and checked before anything else is read. Snapshot files carry their own format in their
//! header (`raft::snapshot`); Raft messages between replicas carry the protocol version
//! (`raft::PROTOCOL_VERSION`).
//!
//! Versions: 0 is every build before format versions (no stamp); 1 stamped them; 2's log may
//! hold entries version 1 cannot decode (an ACCEPT of tasks with extensions, a variant added
//! after version 1's); 3 is this one, whose log may hold an agent state version 2 cannot
//! decode (DEACTIVATED, added last). Versions 0, 1 and 2 are stored exactly as version 3
//! reads them (the new variants only add), so each is migrated by stamping it,
//! and `tests/formats.rs` opens one made by an earlier build; the stamp is what makes a build
//! of version 1 refuse a directory it might not read, by name, rather than fail on an entry.
//! Any other version is refused with a message naming the directory and both versions, and
//! nothing in the directory is touched.

use std::path::Path;

use rocksdb::DB;

use crate::db::{self, CF_LOGS, CF_NODE, CF_RAFT};

/// The format this build reads and writes.
pub const DATA_FORMAT: u32 = 3;
/// The stamped format before task extensions: read as it is, then stamped [`DATA_FORMAT`].
const FORMAT_BEFORE_EXTENSIONS: u32 = 1;
/// The stamped format before deactivated agents: read as it is, then stamped [`DATA_FORMAT`].
const FORMAT_BEFORE_DEACTIVATED: u32 = 2;
const KEY_FORMAT: &[u8] = b"format";

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An empty directory, stamped with [`DATA_FORMAT`].
    Fresh,
    /// Already at [`DATA_FORMAT`].
    Current,
    /// Written by an older build and brought to [`DATA_FORMAT`].
    Migrated { from: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("data directory {path} is in format {found}, written by a newer build; this build reads format {DATA_FORMAT}: run the newer build, or start this one on an empty --data-dir and add it as a new master")]
    Newer { path: String, found: u32 },
    #[error("data directory {path} is in format {found}, which this build cannot read (it reads format {DATA_FORMAT} and migrates formats 0, 1 and 2)")]
    Unsupported { path: String, found: u32 },
    #[error("data directory {path}: the format stamp is corrupt ({reason})")]
    Corrupt { path: String, reason: String },
    #[error("data directory {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rocksdb::Error,
    },
}

/// Writes `version` as the directory's format, whatever it was: for tests that make a
/// directory of another build, and for tools. Synced.
pub fn stamp(db: &DB, version: u32) -> Result<(), rocksdb::Error> {
    db.put_cf_opt(
        db::cf(db, CF_NODE),
        KEY_FORMAT,
        version.to_le_bytes(),
        &db::synced(),
    )
}

/// Checks the format of the database at `path`, stamping a fresh one and migrating one of an
/// older build; refuses anything else.
pub fn check(db: &DB, path: &Path) -> Result<Opened, FormatError> {
    let path_s = path.display().to_string();
    let dberr = |source| FormatError::Db {
        path: path_s.clone(),
        source,
    };
    let node = db::cf(db, CF_NODE);
    match db.get_cf(node, KEY_FORMAT).map_err(dberr)? {
        Some(raw) => {
            let found = <[u8; 4]>::try_from(raw.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| FormatError::Corrupt {
                    path: path_s.clone(),
                    reason: format!("{} bytes, expected 4", raw.len()),
                })?;
            match found {
                DATA_FORMAT => Ok(Opened::Current),
                FORMAT_BEFORE_EXTENSIONS | FORMAT_BEFORE_DEACTIVATED => {
                    stamp(db, DATA_FORMAT).map_err(dberr)?;
                    tracing::info!(path = %path_s, from = found, to = DATA_FORMAT, "data directory migrated (same contents, stamped)");
                    Ok(Opened::Migrated { from: found })
                }
                f if f > DATA_FORMAT => Err(FormatError::Newer {
                    path: path_s,
                    found: f,
                }),
                f => Err(FormatError::Unsupported {
                    path: path_s,
                    found: f,
                }),
            }
        }
        None => {
            let used = [CF_NODE, CF_RAFT, CF_LOGS].iter().any(|cf| {
                db.iterator_cf(db::cf(db, cf), rocksdb::IteratorMode::Start)
                    .next()
                    .is_some()
            });
            stamp(db, DATA_FORMAT).map_err(dberr)?;
            if used {
                tracing::info!(path = %path_s, from = 0, to = DATA_FORMAT, "data directory of a build before format versions migrated (same contents, stamped)");
                Ok(Opened::Migrated { from: 0 })
            } else {
                Ok(Opened::Fresh)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_is_stamped_current_stays_newer_and_unknown_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        let db = db::open(&path).unwrap();
        assert_eq!(check(&db, &path).unwrap(), Opened::Fresh);
        assert_eq!(check(&db, &path).unwrap(), Opened::Current);
        let node = db::cf(&db, CF_NODE);
        for (stamp, newer) in [(DATA_FORMAT + 1, true), (0u32, false)] {
            db.put_cf(node, KEY_FORMAT, stamp.to_le_bytes()).unwrap();
            let e = check(&db, &path).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("format {stamp}")), "{msg}");
            assert!(msg.contains(&format!("format {DATA_FORMAT}")), "{msg}");
            assert_eq!(matches!(e, FormatError::Newer { .. }), newer);
            // Refused, not rewritten.
            assert_eq!(
                db.get_cf(node, KEY_FORMAT).unwrap().unwrap(),
                stamp.to_le_bytes()
            );
        }
        db.put_cf(node, KEY_FORMAT, b"x").unwrap();
        assert!(matches!(
            check(&db, &path),
            Err(FormatError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_used_directory_without_a_stamp_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        let db = db::open(&path).unwrap();
        db.put_cf(db::cf(&db, CF_NODE), b"node_id", 1u64.to_be_bytes())
            .unwrap();
        assert_eq!(check(&db, &path).unwrap(), Opened::Migrated { from: 0 });
        assert_eq!(check(&db, &path).unwrap(), Opened::Current);
    }

    #[test]
    fn directories_of_formats_1_and_2_are_stamped_current() {
        for from in [FORMAT_BEFORE_EXTENSIONS, FORMAT_BEFORE_DEACTIVATED] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raft");
            let db = db::open(&path).unwrap();
            stamp(&db, from).unwrap();
            assert_eq!(check(&db, &path).unwrap(), Opened::Migrated { from });
            assert_eq!(check(&db, &path).unwrap(), Opened::Current);
            assert_eq!(
                db.get_cf(db::cf(&db, CF_NODE), KEY_FORMAT)
                    .unwrap()
                    .unwrap(),
                DATA_FORMAT.to_le_bytes()
            );
        }
    }
}
