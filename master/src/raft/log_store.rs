//! The Raft log and vote on RocksDB: openraft's `RaftLogStorage`.
//!
//! Owns the `logs` and `raft` column families. The rule it keeps: openraft never hears that
//! something is durable before it has been fsynced.
//!
//! - Votes, truncations and purges are written with a synced write before the call returns.
//! - Appends are written at once without sync, so that they are readable when `append` returns
//!   (openraft requires it), and their flush callbacks go to the syncer thread. The syncer
//!   fsyncs the WAL once for every callback queued behind the previous fsync (group commit) and
//!   only then fires those callbacks, in order. One fsync thus covers many appends under load,
//!   and an idle cluster still pays exactly one fsync per append.
//! - The committed log id is written without sync: it only saves re-applying entries after a
//!   restart (reads are served through read-index, which never depends on it), and the next
//!   fsync makes it durable anyway.
//!
//! All writes go through one RocksDB WAL in the order they were issued, so an fsync covers every
//! write issued before it: that is what makes the group commit correct.
//!
//! The newest entries are also kept in memory ([`LogCache`]: a contiguous suffix of the log,
//! bounded by count and bytes): replication to each follower and apply read what was just
//! appended, and serving that from memory spares a RocksDB read and a decode per entry per
//! reader. Reads of anything older go to RocksDB.

// The error type is openraft's `StorageError`, which the traits require; it is large, but it is
// only built on the way to a fatal stop.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::codec;
use super::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::db::{self, CF_LOGS, CF_RAFT};
use crate::metrics as m;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Most flush callbacks waiting for the syncer; `append` waits when the queue is full.
const SYNC_QUEUE_DEPTH: usize = 4096;

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

/// Most entries kept in memory.
const CACHE_MAX_ENTRIES: usize = 16 * 1024;
/// Most bytes (of encoded entries) kept in memory.
const CACHE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The newest entries of the log, in memory: always a contiguous run that ends at the last
/// entry appended since this process started (appends add at the end, a truncation cuts the
/// end, a purge or the bounds cut the front).
#[derive(Default)]
struct LogCache {
    entries: std::collections::VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl LogCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entry: Entry, size: usize) {
        // Only a contiguous run: an entry that does not follow the last one restarts it.
        if let Some((last, _)) = self.entries.back() {
            if last.log_id.index + 1 != entry.log_id.index {
                self.entries.clear();
                self.bytes = 0;
            }
        }
        self.bytes += size;
        self.entries.push_back((entry, size));
        while self.entries.len() > CACHE_MAX_ENTRIES || self.bytes > CACHE_MAX_BYTES {
            match self.entries.pop_front() {
                Some((_, s)) => self.bytes -= s,
                None => break,
            }
        }
    }

    /// Drops the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= index)
        {
            if let Some((_, s)) = self.entries.pop_back() {
                self.bytes -= s;
            }
        }
    }

    /// Drops the entries up to `index`, included.
    fn purge(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= index)
        {
            if let Some((_, s)) = self.entries.pop_front() {
                self.bytes -= s;
            }
        }
    }

    /// The entries of `range`, if the cache holds its start (and so everything after it).
    fn get(&self, range: &impl RangeBounds<u64>) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        if start < first {
            return None;
        }
        // What lies beyond the cache's end lies beyond the log's: the cache ends at the last
        // entry.
        let skip = (start - first) as usize;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .map(|(e, _)| e)
                .take_while(|e| range.contains(&e.log_id.index))
                .cloned()
                .collect(),
        )
    }
}

type SharedCache = Arc<std::sync::Mutex<LogCache>>;

fn lock(cache: &SharedCache) -> std::sync::MutexGuard<'_, LogCache> {
    // A panic while holding the lock leaves at worst a shorter cache; keep going.
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

/// The log store handed to openraft. Owned by openraft's core task.
pub struct LogStore {
    db: Arc<DB>,
    syncer: Option<Syncer>,
    cache: SharedCache,
}

/// A log reader for openraft's replication tasks; reads are safe in parallel with writes.
#[derive(Clone)]
pub struct LogReader {
    db: Arc<DB>,
    cache: SharedCache,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        let syncer = Syncer::start(db.clone());
        Self {
            db,
            syncer: Some(syncer),
            cache: SharedCache::default(),
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let cf = db::cf(&self.db, CF_RAFT);
        let raw = self
            .db
            .get_cf(cf, key)
            .map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?;
        raw.map(|b| codec::decode("raft meta", &b))
            .transpose()
            .map_err(|e| io_err(subject, ErrorVerb::Read, e))
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let cf = db::cf(&self.db, CF_LOGS);
        let mut it = self.db.iterator_cf(cf, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(io_err(ErrorSubject::Logs, ErrorVerb::Read, e)),
            Some(Ok((_, v))) => {
                let entry: Entry = codec::decode("log entry", &v)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(*entry.get_log_id()))
            }
        }
    }

    fn write_synced(
        &self,
        batch: WriteBatch,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        self.db
            .write_opt(batch, &db::synced())
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        if let Some(s) = self.syncer.take() {
            s.stop();
        }
    }
}

fn read_range(db: &DB, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StorageError> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let cf = db::cf(db, CF_LOGS);
    let key = log_key(start);
    let mut out = Vec::new();
    for item in db.iterator_cf(cf, IteratorMode::From(&key, Direction::Forward)) {
        let (k, v) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let index = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
            io_err(
                ErrorSubject::Logs,
                ErrorVerb::Read,
                "log key is not 8 bytes",
            )
        })?);
        if !range.contains(&index) {
            break;
        }
        let entry: Entry = codec::decode("log entry", &v)
            .map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
        out.push(entry);
    }
    Ok(out)
}

/// From memory when the cache holds the whole range, else from RocksDB.
fn read_cached(
    db: &DB,
    cache: &SharedCache,
    range: impl RangeBounds<u64>,
) -> Result<Vec<Entry>, StorageError> {
    if let Some(entries) = lock(cache).get(&range) {
        metrics::counter!(m::RAFT_LOG_READS_TOTAL, "from" => "memory").increment(1);
        return Ok(entries);
    }
    metrics::counter!(m::RAFT_LOG_READS_TOTAL, "from" => "disk").increment(1);
    read_range(db, range)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_cached(&self.db, &self.cache, range)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_cached(&self.db, &self.cache, range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_LAST_PURGED, ErrorSubject::Logs)?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            db: self.db.clone(),
            cache: self.cache.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::encode("vote", vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(db::cf(&self.db, CF_RAFT), KEY_VOTE, bytes);
        self.write_synced(batch, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = codec::encode("committed", &committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        if let Some(c) = committed {
            metrics::gauge!(m::RAFT_COMMIT_INDEX).set(c.index as f64);
        }
        self.db
            .put_cf(db::cf(&self.db, CF_RAFT), KEY_COMMITTED, bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let queued_at = Instant::now();
        let cf = db::cf(&self.db, CF_LOGS);
        let mut batch = WriteBatch::default();
        let mut count = 0u64;
        let mut cached = Vec::new();
        for entry in entries {
            let index = entry.get_log_id().index;
            let bytes = codec::encode("log entry", &entry)
                .map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Write, e))?;
            cached.push((bytes.len(), entry));
            batch.put_cf(cf, log_key(index), bytes);
            count += 1;
        }
        // Unsynced: readable now, durable once the syncer's next fsync returns.
        self.db
            .write(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        {
            let mut cache = lock(&self.cache);
            for (size, entry) in cached {
                cache.push(entry, size);
            }
        }
        metrics::counter!(m::RAFT_APPENDED_ENTRIES_TOTAL).increment(count);
        match &self.syncer {
            Some(s) => {
                s.enqueue(PendingFlush {
                    callback,
                    queued_at,
                })
                .await
            }
            None => callback.log_io_completed(Err(io::Error::other("log store is shutting down"))),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating log");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            db::cf(&self.db, CF_LOGS),
            log_key(log_id.index),
            log_key(u64::MAX),
        );
        // Out of memory first: a reader must not find entries that are being deleted.
        lock(&self.cache).truncate(log_id.index);
        self.write_synced(batch, ErrorSubject::Logs)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging log");
        let bytes = codec::encode("last purged", &log_id)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(db::cf(&self.db, CF_RAFT), KEY_LAST_PURGED, bytes);
        batch.delete_range_cf(
            db::cf(&self.db, CF_LOGS),
            log_key(0),
            log_key(log_id.index.saturating_add(1)),
        );
        lock(&self.cache).purge(log_id.index);
        self.write_synced(batch, ErrorSubject::Logs)
    }
}

struct PendingFlush {
    callback: LogFlushed<TypeConfig>,
    queued_at: Instant,
}

/// The group-commit thread: one fsync for everything queued, then the callbacks in order.
struct Syncer {
    tx: tokio::sync::mpsc::Sender<PendingFlush>,
    thread: thread::JoinHandle<()>,
}

impl Syncer {
    fn start(db: Arc<DB>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel::<PendingFlush>(SYNC_QUEUE_DEPTH);
        let thread = thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || Self::run(db, rx))
            .expect("spawning a thread only fails when the process is out of resources");
        Self { tx, thread }
    }

    /// Queues `p` for the next fsync; waits (without blocking the runtime) while the queue
    /// is full.
    async fn enqueue(&self, p: PendingFlush) {
        if let Err(tokio::sync::mpsc::error::SendError(p)) = self.tx.send(p).await {
            p.callback
                .log_io_completed(Err(io::Error::other("log sync thread stopped")));
        }
    }

    fn run(db: Arc<DB>, mut rx: tokio::sync::mpsc::Receiver<PendingFlush>) {
        let mut batch: Vec<PendingFlush> = Vec::with_capacity(256);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let started = Instant::now();
            let result = db.flush_wal(true);
            let done = Instant::now();
            metrics::histogram!(m::RAFT_FSYNC_SECONDS).record(done - started);
            for p in batch.drain(..) {
                metrics::histogram!(m::RAFT_APPEND_SECONDS).record(done - p.queued_at);
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::other(format!(
                        "fsync of the Raft log failed: {e}"
                    ))),
                };
                p.callback.log_io_completed(r);
            }
        }
    }

    /// Stops after every queued callback has been flushed and fired.
    fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::MasterId;
    use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::*;

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    fn log_id(term: u64, index: u64) -> LogId<MasterId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// What was appended, voted, purged and truncated is all there after closing and
    /// reopening the database (the syncer drains on drop).
    #[tokio::test]
    async fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::db::open(dir.path()).unwrap();
            let mut store = LogStore::new(db);
            store.save_vote(&Vote::new(3, 2)).await.unwrap();
            for i in 1..=20 {
                store.blocking_append([blank(3, i)]).await.unwrap();
            }
            store.purge(log_id(3, 5)).await.unwrap();
            store.truncate(log_id(3, 18)).await.unwrap();
        }
        let db = crate::db::open(dir.path()).unwrap();
        let mut store = LogStore::new(db);
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(5));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(17));
        let entries = store.try_get_log_entries(0..100).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (6..=17).collect::<Vec<_>>());
    }

    /// Reads from memory give what RocksDB holds, through appends, truncations and purges,
    /// and reads the cache cannot serve fall through to RocksDB.
    #[tokio::test]
    async fn the_cache_agrees_with_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut store = LogStore::new(db.clone());
        let on_disk = |r: std::ops::Range<u64>| {
            read_range(&db, r)
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect::<Vec<_>>()
        };
        for i in 1..=40 {
            store.blocking_append([blank(1, i)]).await.unwrap();
        }
        store.truncate(log_id(1, 31)).await.unwrap();
        // Between the truncation and the next append, nothing past 30 is served, from memory
        // or disk.
        let kept: Vec<(u64, u64)> = store
            .try_get_log_entries(25..)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect();
        assert_eq!(kept, (25..=30).map(|i| (1, i)).collect::<Vec<_>>());
        assert_eq!(on_disk(25..100), (25..=30).collect::<Vec<_>>());
        for i in 31..=50 {
            store.blocking_append([blank(2, i)]).await.unwrap();
        }
        store.purge(log_id(2, 10)).await.unwrap();
        for (a, b) in [(0, 100), (11, 20), (30, 33), (45, 51), (49, 1000), (5, 12)] {
            let got: Vec<u64> = store
                .try_get_log_entries(a..b)
                .await
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect();
            assert_eq!(got, on_disk(a..b), "range {a}..{b}");
        }
        let all = store.try_get_log_entries(11..).await.unwrap();
        assert_eq!(all.len(), 40);
        assert_eq!(
            all[25].log_id.leader_id.term, 2,
            "index 36 is the new term's"
        );
        // A new process starts with an empty cache and reads everything from RocksDB.
        drop(store);
        let mut reopened = LogStore::new(db.clone());
        assert_eq!(reopened.try_get_log_entries(11..).await.unwrap().len(), 40);
    }
}
