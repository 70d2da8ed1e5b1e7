//! The recorded history of a chaos run: every operation a client invoked and how it completed
//! (Jepsen's invoke / ok / fail / info), every fault the nemesis injected and healed, and what
//! the monitor saw of the masters, one JSON object per line in `history.jsonl`.
//!
//! One task owns the file ([`Recorder::start`]); clients hold cheap [`Recorder`] handles that
//! stamp each record with the run's monotonic clock and send it over a bounded channel. The
//! checkers read the file back ([`read`]), so `drover chaos check DIR` sees exactly what a run
//! saw.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Records waiting for the writer; a full queue makes clients wait (it never drops one).
const QUEUE: usize = 16 * 1024;

/// How an operation went, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The client is about to send the operation.
    Invoke,
    /// It took effect, with the value recorded.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Its outcome is unknown (a timeout, a lost connection): it may take effect at any time
    /// after its invocation, or never. Also used for events that are not operations (faults,
    /// observations).
    Info,
}

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the file (0, 1, 2, …), so counter-examples can point at lines.
    pub index: u64,
    /// Who: `store-3`, `tasks`, `tasks-op-12`, `nemesis`, `monitor`. A client whose
    /// operation ended in `info` continues under a new process name (`store-3.1`, as Jepsen
    /// does), since the old operation may still be in flight.
    pub process: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The operation: `read`, `write`, `cas`, `launch`, `update`, `start`, `stop`, …
    pub f: String,
    /// The operation's arguments or result.
    #[serde(default)]
    pub value: serde_json::Value,
    /// Nanoseconds since the run started (one monotonic clock for every process).
    pub time_ns: u64,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("the history writer stopped before the run ended")]
    WriterGone,
}

/// The run's clock: CLOCK_MONOTONIC (one for every process on the machine) counted from the
/// run's start, so that processes the runner starts record on the same time line.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_MONOTONIC at the run's start, nanoseconds.
    pub base_ns: u64,
}

fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there on Linux");
    (t.tv_sec() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec() as u64)
}

impl Clock {
    /// A clock whose zero is now.
    pub fn starting_now() -> Clock {
        Clock {
            base_ns: monotonic_ns(),
        }
    }

    /// Nanoseconds since the zero.
    pub fn now_ns(&self) -> u64 {
        monotonic_ns().saturating_sub(self.base_ns)
    }
}

/// How a record is sent to the writer: with `Durable`, [`Recorder::record`] returns only once
/// the record is in the file (a process that may be SIGKILLed records what it saw before it
/// acts on it, so that what it acted on is never missing from its history).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Buffered,
    Durable,
}

/// A record and, in durable mode, who waits for it to be written.
type Queued = (Record, Option<tokio::sync::oneshot::Sender<()>>);

/// A handle to record events. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Queued>,
    clock: Clock,
    mode: Mode,
}

/// The writer task; [`finish`](Self::finish) waits for every record sent before it.
pub struct Writer {
    task: JoinHandle<Result<u64, HistoryError>>,
}

impl Writer {
    /// Waits until every handle is dropped and the file is flushed; returns how many records
    /// it holds.
    pub async fn finish(self) -> Result<u64, HistoryError> {
        self.task.await.map_err(|_| HistoryError::WriterGone)?
    }
}

impl Recorder {
    /// Creates `path` and starts the task that writes it. Times come from `clock`.
    pub fn start(
        path: &Path,
        clock: Clock,
        mode: Mode,
    ) -> Result<(Recorder, Writer), HistoryError> {
        let io = |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE);
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            let io = |source| HistoryError::Io {
                path: path.clone(),
                source,
            };
            let mut out = BufWriter::new(file);
            let mut n = 0u64;
            let mut waiting = Vec::new();
            while let Some((mut r, done)) = rx.blocking_recv() {
                r.index = n;
                serde_json::to_writer(&mut out, &r).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
                waiting.extend(done);
                if rx.is_empty() || !waiting.is_empty() {
                    out.flush().map_err(io)?;
                    for w in waiting.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
            out.flush().map_err(io)?;
            Ok(n)
        });
        Ok((Recorder { tx, clock, mode }, Writer { task }))
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Records an event now; returns its time.
    pub async fn record(
        &self,
        process: &str,
        kind: Kind,
        f: &str,
        value: serde_json::Value,
        error: Option<String>,
    ) -> u64 {
        let time_ns = self.now_ns();
        let r = Record {
            index: 0,
            process: process.to_string(),
            kind,
            f: f.to_string(),
            value,
            time_ns,
            error,
        };
        // The writer only stops after every handle is gone; a send can fail only if it
        // crashed, and then the run reports the writer's error.
        match self.mode {
            Mode::Buffered => {
                let _ = self.tx.send((r, None)).await;
            }
            Mode::Durable => {
                let (done, written) = tokio::sync::oneshot::channel();
                if self.tx.send((r, Some(done))).await.is_ok() {
                    let _ = written.await;
                }
            }
        }
        time_ns
    }
}

/// Reads a history file back. A last line cut short (its writer was SIGKILLed mid-write) is
/// left out; a bad line anywhere else is an error.
pub fn read(path: &Path) -> Result<Vec<Record>, HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(e) if i == last && e.is_eof() => {}
            Err(source) => {
                return Err(HistoryError::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(out)
}

/// A fault the nemesis held, from its start to its heal (`to_ns` None: still on when the
/// history ended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPeriod {
    pub from_ns: u64,
    pub to_ns: Option<u64>,
    pub fault: String,
}

/// The nemesis's fault periods, in order (faults that failed to start are left out).
pub fn fault_periods(history: &[Record]) -> Vec<FaultPeriod> {
    let mut out = Vec::new();
    let mut open: Option<(u64, String)> = None;
    for r in history
        .iter()
        .filter(|r| r.process == "nemesis" && r.kind == Kind::Info)
    {
        match r.f.as_str() {
            "start" if r.error.is_none() => {
                let fault = r.value["fault"].as_str().unwrap_or("fault").to_string();
                open = Some((r.time_ns, fault));
            }
            "stop" | "heal" => {
                if let Some((from_ns, fault)) = open.take() {
                    out.push(FaultPeriod {
                        from_ns,
                        to_ns: Some(r.time_ns),
                        fault,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some((from_ns, fault)) = open {
        out.push(FaultPeriod {
            from_ns,
            to_ns: None,
            fault,
        });
    }
    out
}

/// A record built by hand, for the checkers' and the report's tests.
#[cfg(test)]
pub(crate) fn record(
    index: u64,
    process: &str,
    kind: Kind,
    f: &str,
    value: serde_json::Value,
    time_ns: u64,
) -> Record {
    Record {
        index,
        process: process.into(),
        kind,
        f: f.into(),
        value,
        time_ns,
        error: None,
    }
}

/// An operation: its invocation and its completion (none when the history ended first, which
/// counts as unknown).
#[derive(Clone, Debug)]
pub struct Pair<'a> {
    pub invoke: &'a Record,
    pub complete: Option<&'a Record>,
}

impl Pair<'_> {
    /// The completion's kind; `Info` when there is none.
    pub fn outcome(&self) -> Kind {
        self.complete.map_or(Kind::Info, |c| c.kind)
    }
}

/// Pairs each invocation of the processes `wanted` accepts with the next record of the same
/// process (Jepsen's rule: a process does one operation at a time).
pub fn pairs<'a>(history: &'a [Record], wanted: impl Fn(&str) -> bool) -> Vec<Pair<'a>> {
    let mut open: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out: Vec<Pair<'a>> = Vec::new();
    for r in history.iter().filter(|r| wanted(&r.process)) {
        match r.kind {
            Kind::Invoke => {
                open.insert(&r.process, out.len());
                out.push(Pair {
                    invoke: r,
                    complete: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(r.process.as_str()) {
                    out[i].complete = Some(r);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_in_order_with_their_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let (rec, writer) =
            Recorder::start(&path, Clock::starting_now(), Mode::Durable).expect("start");
        let t0 = rec
            .record(
                "store-0",
                Kind::Invoke,
                "read",
                serde_json::json!({"key": "a"}),
                None,
            )
            .await;
        let t1 = rec
            .record(
                "store-0",
                Kind::Info,
                "read",
                serde_json::Value::Null,
                Some("timeout".into()),
            )
            .await;
        assert!(t1 >= t0);
        drop(rec);
        assert_eq!(writer.finish().await.expect("finish"), 2);
        let h = read(&path).expect("read");
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].index, h[1].index), (0, 1));
        assert_eq!(h[1].error.as_deref(), Some("timeout"));
        let p = pairs(&h, |p| p.starts_with("store"));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].outcome(), Kind::Info);
    }

    #[test]
    fn a_last_line_cut_short_by_a_kill_is_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("scheduler-0.0.jsonl");
        let whole = r#"{"index":0,"process":"tasks","type":"info","f":"update","time_ns":1}"#;
        std::fs::write(&path, format!("{whole}\n{{\"index\":1,\"process\":\"ta")).expect("write");
        let h = read(&path).expect("read");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].f, "update");
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        std::fs::write(
            &path,
            "{\"index\":0,\"process\":\"a\",\"type\":\"ok\",\"f\":\"x\",\"time_ns\":1}\nnot json\n",
        )
        .expect("write");
        match read(&path) {
            Err(HistoryError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
