//! The master's RocksDB instance: opening it, its column families and their options.
//!
//! One RocksDB per master holds the Raft log (`logs`), the vote and the log markers (`raft`),
//! and this replica's identity (`node`). The registry itself lives in memory and in snapshot
//! files (see `raft::snapshot`), so a snapshot is a file of its own and never a checkpoint of
//! this instance. Nothing here decides durability: each writer chooses its `WriteOptions`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};

/// Raft log entries, keyed by big-endian log index.
pub const CF_LOGS: &str = "logs";
/// Vote, committed log id, last purged log id.
pub const CF_RAFT: &str = "raft";
/// This replica's identity: node id, incarnation, cluster id.
pub const CF_NODE: &str = "node";

/// Opening the database failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot open RocksDB at {path}: {source}")]
pub struct OpenError {
    pub path: String,
    #[source]
    pub source: rocksdb::Error,
}

/// The Raft log's memtable size (see [`open`]).
const LOG_MEMTABLE_BYTES: usize = 8 * 1024 * 1024;

/// Opens (creating if needed) the master's database.
pub fn open(path: &Path) -> Result<Arc<DB>, OpenError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Bounded background work and files: a master is one of several processes on a host.
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    opts.set_max_total_wal_size(256 * 1024 * 1024);
    // Bounded memory: the Raft log's entries are written at the launch rate and purged soon
    // after, so with RocksDB's default (64 MiB memtables, two of them) a master's memory
    // swung by up to 128 MiB as memtables filled and flushed, most of it entries already
    // purged. Small memtables, flushed often, keep it within a few MiB; the flushes are of
    // entries behind the snapshot, mostly deleted.
    opts.set_db_write_buffer_size(LOG_MEMTABLE_BYTES * 2);
    let mut logs = Options::default();
    logs.set_compression_type(rocksdb::DBCompressionType::Lz4);
    logs.set_write_buffer_size(LOG_MEMTABLE_BYTES);
    logs.set_max_write_buffer_number(2);
    let cfs = vec![
        ColumnFamilyDescriptor::new(CF_LOGS, logs),
        ColumnFamilyDescriptor::new(CF_RAFT, Options::default()),
        ColumnFamilyDescriptor::new(CF_NODE, Options::default()),
    ];
    DB::open_cf_descriptors(&opts, path, cfs)
        .map(Arc::new)
        .map_err(|source| OpenError {
            path: path.display().to_string(),
            source,
        })
}

/// A column family handle. The families are created by [`open`], so their absence is a bug.
pub fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is created by db::open"))
}

/// Write options for writes that must be on disk before the caller proceeds.
pub fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}
