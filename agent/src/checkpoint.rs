//! Durable files: whole files replaced atomically, and append-only record logs.
//!
//! Owns the two on-disk formats every checkpoint of the agent uses, and nothing about what is
//! in them:
//!
//! - [`write_atomic`]: write a temporary file beside the target, fsync it, rename it over the
//!   target, fsync the directory. A reader sees the old content or the new, never a mix, and
//!   the new survives a crash once the call returns. Used for `meta/agent_id`, `task.json`,
//!   `executor.pid`.
//! - a **record log** ([`append_record`], [`read_records`]): one record per line,
//!   `CRC32-HEX SP JSON LF`, where the checksum (crc32 of the JSON bytes, 8 lowercase hex
//!   digits) lets a reader tell a complete record from a torn or corrupted one. Each append is
//!   fsynced before the call returns (and its directory, until the caller's first append
//!   succeeded). A log is bounded by [`MAX_LOG_BYTES`], the same bound for the writer and the
//!   reader: an append that would pass it first rewrites the log with what the caller's
//!   compaction keeps. A crash can only tear the last line: a reader skips it
//!   with a warning (it was never acknowledged to anyone, since acknowledging waits for the
//!   fsync) and [`truncate_torn_tail`] cuts it off before the next append. A bad line in the
//!   middle (bit rot) is skipped with a warning as well; it is never fatal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Longest record accepted in a record log, bytes (checksum and newline included).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Bytes a record's line adds to its JSON: checksum, space, newline.
pub const RECORD_FRAMING_BYTES: u64 = 10;
/// Largest record log read back, bytes. A task's update log holds a handful of updates; a
/// file this large is not one of ours.
pub const MAX_LOG_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: record of {size_bytes} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")]
    RecordTooLarge { path: PathBuf, size_bytes: usize },
    #[error("{path}: {size_bytes} bytes exceeds the {MAX_LOG_BYTES}-byte limit of a record log")]
    LogTooLarge { path: PathBuf, size_bytes: u64 },
    #[error("{path}: cannot encode record: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fsyncs a directory, making the creation, rename or removal of its entries durable.
pub fn fsync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates `dir` and any missing parents, fsyncing the parent of each directory it created.
pub fn create_dir_all_durable(dir: &Path) -> Result<(), CheckpointError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
    }
}

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Encodes one record as a log line: checksum, space, JSON, newline.
pub fn encode_record<T: Serialize>(path: &Path, record: &T) -> Result<Vec<u8>, CheckpointError> {
    let json = serde_json::to_vec(record).map_err(|source| CheckpointError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let crc = crc32fast::hash(&json);
    let mut line = Vec::with_capacity(json.len() + RECORD_FRAMING_BYTES as usize);
    line.extend_from_slice(format!("{crc:08x} ").as_bytes());
    line.extend_from_slice(&json);
    line.push(b'\n');
    if line.len() > MAX_RECORD_BYTES {
        return Err(CheckpointError::RecordTooLarge {
            path: path.to_path_buf(),
            size_bytes: line.len(),
        });
    }
    Ok(line)
}

/// Runs blocking file work on tokio's blocking pool, off the runtime's threads; a task that
/// could not finish (it panicked) is an I/O error on `path`.
pub async fn off_runtime<T: Send + 'static>(
    path: PathBuf,
    work: impl FnOnce() -> Result<T, CheckpointError> + Send + 'static,
) -> Result<T, CheckpointError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(CheckpointError::Io {
            path,
            source: io::Error::other(format!("checkpoint task failed: {e}")),
        })
    })
}

/// Appends `record` to the log at `path` (created if missing) and fsyncs it. Returns once the
/// record is durable.
///
/// The file's directory entry must be durable too: unless `entry_durable` (the caller made it
/// so with an earlier successful append in this process), the directory is fsynced as well.
/// Whether the file already existed says nothing about that: an earlier attempt may have
/// created it and failed before its directory was synced.
///
/// Bounded: a log never grows past [`MAX_LOG_BYTES`] (what [`read_records`] accepts). An
/// append that would take it past is preceded by a compaction: the log is rewritten
/// atomically with what `compact` keeps of its records, then the new one.
pub fn append_record<T: Serialize + DeserializeOwned>(
    path: &Path,
    record: &T,
    entry_durable: bool,
    compact: impl FnOnce(Vec<T>) -> Vec<T>,
) -> Result<(), CheckpointError> {
    append_with(path, record, entry_durable, compact, fsync_dir)
}

/// [`append_record`] with the directory fsync passed in (tests count it).
fn append_with<T: Serialize + DeserializeOwned>(
    path: &Path,
    record: &T,
    entry_durable: bool,
    compact: impl FnOnce(Vec<T>) -> Vec<T>,
    sync_dir: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let line = encode_record(path, record)?;
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err(path)(e)),
    };
    if size + line.len() as u64 > MAX_LOG_BYTES {
        return rewrite_compacted(path, line, compact);
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(&line).map_err(io_err(path))?;
    f.sync_data().map_err(io_err(path))?;
    if !entry_durable {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Replaces the log with what `compact` keeps of its records, then `line`, atomically.
fn rewrite_compacted<T: Serialize + DeserializeOwned>(
    path: &Path,
    line: Vec<u8>,
    compact: impl FnOnce(Vec<T>) -> Vec<T>,
) -> Result<(), CheckpointError> {
    let kept = compact(read_records::<T>(path)?.records);
    let mut bytes = Vec::new();
    for r in &kept {
        bytes.extend(encode_record(path, r)?);
    }
    bytes.extend(line);
    if bytes.len() as u64 > MAX_LOG_BYTES {
        return Err(CheckpointError::LogTooLarge {
            path: path.to_path_buf(),
            size_bytes: bytes.len() as u64,
        });
    }
    tracing::info!(path = %path.display(), kept = kept.len(), size_bytes = bytes.len(), "record log compacted");
    write_atomic(path, &bytes)
}

/// The length of `record`'s line in a record log (`u64::MAX` if it cannot be encoded): what
/// it counts against a log's bound.
pub fn line_len<T: Serialize>(record: &T) -> u64 {
    serde_json::to_vec(record).map_or(u64::MAX, |j| j.len() as u64 + RECORD_FRAMING_BYTES)
}

/// The newest of `records` whose encoded lines fit in `budget_bytes`, in their order: the
/// compaction of a log whose old records carry nothing the reader needs.
pub fn newest_within<T: Serialize>(records: Vec<T>, budget_bytes: u64) -> Vec<T> {
    let mut used = 0u64;
    let mut keep = records.len();
    for (i, r) in records.iter().enumerate().rev() {
        let n = line_len(r);
        if used + n > budget_bytes {
            break;
        }
        used += n;
        keep = i;
    }
    records.into_iter().skip(keep).collect()
}

/// A line of a record log that was not returned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// What a record log holds.
#[derive(Debug)]
pub struct Replay<T> {
    /// The good records, in order.
    pub records: Vec<T>,
    /// Lines skipped (torn, corrupted or unreadable), in order.
    pub skipped: Vec<SkippedLine>,
    /// Length of the file up to the end of its last complete line; bytes past it are a torn
    /// append.
    pub complete_len: u64,
    /// Whether the file ends with an incomplete line.
    pub torn_tail: bool,
}

/// Decodes one line (without its newline), checking the checksum.
fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("no checksum".into());
    }
    let hex = std::str::from_utf8(&line[..8]).map_err(|_| "checksum is not hex".to_string())?;
    let want = u32::from_str_radix(hex, 16).map_err(|_| "checksum is not hex".to_string())?;
    let json = &line[9..];
    let got = crc32fast::hash(json);
    if got != want {
        return Err(format!(
            "checksum mismatch (stored {want:08x}, computed {got:08x})"
        ));
    }
    serde_json::from_slice(json).map_err(|e| format!("undecodable record: {e}"))
}

/// Reads every record of the log at `path` (an absent file is an empty log).
///
/// A log larger than [`MAX_LOG_BYTES`] (only builds before logs were bounded wrote them) is
/// read from its last [`MAX_LOG_BYTES`], starting at a line: its newest records, which hold
/// everything not yet acknowledged (those are the newest, and fit many times over). The
/// records before are reported as one skipped line; the next append compacts the log.
pub fn read_records<T: DeserializeOwned>(path: &Path) -> Result<Replay<T>, CheckpointError> {
    let size = match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(decode_records(&[])),
        Err(e) => return Err(io_err(path)(e)),
        Ok(m) => m.len(),
    };
    if size <= MAX_LOG_BYTES {
        return Ok(decode_records(&fs::read(path).map_err(io_err(path))?));
    }
    use std::io::{Read, Seek, SeekFrom};
    // The last MAX_LOG_BYTES and the byte before them: the records start after the first
    // newline (the byte before counts, so that a cut right after a newline loses no record).
    let from = size - MAX_LOG_BYTES - 1;
    let mut f = File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut tail = Vec::with_capacity(MAX_LOG_BYTES as usize + 1);
    f.take(MAX_LOG_BYTES + 1)
        .read_to_end(&mut tail)
        .map_err(io_err(path))?;
    let skip = tail
        .iter()
        .position(|&b| b == b'\n')
        .map_or(tail.len(), |i| i + 1);
    let mut replay = decode_records(&tail[skip..]);
    replay.complete_len += from + skip as u64;
    replay.skipped.insert(
        0,
        SkippedLine {
            line: 0,
            reason: format!(
                "the log is {size} bytes, over the {MAX_LOG_BYTES}-byte bound: only its last {} bytes were read",
                tail.len() - skip
            ),
        },
    );
    Ok(replay)
}

/// Decodes a record log's bytes (see [`read_records`]).
pub fn decode_records<T: DeserializeOwned>(bytes: &[u8]) -> Replay<T> {
    let mut replay = Replay {
        records: Vec::new(),
        skipped: Vec::new(),
        complete_len: 0,
        torn_tail: false,
    };
    let mut start = 0usize;
    let mut number = 0usize;
    while start < bytes.len() {
        number += 1;
        let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') else {
            replay.torn_tail = true;
            replay.skipped.push(SkippedLine {
                line: number,
                reason: format!(
                    "torn last line ({} bytes without a newline)",
                    bytes.len() - start
                ),
            });
            break;
        };
        let line = &bytes[start..start + nl];
        match decode_line(line) {
            Ok(r) => replay.records.push(r),
            Err(reason) => replay.skipped.push(SkippedLine {
                line: number,
                reason,
            }),
        }
        start += nl + 1;
        replay.complete_len = start as u64;
    }
    replay
}

/// Cuts a torn last line off the log at `path` so that the next append starts a fresh line.
pub fn truncate_torn_tail(path: &Path, complete_len: u64) -> Result<(), CheckpointError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(complete_len).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
        text: String,
    }

    /// An append by a caller that keeps nothing in a compaction.
    fn append(path: &Path, r: &Rec) -> Result<(), CheckpointError> {
        append_record(path, r, false, |_| Vec::new())
    }

    fn rec(n: u32) -> Rec {
        Rec {
            n,
            text: format!("record {n} with \"quotes\" and a\nnewline"),
        }
    }

    #[test]
    fn record_log_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        for n in 0..5 {
            append(&path, &rec(n)).expect("append");
        }
        let replay: Replay<Rec> = read_records(&path).expect("read");
        assert_eq!(replay.records, (0..5).map(rec).collect::<Vec<_>>());
        assert!(replay.skipped.is_empty());
        assert!(!replay.torn_tail);
        assert_eq!(
            replay.complete_len,
            fs::metadata(&path).expect("stat").len()
        );
    }

    #[test]
    fn absent_log_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let replay: Replay<Rec> = read_records(&dir.path().join("none")).expect("read");
        assert!(replay.records.is_empty() && replay.skipped.is_empty());
    }

    #[test]
    fn torn_last_line_is_skipped_and_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, &rec(1)).expect("append");
        append(&path, &rec(2)).expect("append");
        let good_len = fs::metadata(&path).expect("stat").len();
        // A crash in the middle of the third append: half a line, no newline.
        let third = encode_record(&path, &rec(3)).expect("encode");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&third[..third.len() / 2]).expect("write");
        drop(f);

        let replay: Replay<Rec> = read_records(&path).expect("read");
        assert_eq!(replay.records, vec![rec(1), rec(2)]);
        assert!(replay.torn_tail);
        assert_eq!(replay.skipped.len(), 1);
        assert_eq!(replay.skipped[0].line, 3);
        assert_eq!(replay.complete_len, good_len);

        truncate_torn_tail(&path, replay.complete_len).expect("truncate");
        append(&path, &rec(4)).expect("append");
        let replay: Replay<Rec> = read_records(&path).expect("read");
        assert_eq!(replay.records, vec![rec(1), rec(2), rec(4)]);
        assert!(replay.skipped.is_empty());
    }

    #[test]
    fn corrupted_line_in_the_middle_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        for n in 1..=3 {
            append(&path, &rec(n)).expect("append");
        }
        let mut bytes = fs::read(&path).expect("read");
        // Flip a byte inside the second record's JSON.
        let second = bytes.iter().position(|&b| b == b'\n').expect("newline") + 20;
        bytes[second] ^= 0x01;
        fs::write(&path, &bytes).expect("write");
        let replay: Replay<Rec> = read_records(&path).expect("read");
        assert_eq!(replay.records, vec![rec(1), rec(3)]);
        assert_eq!(replay.skipped.len(), 1);
        assert_eq!(replay.skipped[0].line, 2);
        assert!(replay.skipped[0].reason.contains("checksum"));
        assert!(!replay.torn_tail);
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [
            &b"\n\n\n"[..],
            b"zzzzzzzz {}\n",
            b"0000000",
            b"00000000 \n",
            b"\xff\xfe\n",
        ] {
            let replay: Replay<Rec> = decode_records(bytes);
            assert!(replay.records.is_empty());
        }
    }

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/file");
        create_dir_all_durable(path.parent().expect("parent")).expect("mkdir");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn oversized_record_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let big = Rec {
            n: 0,
            text: "x".repeat(MAX_RECORD_BYTES),
        };
        assert!(matches!(
            append(&path, &big),
            Err(CheckpointError::RecordTooLarge { .. })
        ));
    }

    /// Issue 16: an attempt that created the file and failed before syncing its directory left
    /// a file that a later append took for "existed, so durable".
    #[test]
    fn the_directory_is_synced_until_an_append_of_this_caller_succeeded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        // The failed first attempt: the file exists (torn, half a line), its entry unsynced.
        let first = encode_record(&path, &rec(1)).expect("encode");
        fs::write(&path, &first[..first.len() / 2]).expect("write");
        let mut synced = Vec::new();
        append_with(
            &path,
            &rec(1),
            false,
            |_| Vec::new(),
            |d: &Path| {
                synced.push(d.to_path_buf());
                Ok(())
            },
        )
        .expect("append");
        assert_eq!(synced, vec![dir.path().to_path_buf()]);
        // Once an append succeeded with the sync, the caller says so and no sync follows.
        append_with(
            &path,
            &rec(2),
            true,
            |_| Vec::new(),
            |_: &Path| panic!("synced the directory again"),
        )
        .expect("append");
    }

    /// Issue 16: the writer never makes a log the reader refuses ([`MAX_LOG_BYTES`]).
    #[test]
    fn a_log_at_its_bound_is_compacted_and_stays_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let big = |n| Rec {
            n,
            text: "x".repeat(MAX_RECORD_BYTES - 100),
        };
        let per_record = encode_record(&path, &big(0)).expect("encode").len() as u64;
        let to_fill = MAX_LOG_BYTES / per_record + 8;
        let mut compactions = 0;
        for n in 0..to_fill as u32 {
            append_record(&path, &big(n), n > 0, |old: Vec<Rec>| {
                compactions += 1;
                newest_within(old, MAX_LOG_BYTES / 2)
            })
            .expect("append");
            assert!(fs::metadata(&path).expect("stat").len() <= MAX_LOG_BYTES);
        }
        assert_eq!(compactions, 1);
        let replay: Replay<Rec> = read_records(&path).expect("the reader takes it");
        let last = replay.records.last().expect("records").n;
        assert_eq!(last, to_fill as u32 - 1, "the newest record is kept");
        let kept: Vec<u32> = replay.records.iter().map(|r| r.n).collect();
        assert!(
            kept.windows(2).all(|w| w[1] == w[0] + 1),
            "in order: {kept:?}"
        );
    }

    /// Issue 16: a log an older build let grow past the bound is still read (its newest
    /// records) and can be appended to again (compacted on the way).
    #[test]
    fn a_log_over_the_bound_from_an_older_build_is_read_from_its_tail_and_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let big = |n| Rec {
            n,
            text: "y".repeat(60_000),
        };
        let mut bytes = Vec::new();
        let mut n = 0;
        while bytes.len() as u64 <= MAX_LOG_BYTES + 1_000_000 {
            bytes.extend(encode_record(&path, &big(n)).unwrap());
            n += 1;
        }
        fs::write(&path, &bytes).unwrap();
        let replay: Replay<Rec> = read_records(&path).expect("read");
        assert_eq!(replay.records.last().map(|r| r.n), Some(n - 1));
        assert!(replay.records.len() < n as usize);
        assert!(
            replay.skipped[0].reason.contains("over the"),
            "{:?}",
            replay.skipped
        );
        assert!(!replay.torn_tail);
        append_record(&path, &big(n), false, |old: Vec<Rec>| {
            newest_within(old, MAX_LOG_BYTES / 2)
        })
        .expect("append compacts it");
        assert!(fs::metadata(&path).unwrap().len() <= MAX_LOG_BYTES);
        let replay: Replay<Rec> = read_records(&path).expect("read");
        assert_eq!(replay.records.last().map(|r| r.n), Some(n));
        assert!(replay.skipped.is_empty());
    }

    #[test]
    fn newest_within_keeps_a_suffix_in_order() {
        let recs: Vec<Rec> = (0..10).map(rec).collect();
        let one = serde_json::to_vec(&rec(0)).unwrap().len() as u64 + 10;
        let kept = newest_within(recs.clone(), one * 3);
        assert_eq!(kept, recs[7..].to_vec());
        assert!(newest_within(recs.clone(), 0).is_empty());
        assert_eq!(newest_within(recs.clone(), u64::MAX), recs);
    }
}
