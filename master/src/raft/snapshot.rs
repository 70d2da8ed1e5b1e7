//! Snapshot files: the on-disk format, and the directory that keeps the current snapshot.
//!
//! Owns `<data-dir>/snapshots/`. A snapshot is one file:
//!
//! ```text
//! "DROVSNAP" | format u32 LE | meta length u32 LE | meta (postcard SnapshotMeta)
//!            | records: (length u32 LE | postcard registry::records::Record)*
//!            | 0u32 (end of records) | crc32 u32 LE of all before
//! ```
//!
//! The registry is written and read one record (one map entry) at a time: neither building nor
//! loading nor verifying a snapshot holds the state a second time, encoded, in memory; a load
//! holds the registry it builds plus one record. Files are written to a temporary name,
//! fsynced, renamed into place and the directory is fsynced, so a crash leaves either the old
//! snapshot or the new one, never half of one. After a new snapshot is in place every older
//! one is deleted; at most one snapshot is current. A file whose checksum does not match is
//! refused, never loaded.
//!
//! Format 3 (the builds before records) held the registry as one postcard body (`body length
//! u64 LE | body` in place of the records). A replica that opens on a format-3 snapshot loads
//! it whole, once, and writes it again in this format ([`SnapshotDir::load_current`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::codec;
use super::SnapshotMeta;
use crate::registry::records::{self, Record};
use crate::registry::Registry;

const MAGIC: &[u8; 8] = b"DROVSNAP";
/// 2: the registry holds the cluster state (agents, frameworks, offers, tasks, roles).
/// 3: with recovery (unreachable agents, framework failover). 4: the registry as records.
/// 5: records may include tasks' extensions (a record kind format 4 does not have; a format-4
/// file reads as it is). 6: records may name deactivated agents (a record kind, and an agent
/// state, format 5 does not have; a format-4 or -5 file reads as it is).
const FORMAT_VERSION: u32 = 6;
/// The records format before deactivated agents: read as format 6.
const FORMAT_RECORDS_V5: u32 = 5;
/// The records format before task extensions: read as format 6.
const FORMAT_RECORDS_V4: u32 = 4;
/// The format migrated from: the registry as one postcard body.
const FORMAT_WHOLE_BODY: u32 = 3;
const SUFFIX: &str = ".snap";
/// Largest snapshot metadata accepted, bytes (it holds the membership, which is small).
const MAX_META_BYTES: u32 = 1024 * 1024;
/// Largest record written or read, bytes. The largest record is a store entry (a value of at
/// most 1 MiB and a key of at most 1 KiB) or a task with its updates; the writer refuses to
/// write what the reader would refuse.
const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;

/// openraft's `SnapshotData`: a handle to a snapshot file. Reading it is the network's job
/// (streamed to a follower); writing it is this module's.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("snapshot {path} is in format {found}, written by another build; this build reads format {FORMAT_VERSION}")]
    Format { path: PathBuf, found: u32 },
    #[error("snapshot encoding: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("snapshot {path}: a record of {bytes} bytes is over the {MAX_RECORD_BYTES} bytes a snapshot may hold in one record")]
    Oversized { path: PathBuf, bytes: usize },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The current snapshot after a write or an install.
#[derive(Debug)]
pub struct CurrentSnapshot {
    pub path: PathBuf,
    pub bytes: u64,
    pub meta: SnapshotMeta,
}

impl CurrentSnapshot {
    fn read(path: PathBuf) -> Result<Self, SnapshotError> {
        let bytes = fs::metadata(&path).map_err(io_at(&path))?.len();
        let meta = read_meta(&path)?;
        Ok(Self { path, bytes, meta })
    }
}

/// The snapshot directory. Shared by the state machine (install, current) and the snapshot
/// builder task (write); `finalize` serialises the rename-and-clean-up step between them.
#[derive(Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
    incoming: PathBuf,
    finalize: Mutex<()>,
}

impl SnapshotDir {
    /// Opens `dir`, creating it, and removes leftovers of interrupted writes and transfers.
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        let incoming = dir.join("incoming");
        fs::create_dir_all(&incoming).map_err(io_at(&incoming))?;
        for leftover in fs::read_dir(&incoming).map_err(io_at(&incoming))? {
            let path = leftover.map_err(io_at(&incoming))?.path();
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        for f in fs::read_dir(dir).map_err(io_at(dir))? {
            let path = f.map_err(io_at(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(".tmp-") {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            incoming,
            finalize: Mutex::new(()),
        })
    }

    /// A fresh path under `incoming/` for a snapshot being received.
    pub fn incoming_path(&self) -> PathBuf {
        self.incoming
            .join(format!("{}{SUFFIX}", uuid::Uuid::new_v4().simple()))
    }

    fn final_path(&self, meta: &SnapshotMeta) -> PathBuf {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.dir.join(format!(
            "snapshot-{index:020}-{}{SUFFIX}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Writes `registry` as the snapshot described by `meta` and makes it current, unless a
    /// newer snapshot became current meanwhile (one installed from the leader while this one was
    /// built). Returns what is current afterwards: its file, size and metadata, which are `meta`
    /// unless the newer one won. Blocking: call from a blocking thread.
    pub fn write(
        &self,
        meta: &SnapshotMeta,
        registry: &Registry,
    ) -> Result<CurrentSnapshot, SnapshotError> {
        let tmp = self
            .dir
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let written = File::create(&tmp)
            .map_err(io_at(&tmp))
            .and_then(|f| write_to(f, &tmp, meta, registry))
            .and_then(|f| f.sync_all().map_err(io_at(&tmp)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.finalize(&tmp, meta)
    }

    /// Verifies the received snapshot `file`, loads it, and makes it current. Returns the
    /// registry it holds. Blocking.
    pub fn install(
        &self,
        meta: &SnapshotMeta,
        file: &SnapshotFile,
    ) -> Result<Registry, SnapshotError> {
        let (stored_meta, registry) = load(&file.path)?;
        if stored_meta.last_log_id != meta.last_log_id
            || stored_meta.last_membership != meta.last_membership
        {
            return Err(SnapshotError::Corrupt {
                path: file.path.clone(),
                reason: format!(
                    "file holds snapshot {}, the leader announced {}",
                    stored_meta.snapshot_id, meta.snapshot_id
                ),
            });
        }
        let staged = if file.path.parent() == Some(self.incoming.as_path()) {
            File::open(&file.path)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&file.path))?;
            file.path.clone()
        } else {
            // Not one of ours (a local copy): copy rather than move someone else's file.
            let tmp = self
                .dir
                .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
            fs::copy(&file.path, &tmp).map_err(io_at(&tmp))?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&tmp))?;
            tmp
        };
        // openraft installs only snapshots past what this replica applied, and every local
        // snapshot was built from applied state, so the installed one is never older than the
        // current file; were it so, the newer file stays and the log replays onto this state.
        self.finalize(&staged, meta)?;
        Ok(registry)
    }

    /// Renames `staged` into place, fsyncs the directory and deletes older snapshots. If a
    /// newer snapshot is already current, `staged` is discarded instead.
    fn finalize(
        &self,
        staged: &Path,
        meta: &SnapshotMeta,
    ) -> Result<CurrentSnapshot, SnapshotError> {
        let _guard = self.finalize.lock().unwrap_or_else(|p| p.into_inner());
        let index = meta.last_log_id.map_or(0, |l| l.index);
        if let Some((cur_index, cur_path)) = self.newest()? {
            if cur_index > index {
                fs::remove_file(staged).map_err(io_at(staged))?;
                return CurrentSnapshot::read(cur_path);
            }
        }
        let bytes = fs::metadata(staged).map_err(io_at(staged))?.len();
        let path = self.final_path(meta);
        fs::rename(staged, &path).map_err(io_at(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(&self.dir))?;
        for (_, old) in self.all()? {
            if old != path {
                fs::remove_file(&old).map_err(io_at(&old))?;
            }
        }
        Ok(CurrentSnapshot {
            path,
            bytes,
            meta: meta.clone(),
        })
    }

    fn all(&self) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
        let mut out = Vec::new();
        for f in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let path = f.map_err(io_at(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(rest) = name.strip_prefix("snapshot-") else {
                continue;
            };
            if !rest.ends_with(SUFFIX) {
                continue;
            }
            if let Some(Ok(index)) = rest.split('-').next().map(str::parse::<u64>) {
                out.push((index, path));
            }
        }
        Ok(out)
    }

    fn newest(&self) -> Result<Option<(u64, PathBuf)>, SnapshotError> {
        Ok(self.all()?.into_iter().max_by_key(|(i, _)| *i))
    }

    /// The current snapshot's metadata and file, if there is one.
    pub fn current(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, SnapshotError> {
        let _guard = self.finalize.lock().unwrap_or_else(|p| p.into_inner());
        match self.newest()? {
            None => Ok(None),
            Some((_, path)) => Ok(Some((read_meta(&path)?, path))),
        }
    }

    /// Loads the current snapshot, verifying its checksum.
    pub fn load_current(&self) -> Result<Option<(SnapshotMeta, Registry, u64)>, SnapshotError> {
        let newest = {
            let _guard = self.finalize.lock().unwrap_or_else(|p| p.into_inner());
            self.newest()?
        };
        match newest {
            None => Ok(None),
            Some((_, path)) if format_of(&path)? == FORMAT_WHOLE_BODY => {
                // Written by an older build: loaded whole, once, and written again in this
                // build's format, which replaces it.
                let (meta, registry) = load_whole_body(&path)?;
                let current = self.write(&meta, &registry)?;
                tracing::info!(
                    from = %path.display(),
                    to = %current.path.display(),
                    "snapshot migrated from format {FORMAT_WHOLE_BODY} to {FORMAT_VERSION}"
                );
                Ok(Some((meta, registry, current.bytes)))
            }
            Some((_, path)) => {
                let size = fs::metadata(&path).map_err(io_at(&path))?.len();
                let (meta, registry) = load(&path)?;
                Ok(Some((meta, registry, size)))
            }
        }
    }
}

/// Writes the snapshot file's bytes to `file`, one record at a time: the registry is never
/// held a second time, encoded, in memory. Returns the file, flushed.
fn write_to(
    file: File,
    path: &Path,
    meta: &SnapshotMeta,
    registry: &Registry,
) -> Result<File, SnapshotError> {
    let meta_bytes = codec::encode("snapshot meta", meta)?;
    // Encoded bytes go through a buffer, then are hashed in whole chunks.
    let mut w = io::BufWriter::with_capacity(
        WRITE_BUFFER_BYTES,
        HashingWriter {
            inner: file,
            hasher: crc32fast::Hasher::new(),
        },
    );
    let head = (|| {
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
        w.write_all(&meta_bytes)
    })();
    head.map_err(io_at(path))?;
    let mut record = Vec::new();
    for r in registry.records() {
        record.clear();
        record = postcard::to_extend(&r, record).map_err(|source| codec::CodecError {
            what: "snapshot record",
            source,
        })?;
        if record.len() > MAX_RECORD_BYTES as usize {
            return Err(SnapshotError::Oversized {
                path: path.to_path_buf(),
                bytes: record.len(),
            });
        }
        w.write_all(&(record.len() as u32).to_le_bytes())
            .and_then(|()| w.write_all(&record))
            .map_err(io_at(path))?;
    }
    w.write_all(&0u32.to_le_bytes()).map_err(io_at(path))?;
    let mut hashing = w.into_inner().map_err(|e| io_at(path)(e.into_error()))?;
    let crc = hashing.hasher.finalize();
    hashing
        .inner
        .write_all(&crc.to_le_bytes())
        .map_err(io_at(path))?;
    Ok(hashing.inner)
}

/// How much of a snapshot is buffered on its way to the file.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// A writer that feeds what passes through it to a CRC32.
struct HashingWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the header; returns the format and the encoded metadata. Formats other than this
/// build's and the one it migrates from are refused.
fn read_header(path: &Path, r: &mut impl Read) -> Result<(u32, Vec<u8>), SnapshotError> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head)
        .map_err(|e| corrupt(path, format!("short header: {e}")))?;
    if &head[..8] != MAGIC {
        return Err(corrupt(path, "not a Drover snapshot (bad magic)"));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if !matches!(
        version,
        FORMAT_VERSION | FORMAT_RECORDS_V5 | FORMAT_RECORDS_V4 | FORMAT_WHOLE_BODY
    ) {
        return Err(SnapshotError::Format {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    if meta_len > MAX_META_BYTES {
        return Err(corrupt(path, format!("metadata of {meta_len} bytes")));
    }
    let mut meta = vec![0u8; meta_len as usize];
    r.read_exact(&mut meta)
        .map_err(|e| corrupt(path, format!("short metadata: {e}")))?;
    Ok((version, meta))
}

fn decode_meta(path: &Path, bytes: &[u8]) -> Result<SnapshotMeta, SnapshotError> {
    codec::decode("snapshot meta", bytes).map_err(|e| corrupt(path, e.to_string()))
}

/// Reads only the metadata of a snapshot file.
pub fn read_meta(path: &Path) -> Result<SnapshotMeta, SnapshotError> {
    let mut f = File::open(path).map_err(io_at(path))?;
    let (_, meta) = read_header(path, &mut f)?;
    decode_meta(path, &meta)
}

/// A snapshot file of this build's format read front to back, one part at a time, hashing
/// everything before the checksum: the header, then the records, then [`Self::finish`]
/// checks that nothing follows them and that the checksum matches.
struct FileReader<'p> {
    path: &'p Path,
    hashed: HashingReader<io::Take<io::BufReader<File>>>,
    record: Vec<u8>,
}

impl<'p> FileReader<'p> {
    /// Opens `path` and reads its header; returns the reader and the metadata.
    fn open(path: &'p Path) -> Result<(Self, SnapshotMeta), SnapshotError> {
        let f = File::open(path).map_err(io_at(path))?;
        let size = f.metadata().map_err(io_at(path))?.len();
        if size < 16 + 4 + 4 {
            return Err(corrupt(path, format!("only {size} bytes")));
        }
        let mut hashed = HashingReader {
            inner: io::BufReader::new(f).take(size - 4),
            hasher: crc32fast::Hasher::new(),
        };
        let (version, meta) = read_header(path, &mut hashed)?;
        // Formats 4's and 5's records are format 6's without task extensions (4) and
        // deactivated agents (4, 5).
        if !matches!(
            version,
            FORMAT_VERSION | FORMAT_RECORDS_V5 | FORMAT_RECORDS_V4
        ) {
            return Err(SnapshotError::Format {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let meta = decode_meta(path, &meta)?;
        let reader = Self {
            path,
            hashed,
            record: Vec::new(),
        };
        Ok((reader, meta))
    }

    /// The next record's bytes, or None after the last.
    fn next_record(&mut self) -> Result<Option<&[u8]>, SnapshotError> {
        let mut len = [0u8; 4];
        self.hashed
            .read_exact(&mut len)
            .map_err(|e| corrupt(self.path, format!("cut short in the records: {e}")))?;
        let len = u32::from_le_bytes(len);
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_RECORD_BYTES {
            return Err(corrupt(self.path, format!("a record of {len} bytes")));
        }
        self.record.resize(len as usize, 0);
        self.hashed
            .read_exact(&mut self.record)
            .map_err(|e| corrupt(self.path, format!("cut short in a record: {e}")))?;
        Ok(Some(&self.record))
    }

    /// Checks that the records end where the checksum begins and that it matches.
    fn finish(self) -> Result<(), SnapshotError> {
        let Self {
            path, mut hashed, ..
        } = self;
        let mut extra = [0u8; 1];
        if hashed.read(&mut extra).map_err(io_at(path))? != 0 {
            return Err(corrupt(path, "bytes after the end of the records"));
        }
        let computed = hashed.hasher.finalize();
        let mut crc = [0u8; 4];
        hashed
            .inner
            .into_inner()
            .read_exact(&mut crc)
            .map_err(io_at(path))?;
        if u32::from_le_bytes(crc) != computed {
            return Err(corrupt(path, "checksum mismatch"));
        }
        Ok(())
    }
}

/// Checks that `path` is a complete snapshot file of this build's format with an intact
/// checksum whose metadata is `expected`, reading it in pieces (nothing but the metadata is
/// decoded). A receiver runs this before handing a transferred file to openraft, whose install
/// treats any failure as fatal: a transfer cut short or damaged on the way must be refused and
/// retried, not installed. Blocking.
pub fn verify(path: &Path, expected: &SnapshotMeta) -> Result<(), SnapshotError> {
    let (mut reader, meta) = FileReader::open(path)?;
    if meta.last_log_id != expected.last_log_id || meta.last_membership != expected.last_membership
    {
        return Err(corrupt(
            path,
            format!(
                "file holds snapshot {}, the leader announced {}",
                meta.snapshot_id, expected.snapshot_id
            ),
        ));
    }
    while reader.next_record()?.is_some() {}
    reader.finish()
}

/// A reader that feeds what passes through it to a CRC32.
struct HashingReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads and verifies a snapshot file of this build's format, one record at a time.
pub fn load(path: &Path) -> Result<(SnapshotMeta, Registry), SnapshotError> {
    let (mut reader, meta) = FileReader::open(path)?;
    let mut builder = records::Builder::default();
    while let Some(bytes) = reader.next_record()? {
        let record: Record = codec::decode("snapshot record", bytes)
            .map_err(|e| corrupt(path, format!("record {}: {e}", builder.len())))?;
        builder
            .push(record)
            .map_err(|e| corrupt(path, e.to_string()))?;
    }
    reader.finish()?;
    Ok((meta, builder.finish()))
}

/// The format a snapshot file's header names (refusing unknown ones).
fn format_of(path: &Path) -> Result<u32, SnapshotError> {
    let mut f = File::open(path).map_err(io_at(path))?;
    Ok(read_header(path, &mut f)?.0)
}

/// Reads and verifies a whole format-3 snapshot file (the registry as one postcard body), to
/// migrate it. Holds the file in memory beside the registry, once per upgraded replica.
fn load_whole_body(path: &Path) -> Result<(SnapshotMeta, Registry), SnapshotError> {
    let bytes = fs::read(path).map_err(io_at(path))?;
    if bytes.len() < 16 + 8 + 4 {
        return Err(corrupt(path, format!("only {} bytes", bytes.len())));
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(content) != stored {
        return Err(corrupt(path, "checksum mismatch"));
    }
    let mut r = content;
    let (_, meta_bytes) = read_header(path, &mut r)?;
    let meta = decode_meta(path, &meta_bytes)?;
    if r.len() < 8 {
        return Err(corrupt(path, "missing body length"));
    }
    let (len, body) = r.split_at(8);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| corrupt(path, "body length"))?);
    if len != body.len() as u64 {
        return Err(corrupt(
            path,
            format!("body is {} bytes, header says {len}", body.len()),
        ));
    }
    let registry: Registry =
        codec::decode("snapshot body", body).map_err(|e| corrupt(path, e.to_string()))?;
    Ok((meta, registry))
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::registry::{FrameworkName, Op, Proposal, StoreKey, StoreOp};

    fn sample(index: u64) -> (SnapshotMeta, Registry) {
        let mut registry = Registry::default();
        let ops = (0..100)
            .map(|i| {
                Op::Store(StoreOp::Put {
                    framework: FrameworkName::new("f").unwrap(),
                    key: StoreKey::new(&format!("k{i}")).unwrap(),
                    value: vec![i as u8; 300].into(),
                })
            })
            .collect();
        registry.apply(index, &Proposal::new(1, ops).unwrap());
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), index)),
            last_membership: Default::default(),
            snapshot_id: format!("2-{index}"),
        };
        (meta, registry)
    }

    #[test]
    fn verify_accepts_an_intact_file_and_load_returns_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (meta, registry) = sample(10);
        let written = snaps.write(&meta, &registry).unwrap();
        let path = written.path;
        assert_eq!(fs::metadata(&path).unwrap().len(), written.bytes);
        verify(&path, &meta).unwrap();
        let (loaded_meta, loaded) = load(&path).unwrap();
        assert_eq!(loaded_meta, meta);
        assert_eq!(loaded, registry);
    }

    /// Every way a transfer can go wrong is refused before install: cut short anywhere, one
    /// byte flipped anywhere, grown, or a different snapshot than the one announced.
    #[test]
    fn verify_refuses_damaged_or_mismatched_files() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (meta, registry) = sample(10);
        let path = snaps.write(&meta, &registry).unwrap().path;
        let good = fs::read(&path).unwrap();
        let probe = dir.path().join("probe");
        let refused = |bytes: &[u8], m: &SnapshotMeta| {
            fs::write(&probe, bytes).unwrap();
            matches!(verify(&probe, m), Err(SnapshotError::Corrupt { .. }))
        };
        for cut in [
            0,
            1,
            15,
            16,
            40,
            good.len() / 2,
            good.len() - 5,
            good.len() - 1,
        ] {
            assert!(refused(&good[..cut], &meta), "cut at {cut} accepted");
        }
        for at in (0..good.len()).step_by(97).chain([good.len() - 1]) {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(refused(&bad, &meta), "flip at {at} accepted");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(refused(&longer, &meta));
        let (other, _) = sample(11);
        assert!(refused(&good, &other));
        assert!(!refused(&good, &meta));
    }

    #[test]
    fn a_snapshot_of_another_format_is_refused_naming_the_file_and_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.snap");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let e = read_meta(&path).unwrap_err();
        assert!(matches!(e, SnapshotError::Format { found, .. } if found == FORMAT_VERSION + 1));
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("format {}", FORMAT_VERSION + 1))
                && msg.contains(&format!("reads format {FORMAT_VERSION}")),
            "{msg}"
        );
    }

    /// A format-3 file (the registry as one body, as the previous build wrote it) is loaded and
    /// replaced by a file of this build's format holding the same registry.
    #[test]
    fn a_whole_body_snapshot_of_the_previous_build_is_migrated_to_records() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (meta, registry) = sample(10);
        let meta_bytes = postcard::to_stdvec(&meta).unwrap();
        let body = postcard::to_stdvec(&registry).unwrap();
        let mut old = MAGIC.to_vec();
        old.extend_from_slice(&FORMAT_WHOLE_BODY.to_le_bytes());
        old.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
        old.extend_from_slice(&meta_bytes);
        old.extend_from_slice(&(body.len() as u64).to_le_bytes());
        old.extend_from_slice(&body);
        old.extend_from_slice(&crc32fast::hash(&old).to_le_bytes());
        let old_path = dir.path().join(format!("snapshot-{:020}-old{SUFFIX}", 10));
        fs::write(&old_path, &old).unwrap();
        // This build's reader refuses it as another format; opening the directory migrates it.
        assert!(matches!(
            verify(&old_path, &meta),
            Err(SnapshotError::Format { found: 3, .. })
        ));
        let (loaded_meta, loaded, bytes) = snaps.load_current().unwrap().unwrap();
        assert_eq!((loaded_meta, &loaded), (meta.clone(), &registry));
        assert!(!old_path.exists());
        let (cur_meta, cur_path) = snaps.current().unwrap().unwrap();
        assert_eq!(cur_meta, meta);
        assert_eq!(format_of(&cur_path).unwrap(), FORMAT_VERSION);
        assert_eq!(fs::metadata(&cur_path).unwrap().len(), bytes);
        verify(&cur_path, &meta).unwrap();
        assert_eq!(load(&cur_path).unwrap().1, registry);
    }

    /// Files of records formats 4 and 5 (earlier builds: no task extensions, no deactivated
    /// agents) hold records this build reads as they are.
    #[test]
    fn records_snapshots_of_formats_4_and_5_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (meta, registry) = sample(10);
        let path = snaps.write(&meta, &registry).unwrap().path;
        let good = fs::read(&path).unwrap();
        for older in [FORMAT_RECORDS_V4, FORMAT_RECORDS_V5] {
            let mut bytes = good[..good.len() - 4].to_vec();
            bytes[8..12].copy_from_slice(&older.to_le_bytes());
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            let probe = dir.path().join(format!("older-{older}{SUFFIX}"));
            fs::write(&probe, &bytes).unwrap();
            verify(&probe, &meta).unwrap();
            assert_eq!(load(&probe).unwrap(), (meta.clone(), registry.clone()));
        }
    }

    /// A record over the bound is refused, naming its size.
    #[test]
    fn a_record_over_the_bound_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (meta, registry) = sample(10);
        let path = snaps.write(&meta, &registry).unwrap().path;
        let mut bytes = fs::read(&path).unwrap();
        // The first record's length, just after the header and metadata.
        let meta_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let at = 16 + meta_len;
        bytes[at..at + 4].copy_from_slice(&(MAX_RECORD_BYTES + 1).to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("a record of {} bytes", MAX_RECORD_BYTES + 1)),
            "{e}"
        );
    }

    /// A snapshot older than the current one does not replace it, and the caller is told which
    /// file and metadata are current.
    #[test]
    fn an_older_snapshot_does_not_replace_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (new_meta, new_reg) = sample(20);
        let new_path = snaps.write(&new_meta, &new_reg).unwrap().path;
        let (old_meta, old_reg) = sample(10);
        let won = snaps.write(&old_meta, &old_reg).unwrap();
        assert_eq!(won.path, new_path);
        assert_eq!(won.meta, new_meta);
        let (cur_meta, cur_path) = snaps.current().unwrap().unwrap();
        assert_eq!(cur_meta, new_meta);
        assert_eq!(cur_path, new_path);
        assert_eq!(snaps.all().unwrap().len(), 1);
    }
}
