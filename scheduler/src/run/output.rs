//! The task's output while `drover run` follows it: its `stdout` copied to ours and its
//! `stderr` to ours, read from the agent's sandbox files (see [`crate::sandbox`]) every
//! [`POLL_INTERVAL`] from the moment it runs until it ended.
//!
//! Owns the two read positions, in one spawned task. Finishing reads what is left (bounded by
//! the caller) and ends a last partial line, so the terminal status line that follows starts a
//! line of its own.

use std::io::Write;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sandbox::{SandboxError, SandboxFile};

/// How often the sandbox files are read while the task runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The copier of one task's output.
pub(crate) struct OutputPump {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Option<SandboxError>>,
}

impl OutputPump {
    /// Starts copying the output of `task` of `framework` on the agent at `addr`.
    pub fn start(addr: &str, framework: &str, task: &str) -> Self {
        let files = [
            SandboxFile::new(addr, framework, task, "stdout"),
            SandboxFile::new(addr, framework, task, "stderr"),
        ];
        let (stop, stop_rx) = oneshot::channel();
        let handle = tokio::spawn(pump(files, stop_rx));
        Self { stop, handle }
    }

    /// Copies what is left and stops, within `bound`; says so on stderr if the output could
    /// not be read.
    pub async fn finish(self, bound: Duration) {
        let _ = self.stop.send(());
        let mut handle = self.handle;
        match tokio::time::timeout(bound, &mut handle).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(e))) => eprintln!("drover run: warning: the task's output: {e}"),
            Ok(Err(_)) => {}
            Err(_) => {
                handle.abort();
                eprintln!(
                    "drover run: warning: the rest of the task's output did not arrive within \
                     {bound:?}"
                );
            }
        }
    }
}

/// Where each file's text goes, and whether the last byte written ended a line.
struct Sink {
    at_line_start: bool,
    stderr: bool,
}

impl Sink {
    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let r = if self.stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(text.as_bytes()).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        };
        if r.is_ok() {
            self.at_line_start = text.ends_with('\n');
        }
    }
}

/// Copies until told to stop, then copies the rest; returns the last error if nothing at all
/// could be read.
async fn pump(
    mut files: [SandboxFile; 2],
    mut stop: oneshot::Receiver<()>,
) -> Option<SandboxError> {
    let mut sinks = [
        Sink {
            at_line_start: true,
            stderr: false,
        },
        Sink {
            at_line_start: true,
            stderr: true,
        },
    ];
    let mut read_any = false;
    let mut last_error = None;
    loop {
        let stopping = tokio::select! {
            _ = &mut stop => true,
            _ = tokio::time::sleep(POLL_INTERVAL) => false,
        };
        for (file, sink) in files.iter_mut().zip(sinks.iter_mut()) {
            let read = if stopping {
                file.read_to_end().await
            } else {
                file.read_more().await
            };
            match read {
                Ok(text) => {
                    read_any = true;
                    sink.write(&text);
                }
                // Not there yet (the executor has not made the sandbox), or the agent is
                // away for a moment: the next round tries again.
                Err(e) => last_error = Some(e),
            }
        }
        if stopping {
            break;
        }
    }
    for sink in &mut sinks {
        if !sink.at_line_start {
            sink.write("\n");
        }
    }
    if read_any {
        None
    } else {
        last_error
    }
}
