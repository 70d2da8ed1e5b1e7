//! The agent's file API, after Mesos's `/files`: `GET /files/read` (a byte range of a file in a
//! task's sandbox, as JSON `{"data", "offset"}`), `GET /files/download` (a whole file, raw,
//! streamed) and `GET /files/browse` (a sandbox directory's entries). `drover task logs` and
//! `drover run` read a task's `stdout` and `stderr` through it.
//!
//! Owns nothing: every request resolves its path against the work directory's layout and reads
//! on a blocking thread. Only files inside a task's `sandbox/` are served (never the agent's
//! own files beside it: `task.json`, logs, pid files), and a path that leaves the sandbox once
//! symlinks are resolved is refused, so a task cannot expose the host through a link.
//!
//! A path names the sandbox as the layout does, relative to the work directory
//! (`frameworks/<framework>/tasks/<task>/sandbox/stdout`, or `completed/<framework>/<task>[.n]/
//! sandbox/…` once the task ended and its directory moved), or as the absolute path under the
//! work directory. A live task's path still resolves after its directory moved to
//! `completed/` (to the latest life of that task id), so a follower does not lose the end.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::ids::{ExecutorId, FrameworkId, TaskId};
use crate::layout::Layout;

/// Longest range one read returns, bytes (Mesos's page size is 16 KiB; a log follower wants
/// more per round trip).
pub const MAX_READ_BYTES: u64 = 1 << 20;
/// Most entries one browse returns.
pub const MAX_BROWSE_ENTRIES: usize = 10_000;
/// Longest path accepted, bytes.
const MAX_PATH_BYTES: usize = 4096;
/// Bytes read per chunk of a download.
const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// Why a file request failed, with the HTTP status each maps to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilesError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}: no such file or directory in a sandbox of this agent")]
    NotFound(String),
    #[error("{0}: {1}")]
    Io(String, String),
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        let status = match &self {
            FilesError::Invalid { .. } => StatusCode::BAD_REQUEST,
            FilesError::NotFound(_) => StatusCode::NOT_FOUND,
            FilesError::Io(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match &self {
            FilesError::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        (
            status,
            Json(serde_json::json!({"message": self.to_string(), "field": field})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
pub struct ReadQuery {
    path: Option<String>,
    /// Where to start, bytes; absent or -1 asks only for the file's size (Mesos's convention).
    offset: Option<i64>,
    /// Most bytes to return (at most [`MAX_READ_BYTES`], which is also the default).
    length: Option<i64>,
}

/// `{"data", "offset"}`: `data` holds the bytes from `offset`, one character per byte where
/// the bytes are not UTF-8 (see [`text_of`]), so that the next read starts at `offset` plus
/// the UTF-8 length of `data`.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct ReadReply {
    pub data: String,
    pub offset: u64,
}

#[derive(Deserialize)]
pub struct BrowseQuery {
    path: Option<String>,
}

/// One directory entry, with Mesos's field names.
#[derive(Serialize, Debug)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    pub mode: String,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
}

pub async fn read(
    State(layout): State<Layout>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<ReadReply>, FilesError> {
    let path = q.path.ok_or(FilesError::Invalid {
        field: "path",
        reason: "missing".into(),
    })?;
    let offset = unless_minus_one("offset", q.offset)?;
    let length =
        unless_minus_one("length", q.length)?.map_or(MAX_READ_BYTES, |l| l.min(MAX_READ_BYTES));
    let reply = tokio::task::spawn_blocking(move || {
        on_resolved(&layout, &path, |file| {
            read_range(file, &path, offset, length)
        })
    })
    .await
    .map_err(|e| FilesError::Io("read".into(), e.to_string()))??;
    Ok(Json(reply))
}

/// The whole file, raw, streamed in chunks (as much of it as there was when asked: a file
/// still growing ends where it ended then).
pub async fn download(
    State(layout): State<Layout>,
    Query(q): Query<BrowseQuery>,
) -> Result<Response, FilesError> {
    use tokio::io::AsyncReadExt;
    let path = q.path.ok_or(FilesError::Invalid {
        field: "path",
        reason: "missing".into(),
    })?;
    let (file, opened, size) = tokio::task::spawn_blocking(move || {
        on_resolved(&layout, &path, |file| {
            let opened = open_checked(file).map_err(|e| io_error(&path, e))?;
            let meta = opened.metadata().map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                return Err(FilesError::Invalid {
                    field: "path",
                    reason: format!("{path}: is a directory (browse it)"),
                });
            }
            Ok((file.to_path_buf(), opened, meta.len()))
        })
    })
    .await
    .map_err(|e| FilesError::Io("download".into(), e.to_string()))??;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().replace('"', ""))
        .unwrap_or_default();
    let opened = tokio::fs::File::from_std(opened).take(size);
    let chunks = futures::stream::unfold(opened, |mut f| async move {
        let mut buf = vec![0u8; DOWNLOAD_CHUNK_BYTES];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

/// A query number where absent and -1 both mean "not given" (Mesos's convention); other
/// negative values are refused, naming `field`.
fn unless_minus_one(field: &'static str, value: Option<i64>) -> Result<Option<u64>, FilesError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(v) if v < 0 => Err(FilesError::Invalid {
            field,
            reason: format!("{v}: must be -1 or at least 0"),
        }),
        Some(v) => Ok(Some(v as u64)),
    }
}

pub async fn browse(
    State(layout): State<Layout>,
    Query(q): Query<BrowseQuery>,
) -> Result<Json<Vec<Entry>>, FilesError> {
    let path = q.path.ok_or(FilesError::Invalid {
        field: "path",
        reason: "missing".into(),
    })?;
    let entries =
        tokio::task::spawn_blocking(move || on_resolved(&layout, &path, |dir| list(dir, &path)))
            .await
            .map_err(|e| FilesError::Io("browse".into(), e.to_string()))??;
    Ok(Json(entries))
}

/// `op` run on the real path `requested` names. The sandbox collector may move a task's
/// directory to `completed/` while the path is resolved or between its resolution and its
/// use (a rename: what was already open stays readable). When the resolution or `op` then
/// finds nothing, both run once more, and the path now names where the directory went.
/// Blocking.
fn on_resolved<T>(
    layout: &Layout,
    requested: &str,
    mut op: impl FnMut(&Path) -> Result<T, FilesError>,
) -> Result<T, FilesError> {
    let mut attempt = || resolve(layout, requested).and_then(|path| op(&path));
    match attempt() {
        Err(FilesError::NotFound(_)) => attempt(),
        done => done,
    }
}

/// Opens `real`, a path [`resolve`] checked, and checks that the file opened is the one at
/// that path: a task owns its sandbox, and could swap a checked file or directory for a
/// symlink out of it between the check and the open (the agent reads as root).
fn open_checked(real: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(real)?;
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    if opened != real {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the file was moved while it was opened",
        ));
    }
    Ok(f)
}

/// An I/O error on the file shown as `shown`: a missing file is [`FilesError::NotFound`].
fn io_error(shown: &str, e: std::io::Error) -> FilesError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FilesError::NotFound(shown.to_string())
    } else {
        FilesError::Io(shown.to_string(), e.to_string())
    }
}

/// The real path a request names, checked to lie inside a task's sandbox. Blocking.
pub fn resolve(layout: &Layout, requested: &str) -> Result<PathBuf, FilesError> {
    let invalid = |reason: &str| FilesError::Invalid {
        field: "path",
        reason: format!("{requested}: {reason}"),
    };
    if requested.len() > MAX_PATH_BYTES {
        return Err(FilesError::Invalid {
            field: "path",
            reason: format!("longer than {MAX_PATH_BYTES} bytes"),
        });
    }
    let given = Path::new(requested);
    // An absolute path must lie under the work directory; it is then read as relative.
    let work = layout.work_dir();
    let canonical_work = work.canonicalize().ok();
    let relative = [Some(work), canonical_work.as_deref()]
        .into_iter()
        .flatten()
        .filter(|w| w.is_absolute())
        .find_map(|w| given.strip_prefix(w).ok())
        .unwrap_or_else(|| given.strip_prefix("/").unwrap_or(given));
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(p) => {
                parts.push(p.to_str().ok_or_else(|| invalid("not UTF-8"))?.to_string())
            }
            Component::CurDir => {}
            _ => return Err(invalid("may not contain '..'")),
        }
    }
    let (sandbox, rest) = sandbox_of(layout, &parts).ok_or_else(|| {
        invalid(
            "not in a task's sandbox (frameworks/<framework>/tasks/<task>/sandbox/…, \
             completed/<framework>/<task>/sandbox/… or \
             frameworks/<framework>/executors/<executor>/runs/<container>/sandbox/…)",
        )
    })?;
    let mut file = sandbox.clone();
    file.extend(rest);
    let not_found = || FilesError::NotFound(requested.to_string());
    // Symlinks resolved on both sides: what the task linked to outside its sandbox is refused.
    let real = file.canonicalize().map_err(|_| not_found())?;
    let root = sandbox.canonicalize().map_err(|_| not_found())?;
    if !real.starts_with(&root) {
        return Err(invalid("leaves the task's sandbox"));
    }
    Ok(real)
}

/// The sandbox directory `parts` start with, and the rest; `None` if they name no sandbox.
fn sandbox_of<'a>(layout: &Layout, parts: &'a [String]) -> Option<(PathBuf, &'a [String])> {
    match parts {
        [top, fw, tasks, task, sandbox, rest @ ..]
            if top == "frameworks" && tasks == "tasks" && sandbox == "sandbox" =>
        {
            let fw = FrameworkId::new(fw).ok()?;
            let task = TaskId::new(task).ok()?;
            let live = layout.task_dir(&fw, &task);
            let dir = if live.is_dir() {
                live
            } else {
                latest_completed(layout, &fw, &task).unwrap_or(live)
            };
            Some((dir.join("sandbox"), rest))
        }
        [top, fw, executors, executor, runs, container, sandbox, rest @ ..]
            if top == "frameworks"
                && executors == "executors"
                && runs == "runs"
                && sandbox == "sandbox" =>
        {
            let fw = FrameworkId::new(fw).ok()?;
            let executor = ExecutorId::new(executor).ok()?;
            // A container id is a uuid the agent made: a plain name, checked as an id.
            let container = ExecutorId::new(container).ok()?;
            Some((
                layout
                    .executor_run_dir(&fw, &executor, container.as_str())
                    .sandbox(),
                rest,
            ))
        }
        [top, fw, task, sandbox, rest @ ..] if top == "completed" && sandbox == "sandbox" => {
            let fw = FrameworkId::new(fw).ok()?;
            // `<task>.n` is a later life of `<task>`: both are plain names, checked as ids.
            let task = TaskId::new(task).ok()?;
            Some((
                layout
                    .completed_dir()
                    .join(fw.as_str())
                    .join(task.as_str())
                    .join("sandbox"),
                rest,
            ))
        }
        _ => None,
    }
}

/// The directory of the latest ended life of a task (the last of the lives the sandbox
/// collector numbers from 0 without gaps, see [`Layout::completed_task_dir`]).
fn latest_completed(layout: &Layout, fw: &FrameworkId, task: &TaskId) -> Option<PathBuf> {
    (0..)
        .map(|life| layout.completed_task_dir(fw, task, life))
        .take_while(|dir| dir.is_dir())
        .last()
}

/// Bytes `[offset, offset + length)` of `file`, or only its size when `offset` is `None`.
fn read_range(
    file: &Path,
    shown: &str,
    offset: Option<u64>,
    length: u64,
) -> Result<ReadReply, FilesError> {
    let io = |e: std::io::Error| io_error(shown, e);
    let mut f = open_checked(file).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(FilesError::Invalid {
            field: "path",
            reason: format!("{shown}: is a directory (browse it)"),
        });
    }
    let size = meta.len();
    let Some(offset) = offset else {
        return Ok(ReadReply {
            data: String::new(),
            offset: size,
        });
    };
    if offset >= size {
        return Ok(ReadReply {
            data: String::new(),
            offset,
        });
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::with_capacity(length.min(size - offset) as usize);
    f.take(length).read_to_end(&mut buf).map_err(io)?;
    let at_end = offset + buf.len() as u64 >= size;
    Ok(ReadReply {
        data: text_of(&buf, !at_end),
        offset,
    })
}

/// `bytes` as text whose UTF-8 length is the number of bytes it stands for: valid UTF-8 is
/// kept, every byte of an invalid sequence becomes `?`. A character cut at the end of the
/// range is left for the next read when `more` follows (unless nothing else would be
/// returned), so a reader advancing by the text's length never splits a character.
pub fn text_of(bytes: &[u8], more: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.extend(std::iter::repeat_n('?', n));
                        rest = &bad[n..];
                    }
                    // Incomplete at the end: wait for the rest if it is coming.
                    None if more && !out.is_empty() => return out,
                    None => {
                        out.extend(std::iter::repeat_n('?', bad.len()));
                        return out;
                    }
                }
            }
        }
    }
}

/// The entries of directory `dir`, sorted by name, their paths as `shown` plus the name.
fn list(dir: &Path, shown: &str) -> Result<Vec<Entry>, FilesError> {
    use std::os::unix::fs::MetadataExt;
    let io = |e: std::io::Error| io_error(shown, e);
    if !dir.exists() {
        return Err(FilesError::NotFound(shown.to_string()));
    }
    if !dir.is_dir() {
        return Err(FilesError::Invalid {
            field: "path",
            reason: format!("{shown}: not a directory (read it)"),
        });
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let Ok(meta) = e.metadata() else { continue };
        entries.push(Entry {
            path: format!(
                "{}/{}",
                shown.trim_end_matches('/'),
                e.file_name().to_string_lossy()
            ),
            size: meta.len(),
            mtime: meta.mtime(),
            mode: mode_string(&meta),
            nlink: meta.nlink(),
            uid: meta.uid(),
            gid: meta.gid(),
        });
        if entries.len() >= MAX_BROWSE_ENTRIES {
            break;
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// `ls -l`'s mode column (`drwxr-xr-x`), as Mesos prints it.
fn mode_string(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(layout: &Layout, fw: &str, task: &str) -> PathBuf {
        let dir = layout
            .task_dir(&FrameworkId::new(fw).unwrap(), &TaskId::new(task).unwrap())
            .join("sandbox");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn text_keeps_byte_lengths() {
        assert_eq!(text_of(b"hello", false), "hello");
        assert_eq!(text_of("é!".as_bytes(), false), "é!");
        // An invalid byte becomes one '?'.
        assert_eq!(text_of(b"a\xffb", false), "a?b");
        // A character cut at the end waits for the next read, unless nothing else is there.
        let e = "é".as_bytes();
        assert_eq!(text_of(&[b'a', e[0]], true), "a");
        assert_eq!(text_of(&[b'a', e[0]], false), "a?");
        assert_eq!(text_of(&[e[0]], true), "?");
        for (bytes, more) in [(&b"x\xc3"[..], true), (b"\xff\xfe", false), (b"ok", true)] {
            let t = text_of(bytes, more);
            assert!(t.len() <= bytes.len());
        }
    }

    #[test]
    fn minus_one_means_not_given_and_other_negatives_are_refused() {
        assert_eq!(unless_minus_one("offset", None), Ok(None));
        assert_eq!(unless_minus_one("offset", Some(-1)), Ok(None));
        assert_eq!(unless_minus_one("length", Some(7)), Ok(Some(7)));
        assert!(matches!(
            unless_minus_one("offset", Some(-2)),
            Err(FilesError::Invalid {
                field: "offset",
                ..
            })
        ));
    }

    #[test]
    fn reads_ranges_and_sizes_in_a_sandbox() {
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        let dir = sandbox(&layout, "fw", "t1");
        std::fs::write(dir.join("stdout"), b"0123456789").unwrap();
        let path = "frameworks/fw/tasks/t1/sandbox/stdout";
        let file = resolve(&layout, path).unwrap();
        let r = read_range(&file, path, Some(3), 4).unwrap();
        assert_eq!(r.data, "3456");
        assert_eq!(r.offset, 3);
        assert_eq!(read_range(&file, path, None, 4).unwrap().offset, 10);
        assert_eq!(read_range(&file, path, Some(20), 4).unwrap().data, "");
        // The absolute form and a leading slash name the same file.
        let abs = dir.join("stdout").display().to_string();
        assert_eq!(resolve(&layout, &abs).unwrap(), file);
        assert_eq!(resolve(&layout, &format!("/{path}")).unwrap(), file);
    }

    #[test]
    fn refuses_what_is_not_in_a_sandbox() {
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        let dir = sandbox(&layout, "fw", "t1");
        let task_dir = dir.parent().unwrap();
        std::fs::write(task_dir.join("task.json"), b"{}").unwrap();
        std::fs::write(work.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(work.path().join("secret"), dir.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
        for bad in [
            "frameworks/fw/tasks/t1/task.json",
            "frameworks/fw/tasks/t1/sandbox/../task.json",
            "frameworks/fw/tasks/t1/sandbox/link",
            "frameworks/fw/tasks/t1/sandbox/etc/passwd",
            "secret",
            "/etc/passwd",
            "frameworks/../secret",
        ] {
            let e = resolve(&layout, bad).unwrap_err();
            assert!(
                matches!(e, FilesError::Invalid { field: "path", .. }),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(
            resolve(&layout, "frameworks/fw/tasks/t2/sandbox/stdout").unwrap_err(),
            FilesError::NotFound("frameworks/fw/tasks/t2/sandbox/stdout".into())
        );
    }

    #[test]
    fn a_path_swapped_for_a_link_after_the_check_is_not_opened() {
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        let dir = sandbox(&layout, "fw", "t1");
        let outside = work.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/f"), b"mine").unwrap();
        std::fs::write(dir.join("g"), b"mine").unwrap();
        let file = resolve(&layout, "frameworks/fw/tasks/t1/sandbox/g").unwrap();
        let nested = resolve(&layout, "frameworks/fw/tasks/t1/sandbox/d/f").unwrap();
        assert!(open_checked(&file).is_ok() && open_checked(&nested).is_ok());
        // The task swaps the file, and the directory above the other, for links out.
        std::fs::remove_file(dir.join("g")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), dir.join("g")).unwrap();
        std::fs::rename(dir.join("d"), dir.join("d.old")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("d")).unwrap();
        assert!(open_checked(&file).is_err(), "a link as the file itself");
        let e = open_checked(&nested).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }

    #[tokio::test]
    async fn a_download_is_the_whole_file_raw() {
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        let dir = sandbox(&layout, "fw", "t1");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("stdout"), &bytes).unwrap();
        let get = |path: &str| {
            download(
                State(layout.clone()),
                Query(BrowseQuery {
                    path: Some(path.to_string()),
                }),
            )
        };
        let resp = get("frameworks/fw/tasks/t1/sandbox/stdout").await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "200000");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body.as_ref(), bytes.as_slice());
        assert!(matches!(
            get("frameworks/fw/tasks/t1/sandbox").await,
            Err(FilesError::Invalid { field: "path", .. })
        ));
        assert!(matches!(
            get("frameworks/fw/tasks/t1/task.json").await,
            Err(FilesError::Invalid { field: "path", .. })
        ));
    }

    #[test]
    fn a_moved_task_is_found_in_completed_at_its_latest_life() {
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        for (life, text) in [("t1", "first"), ("t1.1", "second")] {
            let dir = layout.completed_dir().join("fw").join(life).join("sandbox");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("stdout"), text).unwrap();
        }
        let path = "frameworks/fw/tasks/t1/sandbox/stdout";
        let file = resolve(&layout, path).unwrap();
        assert_eq!(
            read_range(&file, path, Some(0), 100).unwrap().data,
            "second"
        );
        let first = "completed/fw/t1/sandbox/stdout";
        let file = resolve(&layout, first).unwrap();
        assert_eq!(
            read_range(&file, first, Some(0), 100).unwrap().data,
            "first"
        );
        let listed = list(
            &resolve(&layout, "completed/fw/t1/sandbox").unwrap(),
            "completed/fw/t1/sandbox",
        )
        .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "completed/fw/t1/sandbox/stdout");
        assert_eq!(listed[0].size, 5);
        assert!(listed[0].mode.starts_with('-'));
    }

    #[test]
    fn a_task_moved_between_resolution_and_reading_is_read_where_it_went() {
        let work = tempfile::tempdir().unwrap();
        let layout = Layout::new(work.path());
        let dir = sandbox(&layout, "fw", "t1");
        std::fs::write(dir.join("stdout"), "the end").unwrap();
        let path = "frameworks/fw/tasks/t1/sandbox/stdout";
        let live = dir.parent().unwrap().to_path_buf();
        let moved = layout.completed_dir().join("fw").join("t1");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        // The collector's rename lands after the first resolution, before the read.
        let mut calls = 0;
        let read = on_resolved(&layout, path, |file| {
            calls += 1;
            if calls == 1 {
                std::fs::rename(&live, &moved).unwrap();
            }
            read_range(file, path, Some(0), 100)
        })
        .unwrap();
        assert_eq!((read.data.as_str(), calls), ("the end", 2));
        // The same for a listing; a path that names nothing either time is not found (404).
        let listed = on_resolved(&layout, "frameworks/fw/tasks/t1/sandbox", |d| {
            list(d, "frameworks/fw/tasks/t1/sandbox")
        })
        .unwrap();
        assert_eq!(listed.len(), 1);
        let gone = "frameworks/fw/tasks/t1/sandbox/stderr";
        assert_eq!(
            on_resolved(&layout, gone, |f| read_range(f, gone, Some(0), 1)).unwrap_err(),
            FilesError::NotFound(gone.into())
        );
    }
}
