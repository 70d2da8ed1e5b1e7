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

/// Tries of each file's last read, and the pause between them (within the caller's bound).
const FINAL_READ_TRIES: u32 = 20;
const FINAL_READ_RETRY: Duration = Duration::from_millis(100);

/// The copier of one task's output.
pub(crate) struct OutputPump {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Option<SandboxError>>,
}

impl OutputPump {
    /// Starts copying the output of `task` of `framework` on the agent at `addr`.
    pub fn start(
        addr: &str,
        framework: &str,
        task: &str,
        tls: Option<&drover_tls::ClientTls>,
    ) -> Result<Self, SandboxError> {
        let files = [
            SandboxFile::new(addr, framework, task, "stdout", tls)?,
            SandboxFile::new(addr, framework, task, "stderr", tls)?,
        ];
        let (stop, stop_rx) = oneshot::channel();
        let handle = tokio::spawn(pump(files, stop_rx));
        Ok(Self { stop, handle })
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
            // While it runs, one read per round: what failed is tried at the next. At the
            // end, read until the file has no more, trying again shortly after a failure (the
            // task's directory moves once its end is acknowledged, and a passing failure then
            // would lose the end of the output); each chunk is written as it comes.
            let mut failures = 0;
            loop {
                match file.read_more().await {
                    Ok(text) => {
                        read_any = true;
                        let done = text.is_empty();
                        sink.write(&text);
                        if !stopping || done {
                            break;
                        }
                    }
                    Err(e) => {
                        last_error = Some(e);
                        failures += 1;
                        if !stopping || failures >= FINAL_READ_TRIES {
                            break;
                        }
                        tokio::time::sleep(FINAL_READ_RETRY).await;
                    }
                }
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
